"""``python -m textrefiner.paper ARTIFACT... --out DIR``: the TextRefiner paper's tables and figures.

    python -m textrefiner.paper all --out output/paper                 # offline testbed, CPU, 5 seeds
    python -m textrefiner.paper table1 table2 fig3 --seeds 1 2 3 --out output/paper
    python -m textrefiner.paper all --quick --out output/paper_quick   # 1 seed, 1 epoch: a first look
    python -m textrefiner.paper table1 table2 --cocoop-textrefiner     # + CoCoOp w/TR, not a row of the paper
    python -m textrefiner.paper all --data /datasets --dry-run         # the real protocol's jobs, listed
    python -m textrefiner.paper table1 --data /datasets --gpus 0 1 2 3 # real data, one job per GPU

Artifacts: table1 (base-to-novel), table2 (domain generalisation), fig3 (inference images/s),
table3 (components), table4 (loss weights), fig4 (cache size M), fig5 (fusion alpha), or all.
Without ``--data`` they run on the offline testbed (the shipped testbed CLIP and generated
datasets); with ``--data ROOT``, on the paper's datasets under ROOT with OpenAI's CLIP (ViT-B/16;
ViT-L/14 for PromptKD's teachers), the paper's seeds, shots, configs and epochs, on a GPU.

Every run goes through the sweep (``textrefiner.sweep``): finished runs are skipped, a killed
one resumes, so rerunning the same command finishes the work and rewrites the artifacts. Each
artifact is written as ``DIR/<artifact>.md`` and ``.csv`` (figures and ablations also ``.png``)
and ``DIR/report.md`` puts them beside the paper's numbers with a verdict for each of the paper's
claims (docs/paper.md). Runs live under ``DIR/runs`` (``DIR/runs_quick`` with --quick), laid out
as the launchers lay them out, so ``parse_test_res.py DIR/runs`` reads them too.
"""
import argparse
import contextlib
import dataclasses
import os
import sys
import time
import traceback
from typing import Dict, List, Optional

import yaml

from ..errors import UserError
from ..resources import config_path
from . import plan
from .claims import check_claims
from .plan import PAIRS, Group, World

#: the report's claims and tables need these many seeds; --quick runs one
_EXECUTORS = ("local", "submitit-local", "slurm")


def build_parser() -> argparse.ArgumentParser:
    prog = "textrefiner-paper" if os.path.basename(sys.argv[0]) == "textrefiner-paper" else "python -m textrefiner.paper"
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help=f"{', '.join(plan.ARTIFACTS)} or all")
    p.add_argument("--out", default=None, help="where the artifacts and report.md go (default: output/paper, "
                                               "output/paper_quick with --quick)")
    world = p.add_mutually_exclusive_group()
    world.add_argument("--testbed", action="store_true", help="the offline testbed (the default without --data)")
    world.add_argument("--data", metavar="ROOT", help="real data: the paper's datasets under ROOT, OpenAI's CLIP")
    p.add_argument("--testbed-data", metavar="DIR", help="testbed: where its datasets are generated (default: "
                                                           "$DATA or ./data)")
    p.add_argument("--seeds", nargs="+", type=int, help="default: 1-5 on the testbed (verdicts need 5), the "
                                                        "paper's 1 2 3 on real data, 1 with --quick")
    p.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, one dataset per table: a first look "
                                                        "(and the CI check); no verdicts")
    p.add_argument("--runs", help="the runs' root (default: DIR/runs, DIR/runs_quick with --quick)")
    p.add_argument("--cocoop-textrefiner", action="store_true",
                   help="also CoCoOp_TextRefiner in Tables 1-2 (ours: neither of the paper's tables has it, CoCoOp is "
                        "a baseline there; on the testbed with 3 seeds about 7 more minutes on 2 cores)")
    p.add_argument("--dry-run", action="store_true", help="list every job with its protocol; run nothing")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: write the artifacts and the report from the runs finished so far (the tables "
                        "list what is missing)")
    p.add_argument("--executor", choices=_EXECUTORS, default="local", help="as the sweep's (default: local)")
    p.add_argument("--gpus", nargs="+", default=[], help="local executor: one job per listed GPU at a time")
    p.add_argument("--jobs", type=int, default=None,
                   help="local executor on CPU: this many jobs at once, each with cores/jobs threads (default: "
                        "the testbed one per core, at most 4 -- each run is mostly one thread's start-up and small "
                        "batches; real data 1)")
    p.add_argument("--slurm", nargs="+", default=[], metavar="KEY=VALUE", help="submitit parameters")
    p.add_argument("--no-preflight", action="store_true", help="start without checking data, weights and folders")
    p.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                   help="train.py overrides for every run (e.g. MODEL.BACKBONE.PATH for offline CLIP weights)")
    return p


