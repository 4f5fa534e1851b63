"""An ablation of N CoOp_TextRefiner variants run shared (the frozen image tower once per batch for all,
``textrefiner/trainers/lockstep.py``) against one by one: time ratio and peak memory, in one run.

    python benchmarks/shared_variants.py                          # ViT-B/16 at 50 and 1000 classes + the testbed
    python benchmarks/shared_variants.py --quick                  # random:tiny, 20 classes, no testbed: seconds
    python benchmarks/shared_variants.py --parts synthetic --classes 50 --steps 2 --eval-batches 2

Synthetic part (random CLIP weights, synthetic batches, no data loading): every measurement is a
subprocess of its own, so its peak memory is its maximum resident set (``wait4``). "One by one" is
N subprocesses, each loading CLIP, building one variant, training ``--steps`` steps of ``--batch``
images and evaluating ``--eval-batches`` batches of ``--eval-batch`` images (its text features once);
"shared" is one subprocess doing the same for the N variants with the image tower run once per batch
(training: the blocks before the last once, the last block once per output kind; evaluation: the
global features once) -- the code paths the shared runner uses (``ImageEncoder.forward_modes``,
``PromptTrainer.given_visual``, logits from given features).

Testbed part (end to end): the base-to-novel sweep of one dataset and seed with N variants, run with
``--shared`` and without (each variant a train.py process per step), both from an empty output folder;
peak memory is the largest process of each (the sweep's children included).
"""
import argparse
import datetime
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: the ten variants: Table 3's rows, cache sizes (Figure 4), fusion weights (Figure 5)
VARIANTS = {
    "coop": ["TRAINER.TEXTREFINER.ENABLED", False],
    "aggregation": ["TRAINER.TEXTREFINER.LAMBDA_SEM", 0.0, "TRAINER.TEXTREFINER.LAMBDA_REG", 0.0],
    "plus_semantic": ["TRAINER.TEXTREFINER.LAMBDA_REG", 0.0],
    "plus_regularization": ["TRAINER.TEXTREFINER.LAMBDA_SEM", 0.0],
    "all": [],
    "m1": ["TRAINER.TEXTREFINER.CACHE_SIZE", 1],
    "m10": ["TRAINER.TEXTREFINER.CACHE_SIZE", 10],
    "m100": ["TRAINER.TEXTREFINER.CACHE_SIZE", 100],
    "alpha0.0": ["TRAINER.TEXTREFINER.ALPHA", 0.0],
    "alpha0.6": ["TRAINER.TEXTREFINER.ALPHA", 0.6],
}


# ------------------------------------------------------------------ the synthetic worker (a subprocess)
def build(opts, clip_model, backbone: str, classnames):
    """A CoOp_TextRefiner variant (its config's overrides ``opts``) built on ``clip_model`` without data."""
    import torch
    from benchmarks.workloads import REFINER, make_cfg
    from textrefiner.framework import TRAINER_REGISTRY, TrainerBase
    from textrefiner.precision import Precision

    cls = TRAINER_REGISTRY.get(REFINER.trainer)
    trainer = cls.__new__(cls)
    TrainerBase.__init__(trainer)
    cfg = make_cfg(REFINER, backbone, "fp32")
    cfg.defrost()
    cfg.merge_from_list([str(x) for x in opts])
    cfg.freeze()
    trainer.cfg, trainer.device = cfg, torch.device("cpu")
    trainer.dm = SimpleNamespace(dataset=SimpleNamespace(classnames=list(classnames)))
    trainer.precision = Precision("fp32", trainer.device)
    trainer.load_clip = lambda: clip_model
    with redirect_stdout(io.StringIO()):
        trainer.build_model()
    trainer.batch_idx, trainer.num_batches, trainer.epoch = 0, sys.maxsize, 0
    return trainer


