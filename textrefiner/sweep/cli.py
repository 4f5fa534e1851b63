"""``python -m textrefiner.sweep``: run a protocol over datasets x seeds x trainers, resumably.

    python -m textrefiner.sweep --config configs/sweeps/base2new_synthetic.yaml
    python -m textrefiner.sweep --protocol base2new --datasets caltech101 dtd --seeds 1 2 3 \\
        --trainers CoOp CoOp_TextRefiner --gpus 0 1 -- OPTIM.MAX_EPOCH 10
    python -m textrefiner.sweep --protocol few_shot --datasets dtd --tag ep20 -- OPTIM.MAX_EPOCH 20
    python -m textrefiner.sweep --protocol base2new --dry-run     # the paper's grid, listed only
    python -m textrefiner.sweep --protocol base2new --trainers CoOp_TextRefiner \
        --variant m5 TRAINER.TEXTREFINER.CACHE_SIZE 5 --variant m10 TRAINER.TEXTREFINER.CACHE_SIZE 10 \
        --variant no_tr TRAINER.TEXTREFINER.ENABLED False --variant release   # an ablation

A sweep needs --protocol or --config: without either it prints a short usage and runs nothing.
Before anything runs, the whole sweep file and the flags are checked (types, empty lists, unknown
keys, YAML syntax) and so is the config every step would build (train.py's checks: unknown config
keys, values out of range); a mistake ends the sweep with one ``Error:`` line and exit status 1.
Then every dataset, CLIP weights file and output folder the grid needs is checked and all
problems are listed at once (--no-preflight skips this second check).

Flags override the YAML file's keys (textrefiner/sweep/settings.py lists them); train.py
``KEY VALUE`` overrides come after ``--``. Variants (``variants:`` in the file, or ``--variant
NAME [KEY VALUE ...]``, repeated; the flags replace the file's variants) each run every job with
their overrides on top of the others, in their own folder (the variant's name is the run tag)
and table row. A job whose steps all hold ``result.json`` is
skipped, an interrupted one resumes, so rerunning the same command finishes a sweep. Each
job logs to ``<log_dir>/<job>.log``; ``<log_dir>/sweep_report.json`` records what every job
did. A failing job does not stop the others; the exit status is 1 if any failed.
"""
import argparse
import os
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Tuple

from ..atomic import write_json
from ..errors import UserError
from ..protocols import PROTOCOLS
from ..results.render import render, save
from ..results.tables import protocol_summary
from .executors import EXECUTORS, Progress, cpu_share
from .preflight import check_configs, preflight
from .runner import JobOutcome, skipped
from .settings import SweepSettings, load_yaml
from .shared import group_jobs, group_log, run_group


#: what a sweep without --protocol or --config prints: what to run, then where the rest is
SHORT_USAGE = f"""usage: python -m textrefiner.sweep --protocol {{{','.join(sorted(PROTOCOLS))}}} [--datasets D ...] \
[--trainers T ...] [--seeds S ...] [--dry-run] [-- KEY VALUE ...]
       python -m textrefiner.sweep --config configs/sweeps/FILE.yaml
e.g.   python -m textrefiner.sweep --protocol base2new --datasets testbed_shapes --cfg testbed_ep10_ctxv1 --dry-run
Every flag: python -m textrefiner.sweep --help"""


def build_parser() -> argparse.ArgumentParser:
    # the installed command names itself; ``python -m`` shows the module (argparse would say __main__.py)
    prog = "textrefiner-sweep" if os.path.basename(sys.argv[0]) == "textrefiner-sweep" else "python -m textrefiner.sweep"
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="sweep YAML file; flags below override its keys")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS))
    p.add_argument("--host", help="host of the trainers (default: coop)")
    p.add_argument("--trainers", nargs="+", help="default: every trainer of the host")
    p.add_argument("--cfg", help="trainer config name (default: the host's for the protocol)")
    p.add_argument("--datasets", nargs="+", help="dataset config names; for xd the targets (default: the paper's)")
    p.add_argument("--source", help="xd: the dataset the model is trained on (default: imagenet)")
    p.add_argument("--seeds", nargs="+", type=int, help="default: 1 2 3")
    p.add_argument("--shots", nargs="+", type=int, help="default: 16; few_shot: 1 2 4 8 16")
    p.add_argument("--data", help="dataset root (default: $DATA or ./data)")
    p.add_argument("--output", help="output root (default: $OUTPUT or ./output)")
    p.add_argument("--executor", choices=sorted(EXECUTORS), help="default: local")
    p.add_argument("--gpus", nargs="+", help="local executor: run one job per listed GPU at a time")
    p.add_argument("--parallel", type=int, help="local executor without GPUs: this many jobs at once on the CPU")
    p.add_argument("--slurm", nargs="+", metavar="KEY=VALUE",
                   help="submitit AutoExecutor parameters, e.g. slurm_partition=gpu timeout_min=600")
    p.add_argument("--tag", help="run tag: these settings get their own folders, <cfg>/<tag>/seed<S>")
    p.add_argument("--variant", action="append", nargs="+", metavar="NAME [KEY VALUE]",
                   help="a variant: its name (its run tag), then its config overrides (none: the config's own "
                        "settings); repeat for each variant")
    p.add_argument("--overwrite", action="store_true", default=None,
                   help="replace runs made with other settings (deletes their folders) instead of refusing")
    p.add_argument("--shared", action="store_true", default=None,
                   help="run the CoOp/CoOp_TextRefiner/ZeroshotCLIP runs of each (dataset, shots, seed) in one "
                        "process, the frozen image tower computed once for all (sets TRAIN.SEEDED_DATA_STREAM True)")
    p.add_argument("--log-dir", help="per-job logs and sweep_report.json (default: <output>/sweep_logs)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="final table: A and B side by side")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and their state; run nothing")
    p.add_argument("--no-preflight", action="store_true",
                   help="start without checking datasets, CLIP weights and output folders first")
    p.add_argument("--save", nargs="+", default=[], metavar="FILE",
                   help="also write the final table to .md, .csv, .txt or .png (plot) files")
    return p


