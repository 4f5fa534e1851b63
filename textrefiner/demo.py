"""End-to-end demo: base-to-novel on the offline testbed, through the same steps as the launchers.

For each trainer and seed: train on the base classes (16 shots), then evaluate the saved
model on the novel classes, exactly as ``scripts/<host>/base2new_train.sh`` and
``base2new_test.sh`` do (zero-shot CLIP evaluates both halves); finally print Base / Novel /
HM per trainer. While a step runs, its epochs are printed with Dassl's ETA for the training;
after each trainer and seed, one line with its accuracies and an ETA for the runs left.

    python -m textrefiner.demo [--seeds 1 2] [--trainers CoOp CoOp_TextRefiner] [--dataset testbed_patterns]

Default: the testbed CLIP this repository ships (a miniature CLIP pretrained on generated
scenes, ``MODEL.BACKBONE.NAME testbed``) on ``testbed_shapes``, with each trainer's testbed
config (``configs/trainers/<Trainer>/testbed*.yaml``): the numbers are real accuracies of a
real (tiny) CLIP, so the methods can be compared, on a benchmark far from the paper's (README,
"Offline testbed"). ``--backbone random:tiny`` runs the old pipeline check instead: a
randomly initialised tiny CLIP on ``Synthetic``, whose numbers mean nothing.
"""
import argparse
import os
import os.path as osp
import shutil
import sys
import time
from typing import List, Optional, Sequence, Tuple

from textrefiner.protocols.hosts import HOSTS, host_of, testbed_cfg
from textrefiner.protocols.progress import LogFollower, duration
from textrefiner.protocols.steps import Setup, base2new_test, base2new_train, run_step
from textrefiner.results.render import render
from textrefiner.results.tables import protocol_summary

#: every host's trainers, each baseline before its TextRefiner variant
DEMO_TRAINERS = [t for host in HOSTS.values() if host.in_demo for t in reversed(host.trainers)]
TESTBED = "testbed"
RANDOM_TINY = "random:tiny"


def available_trainers(backbone: str) -> List[str]:
    """Demo trainers whose class is registered (and, on the testbed, that ship a testbed config)."""
    from textrefiner.framework import TRAINER_REGISTRY
    from textrefiner.run_config import register_plugins

    register_plugins()
    registered = TRAINER_REGISTRY.registered_names()
    if backbone == TESTBED:
        return [t for t in ["ZeroshotCLIP", *DEMO_TRAINERS] if t in registered and testbed_cfg(t)]
    return [t for t in DEMO_TRAINERS if t in registered]


def demo_setup(trainer: str, backbone: str, root: str, out: str, epochs: Optional[int]) -> Setup:
    """The launchers' Setup for one demo trainer: its testbed config, or (random:tiny) its
    base-to-novel config with the overrides a 2-layer random CLIP and a quick CPU run need."""
    opts: Tuple[str, ...] = ()
    if backbone == TESTBED:
        cfg = testbed_cfg(trainer)
        if not cfg:
            raise SystemExit(f"{trainer} has no testbed config (configs/trainers/{trainer}/testbed*.yaml): "
                             "leave it out of --trainers or run it with --backbone random:tiny")
    else:
        host = host_of(trainer)
        cfg = host.configs["base2new"] if host else "vit_b16"
        opts = ("MODEL.BACKBONE.NAME", backbone, "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "16",
                "TRAIN.PRINT_FREQ", "100", "OPTIM.MAX_EPOCH", str(epochs or 3),
                *(host.tiny_opts if host and backbone == RANDOM_TINY else ()), *(host.demo_opts if host else ()))
    if epochs and backbone == TESTBED:
        opts += ("OPTIM.MAX_EPOCH", str(epochs))
    return Setup(trainer=trainer, cfg=cfg, data=root, output=out, opts=opts)


