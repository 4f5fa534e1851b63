"""CoCoOp's training step and evaluation: ours (every image's prompts in one text-tower call, each
up to its own end-of-text token) against the release's computation (one image at a time, all 77
positions; ``release_style.ReleaseCoCoOpCLIP``), on the same weights and batches.

    python benchmarks/cocoop.py                        # random:ViT-B/16, 100 classes, batch 1 (2 CPU cores: ~5 min)
    python benchmarks/cocoop.py --quick                # random:tiny, 20 classes: seconds
    python benchmarks/cocoop.py --classes 100 --batch 1 4 --json out.json --markdown out.md

Each figure is the median of the timed rounds after a warm-up round, ours and the release's
interleaved round by round. "Equal numbers" is checked on the way: the first step's loss of both
(relative difference) and the logits of one evaluation batch (largest absolute difference).
"""
import argparse
import datetime
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.release_style import ReleaseCoCoOpCLIP, release_cocoop_loss  # noqa: E402
from benchmarks.workloads import Variant, build_trainer, class_names, seconds, synthetic_batch  # noqa: E402
from textrefiner.backbones.resolver import load_clip  # noqa: E402
from textrefiner.run_config import register_plugins  # noqa: E402

CONFIG = "vit_b16_c4_ep10_batch1_ctxv1.yaml"  # the release's CoCoOp config (batch 1, "a photo of a")
COCOOP = Variant("CoCoOp", "CoCoOp", config=CONFIG)


def release_step(trainer, release: ReleaseCoCoOpCLIP, batch: dict) -> float:
    """The release's step: its forward and cross-entropy, then our trainer's backward and SGD update."""
    trainer.set_model_mode("train")
    loss = release_cocoop_loss(release, batch)
    trainer.model_backward_and_update(loss)
    return loss.item()


def our_step(trainer, batch: dict) -> float:
    trainer.set_model_mode("train")
    return trainer.forward_backward(batch)["loss"]


def measure(backbone: str, n_classes: int, batch_size: int, rounds: int, eval_images: int) -> dict:
    device = torch.device("cpu")
    clip_model = load_clip(backbone)
    names = class_names(n_classes, 3)
    torch.manual_seed(0)
    ours = build_trainer(COCOOP, clip_model, backbone, names, device, "fp32")
    torch.manual_seed(0)
    theirs = build_trainer(COCOOP, clip_model, backbone, names, device, "fp32")  # same seed: same weights
    release = ReleaseCoCoOpCLIP(theirs.model)
    resolution = clip_model.visual.input_resolution
    batch = synthetic_batch(batch_size, n_classes, resolution, device)
    # equal numbers: the first step of each from the same weights
    first_ours, first_release = our_step(ours, batch), release_step(theirs, release, batch)
    image = synthetic_batch(eval_images, n_classes, resolution, device, seed=1)["img"]
    for t in (ours, theirs):
        t.set_model_mode("eval")
    with torch.inference_mode():
        logits_ours = ours.evaluation_logits(image, None)
        logits_release = ReleaseCoCoOpCLIP(ours.model)(image)
    times = {"train ours": [], "train release": [], "eval ours": [], "eval release": []}
    for _ in range(rounds):
        times["train ours"].append(seconds(lambda: our_step(ours, batch), device))
        times["train release"].append(seconds(lambda: release_step(theirs, release, batch), device))
        for name, fn in (("eval ours", lambda: ours.evaluation_logits(image, None)),
                         ("eval release", lambda: release(image))):
            def run(fn=fn):
                with torch.inference_mode():
                    fn()
            times[name].append(seconds(run, device))
    median = {k: statistics.median(v) for k, v in times.items()}
    return {
        "backbone": backbone, "classes": n_classes, "batch": batch_size, "rounds": rounds, "eval_images": eval_images,
        "seconds": median,
        "train_speedup": median["train release"] / median["train ours"],
        "eval_speedup": median["eval release"] / median["eval ours"],
        "first_loss_ours": first_ours, "first_loss_release": first_release,
        "first_loss_rel_diff": abs(first_ours - first_release) / abs(first_release),
        "eval_logits_max_abs_diff": (logits_ours - logits_release).abs().max().item(),
    }


def markdown(results: list, meta: dict) -> str:
    lines = [
        "# CoCoOp: ours vs the release's per-image computation",
        "",
        f"`{meta['command']}` on {meta['machine']}, torch {meta['torch']}, {meta['threads']} threads, fp32, {meta['date']}.",
        "Median seconds of the timed rounds (after a warm-up step); speedup = release / ours. 'Loss diff': relative",
        "difference of the first training step's loss from the same weights; 'logit diff': largest absolute",
        "difference of one evaluation batch's logits.",
        "",
        "| backbone | classes | batch | train step ours (s) | release (s) | speedup | eval ours (s) | release (s) | speedup | loss diff | logit diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        s = r["seconds"]
        lines.append(
            f"| {r['backbone']} | {r['classes']} | {r['batch']} | {s['train ours']:.3f} | {s['train release']:.3f} | "
            f"{r['train_speedup']:.2f}x | {s['eval ours']:.3f} | {s['eval release']:.3f} | {r['eval_speedup']:.2f}x | "
            f"{r['first_loss_rel_diff']:.1e} | {r['eval_logits_max_abs_diff']:.1e} |")
    lines.append("")
    lines.append(f"Evaluation: one batch of {results[0]['eval_images']} images.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="random:ViT-B/16")
    p.add_argument("--classes", type=int, nargs="+", default=[100])
    p.add_argument("--batch", type=int, nargs="+", default=[1])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--eval-images", type=int, default=4)
    p.add_argument("--quick", action="store_true", help="random:tiny, 20 classes, 2 rounds")
    p.add_argument("--json", default="")
    p.add_argument("--markdown", default="")
    args = p.parse_args(argv)
    if args.quick:
        args.backbone, args.classes, args.rounds = "random:tiny", [20], 2
    register_plugins()
    results = []
    for n_classes in args.classes:
        for batch in args.batch:
            r = measure(args.backbone, n_classes, batch, args.rounds, args.eval_images)
            print(f"{n_classes} classes, batch {batch}: train {r['train_speedup']:.2f}x, eval {r['eval_speedup']:.2f}x "
                  f"faster; loss diff {r['first_loss_rel_diff']:.1e}, logit diff {r['eval_logits_max_abs_diff']:.1e}",
                  flush=True)
            results.append(r)
    meta = {"command": "python benchmarks/cocoop.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "date": datetime.date.today().isoformat()}
    text = markdown(results, meta)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