def config_value(trainer: str, cfg: str, key: str):
    """A value of a trainer config file (``OPTIM.MAX_EPOCH``), or None when it does not set it."""
    with open(config_path("trainers", trainer, f"{cfg}.yaml")) as f:
        node = yaml.safe_load(f) or {}
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def describe(group: Group) -> str:
    """One line: what a group runs, with the protocol's numbers (what a dry run is checked against)."""
    s = group.settings
    trainer = s.trainers[-1]
    epochs = dict(zip(s.opts[::2], s.opts[1::2])).get("OPTIM.MAX_EPOCH") or config_value(trainer, s.cfg,
                                                                                         "OPTIM.MAX_EPOCH")
    batch = config_value(trainer, s.cfg, "DATALOADER.TRAIN_X.BATCH_SIZE")
    where = f"source {s.source} -> " if s.source else ""
    variants = f"; variants {', '.join(s.variants)}" if s.variants else ""
    return (f"{group.artifact}: {s.protocol} {', '.join(s.trainers)} cfg {s.cfg}: {where}{', '.join(s.datasets)}; "
            f"seeds {' '.join(map(str, s.seeds))}; shots {' '.join(map(str, s.shots))}; epochs {epochs}; "
            f"batch {batch}{variants}")


def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        code = run(args, argv)
    except UserError as e:
        if os.environ.get("TEXTREFINER_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        sys.stdout.flush()
        raise SystemExit(f"Error: {' '.join(str(e).split())}") from None
    raise SystemExit(code)


def make_plan(args) -> plan.Plan:
    if args.jobs is None:
        args.jobs = default_jobs(args)
    elif args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: give 1 or more (jobs at once on this machine's CPU)")
    artifacts = plan.expand(args.artifacts)
    out = args.out or ("output/paper_quick" if args.quick else "output/paper")
    if len(args.opts) % 2:
        raise UserError("--opts takes KEY VALUE pairs: an odd number of words was given")
    data = args.data
    if data and not os.path.isdir(data):
        raise UserError(f"--data {data} is not a folder: pass the root that holds the paper's datasets "
                        f"(docs/datasets.md), or leave --data out for the offline testbed")
    world = plan.make_world(data, out, args.seeds, args.quick, args.runs, args.opts, args.cocoop_textrefiner)
    if not data and args.testbed_data:
        world = dataclasses.replace(world, data=args.testbed_data)
    # PromptKD's jobs read their teachers from $TEACHER_DIR (its step options): the plan's own folder
    os.environ["TEACHER_DIR"] = plan.teacher_dir(world)
    result = plan.Plan(world, artifacts, plan.groups(world, artifacts))
    for group in result.groups:
        group.settings.executor = args.executor
        group.settings.gpus = [str(g) for g in args.gpus]
        if args.slurm:
            group.settings.slurm = dict(kv.split("=", 1) for kv in args.slurm)
        group.settings.parallel = args.jobs
    return result


def default_jobs(args) -> int:
    """``--jobs`` when not given: on the testbed with the local executor and no GPUs, one job per core (at
    most 4): a testbed run spends most of its time in one thread (imports, data, batches of a few images),
    so two single-threaded runs on 2 cores finish in about half the time of one two-threaded run after
    the other. Real data (and GPUs, and other executors): one at a time."""
    if args.data or args.gpus or args.executor != "local":
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def run(args, argv) -> int:
    started = time.time()
    the_plan = make_plan(args)
    world = the_plan.world
    out = args.out or ("output/paper_quick" if args.quick else "output/paper")
    from ..sweep.cli import list_jobs
    from ..sweep.preflight import check_configs

    print(f"The paper: {', '.join(the_plan.artifacts)} on the {world.name} world ({len(world.seeds)} seed(s)); "
          f"runs under {world.runs}; artifacts to {out}"
          + ("" if args.gpus or args.executor != "local" else f"; {args.jobs} job(s) at once (--jobs)"))
    jobs_of: Dict[int, list] = {}
    for i, group in enumerate(the_plan.groups):
        jobs_of[i] = group.settings.jobs()
        check_configs(jobs_of[i], "the paper command's settings")
        print(f"  {describe(group)}: {len(jobs_of[i])} jobs")
    teachers = plan.teacher_steps(the_plan)
    if teachers:
        print(f"  teachers: {len(teachers)} PromptSRC run(s) first, written where PromptKD reads them")
    if "fig3" in the_plan.artifacts:
        print("  fig3: evaluation images/s of every method on this machine's device")
    if args.dry_run:
        for step in teachers:
            print(f"teacher: {step.key.trainer} {step.key.cfg} on {step.key.dataset} -> {step.teacher_file}"
                  f"{'  (done)' if step.done else ''}")
        for i, group in enumerate(the_plan.groups):
            print(f"\n{group.label}")
            list_jobs(jobs_of[i])
        return 0
    if args.report_only:
        return write_all(the_plan, out, started, argv)
    failed = run_teachers(teachers, world, args.jobs if not args.gpus else 1) + run_groups(the_plan, jobs_of, args.no_preflight)
    code = write_all(the_plan, out, started, argv)
    if failed:
        print(f"\n{failed} job(s) failed (their rows are missing from the tables, which say so); rerun the same "
              "command to retry them (finished runs are kept)")
        return 1
    return code


def run_teachers(steps, world: World, parallel: int = 1) -> int:
    """The teacher steps not done yet, ``parallel`` at a time on the CPU (each with its share of the
    cores); each logs to ``<runs>/sweep_logs/teacher-<dataset>-seed<S>.log``. Returns the failures."""
    from concurrent.futures import ThreadPoolExecutor

    from ..protocols import run_step
    from ..sweep.executors import cpu_share

    pending = [step for step in steps if not step.done]
    share = cpu_share(parallel)
    env = {**os.environ, **share} if share else None

    def one(numbered) -> int:
        n, step = numbered
        log = os.path.join(world.runs, "sweep_logs", f"teacher-{step.key.dataset}-seed{step.key.seed}.log")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        print(f"[teacher {n}/{len(pending)}] {step.key.dataset} seed {step.key.seed}: running; log: {log}", flush=True)
        try:
            with open(log, "a") as f:
                code = run_step(step, f, env)
        except (RuntimeError, OSError, ValueError) as e:  # a folder of other settings, a teacher that exists
            print(f"[teacher {n}/{len(pending)}] {step.key.dataset} seed {step.key.seed}: FAILED: {e}", flush=True)
            return 1
        print(f"[teacher {n}/{len(pending)}] {step.key.dataset} seed {step.key.seed}: "
              f"{'ok' if code == 0 and step.done else 'FAILED, see ' + log}", flush=True)
        return int(not (code == 0 and step.done))

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return sum(pool.map(one, enumerate(pending, 1)))


def run_groups(the_plan: plan.Plan, jobs_of: Dict[int, list], no_preflight: bool) -> int:
    """Every group's jobs: the groups without variants in one pool (so ``--jobs``/``--gpus`` keep every
    slot busy across them), then the ablations (their variants may share one process): one after the
    other on GPUs and other executors, side by side on the CPU with ``--jobs`` 2 or more."""
    from ..sweep.cli import run_jobs
    from ..sweep.preflight import preflight

    if not no_preflight:
        problems = []
        for i, group in enumerate(the_plan.groups):
            problems += [p for p in preflight(jobs_of[i], group.settings.data) if p not in problems]
        if problems:
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            raise UserError(f"the {len(problems)} problem(s) above: fix them and rerun (finished runs are kept), "
                            "or pass --no-preflight")
    plain = [i for i, g in enumerate(the_plan.groups) if not g.settings.variants]
    ablations = [([i], g) for i, g in enumerate(the_plan.groups) if g.settings.variants]

    def run_batch(members, group) -> int:
        jobs = [job for i in members for job in jobs_of[i]]
        label = group.label if len(members) == 1 else f"{', '.join(sorted({the_plan.groups[i].artifact for i in members}))}"
        print(f"\n== {label}: {len(jobs)} jobs", flush=True)
        outcomes = run_jobs(group.settings, jobs)
        for o in outcomes:
            if o.status == "failed":
                print(f"  FAILED {o.label} at {o.failed_step}: {o.message} (log: {o.log})")
        return sum(o.status == "failed" for o in outcomes)

    failed = run_batch(plain, the_plan.groups[plain[0]]) if plain else 0
    slots = ablations[0][1].settings.parallel if ablations else 1
    local_cpu = all(g.settings.executor == "local" and not g.settings.gpus for _, g in ablations)
    if len(ablations) < 2 or slots < 2 or not local_cpu:
        return failed + sum(run_batch(*batch) for batch in ablations)
    # on the CPU, the ablations side by side: one of them has as few groups as seeds x datasets (one with
    # --quick), which alone would leave cores idle. Each runs its groups one at a time, all of them
    # together `--jobs` at a time, each process with its share of the cores
    from concurrent.futures import ThreadPoolExecutor

    from ..sweep.executors import cpu_share

    workers = min(slots, len(ablations))
    for _, group in ablations:
        group.settings.parallel = max(1, slots // workers)
    with threads_per_process(cpu_share(slots).get("OMP_NUM_THREADS")), ThreadPoolExecutor(workers) as pool:
        return failed + sum(pool.map(lambda batch: run_batch(*batch), ablations))


@contextlib.contextmanager
def threads_per_process(threads: Optional[str]):
    """``OMP_NUM_THREADS`` set to ``threads`` for the processes started meanwhile (the sweep gives each its
    share of the cores from it), unless the user set it; restored after."""
    if threads is None or os.environ.get("OMP_NUM_THREADS"):
        yield
        return
    os.environ["OMP_NUM_THREADS"] = threads
    try:
        yield
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)


def write_all(the_plan: plan.Plan, out: str, started: float, argv) -> int:
    from . import report

    world = the_plan.world
    report.ensure_dir(out)
    files, summaries, flags = {}, {}, {}
    fig3_rows = None
    for artifact in the_plan.artifacts:
        if artifact in ("table1", "table2"):
            files[artifact], summary, flags[artifact] = report.write_protocol_artifact(world, artifact, out)
        elif artifact == "fig3":
            files[artifact], fig3_rows = write_fig3(world, out)
            summary = None
        else:
            files[artifact], summary, flags[artifact] = report.write_ablation_artifact(world, artifact, out)
        if summary is not None:
            summaries[artifact] = summary
        print(f"{artifact}: {', '.join(files[artifact])}")
    claims = check_claims(report.evidence(world, summaries, fig3_rows), PAIRS)
    command = "python -m textrefiner.paper " + " ".join(sys.argv[1:] if argv is None else argv)
    path = report.write_report(out, world, the_plan.artifacts, files, claims, flags, time.time() - started, command)
    print(f"\nReport: {path}")
    for claim in claims:
        if claim.artifact in the_plan.artifacts:
            print(f"  claim {claim.number} ({claim.artifact}): {claim.verdict}")
    return 0


def write_fig3(world: World, out: str):
    from . import fig3

    # real data: OpenAI's ViT-B/16 at ImageNet's 1,000 classes (the paper's setting); the testbed: its CLIP
    rows = fig3.measure("testbed" if world.testbed else "ViT-B/16", device=None, quick=world.quick)
    return fig3.write(rows, out), rows
