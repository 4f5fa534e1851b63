"""One prepared GPU check: every trainer in every precision, then the speed benchmark.

    python benchmarks/gpu_check.py --device cuda      # on a GPU: at most 8 minutes
    python benchmarks/gpu_check.py --device cpu --quick   # tiny sizes on the CPU (CI runs this)

1. For every trainer of ``trainer_check.TRAINERS`` that is registered and every PREC
   (fp32, fp16, amp, bf16): a few training steps of the trainer's own ``forward_backward``
   on ``random:ViT-B/16`` (teachers ``random:ViT-L/14``) at 224 px on Synthetic (generated
   under a temporary root), then save, a fresh build, load and the trainer's own test loop.
   Checks: losses finite; every trainable module (prompts) and the cache moved; the reloaded
   model's logits equal the trained one's exactly; each precision's logits after the same
   steps stay close to fp32's: on CUDA within ``TOLERANCES``, on the CPU within the bounds of
   ``rounding.py`` (forward rounding and trajectory apart; what holds on any CPU, with or without
   native bf16), both reported on both. Also measured: step time, peak GPU memory of
   a training step (``torch.cuda.max_memory_allocated``) and inference images/s at a large batch.
2. ``benchmarks/speed.py --device cuda`` in PREC fp16 (the releases' default), then fp32 (as the
   CPU figures) while time is left, with the release-style path measured at 1000 classes where
   the GPU's memory holds it.

Results go to ``benchmarks/results/gpu-<date>.md`` and ``.json`` (``cpu-quick-<date>`` for
a quick run, which is not to be committed) and the table is printed. Every section has a
time budget; what does not fit is reported as skipped. Exit status 1 if any check failed.
"""
import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import trainer_check  # noqa: E402
from benchmarks.gpu_report import markdown  # noqa: E402
from textrefiner.precision import PRECISIONS  # noqa: E402
from textrefiner.run_config import register_plugins  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MIN_SPEED_SECONDS = 90  # a second speed run starts only with this much of the budget left

# CUDA: max |logits - fp32 logits| after the same steps, relative to the spread (max - min) of fp32's
# logits. Forward pass alone, random ViT-B/16 on the CPU: fp16 weights 0.23 %, bf16 autocast 0.9 %; the
# tolerances leave about 10x for the steps (amp may skip its first ones) and for GPU kernels. On the CPU
# the check holds each row to rounding.py's bounds instead: a fixed share of the spread depends on the
# CPU's bf16 kernels (PromptSRC seed 1: 7 % here, 14 % on a CPU with other native bf16 kernels).
TOLERANCES = {"fp32": 0.0, "fp16": 0.03, "amp": 0.03, "bf16": 0.1}

# 8 steps: amp's GradScaler may skip its first steps (inf gradients at scale 65536) and still move the prompts.
FULL = dict(student="random:ViT-B/16", teacher="random:ViT-L/14", steps=8, batch=8, eval_images=100, test_batch=100,
            throughput_batch=512, throughput_rounds=3, budget=450.0, speed_reserve=200.0, speed_precs=["fp16", "fp32"],
            speed_args=["--classes", "50", "1000", "--batch", "32", "--budget", "8", "--repeats", "5"])
QUICK = dict(student="random:tiny", teacher="random:tiny", steps=2, batch=4, eval_images=16, test_batch=8,
             throughput_batch=8, throughput_rounds=1, budget=600.0, speed_reserve=120.0, speed_precs=["fp16"],
             speed_args=["--quick", "--no-maple", "--classes", "4", "8", "--release-max-classes", "8", "--chunk", "0",
                         "--eval-images", "8"])
