"""Kill-and-resume trials: ``kill -9`` train.py at random points, rerun the identical command,
compare with an uninterrupted run.

    python benchmarks/kill_trials.py --root DATA --trials 5 [--trainers CoOp_TextRefiner MaPLe_TextRefiner]

Tiny random CLIP on Synthetic (generated under --root if missing), CPU, 3 epochs of 5 batches,
a checkpoint every epoch, best-val selection. A trial counts as bit-identical when every
module's ``model.pth.tar-3`` and ``model-best.pth.tar`` tensors, epochs and val results and the
``result.json`` metrics equal the uninterrupted run's; "lines lost" counts killed runs whose
``log.txt`` misses the last progress line they printed. Prints a Markdown summary.
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
    "CoOp_TextRefiner": "configs/trainers/CoOp_TextRefiner/vit_b16_ep10_ctxv1.yaml",
    "MaPLe_TextRefiner": "configs/trainers/MaPLe_TextRefiner/vit_b16_c2_ep5_batch4_2ctx.yaml",
}
EPOCHS, BATCHES = 3, 5
METRICS = ("accuracy", "macro_f1", "per_class_accuracy", "num_images")


def command(root, out, trainer):
    opts = ["MODEL.BACKBONE.NAME", "random:tiny", "DATALOADER.NUM_WORKERS", 0, "DATALOADER.TRAIN_X.BATCH_SIZE", 4,
            "DATASET.NUM_SHOTS", 2, "TRAINER.COOP.PREC", "fp32", "TRAINER.MAPLE.PREC", "fp32",
            "TRAINER.MAPLE.PROMPT_DEPTH", 2, "OPTIM.MAX_EPOCH", EPOCHS, "TRAIN.CHECKPOINT_FREQ", 1,
            "TRAIN.PRINT_FREQ", 1, "TEST.FINAL_MODEL", "best_val"]
    return [sys.executable, os.path.join(REPO, "train.py"), "--root", root, "--seed", 1, "--trainer", trainer,
            "--dataset-config-file", os.path.join(REPO, "configs/datasets/synthetic.yaml"),
            "--config-file", os.path.join(REPO, CONFIGS[trainer]), "--output-dir", out, *map(str, opts)]


def run(cmd):
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True, cwd=REPO)


def kill_at(cmd, progress_line: int, delay: float) -> str:
    """SIGKILL after the given progress line plus ``delay`` seconds; returns the last line printed."""
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=REPO)
    count, last = 0, ""
    for line in proc.stdout:
        last = line.rstrip("\n") or last
        if line.startswith("epoch ["):
            count += 1
            if count == progress_line:
                time.sleep(delay)
                os.kill(proc.pid, signal.SIGKILL)
                break
    proc.wait()
    return last


def same(ref, out, names) -> bool:
    for name in names:
        for file in (f"model.pth.tar-{EPOCHS}", "model-best.pth.tar"):
            a = torch.load(os.path.join(ref, name, file), map_location="cpu", weights_only=True)
            b = torch.load(os.path.join(out, name, file), map_location="cpu", weights_only=True)
            if (a["epoch"], a["val_result"]) != (b["epoch"], b["val_result"]):
                return False
            if any(not torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]):
                return False
    ra, rb = (json.load(open(os.path.join(d, "result.json"))) for d in (ref, out))
    return all(ra[k] == rb[k] for k in METRICS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--trainers", nargs="+", default=list(CONFIGS))
    p.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    args = p.parse_args()
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="kill_trials-")
    rows = []
    try:
        for trainer in args.trainers:
            ref = os.path.join(work, trainer, "ref")
            run(command(args.root, ref, trainer))
            identical = lost_lines = 0
            for trial in range(args.trials):
                out = os.path.join(work, trainer, f"trial{trial}")
                line, delay = rng.randint(1, EPOCHS * BATCHES), rng.uniform(0, 0.5)
                last = kill_at(command(args.root, out, trainer), line, delay)
                log = open(os.path.join(out, "log.txt")).read() if os.path.exists(os.path.join(out, "log.txt")) else ""
                lost_lines += last not in log
                run(command(args.root, out, trainer))
                ok = same(ref, out, ["prompt_learner", "textrefiner"])
                identical += ok
                print(f"{trainer} trial {trial}: killed after progress line {line} + {delay:.2f} s: "
                      f"{'bit-identical' if ok else 'DIFFERS'}", flush=True)
            rows.append((trainer, identical, args.trials, lost_lines))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| Trainer | resumes bit-identical | killed logs missing their last line |\n|---|---|---|")
    for trainer, identical, trials, lost in rows:
        print(f"| {trainer} | {identical}/{trials} | {lost}/{trials} |")


if __name__ == "__main__":
    main()
