"""Kill-and-resume trials: ``kill -9`` train.py (or a whole sweep), rerun the identical command,
compare with an uninterrupted run.

    python benchmarks/kill_trials.py --root DATA --trials 3 [--trainers CoOp_TextRefiner MaPLe@testbed ...]
        [--kinds random boundary save-line] [--no-sweep] [--report benchmarks/results/kill_trials.md]

Every run is a real ``python train.py`` process on the CPU: Synthetic (generated under --root if
missing), the tiny random CLIP (``MaPLe@testbed``: MaPLe on the shipped testbed CLIP with its
``testbed`` config), 3 epochs of 5 batches, a checkpoint every epoch, best-val selection. Per
trainer, ``--trials`` trials of each kind:

* ``random``: SIGKILL after a random progress line plus 0-0.5 s;
* ``boundary``: SIGKILL (the process sends it to itself) on reaching a random file operation of
  its checkpoint saves (``checkpoint._reached``: a staged file, the commit, a rename, a pointer),
  drawn among all of the run's;
* ``save-line``: SIGKILL on the first ``Checkpoint saved to`` line of the run plus 0-20 ms (inside
  the first save, after the first module's file).

A trial is exact when the rerun exits 0 and every file of every module folder (the set of files,
and each checkpoint's tensors, epoch, val result, optimizer, scheduler and random-number state), the
pointers and ``result.json``'s metrics equal the uninterrupted run's. The sweep trial runs
``python -m textrefiner.sweep`` (base-to-novel, CoOp and CoOp_TextRefiner, one seed) in its own
process group, SIGKILLs the group at a random time, reruns it, and compares the printed table, every
``result.json``'s metrics and every checkpoint with an uninterrupted sweep's. "lines lost" counts
killed train.py runs whose ``log.txt`` misses the last line they printed. Writes a Markdown report.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {
    "CoOp": "configs/trainers/CoOp/vit_b16_ep10_ctxv1.yaml",
    "CoOp_TextRefiner": "configs/trainers/CoOp_TextRefiner/vit_b16_ep10_ctxv1.yaml",
    "IVLP": "configs/trainers/IVLP/vit_b16_c2_ep20_batch8_4+4ctx.yaml",
    "MaPLe": "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
    "MaPLe_TextRefiner": "configs/trainers/MaPLe_TextRefiner/vit_b16_c2_ep5_batch4_2ctx.yaml",
    "PromptKD": "configs/trainers/PromptKD/vit_b16_c2_ep20_batch8_4+4ctx.yaml",
    "PromptKD_TextRefiner": "configs/trainers/PromptKD_TextRefiner/vit_b16_c2_ep20_batch8_4+4ctx.yaml",
    "PromptSRC": "configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
    "PromptSRC_TextRefiner": "configs/trainers/PromptSRC_TextRefiner/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
    # MaPLe on the shipped testbed CLIP (64-pixel input, prompts in 3 of its 4 layers)
    "MaPLe@testbed": "configs/trainers/MaPLe/testbed_c2_ep5_batch4_2ctx.yaml",
}
EPOCHS, BATCHES = 3, 5
METRICS = ("accuracy", "macro_f1", "per_class_accuracy", "num_images")
KINDS = ("random", "boundary", "save-line")
TINY = [
    "MODEL.BACKBONE.NAME", "random:tiny", "TRAINER.COOP.PREC", "fp32", "TRAINER.MAPLE.PREC", "fp32",
    "TRAINER.MAPLE.PROMPT_DEPTH", 2, "TRAINER.IVLP.PREC", "fp32", "TRAINER.IVLP.PROMPT_DEPTH_TEXT", 2,
    "TRAINER.IVLP.PROMPT_DEPTH_VISION", 2,
    "TRAINER.PROMPTKD.PREC", "fp32", "TRAINER.PROMPTKD.TEACHER_NAME", "random:tiny-wide",
    "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION", 2, "TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_TEXT", 2,
    "TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_VISION", 2, "TRAINER.PROMPTKD.TEACHER_PROMPTS", "init",
    "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 2, "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 2,
    "TRAINER.PROMPTSRC.PREC", "fp32", "TRAINER.PROMPTSRC.GPA_MEAN", 2, "TRAINER.PROMPTSRC.GPA_STD", 1,
]
# train.py through a wrapper that can SIGKILL itself at a save step (KILL_AT_STEP) and record the steps
WRAPPER = """
import json, os, signal, sys
from textrefiner.cli.train import main
from textrefiner.framework import checkpoint
steps, kill_at, record = [], int(os.environ.get("KILL_AT_STEP", "0")), os.environ.get("STEPS_FILE", "")
def reached(step, path):
    steps.append([step, path])
    if len(steps) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint._reached = reached