def worker(args) -> None:
    """Build ``args.variants``, train and evaluate them (shared or one after another), print the times."""
    import torch
    from benchmarks.workloads import class_names, synthetic_batch
    from textrefiner.backbones.resolver import load_clip
    from textrefiner.hosts.encoders import ImageEncoder
    from textrefiner.run_config import register_plugins

    register_plugins()
    times = {}
    start = time.perf_counter()
    clip_model = load_clip(args.backbone)
    names = class_names(args.classes, 3)
    resolution = clip_model.visual.input_resolution
    batches = [synthetic_batch(args.batch, args.classes, resolution, torch.device("cpu"), seed=s)
               for s in range(args.steps)]
    images = [synthetic_batch(args.eval_batch, args.classes, resolution, torch.device("cpu"), seed=100 + s)["img"]
              for s in range(args.eval_batches)]
    trainers = []
    for name in args.variants:
        torch.manual_seed(0)
        trainers.append(build(VARIANTS[name], clip_model, args.backbone, names))
    times["load_and_build"] = time.perf_counter() - start
    encoder = ImageEncoder(clip_model.visual)
    t0 = time.perf_counter()
    for t in trainers:
        t.set_model_mode("train")
    for batch in batches:
        if args.mode == "shared":
            with torch.no_grad():
                visual = encoder.forward_modes(batch["img"], sorted({t.needs_local_tokens for t in trainers}))
        for t in trainers:
            t.given_visual = visual[t.needs_local_tokens] if args.mode == "shared" else None
            t.forward_backward(batch)
            t.given_visual = None
    times["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.inference_mode():
        texts = []
        for t in trainers:
            t.set_model_mode("eval")
            texts.append(t.classifier_text_features())
        for image in images:
            if args.mode == "shared":
                features = encoder(image).global_feature
                for t, text in zip(trainers, texts):
                    t.model.logits(features, text)
            else:
                for t, text in zip(trainers, texts):
                    t.model(image, text_features=text)
    times["eval"] = time.perf_counter() - t0
    times["total"] = time.perf_counter() - start
    print("RESULT " + json.dumps(times))


def run_measured(command, env=None) -> dict:
    """Run ``command``; its wall time, peak resident set (MiB: the largest process of its tree) and the
    times it printed."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(map(str, command[:6]))} ... failed:\n{output[-3000:]}")
    printed = [json.loads(line[7:]) for line in output.splitlines() if line.startswith("RESULT ")]
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024,
            **(printed[-1] if printed else {})}


def synthetic(backbone: str, classes: int, variants, steps: int, batch: int, eval_batches: int,
              eval_batch: int, sample=()) -> dict:
    """``sample``: the variants run alone (default: all); one by one is their mean times N."""
    base = [sys.executable, __file__, "--worker", "--backbone", backbone, "--classes", str(classes), "--steps",
            str(steps), "--batch", str(batch), "--eval-batches", str(eval_batches), "--eval-batch", str(eval_batch)]
    print(f"synthetic {backbone}, {classes} classes: shared ({len(variants)} variants) ...", flush=True)
    shared = run_measured([*base, "--mode", "shared", "--variants", *variants])
    alone = []
    for name in sample or variants:
        print(f"  alone {name} ...", flush=True)
        alone.append(run_measured([*base, "--mode", "alone", "--variants", name]))

    def total(key):
        return sum(run.get(key, 0.0) for run in alone) * len(variants) / len(alone)

    one_by_one = {key: total(key) for key in ("wall_s", "cpu_s", "train", "eval", "total")}
    return {
        "part": "synthetic", "backbone": backbone, "classes": classes, "variants": list(variants), "steps": steps,
        "batch": batch, "eval_batches": eval_batches, "eval_batch": eval_batch,
        "alone_measured": list(sample or variants),
        "shared": shared, "one_by_one": one_by_one, "alone_runs": alone,
        "time_ratio": shared["wall_s"] / one_by_one["wall_s"],
        "cpu_ratio": shared["cpu_s"] / one_by_one["cpu_s"],
        "compute_ratio": (shared["train"] + shared["eval"]) / (one_by_one["train"] + one_by_one["eval"]),
        "memory_ratio": shared["peak_rss_mib"] / max(run["peak_rss_mib"] for run in alone),
    }


def testbed(variants, seed: int, data: str) -> dict:
    """The base-to-novel sweep on testbed_shapes with ``variants``, shared and not, from empty outputs."""
    flags = []
    for name in variants:
        flags += ["--variant", name, *map(str, VARIANTS[name])]
    from textrefiner.testbed.datasets import TestbedShapes

    with redirect_stdout(io.StringIO()):
        TestbedShapes.load_records(data)  # generated before the clocks start
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("shared", "one_by_one"):
            print(f"testbed sweep, {len(variants)} variants, {mode} ...", flush=True)
            command = [sys.executable, "-m", "textrefiner.sweep", "--protocol", "base2new", "--host", "coop",
                       "--trainers", "CoOp_TextRefiner", "--cfg", "testbed_ep10_ctxv1", "--datasets",
                       "testbed_shapes", "--seeds", str(seed), "--data", data, "--output", os.path.join(tmp, mode),
                       *flags, *(["--shared"] if mode == "shared" else [])]
            runs[mode] = run_measured(command, env={**os.environ, "PYTHONPATH": str(REPO)})
    return {"part": "testbed", "dataset": "testbed_shapes", "seed": seed, "variants": list(variants), **runs,
            "time_ratio": runs["shared"]["wall_s"] / runs["one_by_one"]["wall_s"],
            "cpu_ratio": runs["shared"]["cpu_s"] / runs["one_by_one"]["cpu_s"],
            "memory_ratio": runs["shared"]["peak_rss_mib"] / runs["one_by_one"]["peak_rss_mib"]}


def cpu(run: dict) -> str:
    return f"{run['cpu_ratio']:.3f}" if "cpu_ratio" in run else "-"


def markdown(results: dict) -> str:
    lines = [f"# Shared frozen image tower: {len(VARIANTS)}-variant CoOp_TextRefiner ablation, shared vs one by one",
             "", f"Date: {results['date']}. Machine: {results['machine']}. {results['load']}", "",
             "Shared: one process, the image tower once per batch for all variants (training and evaluation). "
             "One by one: each variant in its own process (as a sweep without `shared` runs them). Time ratio = "
             "shared / one-by-one wall time (CLIP loading included); CPU-time ratio = the same for the processes' CPU "
             "time (user + system: less sensitive to other load on the machine); compute ratio = the same for training + "
             "evaluation alone; memory ratio = shared peak RSS / one run's peak RSS.", "",
             "| part | backbone | classes | steps x batch | eval | shared s | one-by-one s | time ratio | "
             "CPU-time ratio | compute ratio | shared MiB | one run MiB | memory ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        if r["part"] == "synthetic":
            one = max(a["peak_rss_mib"] for a in r["alone_runs"])
            measured = "" if len(r["alone_measured"]) == len(r["variants"]) else \
                f" (one by one: {len(r['alone_measured'])} measured, x {len(r['variants'])}/{len(r['alone_measured'])})"
            lines.append(f"| synthetic, {len(r['variants'])} variants{measured} | {r['backbone']} | {r['classes']} | "
                         f"{r['steps']} x {r['batch']} | "
                         f"{r['eval_batches']} x {r['eval_batch']} | {r['shared']['wall_s']:.1f} | "
                         f"{r['one_by_one']['wall_s']:.1f} | {r['time_ratio']:.3f} | {cpu(r)} | {r['compute_ratio']:.3f} | "
                         f"{r['shared']['peak_rss_mib']:.0f} | {one:.0f} | {r['memory_ratio']:.2f} |")
        else:
            lines.append(f"| testbed sweep, {len(r['variants'])} variants (base2new train + test, {r['dataset']}, "
                         f"seed {r['seed']}) | testbed | 12 "
                         f"base / 12 new | 10 epochs x 32 | val + test | {r['shared']['wall_s']:.1f} | "
                         f"{r['one_by_one']['wall_s']:.1f} | {r['time_ratio']:.3f} | {cpu(r)} | - | "
                         f"{r['shared']['peak_rss_mib']:.0f} | {r['one_by_one']['peak_rss_mib']:.0f} | "
                         f"{r['memory_ratio']:.2f} |")
    described = ", ".join(f"{k} ({' '.join(map(str, v)) or 'release'})" for k, v in VARIANTS.items())
    lines += ["", f"Variants: {described}.",
              "", "Command: `" + results["command"] + "`", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=("shared", "alone"), help=argparse.SUPPRESS)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--backbone", default="random:ViT-B/16")
    p.add_argument("--classes", nargs="+", type=int, default=[50, 1000])
    p.add_argument("--steps", type=int, default=2, help="training steps at the first class count")
    p.add_argument("--batch", type=int, default=32, help="training batch (the release's CoOp batch: 32)")
    p.add_argument("--eval-batches", type=int, default=2)
    p.add_argument("--eval-batch", type=int, default=32)
    p.add_argument("--large-steps", type=int, default=1, help="training steps at the larger class counts")
    p.add_argument("--large-batch", type=int, default=8, help="training batch at the larger class counts")
    p.add_argument("--alone", nargs="+", default=[],
                   help="run only these variants alone; one by one = their mean x N (default: every variant)")
    p.add_argument("--large-variants", nargs="+", default=[],
                   help="the variants at the larger class counts (default: --variants)")
    p.add_argument("--parts", nargs="+", default=["synthetic", "testbed"], choices=("synthetic", "testbed"))
    p.add_argument("--testbed-data", default="", help="testbed dataset root (default: a temporary folder)")
    p.add_argument("--quick", action="store_true", help="random:tiny, 20 classes, no testbed")
    p.add_argument("--load", default="", help="a note on the machine's load, written into the results")
    p.add_argument("--json", help="results file (.json)")
    p.add_argument("--markdown", help="results file (.md)")
    args = p.parse_args(argv)
    if args.worker:
        args.classes = args.classes[0]
        worker(args)
        return
    if args.quick:
        args.backbone, args.classes, args.parts, args.steps, args.batch = "random:tiny", [20], ["synthetic"], 1, 8
    runs = []
    started = time.time()

    def results():
        return {
            "date": datetime.date.today().isoformat(),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                       f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
            "load": args.load or f"Load average (1 min) at the end: {os.getloadavg()[0]:.1f}.",
            "command": " ".join(["python", "benchmarks/shared_variants.py", *(argv or sys.argv[1:])]),
            "seconds": round(time.time() - started),
            "runs": runs,
        }

    def save():  # after every part: a long run stopped early keeps what it measured
        if args.json:
            Path(args.json).write_text(json.dumps(results(), indent=2) + "\n")
        if args.markdown:
            Path(args.markdown).write_text(markdown(results()))

    if "synthetic" in args.parts:
        for i, classes in enumerate(args.classes):
            steps, batch = (args.steps, args.batch) if i == 0 else (args.large_steps, args.large_batch)
            names = args.variants if i == 0 else (args.large_variants or args.variants)
            runs.append(synthetic(args.backbone, classes, names, steps, batch, args.eval_batches,
                                  args.eval_batch, [n for n in args.alone if n in names]))
            save()
    if "testbed" in args.parts:
        if args.testbed_data:
            os.makedirs(args.testbed_data, exist_ok=True)
            runs.append(testbed(args.variants, 1, args.testbed_data))
        else:
            with tempfile.TemporaryDirectory() as data:
                runs.append(testbed(args.variants, 1, data))
    save()
    print(markdown(results()))


if __name__ == "__main__":
    main()
