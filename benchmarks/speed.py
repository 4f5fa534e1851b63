"""Speed and memory: CoOp vs CoOp_TextRefiner, MaPLe vs MaPLe_TextRefiner, PromptKD vs PromptKD_TextRefiner,
and our paths vs the authors' releases.

    python benchmarks/speed.py                  # random:ViT-B/16, batch 32, 50 and 1000 classes (2 CPU cores: ~35 min, --no-maple ~15)
    python benchmarks/speed.py --quick          # random:tiny, tiny sizes: a minute or two on 2 CPU cores (CI runs it)
    python benchmarks/speed.py --device cuda    # on a GPU: release-style measured at every class count that fits
    python benchmarks/speed.py --json speed.json
    python benchmarks/speed.py --promptkd-only --student random:ViT-B/32 --teacher random:ViT-B/16 \
        --pkd-classes 100 1000 --pkd-eval-images 1000     # PromptKD alone, CPU-sized (see benchmarks/promptkd.py)

Everything runs in one process on one random-init CLIP (no weights or datasets needed):
the project's own trainers, built by their own ``build_model`` and stepped by their
own ``forward_backward`` on synthetic batches, and the release-style variants of
``benchmarks/release_style.py``. Compared variants are interleaved round by round and
each figure is the median of the timed rounds, after warm-up rounds. Peak CPU memory
is measured in one separate process (see ``CPU_MEMORY_METHOD``).

Release-style training at many classes needs about 29 MB per class on the CPU (all 77
positions with gradients), more than a 24 GB machine has at 1000 classes: beyond
``--release-max-classes`` its time and memory are extrapolated linearly in the number
of classes from two measured points (the text side is exactly linear in it), and
marked as such. On a GPU whose memory holds it (``RELEASE_MB_PER_CLASS``), the default
measures it at every ``--classes`` value instead. On CUDA, peak memory is
``torch.cuda.max_memory_allocated`` during one step.
"""
import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.promptkd import measure_promptkd, promptkd_markdown  # noqa: E402
from benchmarks.report import chunked, markdown, ratios  # noqa: E402
from benchmarks.workloads import (  # noqa: E402
    COOP, CPU_MEMORY_METHOD, CUDA_MEMORY_METHOD, MALLOC_ENV, MAPLE, MAPLE_REFINER, REFINER, RELEASE, Variant, build_trainer, class_names,
    cpu_memory_supported, data_loading_seconds, eval_batch, eval_text_features, peak_memory_mb,
    profile_textrefiner_step, seconds, synthetic_batch, train_step,
)
from textrefiner.backbones.resolver import load_clip  # noqa: E402
from textrefiner.precision import Precision  # noqa: E402
from textrefiner.run_config import register_plugins  # noqa: E402