QUICK_CHANGES = [
    "backbones random:tiny (student and teacher) instead of random:ViT-B/16 / random:ViT-L/14",
    "2 training steps at batch 4 instead of 8 at batch 8",
    "evaluation on 16 test images (batches of 8) instead of all 100 (one batch)",
    "inference images/s at batch 8, one timed round, instead of batch 512, median of 3",
    "MaPLe prompt depth 2 (the tiny CLIP has 2 blocks) instead of 9",
    "speed benchmark: speed.py --quick without MaPLe nor TEXT_CHUNK_SIZE, 4 and 8 classes instead of 50 and 1000, "
    "fp16 only (it falls back to fp32 on the CPU) instead of fp16 then fp32",
    "peak memory per step: CUDA only, not measured on the CPU",
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # the trainers pick their own device from USE_CUDA (the first visible GPU), so no cuda:N here
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--quick", action="store_true", help="tiny backbone, few steps (CI's CPU run)")
    p.add_argument("--trainers", nargs="+", default=[s.name for s in trainer_check.TRAINERS])
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    p.add_argument("--speed-precs", nargs="+", choices=PRECISIONS,
                   help="PREC of each speed benchmark run, in order (default fp16 fp32; quick: fp16)")
    p.add_argument("--no-speed", action="store_true", help="leave out the speed benchmark")
    p.add_argument("--budget", type=float, help="seconds for the whole check (default 450; quick 600)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="folder for the .md and .json")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device here; run with --device cpu --quick on a CPU")
    return args


class Clock:
    """Elapsed time since the start, for progress lines and the section budgets."""

    def __init__(self, budget: float):
        self.start, self.budget = time.perf_counter(), budget

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget - self.elapsed()

    def say(self, message: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {message}", flush=True)


def environment(args, mode: str) -> dict:
    device = torch.device(args.device)
    meta = dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), mode=mode,
        torch=torch.__version__, cuda=torch.version.cuda, python=platform.python_version(),
        cpu=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        commit=_git("rev-parse", "--short", "HEAD"), dirty=bool(_git("status", "--porcelain", "--untracked-files=no")),
    )
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        meta.update(device=torch.cuda.get_device_name(device), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cudnn=torch.backends.cudnn.version())
    else:
        meta["device"] = f"CPU {meta['cpu']}"
    return meta


def _git(*command) -> str:
    """'' where there is no git or no repository (a copied working tree on a GPU machine)."""
    try:
        proc = subprocess.run(["git", *command], cwd=REPO, capture_output=True, text=True)
    except OSError:
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def run_trainer_checks(args, settings, clock: Clock, deadline: float) -> list:
    """Every trainer x precision, fp32 first (the reference); rows past the deadline are skipped."""
    specs = [s for s in trainer_check.TRAINERS if s.name in args.trainers]
    precisions = sorted(args.precisions, key=lambda p: p != "fp32")
    clock.say(f"drawing {settings.steps} training batches of {settings.batch} (Synthetic, generated under a temp root)")
    batches = trainer_check.draw_batches(settings)
    rows = []
    with trainer_check.shared_clip_loading():
        for spec in specs:
            reason = trainer_check.skip_reason(spec)
            if reason:
                clock.say(f"{spec.name}: skipped ({reason})")
                rows += [dict(trainer=spec.name, prec=p, skipped=reason) for p in precisions]
                continue
            reference = None
            for prec in precisions:
                if clock.elapsed() > deadline:
                    rows.append(dict(trainer=spec.name, prec=prec, skipped="time budget of the section spent"))
                    clock.say(f"{spec.name} {prec}: skipped (time budget)")
                    continue
                row, made = trainer_check.check(spec, prec, settings, batches, reference)
                if prec == "fp32":
                    reference = made
                rows.append(row)
                clock.say(f"{spec.name} {prec}: {progress(row)}")
    return rows


def progress(row: dict) -> str:
    if row.get("error"):
        return f"ERROR {row['error']}"
    status = "ok" if trainer_check.passed(row) else "FAILED"
    ran = f" (ran as {row['prec_ran']})" if row.get("prec_ran") != row["prec"] else ""
    vs = row.get("vs_fp32")
    if vs is None:
        return status + ran
    return (status + ran + f", max diff vs fp32 {100 * vs['relative_diff']:.2f} % of the logits' spread"
            f" (forward {vs['forward_units']:.2f} u, trajectory {vs['trajectory_ratio']:.3f} of fp32's movement)")


def run_speeds(args, settings, clock: Clock) -> list:
    """One speed run per PREC while time is left; a failed run does not cost the next one."""
    runs = []
    for prec in args.speed_precs or settings.speed_precs:
        if runs and clock.left() < MIN_SPEED_SECONDS:
            runs.append(dict(prec=prec, skipped=f"less than {MIN_SPEED_SECONDS} s of the budget left"))
            clock.say(f"speed.py --prec {prec}: skipped (time budget)")
            continue
        runs.append(dict(prec=prec, **run_speed(args, prec, settings, clock.left(), clock)))
    return runs


def run_speed(args, prec: str, settings, seconds_left: float, clock: Clock) -> dict:
    """benchmarks/speed.py in its own process (a clean GPU, and a hard time limit)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speed.json"
        argv = ["--device", args.device, "--prec", prec, *settings.speed_args, "--json", str(out)]
        clock.say(f"speed.py {' '.join(argv[:-2])} (at most {seconds_left:.0f} s)")
        proc = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "speed.py"), *argv], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=max(seconds_left, 1.0))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # speed.py and its memory probe
            output, _ = proc.communicate()
            return dict(argv=argv, error=f"stopped at its time budget ({seconds_left:.0f} s)", log_tail=output[-3000:])
        if proc.returncode or not out.exists():
            return dict(argv=argv, error=f"speed.py exited with status {proc.returncode}", log_tail=output[-3000:])
        return dict(argv=argv, results=json.loads(out.read_text()))


def main(argv=None) -> int:
    args = parse_args(argv)
    register_plugins()
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True  # as train.py runs on a GPU
    sizes = QUICK if args.quick else FULL
    budget = args.budget or sizes["budget"]
    clock = Clock(budget)
    device = torch.device(args.device)
    # a file name that no one can take for a GPU run, nor for speed.py's cpu-<date> results
    mode = ("cpu" if device.type == "cpu" else "gpu") + ("-quick" if args.quick else "-check" * (device.type == "cpu"))
    with tempfile.TemporaryDirectory() as root:
        criterion = trainer_check.TOLERANCE if device.type == "cuda" else trainer_check.BOUNDS
        settings = SimpleNamespace(**sizes, device=device, quick=args.quick, root=root, seed=args.seed,
                                   tolerances=TOLERANCES, criterion=criterion)
        if args.quick:
            for change in QUICK_CHANGES:
                clock.say(f"quick mode: {change}")
        results = dict(meta=environment(args, mode), tolerances=TOLERANCES, criterion=criterion, budget_s=budget,
                       quick_changes=QUICK_CHANGES if args.quick else [], settings=_settings(settings))
        speed_reserve = 0.0 if args.no_speed else sizes["speed_reserve"]
        results["trainers"] = run_trainer_checks(args, settings, clock, max(budget - speed_reserve, budget / 2))
        results["trainer_checks_s"] = clock.elapsed()
        results["speed"] = [dict(skipped="--no-speed")] if args.no_speed else run_speeds(args, settings, clock)
    results["elapsed_s"] = clock.elapsed()
    failed = [f"{r['trainer']} {r['prec']}" for r in results["trainers"] if not trainer_check.passed(r)]
    failed += [f"speed benchmark {run['prec']}" for run in results["speed"] if run.get("error")]
    results["failed"] = failed
    text = markdown(results)
    print(text)
    stem = f"{mode}-{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(text + "\n")
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str))
    verdict = f"FAILED: {', '.join(failed)}" if failed else "all checks passed"
    clock.say(f"wrote {out / stem}.md and .json; {verdict}")
    return 1 if failed else 0


def _settings(settings) -> dict:
    keys = ("student", "teacher", "steps", "batch", "eval_images", "test_batch", "throughput_batch",
            "throughput_rounds", "seed", "speed_args", "speed_precs")
    return {k: getattr(settings, k) for k in keys}


if __name__ == "__main__":
    sys.exit(main())
