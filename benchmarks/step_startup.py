"""What a sweep step costs besides its own work: Python's start-up (torch, torchvision, the trainers:
about 4 s on 2 cores) and glibc malloc handing freed memory back to the kernel. Three ways to run the
same testbed steps, interleaved round by round, in one run:

* ``process``: each step a ``python -m textrefiner.cli.train`` process, glibc's default malloc (the
  sweep before the step server);
* ``malloc``: the same with ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` at 1 GiB
  (``protocols/steps.py`` ``MALLOC_SETTINGS``);
* ``server``: what a sweep does now: ``protocols.steps._run``, the step forked from the step server
  (``cli/step_server.py``) with those malloc settings.

    python benchmarks/step_startup.py --rounds 2 --json r.json --markdown r.md

The steps (testbed, seed 1, 16 shots, base classes, one epoch): ZeroshotCLIP's evaluation (start-up
bound), CoOp_TextRefiner's training (batch 32) and CoCoOp's (batch 1: 192 steps of allocations).
Wall seconds per step are the median over rounds; peak memory (``process``, ``malloc``) is the step
process's maximum resident set (``wait4``; a forked step's is not visible to this process). Every
mode's result.json must hold the same accuracy and per-class accuracies, checked and written down.
Run it on an otherwise idle machine with ``OMP_NUM_THREADS=1`` (one job per core, as a testbed sweep).
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from textrefiner.protocols import step_server  # noqa: E402
from textrefiner.protocols.steps import MALLOC_SETTINGS, TRAIN_COMMAND, _run  # noqa: E402
from textrefiner.resources import child_env, config_path  # noqa: E402

STEPS = {
    "ZeroshotCLIP eval": ("ZeroshotCLIP", "ZeroshotCLIP/testbed.yaml", ["--eval-only"]),
    "CoOp_TextRefiner train": ("CoOp_TextRefiner", "CoOp_TextRefiner/testbed_ep10_ctxv1.yaml", []),
    "CoCoOp train (batch 1)": ("CoCoOp", "CoCoOp/testbed_c4_ep10_batch1_ctxv1.yaml", []),
}
MODES = ("process", "malloc", "server")


def step_command(name: str, data: str, out: str):
    trainer, cfg, flags = STEPS[name]
    return [*TRAIN_COMMAND, "--root", data, "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", config_path("datasets", "testbed_shapes.yaml"),
            "--config-file", config_path("trainers", *cfg.split("/")), "--output-dir", out, *flags,
            "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", "1"]


def run_one(mode: str, command, log_path: str):
    """(wall seconds, peak RSS in MiB or None) of one step run the ``mode`` way."""
    base = {k: v for k, v in os.environ.items() if k not in MALLOC_SETTINGS}
    with open(log_path, "a") as log:
        start = time.perf_counter()
        if mode == "server":
            os.environ[step_server.SWITCH] = "1"
            code = _run(command, log, base)
            peak = None
        else:
            env = child_env({**base, **(MALLOC_SETTINGS if mode == "malloc" else {}), "PYTHONUNBUFFERED": "1"})
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = code = os.waitstatus_to_exitcode(status)
            peak = usage.ru_maxrss / 1024
        seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"{mode}: the step failed (exit {code}); see {log_path}")
    return seconds, peak


def metrics(out: str) -> dict:
    result = json.loads((Path(out) / "result.json").read_text())
    return {"accuracy": result["accuracy"], "per_class_accuracy": result["per_class_accuracy"]}


def markdown(results: dict) -> str:
    lines = [f"# Sweep step start-up: process vs malloc settings vs step server ({results['date']})", "",
             f"Command: `{results['command']}`", "",
             f"Machine: {results['machine']}; OMP_NUM_THREADS={results['omp_num_threads']}; "
             f"{results['rounds']} round(s), modes interleaved; median wall seconds per step.", "",
             "| step | process s | malloc s | server s | malloc / process | server / process "
             "| peak MiB process | peak MiB malloc | same result |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, row in results["steps"].items():
        s = row["seconds"]
        lines.append(f"| {name} | {s['process']:.1f} | {s['malloc']:.1f} | {s['server']:.1f} | "
                     f"{s['malloc'] / s['process']:.2f} | {s['server'] / s['process']:.2f} | "
                     f"{row['peak_mib']['process']:.0f} | {row['peak_mib']['malloc']:.0f} | {row['same_result']} |")
    t = results["total"]
    lines += ["", f"All steps: process {t['process']:.1f} s, malloc {t['malloc']:.1f} s "
                  f"({t['malloc'] / t['process']:.2f}x), server {t['server']:.1f} s ({t['server'] / t['process']:.2f}x).", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--data", help="testbed data folder (default: a temporary one, generated)")
    p.add_argument("--json")
    p.add_argument("--markdown")
    args = p.parse_args()
    seconds = {n: {m: [] for m in MODES} for n in STEPS}
    peaks = {n: {m: [] for m in MODES[:2]} for n in STEPS}
    same = {n: True for n in STEPS}
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or os.path.join(tmp, "data")
        first = next(iter(STEPS))  # warm-up, not timed: generates the testbed data on first use, fills the disk cache
        run_one("process", step_command(first, data, os.path.join(tmp, "warm-up")), os.path.join(tmp, "steps.log"))
        reference = {}
        for r in range(args.rounds):
            for mode in MODES:
                for name in STEPS:
                    out = os.path.join(tmp, f"r{r}-{mode}-{name.split()[0]}")
                    s, peak = run_one(mode, step_command(name, data, out), os.path.join(tmp, "steps.log"))
                    seconds[name][mode].append(s)
                    if peak is not None:
                        peaks[name][mode].append(peak)
                    got = metrics(out)
                    same[name] = same[name] and reference.setdefault(name, got) == got
                    print(f"round {r + 1} {mode:8s} {name:24s} {s:6.1f} s", flush=True)
    med = {n: {m: statistics.median(v) for m, v in row.items()} for n, row in seconds.items()}
    results = {
        "date": datetime.date.today().isoformat(), "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"), "rounds": args.rounds,
        "steps": {n: {"seconds": med[n], "all_seconds": seconds[n],
                      "peak_mib": {m: max(v) for m, v in peaks[n].items()}, "same_result": same[n]} for n in STEPS},
        "total": {m: sum(med[n][m] for n in STEPS) for m in MODES},
    }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(results))
    print(markdown(results))
    if not all(same.values()):
        raise SystemExit("the modes disagree on a result: see the table")


if __name__ == "__main__":
    main()