RELEASE_MB_PER_CLASS = 30  # release-style training memory per class (measured on the CPU, fp32, batch 32)
DEFAULT_RELEASE_MAX_CLASSES = 100  # where the memory does not hold every class count
QUICK = dict(backbone="random:tiny", batch=4, classes=[10, 40], chunk=16, release_max_classes=20,
             eval_images=32, repeats=1, budget=0.0, max_words=8, student="random:tiny", teacher="random:tiny-wide",
             pkd_classes=[10], pkd_batch=4, pkd_eval_images=16, pkd_repeats=1)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="random:ViT-B/16", help="random:<arch> (tiny, ViT-B/32, ViT-B/16, ...)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--prec", default="fp32", help="TRAINER.COOP.PREC for every variant")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--classes", type=int, nargs="+", default=[50, 1000])
    p.add_argument("--chunk", type=int, default=100, help="TEXT_CHUNK_SIZE of the chunked variant (0: leave it out)")
    p.add_argument("--release-max-classes", type=int, default=None,
                   help="train the release-style variant at most at this many classes; extrapolate beyond "
                        f"(default: every --classes value on a GPU whose memory holds it, else {DEFAULT_RELEASE_MAX_CLASSES})")
    p.add_argument("--eval-images", type=int, default=10000, help="test-set size for evaluation images/s")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds per comparison")
    p.add_argument("--repeats", type=int, default=9, help="at most this many timed rounds per comparison")
    p.add_argument("--budget", type=float, default=150.0,
                   help="seconds of timed rounds per comparison (at least one round)")
    p.add_argument("--no-maple", action="store_true", help="leave out MaPLe vs MaPLe_TextRefiner")
    p.add_argument("--max-words", type=int, default=8, help="synthetic class names have 1..N words")
    p.add_argument("--no-promptkd", action="store_true", help="leave out PromptKD vs PromptKD_TextRefiner")
    p.add_argument("--promptkd-only", action="store_true", help="only PromptKD vs PromptKD_TextRefiner")
    p.add_argument("--student", default="random:ViT-B/16", help="PromptKD student backbone")
    p.add_argument("--teacher", default="random:ViT-L/14", help="PromptKD teacher backbone (the release's ViT-L/14)")
    p.add_argument("--pkd-classes", type=int, nargs="+", default=[100, 1000], help="PromptKD numbers of classes")
    p.add_argument("--pkd-batch", type=int, default=8, help="PromptKD batch size (the release's 8)")
    p.add_argument("--pkd-eval-images", type=int, default=10000, help="PromptKD test-set size for images/s")
    p.add_argument("--pkd-repeats", type=int, default=3, help="at most this many timed PromptKD rounds")
    p.add_argument("--json", default="", help="also write all figures to this JSON file")
    p.add_argument("--quick", action="store_true",
                   help="tiny backbone and sizes: a smoke run (a minute or two on 2 CPU cores)")
    p.add_argument("--memory-probe", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:  # the quick sizes are defaults: flags given explicitly still win
        p.set_defaults(**QUICK)
        args = p.parse_args(argv)
    if args.release_max_classes is None:
        args.release_max_classes = default_release_max_classes(args)
    return args


def default_release_max_classes(args) -> int:
    """Every class count where a GPU's memory holds release-style training (with a fifth to spare)."""
    device = torch.device(args.device)
    if device.type == "cuda" and torch.cuda.is_available():
        total_mb = torch.cuda.get_device_properties(device).total_memory / 2**20
        if max(args.classes) * RELEASE_MB_PER_CLASS <= 0.8 * total_mb:
            return max(args.classes)
    return DEFAULT_RELEASE_MAX_CLASSES


class Bench:
    """One CLIP, one device; builds trainers and batches for a number of classes."""

    def __init__(self, args):
        self.args = args
        self.device = torch.device(args.device)
        torch.manual_seed(0)
        self.clip = Precision(args.prec, self.device).cast(load_clip(args.backbone)).to(self.device)
        self.resolution = self.clip.visual.input_resolution

    def trainer(self, variant: Variant, n_classes: int):
        torch.manual_seed(0)
        names = class_names(n_classes, self.args.max_words)
        return build_trainer(variant, self.clip, self.args.backbone, names, self.device, self.args.prec)

    def batch(self, n_classes: int) -> dict:
        return synthetic_batch(self.args.batch, n_classes, self.resolution, self.device)


def timed_rounds(tasks: Dict[str, Callable], device, warmup: int, repeats: int, budget: float) -> Dict[str, float]:
    """Median seconds per task; tasks interleaved, the order rotated every round."""
    names = list(tasks)
    round_time = 0.0
    for _ in range(warmup):
        round_time = sum(seconds(tasks[n], device) for n in names)
    rounds = max(1, min(repeats, int(budget / max(round_time, 1e-9)))) if warmup else repeats
    times: Dict[str, List[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[: r % len(names)]:
            times[n].append(seconds(tasks[n], device))
    return {n: statistics.median(t) for n, t in times.items()}


def memory_configs(args) -> List[tuple]:
    configs = []
    for c in args.classes:
        configs += [(COOP, c), (REFINER, c)]
        if args.chunk and c > args.chunk:
            configs.append((chunked(args), c))
        if not args.no_maple:
            configs += [(MAPLE, c), (MAPLE_REFINER, c)]
    configs += [(RELEASE, c) for c in release_train_classes(args)]
    return configs


def release_train_classes(args) -> List[int]:
    measured = [c for c in args.classes if c <= args.release_max_classes]
    if any(c > args.release_max_classes for c in args.classes):
        measured.append(args.release_max_classes)
    return sorted(set(measured))


def run_memory_probe(spec: str) -> None:
    """Internal (--memory-probe): peak memory of one training step per configuration, JSON on stdout."""
    args = parse_args(json.loads(spec))
    bench = Bench(args)
    configs = memory_configs(args)
    # One-off lazy initialisations (thread pools, kernels) must not count for the first configuration.
    step_peak_mb(bench, *configs[0])
    results = [[variant.label, n_classes, step_peak_mb(bench, variant, n_classes)] for variant, n_classes in configs]
    print(json.dumps(results))


def step_peak_mb(bench: Bench, variant: Variant, n_classes: int) -> float:
    trainer, batch = bench.trainer(variant, n_classes), bench.batch(n_classes)
    gc.collect()
    return peak_memory_mb(lambda: train_step(trainer, batch), bench.device)


def start_memory_probe(argv: List[str], device: str) -> Optional[subprocess.Popen]:
    """One separate process measures every configuration in turn (one CLIP); None where it cannot."""
    if device == "cpu" and not cpu_memory_supported():
        print("Peak memory needs Linux's /proc/self/clear_refs, which is not writable here: left empty")
        return None
    return subprocess.Popen(
        [sys.executable, __file__, "--memory-probe", json.dumps(argv)],
        env={**os.environ, **MALLOC_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def memory_results(probe: Optional[subprocess.Popen]) -> Dict[tuple, float]:
    """{(variant label, classes): MiB} once the probe has finished."""
    if probe is None:
        return {}
    out, err = probe.communicate()
    if probe.returncode:
        raise RuntimeError(f"memory probe failed:\n{out[-2000:]}\n{err[-4000:]}")
    return {(label, c): mb for label, c, mb in json.loads(out.strip().splitlines()[-1])}


def measure_classes(bench: Bench, n_classes: int, results: dict) -> None:
    """Training and evaluation comparisons at one number of classes (CoOp's, then MaPLe's), then the step profile."""
    args = bench.args
    train_variants = [COOP, REFINER]
    if args.chunk and n_classes > args.chunk:
        train_variants.append(chunked(args))
    if n_classes in release_train_classes(args):
        train_variants.append(RELEASE)
    trainers = {v: bench.trainer(v, n_classes) for v in [*train_variants, RELEASE]}
    batch = bench.batch(n_classes)
    results["meta"]["text_positions"][str(n_classes)] = trainers[COOP].model.prompt_learner.text_length
    measure_training(bench, {v: trainers[v] for v in train_variants}, batch, results)
    measure_evaluation(bench, {v: trainers[v] for v in (COOP, REFINER, RELEASE)}, batch["img"], results)
    if not args.no_maple:
        maple = {v: bench.trainer(v, n_classes) for v in (MAPLE, MAPLE_REFINER)}
        measure_training(bench, maple, batch, results)
        measure_evaluation(bench, maple, batch["img"], results)
        del maple
    # Last: the profile instruments its trainer for good.
    results["profile"][str(n_classes)] = profile_textrefiner_step(trainers[REFINER], batch, bench.device)


def measure_training(bench: Bench, trainers: dict, batch: dict, results: dict, auxiliary: bool = False) -> None:
    args = bench.args
    n_classes = len(trainers[next(iter(trainers))].dm.dataset.classnames)
    tasks = {v.label: (lambda t=t: train_step(t, batch)) for v, t in trainers.items()}
    warmup, repeats = (0, 1) if auxiliary else (args.warmup, args.repeats)
    for label, s in timed_rounds(tasks, bench.device, warmup, repeats, args.budget).items():
        results["train"].append(dict(variant=label, classes=n_classes, step_s=s, auxiliary=auxiliary))


def measure_evaluation(bench: Bench, trainers: dict, image: torch.Tensor, results: dict) -> None:
    args = bench.args
    n_classes = len(next(iter(trainers.values())).dm.dataset.classnames)
    features = {v: eval_text_features(t) for v, t in trainers.items() if not v.release_style}
    tasks = {}
    for v, t in trainers.items():
        tasks[v.label] = lambda v=v, t=t: eval_batch(v, t, image, features.get(v))
        if not v.release_style:
            tasks["once: " + v.label] = lambda t=t: eval_text_features(t)
    medians = timed_rounds(tasks, bench.device, args.warmup, args.repeats, args.budget)
    n_batches = -(-args.eval_images // args.batch)
    for v in trainers:
        once = medians.get("once: " + v.label, 0.0)
        total = once + n_batches * medians[v.label]
        results["eval"].append(dict(variant=v.label, classes=n_classes, batch_s=medians[v.label], once_s=once,
                                    images_per_s=args.eval_images / total))


def extrapolate(results: dict, args) -> None:
    """Release-style training beyond --release-max-classes: linear in the classes through two measured points."""
    points = sorted((r["classes"], r) for r in results["train"] if r["variant"] == RELEASE.label)
    if len(points) < 2:
        return
    (c1, r1), (c2, r2) = points[0], points[-1]
    for c in args.classes:
        if c > args.release_max_classes:
            row = dict(variant=RELEASE.label, classes=c, extrapolated=f"from {c1} and {c2} classes")
            for key in ("step_s", "peak_mb"):
                if r1.get(key) is not None and r2.get(key) is not None:
                    row[key] = r1[key] + (r2[key] - r1[key]) * (c - c1) / (c2 - c1)
            results["train"].append(row)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def precision_that_runs(prec: str, device: torch.device) -> str:
    """fp16 and amp fall back to fp32 off CUDA (the policy warns where the model is built)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Precision(prec, device).name


def meta(args) -> dict:
    device = torch.device(args.device)
    cpu = f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    return dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), device=name,
        threads=torch.get_num_threads(), torch=torch.__version__, cuda=torch.version.cuda, backbone=args.backbone,
        prec=args.prec, prec_ran=precision_that_runs(args.prec, device),
        batch=args.batch, classes=args.classes, loadavg_start=loadavg(), text_positions={},
        memory_method=CUDA_MEMORY_METHOD if device.type == "cuda" else CPU_MEMORY_METHOD,
    )


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    register_plugins()
    if args.memory_probe:
        run_memory_probe(args.memory_probe)
        return {}
    if args.promptkd_only:
        results = dict(meta=meta(args), promptkd=measure_promptkd(args, timed_rounds))
        print(promptkd_markdown(results["promptkd"], args))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        return results
    results = dict(meta=meta(args), train=[], eval=[], profile={})
    probe = start_memory_probe(argv, torch.device(args.device).type)
    # Timings must not share the CPU with the probe; a --quick smoke run lets them overlap.
    memory = {} if args.quick else memory_results(probe)
    bench = Bench(args)
    for c in args.classes:
        measure_classes(bench, c, results)
        gc.collect()
    for c in release_train_classes(args):
        if c not in args.classes:  # only to extrapolate from; warmed up at fewer classes
            measure_training(bench, {RELEASE: bench.trainer(RELEASE, c)}, bench.batch(c), results, auxiliary=True)
    memory = memory or memory_results(probe)
    for row in results["train"]:
        row["peak_mb"] = memory.get((row["variant"], row["classes"]))
    extrapolate(results, args)
    results["data_loading_s"] = statistics.median(data_loading_seconds(REFINER, args.backbone, args.batch)
                                                  for _ in range(3))
    results["ratios"] = ratios(results, args)
    if not args.no_promptkd:
        results["promptkd"] = measure_promptkd(args, timed_rounds)
        results["ratios"] += results["promptkd"]["ratios"]  # one ratio table for every comparison
    results["meta"]["loadavg_end"] = loadavg()
    print(markdown(results, args))
    if not args.no_promptkd:
        print("\n" + promptkd_markdown(results["promptkd"], args, with_ratios=False))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
