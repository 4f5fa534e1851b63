"""The benchmark's figures as ratios against the targets, and as Markdown tables."""
from typing import List

from benchmarks.workloads import COOP, MAPLE, MAPLE_REFINER, REFINER, RELEASE, TOTAL, Variant


def chunked(args) -> Variant:
    return Variant(f"CoOp_TextRefiner, TEXT_CHUNK_SIZE {args.chunk}", "CoOp_TextRefiner", chunk_size=args.chunk)


def find(rows: List[dict], variant: Variant, n_classes: int, key: str):
    for row in rows:
        if row["variant"] == variant.label and row["classes"] == n_classes and not row.get("auxiliary"):
            return row.get(key), bool(row.get("extrapolated"))
    return None, False


def ratios(results: dict, args) -> List[dict]:
    """Every comparison as a ratio; targets are those of the default run (ViT-B/16, batch 32, 50/1000 classes)."""
    out = []
    small, large = min(args.classes), max(args.classes)
    train, evaluation = results["train"], results["eval"]

    def add(name, table, key, num, den, c, target=None):
        (a, ext_a), (b, ext_b) = find(table, num, c, key), find(table, den, c, key)
        if a is None or b is None:
            return
        value = a / b if b else None  # a tiny --quick step can stay below the memory meter's resolution
        met = None if target is None or value is None else (
            value >= target[1] if target[0] == ">=" else value <= target[1])
        out.append(dict(name=f"{name}, {c} classes", value=value, target=target and f"{target[0]} {target[1]}",
                        met=met, extrapolated=ext_a or ext_b))

    for c in args.classes:
        add("evaluation images/s ratio CoOp_TextRefiner / CoOp", evaluation, "images_per_s", REFINER, COOP, c,
            (">=", 0.99))
        add("training step time ratio CoOp_TextRefiner / CoOp", train, "step_s", REFINER, COOP, c, ("<=", 1.15))
        add("training step time ratio ours / release-style (CoOp_TextRefiner)", train, "step_s", REFINER, RELEASE,
            c, ("<=", 0.7) if c == small else ("<=", 0.35) if c == large else None)
        add("evaluation images/s ratio ours / release-style (CoOp_TextRefiner)", evaluation, "images_per_s",
            REFINER, RELEASE, c, (">=", 2.5) if c == large and c != small else None)
        add("peak training memory ratio ours / release-style (CoOp_TextRefiner)", train, "peak_mb", REFINER,
            RELEASE, c, ("<=", 0.5) if c == large and c != small else None)
        add("evaluation images/s ratio MaPLe_TextRefiner / MaPLe", evaluation, "images_per_s", MAPLE_REFINER, MAPLE,
            c, (">=", 0.99))
        add("training step time ratio MaPLe_TextRefiner / MaPLe", train, "step_s", MAPLE_REFINER, MAPLE, c,
            ("<=", 1.15))
        add("peak training memory ratio MaPLe_TextRefiner / MaPLe", train, "peak_mb", MAPLE_REFINER, MAPLE, c)
        if args.chunk and c > args.chunk:
            add(f"peak training memory ratio TEXT_CHUNK_SIZE {args.chunk} / unchunked", train, "peak_mb",
                chunked(args), REFINER, c)
            add(f"training step time ratio TEXT_CHUNK_SIZE {args.chunk} / unchunked", train, "step_s",
                chunked(args), REFINER, c)
    return out


def fmt(value, digits=2, extrapolated=False) -> str:
    if value is None:
        return "n/a"
    return ("~" if extrapolated else "") + f"{value:,.{digits}f}"


def markdown(results: dict, args) -> str:
    sections = (_header, _training_table, _evaluation_table, _ratio_table, _profile_table)
    return "\n\n".join(section(results, args) for section in sections)


def _header(results: dict, args) -> str:
    m = results["meta"]
    positions = ", ".join(f"{n} at {c} classes" for c, n in m["text_positions"].items())
    cuda = f" (CUDA {m['cuda']})" if m.get("cuda") and "CPU" not in m["device"] else ""
    ran = m.get("prec_ran", args.prec)
    prec = args.prec if ran == args.prec else f"{args.prec} (ran as {ran})"
    return "\n".join([
        f"# Speed and memory ({m['date']})",
        "",
        f"{m['device']} ({m['threads']} threads), torch {m['torch']}{cuda}, {m['backbone']} random init, {prec}, "
        f"batch {args.batch}. Text positions our path encodes (of 77): {positions}. "
        f"Load average (1, 5, 15 min): {m['loadavg_start']} at start, {m['loadavg_end']} at end.",
        f"Times: median of up to {args.repeats} interleaved rounds after {args.warmup} warm-up round(s). "
        f"Peak memory: {m['memory_method']}.",
    ])


def _training_table(results: dict, args) -> str:
    lines = ["## Training step", "", "| variant | classes | step time (s) | peak memory (MiB) |",
             "|---|---:|---:|---:|"]
    for r in sorted(results["train"], key=lambda r: (r["classes"], r.get("auxiliary", False))):
        ext = bool(r.get("extrapolated"))
        note = f" (extrapolated {r['extrapolated']})" if ext else " (to extrapolate from)" if r.get("auxiliary") else ""
        lines.append(f"| {r['variant']}{note} | {r['classes']} | {fmt(r.get('step_s'), 2, ext)} | "
                     f"{fmt(r.get('peak_mb'), 0, ext)} |")
    if any(r.get("extrapolated") for r in results["train"]):
        lines += ["", f"`~`: release-style training above {args.release_max_classes} classes is extrapolated "
                  "linearly in the number of classes from two measured points (its text side runs every class "
                  "through all 77 positions, so it is linear in the classes; at 1000 classes it needs more "
                  "memory than a 24 GB machine has)."]
    return "\n".join(lines)


def _evaluation_table(results: dict, args) -> str:
    lines = [
        f"## Evaluation (images/s over a test set of {args.eval_images} images)",
        "",
        "| variant | classes | per batch (s) | once per evaluation (s) | images/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in sorted(results["eval"], key=lambda r: r["classes"]):
        lines.append(f"| {r['variant']} | {r['classes']} | {fmt(r['batch_s'], 3)} | {fmt(r['once_s'], 3)} | "
                     f"{fmt(r['images_per_s'], 2)} |")
    return "\n".join(lines)


def _ratio_table(results: dict, args) -> str:
    lines = ["## Ratios", "", "| comparison | ratio | target | met |", "|---|---:|---:|---|"]
    for r in results["ratios"]:
        met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        lines.append(f"| {r['name']} | {fmt(r['value'], 3, r['extrapolated'])} | {r['target'] or ''} | {met} |")
    return "\n".join(lines)


def _profile_table(results: dict, args) -> str:
    counts = list(results["profile"])
    lines = [
        "## Where a CoOp_TextRefiner training step spends its time",
        "",
        "| phase | " + " | ".join(f"{c} classes (s) | share" for c in counts) + " |",
        "|---|" + "---:|---:|" * len(counts),
    ]
    for phase in results["profile"][counts[0]]:
        cells = []
        for c in counts:
            p = results["profile"][c]
            cells += [fmt(p[phase], 3), f"{100 * p[phase] / p[TOTAL]:.0f}%"]
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    loading = fmt(results["data_loading_s"], 3)
    lines.append(f"| data loading, not in the step (JPEG decode + training transforms, {args.batch} images, "
                 "one worker) | " + " | ".join([loading, ""] * len(counts)) + " |")
    return "\n".join(lines)
