"""End-to-end demo on embedded defaults: base-to-novel on ``Synthetic`` with a tiny random CLIP.

For each trainer and seed: train on the base classes (``train.py``, 16 shots), then
evaluate the saved model on the novel classes (``train.py --eval-only``), exactly as
the base-to-novel launch scripts do; finally print Base / Novel / HM per trainer. (PromptKD trains
on the unlabelled images of all classes, from a random:tiny-wide teacher with seeded prompts.)

    python -m textrefiner.demo [--seeds 1 2] [--trainers CoOp CoOp_TextRefiner] [--epochs 3]

The CLIP here has random weights and the images are generated shapes, so the
accuracies only show that everything runs end to end; they say nothing about the
method. For real numbers use pretrained CLIP (``MODEL.BACKBONE.NAME ViT-B/16``) and
the real datasets with ``scripts/coop/base2new_train.sh`` (see README).
"""
import argparse
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
from typing import List, Optional

from textrefiner.protocols.hosts import HOSTS, host_of
from textrefiner.protocols.steps import dataset_config, trainer_config
from textrefiner.resources import child_env
from textrefiner.results import RESULT_FILE, read_result
from textrefiner.results.render import render
from textrefiner.results.tables import protocol_summary

#: every host's trainers, each baseline before its TextRefiner variant
DEMO_TRAINERS = [t for host in HOSTS.values() if host.in_demo for t in reversed(host.trainers)]
SHOTS = 16


def trainer_config_file(trainer: str) -> str:
    return trainer_config(trainer, host_of(trainer).configs["base2new"])


def available_trainers() -> List[str]:
    """Demo trainers whose class is registered."""
    from textrefiner.cli.train import register_plugins
    from textrefiner.framework import TRAINER_REGISTRY

    register_plugins()
    registered = TRAINER_REGISTRY.registered_names()
    return [t for t in DEMO_TRAINERS if t in registered]


def run_train(args: List[str], log_path: str) -> None:
    cmd = [sys.executable, "-m", "textrefiner.cli.train", *args]
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env())
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = "".join(f.readlines()[-30:])
        raise SystemExit(f"Command failed ({proc.returncode}): {' '.join(cmd)}\n--- last lines of {log_path} ---\n{tail}")


def job_args(
    trainer: str, seed: int, root: str, out_dir: str, epochs: int, backbone: str, extra_flags: List[str] = ()
) -> List[str]:
    """train.py arguments: flags first, then the trailing ``KEY VALUE`` overrides."""
    return [
        "--root", root, "--seed", str(seed), "--trainer", trainer,
        "--dataset-config-file", dataset_config("synthetic"),
        "--config-file", trainer_config_file(trainer),
        "--output-dir", out_dir,
        *extra_flags,
        "MODEL.BACKBONE.NAME", backbone,
        "OPTIM.MAX_EPOCH", str(epochs),
        "DATASET.NUM_SHOTS", str(SHOTS),
        "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "16",
        "TRAIN.PRINT_FREQ", "100",
        *(host_of(trainer).tiny_opts if backbone == "random:tiny" else ()),
        *host_of(trainer).demo_opts,
    ]


def load_epoch_args(train_dir: str, epochs: int) -> List[str]:
    """Evaluate the model the base evaluation used: model-best (best_val configs) or the last epoch."""
    has_best = any(osp.exists(osp.join(train_dir, d, "model-best.pth.tar")) for d in os.listdir(train_dir))
    return [] if has_best else ["--load-epoch", str(epochs)]


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description="Base-to-novel demo on synthetic data with a tiny random CLIP")
    p.add_argument("--output-dir", default="output/demo", help="demo outputs (deleted and rewritten)")
    p.add_argument("--root", default=os.environ.get("DATA", "data"), help="dataset root (default: $DATA or ./data)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--trainers", nargs="+", default=None, help=f"default: those of {DEMO_TRAINERS} available")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--backbone", default="random:tiny")
    args = p.parse_args(argv)

    trainers = args.trainers or available_trainers()
    out = osp.abspath(args.output_dir)
    root = osp.abspath(args.root)
    if osp.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    print(f"Demo: base-to-novel on Synthetic, backbone {args.backbone}, trainers {trainers}, seeds {args.seeds}")
    print(f"Outputs under {out}; data under {root}\n")

    jobs = [(t, s) for t in trainers for s in args.seeds]
    start = time.time()
    for i, (trainer, seed) in enumerate(jobs, 1):
        tail = osp.join("synthetic", f"shots_{SHOTS}", trainer, "demo", f"seed{seed}")
        train_dir = osp.join(out, "base2new", "train_base", tail)
        test_dir = osp.join(out, "base2new", "test_new", tail)
        common = job_args(trainer, seed, root, train_dir, args.epochs, args.backbone)
        t0 = time.time()
        print(f"[{i}/{len(jobs)}] {trainer} seed {seed}: train on base classes ...", end=" ", flush=True)
        run_train(common + ["DATASET.SUBSAMPLE_CLASSES", "base"], osp.join(out, f"{trainer}-seed{seed}-train.out"))
        base = read_result(osp.join(train_dir, RESULT_FILE))
        print(f"base {base['accuracy']:.1f}%; test on novel classes ...", end=" ", flush=True)
        flags = ["--eval-only", "--model-dir", train_dir, *load_epoch_args(train_dir, args.epochs)]
        test = job_args(trainer, seed, root, test_dir, args.epochs, args.backbone, flags)
        test += ["DATASET.SUBSAMPLE_CLASSES", "new"]
        run_train(test, osp.join(out, f"{trainer}-seed{seed}-test.out"))
        new = read_result(osp.join(test_dir, RESULT_FILE))
        print(f"novel {new['accuracy']:.1f}% ({time.time() - t0:.0f}s)")

    print("\n" + render(protocol_summary(out, "base2new")), end="")
    print(
        f"\nDone in {time.time() - start:.0f}s. These numbers come from a RANDOMLY INITIALISED tiny CLIP on "
        "generated shapes: they only show the pipeline runs end to end and mean nothing about the method.\n"
        "For real results: put OpenAI CLIP weights in ~/.cache/clip (or set MODEL.BACKBONE.PATH), lay out the "
        "datasets as in README.md, and run scripts/coop/base2new_train.sh / base2new_test.sh."
    )


if __name__ == "__main__":
    main()
