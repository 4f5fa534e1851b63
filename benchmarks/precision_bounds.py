"""Measure the two parts of bf16's difference from fp32 (``rounding.py``) over seeds and CPU kernels.

    python benchmarks/precision_bounds.py --seeds 0 1 2 3 4 5

Runs the GPU check's CPU quick mode (fp32 and bf16 rows of every trainer) once per seed and per
oneDNN kernel set: the CPU's own (native bf16 where it has avx512_bf16 / AMX) and, with
``ONEDNN_MAX_CPU_ISA=AVX512_CORE``, kernels without native bf16 (bf16 emulated through float32).
Writes ``benchmarks/results/precision-bounds-<date>.md`` and ``.json``: per trainer the largest
forward rounding (in u) and trajectory ratio met, against the bounds the check enforces, and the
largest share of the logits' spread (the old, CPU-dependent criterion).
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import rounding  # noqa: E402

KERNELS = {"native": {}, "no native bf16 (AVX512_CORE)": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}}


def cpu_flags() -> str:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()
    return ", ".join(f for f in ("avx512_bf16", "amx_bf16", "avx512f") if f in flags) or "no avx512"


def run(seed: int, env: dict) -> list:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                   "--no-speed", "--precisions", "fp32", "bf16", "--seed", str(seed), "--out", out]
        proc = subprocess.run(command, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True)
        files = list(Path(out).glob("*.json"))
        if not files:
            raise SystemExit(f"gpu_check failed (status {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        return [r for r in json.loads(files[0].read_text())["trainers"] if r["prec"] == "bf16" and "vs_fp32" in r]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)
    rows = []
    for kernels, env in KERNELS.items():
        for seed in args.seeds:
            print(f"{kernels}, seed {seed}", flush=True)
            rows += [dict(kernels=kernels, seed=seed, trainer=r["trainer"], **r["vs_fp32"]) for r in run(seed, env)]
    lines = [f"# bf16 against fp32 after the quick check's steps ({datetime.date.today()})", "",
             f"`python benchmarks/precision_bounds.py --seeds {' '.join(map(str, args.seeds))}` on "
             f"{os.cpu_count()} CPU cores ({cpu_flags()}), torch {__import__('torch').__version__}.",
             f"Bounds (`benchmarks/rounding.py`): forward <= {rounding.FORWARD_UNITS:g} u, trajectory <= "
             f"{rounding.TRAJECTORY_RATIO:g} of fp32's movement. Worst over seeds:", "",
             "| trainer | kernels | forward, u (max) | trajectory / movement (max) | share of spread (max) | "
             "within bounds |", "|---|---|---:|---:|---:|---|"]
    for trainer in dict.fromkeys(r["trainer"] for r in rows):
        for kernels in KERNELS:
            mine = [r for r in rows if r["trainer"] == trainer and r["kernels"] == kernels]
            lines.append(f"| {trainer} | {kernels} | {max(r['forward_units'] for r in mine):.2f} | "
                         f"{max(r['trajectory_ratio'] for r in mine):.3f} | "
                         f"{100 * max(r['relative_diff'] for r in mine):.1f} % | "
                         f"{sum(r['within_bounds'] for r in mine)}/{len(mine)} |")
    text = "\n".join(lines)
    print(text)
    stem = Path(args.out) / f"precision-bounds-{datetime.date.today()}"
    stem.with_suffix(".md").write_text(text + "\n")
    stem.with_suffix(".json").write_text(json.dumps(rows, indent=1, default=str))
    return 0 if all(r["within_bounds"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
