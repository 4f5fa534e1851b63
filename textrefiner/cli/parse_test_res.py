"""CoOp's ``parse_test_res.py``, plus the paper's tables from an output tree.

Per-seed logs (CoOp's command line and output, unchanged):

    python parse_test_res.py output/base2new/train_base/caltech101/shots_16/CoOp/vit_b16_ep10_ctxv1
    python parse_test_res.py output/base2new/test_new/caltech101/shots_16/CoOp/vit_b16_ep10_ctxv1 --test-log
    python parse_test_res.py DIR --ci95 | --multi-exp | --keyword macro_f1

DIR holds one folder per seed, each with a Dassl ``log.txt``; the value after
``Finish training`` (``=> result`` with ``--test-log``) counts; with reruns the newest
log holding a result counts (see textrefiner/results/logs.py). Prints every file's value
then ``* accuracy: MEAN% +- STD%`` (std with ddof 0; ``--ci95``: 1.96 std / sqrt(n)).

Tables from the ``result.json`` files of an output root (the folder the launchers and the
sweep write into):

    python parse_test_res.py output --table base2new [--compare CoOp CoOp_TextRefiner]
    python parse_test_res.py output --table xd | few_shot [--format markdown|csv] [--save t.md t.csv t.png]
    python parse_test_res.py output --table base2new | xd --paper     # ours beside the paper's numbers

Ablations (a sweep's variants, or runs with TAG=): each variant is a row, its name in the
Variant column; --variants keeps some; --x KEY puts every column against the value each run
recorded for a numeric config key, seed spread as error bars (.png needs matplotlib):

    python parse_test_res.py output --table base2new --variants m1 m5 m10 m25
    python parse_test_res.py output --table base2new --x TRAINER.TEXTREFINER.CACHE_SIZE --save m.png m.md m.csv

--paper compares per dataset, and an average only over the datasets both have (its row names
them, e.g. "Average over caltech101, dtd (2 of the paper's 11)"); on datasets the paper never
used (the testbed's) it says there is nothing to compare and prints our table alone.

An average over an incomplete set (a missing dataset or seed) is marked in the table and
makes the exit status 1 unless --accept-partial is given; --multi-exp does the same when an
experiment has no result.

A mistake in the input (a folder that is not there, a log that cannot be read, a damaged
result.json) ends with one ``Error:`` line naming the file and the fix, exit status 1
(``TEXTREFINER_DEBUG=1`` adds the traceback); wrong flags are argparse's usage errors (2).
"""
import argparse
import errno
import os
import sys
import traceback
from typing import List, Optional

import numpy as np

from textrefiner.errors import UserError
from textrefiner.results.logs import END_OF_TRAINING, START_OF_RESULT, seed_results
from textrefiner.results.paper import TABLES, paper_comparison
from textrefiner.results.render import FORMATS, render, render_versus, save, save_versus
from textrefiner.results.tables import SUMMARIES, protocol_summary
from textrefiner.results.versus import versus


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", type=str, help="path to directory (with --table: the output root)")
    p.add_argument("--ci95", action="store_true", help=r"compute 95%% confidence interval")
    p.add_argument("--test-log", action="store_true", help="parse test-only logs")
    p.add_argument("--multi-exp", action="store_true", help="parse multiple experiments")
    p.add_argument("--keyword", default="accuracy", type=str, help="which keyword to extract")
    p.add_argument("--accept-partial", action="store_true",
                   help="exit 0 even when an average lacks datasets or seeds (they are still listed)")
    tables = p.add_argument_group("tables from result.json files")
    tables.add_argument("--table", choices=sorted(SUMMARIES), help="print this protocol's table")
    tables.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two trainers side by side, with B - A")
    tables.add_argument("--paper", action="store_true",
                        help="base2new, xd: our means beside the paper's Table 1 / Table 2, with ours - paper")
    tables.add_argument("--trainers", nargs="+", help="only these trainers")
    tables.add_argument("--cfg", help="only this trainer config name")
    tables.add_argument("--variants", nargs="+", metavar="NAME",
                        help="only these variants (run tags: a sweep's variant names, TAG=)")
    tables.add_argument("--x", metavar="KEY",
                        help="each column against the numeric value of config KEY the runs recorded (an "
                             "ablation's variants), seed spread as error bars; --save .png plots it")
    tables.add_argument("--datasets", nargs="+", help="rows to show (default: every dataset found)")
    tables.add_argument("--source", help="--table xd: the source dataset whose models' evaluations to tabulate "
                        "(default: the one the evaluations found used, imagenet when there are none)")
    tables.add_argument("--seeds", nargs="+", type=int, help="seeds expected (default: every seed found)")
    tables.add_argument("--shots", nargs="+", type=int, help="only these shot counts")
    tables.add_argument("--format", choices=FORMATS, default="terminal", help="how to print the table")
    tables.add_argument("--save", nargs="+", default=[], metavar="FILE",
                        help="also write .md, .csv, .txt or .png files")
    return p


