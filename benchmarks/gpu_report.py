"""The GPU check's results as Markdown: environment, the trainer x precision table, the speed benchmark."""
from benchmarks import report


def markdown(results: dict) -> str:
    parts = [_header(results), _trainer_table(results), *map(_speed, results["speed"])]
    return "\n\n".join(p for p in parts if p)


def _header(results: dict) -> str:
    m, s = results["meta"], results["settings"]
    gpu = f", {m['gpu_memory_gib']} GiB, cuDNN {m['cudnn']}; host CPU {m['cpu']}" if "gpu_memory_gib" in m else ""
    lines = [
        f"# GPU check ({m['date']}, mode {m['mode']})",
        "",
        f"{m['device']}{gpu}; torch {m['torch']}, CUDA {m['cuda']}, Python {m['python']}; "
        f"commit {m['commit'] or 'n/a'}{' (with uncommitted changes)' if m['dirty'] else ''}.",
        f"Trainers: {s['steps']} training steps at batch {s['batch']} on Synthetic (224 px), student "
        f"{s['student']}, teacher {s['teacher']}, seed {s['seed']}; then save, a fresh build, load, and the "
        f"trainer's own test loop ({s['eval_images']} test images, decoded once for all rows). "
        "Warm-up is off so that the steps use the configs' lr.",
        _criterion(results),
        f"Elapsed {results['elapsed_s']:.0f} s of a {results['budget_s']:.0f} s budget "
        f"(trainer checks {results['trainer_checks_s']:.0f} s).",
    ]
    if results["quick_changes"]:
        lines += ["", "**Quick mode, not a GPU run.** Shrunk: " + "; ".join(results["quick_changes"]) + "."]
    failed = results["failed"]
    lines += ["", f"**Failed: {', '.join(failed)}.**" if failed else "**All checks passed.**"]
    return "\n".join(lines)


def _criterion(results: dict) -> str:
    from benchmarks import rounding

    tolerance = ("tolerance vs fp32 (max |logits - fp32 logits| relative to the spread, max - min, of fp32's "
                 "logits): " + ", ".join(f"{p} {t:g}" for p, t in results["tolerances"].items() if p != "fp32"))
    bounds = (f"rounding bounds (benchmarks/rounding.py): forward rounding at the row's own weights at most "
              f"{rounding.FORWARD_UNITS:g} u in cosine units (u = 2^-8 bf16, 2^-11 fp16), and the trajectory "
              f"(the row's weights against fp32's, both evaluated in fp32) at most "
              f"{rounding.TRAJECTORY_RATIO:g} of how far fp32's own steps moved the logits")
    if results.get("criterion") == "rounding bounds":
        return f"Criterion vs fp32: {bounds}; the {tolerance} is reported, not enforced (it depends on the CPU)."
    return f"Criterion vs fp32: {tolerance}; the {bounds} are reported, not enforced."


def _yes(value) -> str:
    return "n/a" if value is None else ("yes" if value else "**NO**")


def _num(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _trainer_table(results: dict) -> str:
    batch = results["settings"]["throughput_batch"]
    lines = [
        "## Every trainer in every precision",
        "",
        "| trainer | PREC (ran) | losses finite | prompts moved | cache moved | reload equal | "
        "max diff vs fp32: abs, cosine, relative (tol) | forward u (bound), trajectory / fp32 movement (bound) | "
        "predictions as fp32 | test acc % | step s | peak step MiB | "
        f"images/s at batch {batch} |",
        "|---|---|---|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for r in results["trainers"]:
        if r.get("skipped") or r.get("error"):
            # one table cell: the first line of the error, no column separators (the JSON has the traceback)
            why = r.get("skipped") or "error: " + r["error"].splitlines()[0].replace("|", "/")[:200]
            lines.append(f"| {r['trainer']} | {r['prec']} | {why} |" + " |" * 10)
            continue
        ran = r["prec"] + ("" if r["prec_ran"] == r["prec"] else f" ({r['prec_ran']})")
        vs = r.get("vs_fp32")
        cos = "reference" if vs is None else (
            f"{vs['max_abs_diff']:.1e}, {vs['max_cosine_diff']:.1e}, {vs['relative_diff']:.1e} ({vs['tolerance']:g})"
            + ("" if vs["within_tolerance"] else " **NO**"))
        split = "reference" if vs is None else (
            f"{vs['forward_units']:.2f} ({vs['forward_bound_units']:g}), {vs['trajectory_ratio']:.3f} "
            f"({vs['trajectory_bound_ratio']:g})"
            + ("" if vs["within_bounds"] else " **NO**"))
        agree = "" if vs is None else f"{100 * vs['prediction_agreement']:.0f}%"
        train = r["train"]
        lines.append(
            f"| {r['trainer']} | {ran} | {_yes(r.get('losses_finite'))} | {_yes(r.get('prompts_moved'))} | "
            f"{_yes(r.get('cache_moved'))} | {_yes(r.get('reload_equal'))} | {cos} | {split} | {agree} | "
            f"{r['accuracy']:.1f} | {_num(r.get('step_s'), '.3f')} | {_num(r.get('peak_step_mb'), ',.0f')} | "
            f"{r['images_per_s']:,.1f} |"
        )
        if not train:
            notes.append(f"{r['trainer']} is evaluation only: nothing is trained, saved or loaded.")
        if r.get("unchanged_modules"):
            notes.append(f"{r['trainer']} {r['prec']}: unchanged after the steps: {', '.join(r['unchanged_modules'])}")
        if r.get("reload_equal") is False:
            notes.append(f"{r['trainer']} {r['prec']}: reloaded logits differ by up to {r['reload_max_abs_diff']:.2e}")
        if "grad_scale" in r:
            notes.append(f"{r['trainer']} {r['prec']}: GradScaler scale after the steps {r['grad_scale']:g} "
                         "(each halving from 65536 is a skipped step)")
    notes = list(dict.fromkeys(notes))
    lines += ["", "cache moved: n/a where the trainer has no cache. test acc: of a random-init CLIP, so about "
              "chance (10 classes). step s: median of the steps after the first (the last step runs under the "
              "peak-memory meter on CUDA)."] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def _speed(run: dict) -> str:
    if run.get("skipped"):
        return f"## Speed benchmark {run.get('prec', '')}".rstrip() + f"\n\nSkipped ({run['skipped']})."
    if run.get("error"):
        return (f"## Speed benchmark {run['prec']}\n\n`speed.py {' '.join(run['argv'])}`: **{run['error']}**\n\n"
                f"```\n{run.get('log_tail', '')[-1500:]}\n```")
    from benchmarks.speed import parse_args  # report.markdown reads speed.py's arguments

    args = parse_args(run["argv"])
    body = report.markdown(run["results"], args).replace("\n## ", "\n### ")
    heading, rest = body.split("\n", 1)
    command = f"`python benchmarks/speed.py {' '.join(run['argv'][:-2])}`"
    return heading.replace("# Speed and memory", f"## Speed benchmark {run['prec']}", 1) + f"\n\n{command}\n" + rest