def parse(argv: List[str]) -> Tuple[argparse.Namespace, Optional[List[str]]]:
    """The flags, and the train.py overrides after ``--`` (None without ``--``)."""
    if "--" not in argv:
        return build_parser().parse_args(argv), None
    cut = argv.index("--")
    return build_parser().parse_args(argv[:cut]), argv[cut + 1:]


def settings_from(args: argparse.Namespace, opts: Optional[List[str]]) -> SweepSettings:
    """YAML file (if any), then the flags, then defaults for whatever is still unset."""
    settings = SweepSettings()
    if args.config:
        settings.update(load_yaml(args.config), args.config)
    skip = ("config", "dry_run", "save", "slurm", "no_preflight", "variant")
    flags = {k: v for k, v in vars(args).items() if k not in skip}
    settings.update({**flags, "variants": args.variant}, "command line")
    if opts is not None:  # after "--": replaces the file's opts (nothing after it: no overrides)
        settings.opts = list(opts)
    if args.slurm:
        settings.slurm.update(_parameter(kv) for kv in args.slurm)
    return settings.resolve()


def _parameter(text: str) -> tuple:
    key, sep, value = text.partition("=")
    if not sep:
        raise UserError(f"--slurm takes KEY=VALUE pairs, got {text!r}")
    return key, int(value) if value.isdigit() else value


def list_jobs(jobs) -> None:
    for i, job in enumerate(jobs, 1):
        print(f"[{i}/{len(jobs)}] {job.label}: {job.status()}")
        for step in job.steps:
            print(f"      {step.key.kind:<15} {step.output_dir}{'  (done)' if step.done else ''}")


def print_table(settings: SweepSettings, save_paths: List[str]) -> None:
    """The protocol's table of this sweep's runs; base-to-novel and xd get one table per shot count."""
    per_table = [settings.shots] if settings.protocol == "few_shot" else [[k] for k in settings.shots]
    for shots in per_table:
        try:
            summary = protocol_summary(settings.output, settings.protocol, trainers=settings.trainers,
                                       cfg=settings.cfg, datasets=settings.datasets, seeds=settings.seeds, shots=shots,
                                       **settings.protocol_options())
        except FileNotFoundError:
            print(f"\nNo finished {settings.protocol} runs with {shots} shots to tabulate yet.")
            continue
        except ValueError as e:  # e.g. seeds made with different settings: no table rather than a wrong one
            print(f"\nNo {settings.protocol} table: {e}")
            continue
        print("\n" + render(summary))
        if settings.compare:
            print(render(summary, compare=settings.compare))
        for path in save_paths:
            stem, suffix = os.path.splitext(path)
            target = path if len(per_table) == 1 else f"{stem}-shots{shots[0]}{suffix}"
            print(f"Table written to {save(summary, target, settings.compare)}")


def run_jobs(settings: SweepSettings, jobs) -> List[JobOutcome]:
    """Skip the finished jobs, run the others with the chosen executor; outcomes in grid order."""
    progress = Progress(jobs, parallel=len(settings.gpus) or settings.parallel if settings.executor == "local" else 1)
    outcomes, pending = [], []
    for job in jobs:
        if job.status() == "done":
            outcomes.append(skipped(job))
            progress.finished(outcomes[-1])
        else:
            pending.append(job)
    try:
        if settings.shared:
            outcomes += run_shared(pending, settings, progress)
        else:
            outcomes += EXECUTORS[settings.executor](pending, settings.log_dir, progress, settings)
    except KeyboardInterrupt:
        raise SystemExit("\nInterrupted: rerun the same command to finish the sweep (finished jobs are kept).")
    return sorted(outcomes, key=lambda o: progress.number[o.name])