def run_logged(step, log_path: str) -> dict:
    """Run one protocol step with its output in ``log_path``, printing its epochs as it goes
    (``protocols/progress.py``); its result record, or exit showing the log's end."""
    with open(log_path, "a") as log, LogFollower(log_path, lambda text: print(f"      {text}", flush=True)):
        code = run_step(step, log=log)
    record = step.record
    if code != 0 or record is None:
        with open(log_path) as f:
            tail = "".join(f.readlines()[-30:])
        raise SystemExit(f"{step.key.kind} of {step.key.trainer} seed {step.key.seed} failed (exit {code})\n"
                         f"--- last lines of {log_path} ---\n{tail}")
    return record


def _eta(start: float, done: int, total: int) -> str:
    """The time the runs left will take at the mean pace so far (the trainers differ: a rough guide)."""
    if done >= total:
        return ""
    left = (time.time() - start) / done * (total - done)
    return f"; {total - done} left, ETA {duration(left)}"


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output-dir", default="output/demo", help="demo outputs (deleted and rewritten)")
    p.add_argument("--root", default=os.environ.get("DATA", "data"), help="dataset root (default: $DATA or ./data)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--trainers", nargs="+", default=None, help="default: zero-shot CLIP and every host's pair")
    p.add_argument("--backbone", default=TESTBED, choices=[TESTBED, RANDOM_TINY],
                   help="testbed: the shipped pretrained testbed CLIP (default); random:tiny: a random 2-layer CLIP")
    p.add_argument("--dataset", default=None,
                   help="default: testbed_shapes (testbed), synthetic (random:tiny); e.g. testbed_patterns")
    p.add_argument("--epochs", type=int, default=None, help="override the configs' epochs (random:tiny default: 3)")
    args = p.parse_args(argv)

    dataset = args.dataset or ("testbed_shapes" if args.backbone == TESTBED else "synthetic")
    trainers = args.trainers or available_trainers(args.backbone)
    out = osp.abspath(args.output_dir)
    root = osp.abspath(args.root)
    setups = [demo_setup(t, args.backbone, root, out, args.epochs) for t in trainers]  # a bad name fails first
    if osp.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    print(f"Demo: base-to-novel on {dataset}, backbone {args.backbone}, trainers {trainers}, seeds {args.seeds}")
    print(f"Outputs under {out}; data under {root}\n")

    jobs = [(setup, seed) for setup in setups for seed in args.seeds]
    start = time.time()
    for i, (setup, seed) in enumerate(jobs, 1):
        t0 = time.time()
        log_path = osp.join(out, f"{setup.trainer}-seed{seed}.log")
        verb = "evaluate on" if setup.trainer == "ZeroshotCLIP" else "train on"
        job = f"[{i}/{len(jobs)}] {setup.trainer} seed {seed}"
        print(f"{job}: {verb} base classes, then test on novel classes (log: {log_path})", flush=True)
        base = run_logged(base2new_train(setup, dataset, seed), log_path)
        new = run_logged(base2new_test(setup, dataset, seed), log_path)
        print(f"{job}: base {base['accuracy']:.1f}%, novel {new['accuracy']:.1f}% ({time.time() - t0:.0f}s)"
              f"{_eta(start, i, len(jobs))}", flush=True)

    print("\n" + render(protocol_summary(out, "base2new")), end="")
    print(f"\nDone in {time.time() - start:.0f}s. Logs and runs under {out}.")
    if args.backbone == TESTBED:
        print("These are accuracies of the testbed CLIP, a miniature CLIP this repository pretrained on generated "
              "scenes: real numbers of real prompt learning, on a toy world far from the paper's benchmarks.\n"
              "For the paper's numbers: OpenAI CLIP weights and the real datasets (README), e.g. "
              "scripts/coop/base2new_train.sh caltech101 1.")
    else:
        print("These numbers come from a RANDOMLY INITIALISED tiny CLIP on generated shapes: they only show the "
              "pipeline runs end to end and mean nothing about the method.")


if __name__ == "__main__":
    main(sys.argv[1:])
