"""Where a paper (or sweep) run's time went, read from its console output.

    python -m textrefiner.paper table1 table2 fig3 --seeds 1 2 3 | tee paper.log
    python benchmarks/paper_times.py paper.log --markdown times.md

Each job the sweep ran prints ``[i/N] <protocol> <dataset> <shots>-shot <method> seed <s>: ok in <t> s``;
this sums those seconds per protocol and method (jobs skipped as already done, or failed, are not
counted). The seconds are each job's own wall time: with ``--jobs 2`` two run at once, so the sum is
about twice the time the jobs took on the clock. Teachers and Figure 3 print no seconds and are not in it.
"""
import argparse
import re
import sys
from collections import defaultdict
from typing import Dict, Iterable, List, Tuple

_OK = re.compile(r"^\[\d+/\d+\] (?P<protocol>\S+) (?P<dataset>\S+) (?P<shots>\d+)-shot (?P<method>\S+) "
                 r"seed (?P<seed>\d+): ok in (?P<seconds>\d+) s\b")


def job_seconds(lines: Iterable[str]) -> Dict[Tuple[str, str], List[int]]:
    """(protocol, method) -> the seconds of each of its jobs that ran, in the order they finished."""
    times: Dict[Tuple[str, str], List[int]] = defaultdict(list)
    for line in lines:
        m = _OK.match(line.strip())
        if m:
            times[(m["protocol"], m["method"])].append(int(m["seconds"]))
    return dict(times)


def markdown(times: Dict[Tuple[str, str], List[int]], source: str) -> str:
    total = sum(sum(v) for v in times.values())
    if not total:
        raise ValueError(f"{source}: no finished job ('[i/N] ... ok in T s') in it")
    rows = [f"# Job seconds of `{source}`", "",
            f"{sum(len(v) for v in times.values())} jobs ran, {total} s in all (each job's own wall time; jobs that "
            "ran side by side each count their own).", "",
            "| protocol | method | jobs | s per job (min-max) | s in all | share |",
            "|---|---|---:|---|---:|---:|"]
    for (protocol, method), secs in sorted(times.items(), key=lambda kv: -sum(kv[1])):
        spread = f"{min(secs)}-{max(secs)}" if min(secs) != max(secs) else f"{secs[0]}"
        rows.append(f"| {protocol} | {method} | {len(secs)} | {spread} | {sum(secs)} | {sum(secs) / total:.0%} |")
    return "\n".join(rows) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("log", help="the paper command's (or a sweep's) console output")
    p.add_argument("--markdown", help="write the table here too")
    args = p.parse_args(argv)
    with open(args.log, errors="replace") as f:
        times = job_seconds(f)
    try:
        text = markdown(times, args.log.split("/")[-1])
    except ValueError as e:
        raise SystemExit(f"Error: {e}") from None
    sys.stdout.write(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