try:
    main(sys.argv[1:])
finally:
    if record:
        with open(record, "w") as f:
            json.dump(steps, f)
"""


def command(root, out, trainer):
    name = trainer.split("@")[0]
    opts = ["DATALOADER.NUM_WORKERS", 0, "DATALOADER.TRAIN_X.BATCH_SIZE", 4, "DATASET.NUM_SHOTS", 2,
            "OPTIM.MAX_EPOCH", EPOCHS, "TRAIN.CHECKPOINT_FREQ", 1, "TRAIN.PRINT_FREQ", 1,
            "TEST.FINAL_MODEL", "best_val"]
    if not trainer.endswith("@testbed"):
        opts += TINY
    return [sys.executable, "-c", WRAPPER, "--root", root, "--seed", 1, "--trainer", name,
            "--dataset-config-file", os.path.join(REPO, "configs/datasets/synthetic.yaml"),
            "--config-file", os.path.join(REPO, CONFIGS[trainer]), "--output-dir", out, *opts]


def env(**extra):
    return {**os.environ, "PYTHONPATH": REPO, **{k: str(v) for k, v in extra.items()}}


def run(cmd, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=REPO, env=env(**extra))


def kill_on_line(cmd, want, delay: float, **extra) -> str:
    """SIGKILL once ``want(line, count)`` holds for a printed line, plus ``delay`` s; returns the last line."""
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=REPO, env=env(**extra))
    last, count = "", 0
    for line in proc.stdout:
        last = line.rstrip("\n") or last
        count += line.startswith("epoch [")
        if want(line, count):
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.stdout.read()
    proc.wait()
    return last


# ------------------------------------------------------------------------------------- comparing
def same(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, str) and "OUTPUT_DIR" in a:  # the config dump: equal but for the folders
        keep = lambda text: [line for line in text.splitlines() if not line.startswith(("OUTPUT_DIR", "RESUME"))]
        return isinstance(b, str) and keep(a) == keep(b)
    return type(a) is type(b) and (a == b or (a != a and b != b))


def saved_files(out):
    found = {}
    for folder, _, names in os.walk(out):
        for name in names:
            rel = os.path.relpath(os.path.join(folder, name), out)
            if not name.startswith(("log.txt", "result.json", "train.lock")) and "tensorboard" not in rel \
                    and "sweep_logs" not in rel:
                found[rel] = os.path.join(folder, name)
    return found


def differences(ref, out) -> list:
    """What differs between two run (or sweep output) folders; empty when exact."""
    a, b = saved_files(ref), saved_files(out)
    if sorted(a) != sorted(b):
        return [f"files differ: only in the reference {sorted(set(a) - set(b))}, only here {sorted(set(b) - set(a))}"]
    problems = []
    for rel in sorted(a):
        if ".pth.tar" in rel:
            if not same(torch.load(a[rel], weights_only=True), torch.load(b[rel], weights_only=True)):
                problems.append(rel)
        elif open(a[rel], "rb").read() != open(b[rel], "rb").read():
            problems.append(rel)
    for folder, _, names in os.walk(ref):
        if "result.json" in names:
            rel = os.path.relpath(folder, ref)
            other = os.path.join(out, rel, "result.json")
            if not os.path.exists(other):
                problems.append(f"{rel}/result.json missing")
                continue
            ra, rb = (json.load(open(p)) for p in (os.path.join(folder, "result.json"), other))
            if any(ra[k] != rb[k] for k in METRICS):
                problems.append(f"{rel}/result.json metrics")
    return problems


# ---------------------------------------------------------------------------------------- trials
def trainer_trials(root, work, trainer, trials, kinds, rng, log):
    ref = os.path.join(work, trainer, "ref")
    steps_file = os.path.join(work, trainer, "steps.json")
    os.makedirs(os.path.dirname(ref), exist_ok=True)
    started = time.time()
    done = run(command(root, ref, trainer), STEPS_FILE=steps_file)
    if done.returncode != 0:
        raise SystemExit(f"{trainer}: the uninterrupted run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    steps = json.load(open(steps_file))
    modules = [d for d in os.listdir(ref) if os.path.isfile(os.path.join(ref, d, "checkpoint"))]
    row = {"trainer": trainer, "steps": len(steps), "modules": len(modules), "lost": 0, "killed": 0}
    for kind in kinds:
        exact = 0
        for trial in range(trials):
            out = os.path.join(work, trainer, f"{kind}{trial}")
            cmd = command(root, out, trainer)
            if kind == "random":
                line, delay = rng.randint(1, EPOCHS * BATCHES), rng.uniform(0, 0.5)
                where = f"progress line {line} + {delay:.2f} s"
                last = kill_on_line(cmd, lambda text, count: text.startswith("epoch [") and count == line, delay)
            elif kind == "save-line":
                delay = rng.uniform(0, 0.02)
                where = f"first 'Checkpoint saved' line + {delay * 1000:.0f} ms"
                last = kill_on_line(cmd, lambda text, count: text.startswith("Checkpoint saved to"), delay)
            else:
                k = rng.randint(1, len(steps))
                where = f"save step {k}/{len(steps)} {steps[k - 1][0]} {os.path.relpath(steps[k - 1][1], ref)}"
                killed = run(cmd, KILL_AT_STEP=k)
                assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
                lines = [x for x in killed.stdout.splitlines() if x.strip()]
                last = lines[-1] if lines else ""
            log_file = os.path.join(out, "log.txt")
            row["killed"] += 1
            row["lost"] += bool(last) and (not os.path.exists(log_file) or last not in open(log_file).read())
            rerun = run(cmd)
            problems = [f"rerun exit {rerun.returncode}: {(rerun.stdout + rerun.stderr).strip().splitlines()[-1:]}"] \
                if rerun.returncode != 0 else differences(ref, out)
            exact += not problems
            print(f"{trainer} {kind} {trial}: killed at {where}: {'exact' if not problems else 'DIFFERS ' + str(problems[:3])}",
                  file=log, flush=True)
            shutil.rmtree(out, ignore_errors=True)
        row[kind] = (exact, trials)
    row["seconds"] = time.time() - started
    return row


def sweep_trials(root, work, trials, rng, log):
    opts = ["MODEL.BACKBONE.NAME", "random:tiny", "TRAINER.COOP.PREC", "fp32", "DATALOADER.NUM_WORKERS", 0,
            "OPTIM.MAX_EPOCH", 2, "DATALOADER.TRAIN_X.BATCH_SIZE", 4, "TRAIN.CHECKPOINT_FREQ", 1]

    def sweep(out):
        return [sys.executable, "-m", "textrefiner.sweep", "--protocol", "base2new", "--datasets", "synthetic",
                "--seeds", 1, "--shots", 2, "--trainers", "CoOp", "CoOp_TextRefiner", "--data", root,
                "--output", out, "--", *opts]

    def table(stdout):
        return stdout[stdout.index("Base-to-novel generalisation"):] if "Base-to-novel generalisation" in stdout else ""

    started = time.time()
    ref = os.path.join(work, "sweep", "ref")
    t0 = time.time()
    done = run(sweep(ref))
    span = time.time() - t0
    if done.returncode != 0:
        raise SystemExit(f"the uninterrupted sweep failed:\n{done.stdout[-3000:]}")
    exact = 0
    for trial in range(trials):
        out = os.path.join(work, "sweep", f"killed{trial}")
        after = rng.uniform(0.1, 0.9) * span
        proc = subprocess.Popen([str(c) for c in sweep(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                cwd=REPO, env=env(), start_new_session=True)
        time.sleep(after)
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and every train.py it started
        proc.wait()
        time.sleep(0.5)
        rerun = run(sweep(out))
        problems = [f"rerun exit {rerun.returncode}"] if rerun.returncode != 0 else []
        if not problems and table(rerun.stdout) != table(done.stdout):
            problems.append("table")
        problems += differences(ref, out) if not problems else []
        exact += not problems
        print(f"sweep {trial}: process group killed after {after:.1f} s of {span:.1f}: "
              f"{'exact' if not problems else 'DIFFERS ' + str(problems[:3])}", file=log, flush=True)
        shutil.rmtree(out, ignore_errors=True)
    return {"exact": exact, "trials": trials, "seconds": time.time() - started, "table": table(done.stdout)}


def ensure_data(root):
    if os.path.isdir(os.path.join(root, "synthetic")):
        return
    sys.path.insert(0, REPO)
    from textrefiner.config import get_cfg
    from textrefiner.data.synthetic import Synthetic

    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs/datasets/synthetic.yaml"))
    cfg.DATASET.ROOT = root
    Synthetic(cfg)


def report(args, rows, sweep, elapsed) -> str:
    kinds = [k for k in KINDS if k in args.kinds]
    lines = ["# Kill-and-resume trials", "",
             f"`{' '.join(['python benchmarks/kill_trials.py', *sys.argv[1:]])}`", "",
             f"CPU ({os.cpu_count()} cores), torch {torch.__version__}; real `train.py` processes, SIGKILL, then the "
             f"identical command again. Synthetic, tiny random CLIP (MaPLe@testbed: the shipped testbed CLIP), "
             f"{EPOCHS} epochs x {BATCHES} batches, `TRAIN.CHECKPOINT_FREQ 1`, best-val selection. Total "
             f"{elapsed / 60:.1f} min.", "",
             "| Trainer | modules | save steps | " + " | ".join(f"{k}: exact" for k in kinds)
             + " | all: exact | killed logs missing their last line |",
             "|---|---|---|" + "---|" * len(kinds) + "---|---|"]
    for row in rows:
        total = sum(row[k][0] for k in kinds), sum(row[k][1] for k in kinds)
        lines.append(f"| {row['trainer']} | {row['modules']} | {row['steps']} | "
                     + " | ".join(f"{row[k][0]}/{row[k][1]}" for k in kinds)
                     + f" | {total[0]}/{total[1]} | {row['lost']}/{row['killed']} |")
    if sweep:
        lines += ["", f"Sweep (`python -m textrefiner.sweep --protocol base2new`, CoOp and CoOp_TextRefiner, one "
                      f"seed, 2 epochs), its process group SIGKILLed at a random time, then rerun: "
                      f"**{sweep['exact']}/{sweep['trials']} exact** (the printed table, every result.json's metrics "
                      f"and every checkpoint equal the uninterrupted sweep's)."]
    lines += ["", "Kinds: `random` = after a random progress line + 0-0.5 s; `boundary` = at a random file operation "
                  "of the run's checkpoint saves (staged file, commit, rename, pointer; `save steps` per run); "
                  "`save-line` = on the first `Checkpoint saved to` line + 0-20 ms. Exact: the rerun exits 0 and "
                  "every file of every module folder (the set of files; each checkpoint's tensors, epoch, val "
                  "result, optimizer, scheduler and random-number state), the pointers, `checkpoint_set.json` "
                  "and `result.json`'s metrics equal the uninterrupted run's."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--trainers", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    p.add_argument("--sweep-trials", type=int, default=None, help="default: --trials")
    p.add_argument("--no-sweep", action="store_true")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    p.add_argument("--report", default="", help="write the Markdown report here")
    args = p.parse_args()
    ensure_data(args.root)
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="kill_trials-")
    started = time.time()
    rows, sweep = [], None
    try:
        for trainer in args.trainers:
            rows.append(trainer_trials(args.root, work, trainer, args.trials, args.kinds, rng, sys.stdout))
            print(f"{trainer}: {rows[-1]['seconds']:.0f} s", flush=True)
        if not args.no_sweep:
            sweep = sweep_trials(args.root, work, args.sweep_trials or args.trials, rng, sys.stdout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(args, rows, sweep, time.time() - started)
    print(text)
    if args.report:
        with open(args.report, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