def run_shared(pending, settings: SweepSettings, progress: Progress) -> List[JobOutcome]:
    """``shared``: each group of jobs that can share the image tower in one process per step (``parallel``
    groups at once on the CPU), the others as usual (their one-line reason printed)."""
    groups, alone = group_jobs(pending)
    workers = max(1, settings.parallel) if settings.executor == "local" and not settings.gpus else 1
    env = {**os.environ, **cpu_share(workers)} if cpu_share(workers) else None

    def one(numbered):
        i, group = numbered
        log = group_log(settings.log_dir, group)
        print(f"[group {i}/{len(groups)}] {group[0].protocol} {group[0].dataset} {group[0].shots}-shot seed "
              f"{group[0].seed}: {len(group)} runs share the image tower; log: {log}", flush=True)
        results = run_group(group, log, env)
        for outcome in results:
            progress.finished(outcome)
        return results

    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = [o for results in pool.map(one, enumerate(groups, 1)) for o in results]
    if alone:
        outcomes += EXECUTORS[settings.executor](alone, settings.log_dir, progress, settings)
    return outcomes


def print_outcomes(outcomes: List[JobOutcome]) -> None:
    counts = {s: sum(o.status == s for o in outcomes) for s in ("ok", "skipped", "failed")}
    print(f"\n{len(outcomes)} jobs: {counts['ok']} ran, {counts['skipped']} skipped (already done), "
          f"{counts['failed']} failed")
    for outcome in outcomes:
        if outcome.status == "failed":
            print(f"  FAILED {outcome.label} at {outcome.failed_step}: {outcome.message}\n    log: {outcome.log}")


def main(argv: Optional[List[str]] = None) -> None:
    """A mistake in the input (the sweep file, flags, the config a step would build, an output
    folder the sweep cannot use) ends the sweep with one ``Error:`` line and exit status 1, before
    any job starts; ``TEXTREFINER_DEBUG=1`` adds the traceback. Usage errors are argparse's (2)."""
    args, opts = parse(sys.argv[1:] if argv is None else argv)
    try:
        sweep(args, opts)
    except UserError as e:
        if os.environ.get("TEXTREFINER_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        sys.stdout.flush()
        raise SystemExit(f"Error: {' '.join(str(e).split())}") from None  # Python prints it to stderr, status 1


def sweep(args: argparse.Namespace, opts: Optional[List[str]]) -> None:
    if not (args.protocol or args.config):
        print(SHORT_USAGE)
        raise UserError("say what to run with --protocol or --config (add --dry-run to list the jobs first)")
    try:
        settings = settings_from(args, opts)
        jobs = settings.jobs()
    except (ValueError, FileNotFoundError) as e:  # a run tag, a protocol key in opts, a config file not found
        raise UserError(str(e)) from None
    if opts:
        opts_source = "the overrides after --"
    elif args.config and settings.opts:
        opts_source = f"the opts of {args.config}"
    else:
        opts_source = "no overrides"
    variants_source = ("--variant" if args.variant else args.config) if settings.variants else ""
    check_configs(jobs, opts_source, variants=variants_source)
    variants = f" x {len(settings.variants)} variant(s)" if settings.variants else ""
    print(f"Sweep: {settings.protocol}, {len(settings.datasets)} dataset(s) x {len(settings.shots)} shot count(s) x "
          f"{len(settings.seeds)} seed(s) x {len(settings.trainers)} trainer(s){variants} = {len(jobs)} jobs; "
          f"executor {settings.executor}; output {settings.output}")
    if args.dry_run:
        list_jobs(jobs)
        return
    if not args.no_preflight:
        problems = preflight(jobs, settings.data)
        if problems:
            print(f"\nNothing started: the grid cannot run as it is ({len(problems)} problem(s)):", file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            raise UserError(f"the {len(problems)} problem(s) above: fix them and rerun (python -m "
                            "textrefiner.data.doctor --root DATA checks datasets in depth), or pass --no-preflight "
                            "to start anyway")
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        outcomes = run_jobs(settings, jobs)
    except RuntimeError as e:  # an executor that cannot start here: say which one to use
        if isinstance(e, UserError):
            raise
        raise UserError(str(e)) from None
    write_report(settings, outcomes, started)
    print_outcomes(outcomes)
    print_table(settings, args.save)
    raise SystemExit(1 if any(o.status == "failed" for o in outcomes) else 0)


def write_report(settings: SweepSettings, outcomes, started: str) -> None:
    report = {
        "started_at": started,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "settings": vars(settings),
        "jobs": [o.as_dict() for o in outcomes],
    }
    path = os.path.join(settings.log_dir, "sweep_report.json")
    write_json(report, path, indent=2)  # a sweep finishing at the same moment never reads half a report
    print(f"Report: {path}")
