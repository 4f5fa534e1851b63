"""CoCoOp's text tower with each image's shared prefix run once (``TextEncoder.encode_shared_prefix``,
what ``CoCoOpCLIP`` does) against every B x C prompt encoded whole up to its end-of-text token (what
it did before 2026-12-08), on the same weights, images and batches.

    python benchmarks/cocoop_prefix.py                              # testbed CLIP, its 24 shape classes
    python benchmarks/cocoop_prefix.py --backbone random:ViT-B/16 --classes 100 --eval-images 20
    python benchmarks/cocoop_prefix.py --json out.json --markdown out.md

Two workloads: one evaluation batch's text features (no gradients) and batch-1 training steps (forward,
backward and SGD of the context and the meta-net, CLIP frozen as the trainer freezes it). Each figure is
the median of the timed rounds after a warm-up, the two ways interleaved round by round; the ratio is
shared prefix / whole prompts, measured in one run. "Equal numbers" is checked on the way: the largest
absolute difference of the evaluation batch's (normalised) text features.
"""
import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textrefiner.backbones.resolver import load_clip  # noqa: E402
from textrefiner.hosts.cocoop import CoCoOpCLIP, CoCoOpPromptLearner  # noqa: E402
from textrefiner.testbed.datasets import SHAPE_CLASSES  # noqa: E402


def whole_prompts(model: CoCoOpCLIP, image_features: torch.Tensor) -> torch.Tensor:
    """Every image's C prompts through the text tower as B x C prompts (the computation before the shared prefix)."""
    pl = model.prompt_learner
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    prompts = pl(image_features, pl.text_length)
    b, c = prompts.shape[:2]
    features = model.text_encoder(prompts.reshape(b * c, *prompts.shape[2:]), pl.tokenized_prompts.repeat(b, 1),
                                  eot_positions=pl.eot_positions * b).reshape(b, c, -1)
    return features / features.norm(dim=-1, keepdim=True)


def class_names(backbone: str, n: int):
    if backbone == "testbed":
        return [f"{colour} {shape}" for colour, shape in SHAPE_CLASSES][:n]
    words = ["red", "small", "striped", "dog", "bird", "car", "flower", "leaf"]
    return [" ".join(words[i % 3: i % 3 + 1 + i % 4]) + f" {i}" for i in range(n)]


def measure(backbone: str, n_classes: int, eval_images: int, steps: int, rounds: int) -> dict:
    clip_model = load_clip(backbone).float().eval().requires_grad_(False)
    names = class_names(backbone, n_classes)
    torch.manual_seed(0)
    model = CoCoOpCLIP(CoCoOpPromptLearner(names, clip_model, ctx_init="a photo of a"), clip_model)
    with torch.no_grad():  # a trained-looking meta-net: its bias is not zero
        model.prompt_learner.meta_net.linear2.weight.normal_(0, 0.05)
    size = clip_model.visual.input_resolution
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        features = model.encode_image(torch.randn(eval_images, 3, size, size, generator=generator)).global_feature
    train_images = torch.randn(steps, 3, size, size, generator=generator)
    labels = torch.randint(len(names), (steps,), generator=generator)
    optimizer = torch.optim.SGD(model.prompt_learner.parameters(), lr=0.002)
    ways = {"shared prefix": model.text_features, "whole prompts": lambda f: whole_prompts(model, f)}

    def evaluate(text_features):
        with torch.no_grad():
            return text_features(features)

    def train(text_features):
        for image, label in zip(train_images, labels):
            image_features = model.encode_image(image[None]).global_feature
            logits = model.logits(image_features, text_features(image_features))
            loss = torch.nn.functional.cross_entropy(logits, label[None])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    max_diff = (evaluate(ways["shared prefix"]) - evaluate(ways["whole prompts"])).abs().max().item()
    times = {(w, job): [] for w in ways for job in ("eval", "train")}
    for r in range(rounds + 1):  # round 0 warms up
        for way, fn in ways.items():
            for job, run in (("eval", evaluate), ("train", train)):
                start = time.perf_counter()
                run(fn)
                if r:
                    times[(way, job)].append(time.perf_counter() - start)
    median = {f"{w} {j}": statistics.median(v) for (w, j), v in times.items()}
    return {
        "backbone": backbone, "classes": n_classes, "eval_images": eval_images, "train_steps": steps, "rounds": rounds,
        "seconds": median,
        "eval_ratio": median["shared prefix eval"] / median["whole prompts eval"],
        "train_ratio": median["shared prefix train"] / median["whole prompts train"],
        "text_features_max_abs_diff": max_diff,
    }


def markdown(r: dict, meta: dict) -> str:
    s = r["seconds"]
    return "\n".join([
        "# CoCoOp: shared prefix once per image vs every prompt whole",
        "",
        f"`{meta['command']}` on {meta['machine']}, torch {meta['torch']}, {meta['threads']} thread(s), fp32, {meta['date']}.",
        f"Median seconds of {r['rounds']} interleaved rounds after a warm-up; ratio = shared prefix / whole prompts.",
        "",
        "| backbone | classes | workload | shared prefix (s) | whole prompts (s) | ratio |",
        "|---|---:|---|---:|---:|---:|",
        f"| {r['backbone']} | {r['classes']} | text features of {r['eval_images']} test images | "
        f"{s['shared prefix eval']:.3f} | {s['whole prompts eval']:.3f} | {r['eval_ratio']:.2f} |",
        f"| {r['backbone']} | {r['classes']} | {r['train_steps']} training steps at batch 1 | "
        f"{s['shared prefix train']:.3f} | {s['whole prompts train']:.3f} | {r['train_ratio']:.2f} |",
        "",
        f"Largest absolute difference of the evaluation batch's normalised text features: "
        f"{r['text_features_max_abs_diff']:.1e} (float rounding).",
        "",
    ])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="testbed")
    p.add_argument("--classes", type=int, default=24)
    p.add_argument("--eval-images", type=int, default=200)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", default="")
    p.add_argument("--markdown", default="")
    args = p.parse_args(argv)
    result = measure(args.backbone, args.classes, args.eval_images, args.steps, args.rounds)
    meta = {"command": "python benchmarks/cocoop_prefix.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": platform.machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "date": datetime.date.today().isoformat()}
    text = markdown(result, meta)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "result": result}, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