def summarize_directory(directory: str, keyword: str, end_signal: str, ci95: bool) -> Optional[float]:
    """CoOp's per-directory report; returns the mean (None if nothing was found)."""
    print(f"Parsing files in {directory}")
    found, missing = seed_results(directory, keyword, end_signal)
    for result in found:
        for path in result.incomplete:
            print(f"Skipping {path}: no result after '{end_signal}' (a newer, unfinished run)")
        print(f"file: {result.path}. {keyword}: {result.value:.2f}%. ")
    for run_dir in missing:
        print(f"Missing: no log in {run_dir} has a result after '{end_signal}'")
    if not found:
        print(f"Nothing found in {directory}")
        return None
    values = np.array([r.value for r in found])
    spread = np.std(values)
    if ci95:
        spread = 1.96 * spread / np.sqrt(len(values))
    print("===")
    print(f"Summary of directory: {directory}")
    print(f"* {keyword}: {np.mean(values):.2f}% +- {spread:.2f}%")
    print("===")
    return float(np.mean(values))


def parse_logs(args) -> int:
    end_signal = START_OF_RESULT if args.test_log else END_OF_TRAINING
    if not os.path.isdir(args.directory):
        raise UserError(f"{args.directory} is not a folder: pass the folder that holds one folder per seed "
                        f"(with --multi-exp: one folder per experiment; with --table: the output root)")
    if not args.multi_exp:
        return 0 if summarize_directory(args.directory, args.keyword, end_signal, args.ci95) is not None else 1
    means, missing = [], []
    for name in sorted(os.listdir(args.directory)):
        experiment = os.path.join(args.directory, name)
        if not name.startswith(".") and os.path.isdir(experiment):
            mean = summarize_directory(experiment, args.keyword, end_signal, args.ci95)
            if mean is None:
                missing.append(name)
            else:
                means.append(mean)
    if not means:
        return 1
    print("Average performance" + (f" (PARTIAL: {len(means)} of {len(means) + len(missing)} experiments)"
                                   if missing else ""))
    print(f"* {args.keyword}: {np.mean(means):.2f}%")
    if missing:
        print(f"Missing: no result in {', '.join(missing)}; the average above leaves them out")
        return _partial(args, f"{len(missing)} experiment(s) without a result")
    return 0


def _partial(args, what: str) -> int:
    """The exit status of an incomplete aggregate: 1 unless partial results are accepted."""
    if args.accept_partial:
        return 0
    print(f"parse_test_res.py: partial results ({what}); exit status 1. Pass --accept-partial to accept them.",
          file=sys.stderr)
    return 1


def print_table(args) -> int:
    if args.paper and args.table not in TABLES:
        raise UserError(f"--paper: the paper has tables for {', '.join(TABLES)} only (no {args.table} table)")
    if args.paper and (args.keyword != "accuracy" or args.compare):
        raise UserError("--paper compares accuracy (what the paper reports), alone: drop --keyword and --compare")
    if args.x and (args.paper or args.compare):
        raise UserError("--x plots the variants against a config value, alone: drop --paper and --compare")
    if args.source and args.table != "xd":
        raise UserError(f"--source is for --table xd (the dataset the cross-dataset models were trained on), "
                        f"not --table {args.table}: drop it")
    summary = protocol_summary(
        args.directory, args.table, trainers=args.trainers, cfg=args.cfg, variants=args.variants,
        metric=args.keyword, datasets=args.datasets, seeds=args.seeds, shots=args.shots, ci95=args.ci95,
        **({"source": args.source} if args.source else {}),
    )
    if args.x:
        return print_versus(args, summary)
    print(render(summary, args.format, args.compare, paper=args.paper), end="")
    if args.format == "csv":  # keep the CSV on stdout clean; the gaps still get said
        for note in paper_comparison(summary).notes if args.paper else ():
            print(note, file=sys.stderr)
        for note in summary.notes:
            print(f"missing or incomplete: {note}", file=sys.stderr)
    for path in args.save:
        print(f"Table written to {save(summary, path, args.compare, paper=args.paper)}", file=sys.stderr)
    return _partial(args, "see 'Missing or incomplete'") if summary.partial else 0


def print_versus(args, summary) -> int:
    """``--x KEY``: the table against KEY, and its files."""
    result = versus(summary, args.x)
    print(render_versus(result, args.format), end="")
    if args.format == "csv":
        for note in result.notes + summary.notes:
            print(f"missing or incomplete: {note}", file=sys.stderr)
    for path in args.save:
        print(f"Table written to {save_versus(result, path)}", file=sys.stderr)
    return _partial(args, "see 'Missing or incomplete'") if summary.partial else 0


def _os_error(e: OSError) -> str:
    """What to do about a file or folder that cannot be read."""
    where = e.filename or "a file"
    if e.errno == errno.EISDIR:
        return (f"{where} is a folder where a log file belongs: move or rename it (parse_test_res.py reads the "
                f"files log.txt and log.txt-<date> of each seed folder)")
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"Cannot read {where}: permission denied; fix its permissions"
    if e.errno == errno.ENOENT:
        return f"{where} not found: pass an existing folder"
    return f"Cannot read {where}: {e.strerror or e}"


def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = print_table(args) if args.table else parse_logs(args)
    except (UserError, FileNotFoundError, ValueError, RuntimeError, OSError) as e:
        if os.environ.get("TEXTREFINER_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        message = _os_error(e) if isinstance(e, OSError) and e.errno is not None else str(e)
        sys.stdout.flush()
        raise SystemExit(f"Error: {' '.join(message.split())}") from None  # Python prints it to stderr, status 1
    raise SystemExit(code)


if __name__ == "__main__":
    main()
