"""The artifacts' files (``<out>/<artifact>.md``, ``.csv``, ``.png``) and ``<out>/report.md``: every
artifact beside the paper's numbers, each claim's verdict, and each run's health.

Tables are read from the runs (``textrefiner.results``), so they are the same numbers
``parse_test_res.py`` gives for the same folders. Ours beside the paper's: a difference is taken
only over the same datasets (real data: ``results.paper``); on the testbed the paper's numbers are
shown beside ours as a reference, never subtracted (other datasets, another CLIP).
"""
import os
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence, Tuple

from tabulate import tabulate

from ..atomic import write_text
from ..results.collect import collect_runs
from ..results.paper import ablation_values, paper_values
from ..results.render import render, save, save_versus
from ..results.tables import AVERAGE, Summary, protocol_summary
from ..results.versus import versus
from . import plan
from .claims import MEANINGS, Claim, Evidence
from .health import Flag, outlier_flags, teacher_agreement, training_flags

#: artifact -> (title, the paper's setting) for headings
TITLES = {
    "table1": ("Table 1: base-to-novel generalisation", "11 datasets, 16 shots, 3 seeds, ViT-B/16"),
    "table2": ("Table 2: domain generalisation", "ImageNet -> -V2, -Sketch, -A, -R, ViT-B/16"),
    "fig3": ("Figure 3: inference images/s", "ImageNet (1,000 classes), one A800 GPU"),
    "table3": ("Table 3: components", "ImageNet, CoOp host"),
    "table4": ("Table 4: loss weights lambda1, lambda2", "ImageNet, CoOp host"),
    "fig4": ("Figure 4: cache size M", "ImageNet, CoOp host"),
    "fig5": ("Figure 5: fusion alpha", "ImageNet, CoOp host"),
}
#: the config key each figure-like ablation varies (x axis)
AXES = {"fig4": "TRAINER.TEXTREFINER.CACHE_SIZE", "fig5": "TRAINER.TEXTREFINER.ALPHA"}
TABLE4_AXES = (("lambda1", "TRAINER.TEXTREFINER.LAMBDA_SEM", "sem_"), ("lambda2", "TRAINER.TEXTREFINER.LAMBDA_REG", "reg_"))


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _trainers(groups) -> List[str]:
    return [t for _, trainers in groups for t in trainers]


def protocol_table(world: plan.World, artifact: str) -> Optional[Summary]:
    """Table 1 or 2 from the runs (untagged runs of its trainers); None when nothing finished yet."""
    try:
        if artifact == "table1":
            trainers = _trainers(plan.table_rows(world, plan.TABLE1_GROUPS))
            return protocol_summary(world.runs, "base2new", trainers=trainers, variants=[""],
                                    datasets=list(plan.table1_datasets(world)), seeds=world.seeds)
        source, targets = plan.table2_source_targets(world)
        trainers = _trainers(plan.table_rows(world, plan.TABLE2_GROUPS))
        return protocol_summary(world.runs, "xd", trainers=trainers, variants=[""],
                                datasets=list(targets), seeds=world.seeds, source=source)
    except FileNotFoundError:
        return None


def ablation_table(world: plan.World, artifact: str, tags: Optional[Sequence[str]] = None) -> Optional[Summary]:
    group = plan.ablation_groups(world, artifact)[0].settings
    try:
        return protocol_summary(world.runs, "base2new", trainers=group.trainers, cfg=group.cfg,
                                variants=list(tags or group.variants), datasets=group.datasets, seeds=world.seeds)
    except FileNotFoundError:
        return None


def beside_paper(summary: Summary, world: plan.World) -> List[str]:
    """Markdown lines: ours beside the paper's per method (Table 1/2)."""
    if world.testbed:
        paper = paper_values(summary.protocol)
        if summary.protocol == "base2new":
            row, paper_row, theirs_label = AVERAGE, AVERAGE, "paper, 11-dataset Average"
        else:
            row = next(r for r in summary.rows if r.startswith(AVERAGE))
            paper_row, theirs_label = f"{AVERAGE} (domain generalisation)", "paper, mean of its 4 targets"
        headers = ["Method"] + [f"{c} (ours, testbed {row})" for c in summary.columns] + \
                  [f"{c} ({theirs_label})" for c in summary.columns]
        rows = []
        for method in summary.methods:
            ours = [summary.get(method, row, c) for c in summary.columns]
            theirs = [paper.get((method, paper_row, c)) for c in summary.columns]
            rows.append([method] + [_fmt(s.mean if s else None) + (" (partial)" if s and s.partial else "")
                                    for s in ours] + [_fmt(v) for v in theirs])
        return ["Ours beside the paper's (no difference is taken: the testbed's datasets and CLIP are not the "
                "paper's; a method the paper did not run shows -):", "",
                tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
    return [render(summary, "markdown", paper=True)]


def ablation_beside_paper(summary: Summary, artifact: str) -> List[str]:
    if artifact not in ("table3", "table4"):
        return [f"The paper gives no values for {TITLES[artifact][0]} in its text, only the trend its claim states "
                "(see the claims below)."]
    paper = ablation_values(artifact)
    variants = {tag: m for m, (_, _, tag) in summary.origins.items() if tag}
    headers = ["Variant", "paper's row"] + [f"{c} ours ({AVERAGE})" for c in summary.columns] + \
              [f"{c} paper (ImageNet)" for c in summary.columns]
    rows = []
    for tag, method in variants.items():
        label = paper.get((tag, "HM"), ("-",))[0]
        ours = [summary.get(method, AVERAGE, c) for c in summary.columns]
        theirs = [paper.get((tag, c), (None, None))[1] for c in summary.columns]
        rows.append([tag, label] + [_fmt(s.mean if s else None) for s in ours] + [_fmt(v) for v in theirs])
    return ["Ours beside the paper's (its ImageNet numbers; no difference taken):", "",
            tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]


def _flags_lines(flags: Sequence[Flag]) -> List[str]:
    if not flags:
        return ["Run health: nothing flagged (no loss that rose or went non-finite, no model-best at epoch 1, no "
                "seed more than 10 points from the others)."]
    return ["Run health: flagged runs (kept in the means above, listed here so they are not averaged in "
            "silently):"] + [f"- {f.text()}" for f in flags]


def run_flags(world: plan.World, summary: Summary) -> List[Flag]:
    """Training-run flags of the methods in ``summary`` and its outlier seeds."""
    runs = [r for r in collect_runs(world.runs) if r.key.kind in ("base2new_train", "xd_train", "few_shot")
            and r.key.seed in world.seeds]
    trainers = {origin[0] for origin in summary.origins.values()}
    tags = {origin[2] for origin in summary.origins.values()}
    runs = [r for r in runs if r.key.trainer in trainers and r.key.tag in tags]
    return training_flags(runs, {}) + outlier_flags(summary)


def _no_runs(title: str, world: plan.World, md: str) -> Tuple[List[str], None, list]:
    """An artifact none of whose runs finished: its file says so (the report's claims say "no data")."""
    write_text(f"# {title}\n\nNo finished runs under {world.runs}.\n", md, encoding="utf-8")
    return [md], None, []


def write_protocol_artifact(world: plan.World, artifact: str, out: str) -> Tuple[List[str], Optional[Summary], list]:
    summary = protocol_table(world, artifact)
    title, _ = TITLES[artifact]
    md = osp.join(out, f"{artifact}.md")
    if summary is None:
        return _no_runs(title, world, md)
    flags = run_flags(world, summary)
    lines = [f"# {title} ({world_text(world)})", "", render(summary, "markdown"), *beside_paper(summary, world)]
    if artifact == "table1":
        agreement = teacher_agreement(r for r in collect_runs(world.runs) if r.key.kind == "base2new_train")
        if agreement:
            lines += ["PromptKD students' agreement with their teacher (last epoch, training batches): " + "; ".join(
                f"{t} {d} seed {s}: {v:.1f}%" for (t, d, s), v in sorted(agreement.items())), ""]
    lines += _flags_lines(flags)
    write_text("\n".join(lines) + "\n", md, encoding="utf-8")
    csv_path = save(summary, osp.join(out, f"{artifact}.csv"))
    return [md, csv_path], summary, flags


def write_ablation_artifact(world: plan.World, artifact: str, out: str) -> Tuple[List[str], Optional[Summary], list]:
    summary = ablation_table(world, artifact)
    title, _ = TITLES[artifact]
    md = osp.join(out, f"{artifact}.md")
    if summary is None:
        return _no_runs(title, world, md)
    flags = run_flags(world, summary)
    lines = [f"# {title} ({world_text(world)})", "", render(summary, "markdown"), *ablation_beside_paper(summary,
                                                                                                       artifact)]
    paths = [md, save(summary, osp.join(out, f"{artifact}.csv"))]
    if artifact == "table3":
        paths.append(save(summary, osp.join(out, f"{artifact}.png")))
    elif artifact == "table4":
        for name, key, prefix in TABLE4_AXES:
            tags = [t for t in plan.ablation_variants(artifact) if t.startswith(prefix) or t == "release"]
            part = ablation_table(world, artifact, tags)
            if part is not None:
                paths.append(save_versus(versus(part, key), osp.join(out, f"{artifact}-{name}.png")))
    else:
        result = versus(summary, AXES[artifact])
        lines += ["", save_versus_text(result)]
        paths.append(save_versus(result, osp.join(out, f"{artifact}.png")))
    lines += ["", *_flags_lines(flags)]
    write_text("\n".join(lines) + "\n", md, encoding="utf-8")
    return paths, summary, flags


def save_versus_text(result) -> str:
    from ..results.render import render_versus

    return render_versus(result, "markdown")


def world_text(world: plan.World) -> str:
    what = "offline testbed (testbed CLIP, generated datasets)" if world.testbed else f"real data under {world.data}"
    quick = ", --quick (1 epoch: a smoke run, no verdicts)" if world.quick else ""
    return f"{what}, seeds {', '.join(map(str, world.seeds))}{quick}"


def write_report(out: str, world: plan.World, artifacts: Sequence[str], files: Dict[str, List[str]],
                 claims: Sequence[Claim], flags: Dict[str, list], seconds: float, command: str) -> str:
    lines = [
        "# The TextRefiner paper, regenerated",
        "",
        f"World: {world_text(world)}. Runs: `{world.runs}`. Made by `{command}` in {seconds / 60:.1f} min "
        f"(finished runs skipped), {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        "## Claims",
        "",
        f"Each verdict is a paired per-seed difference (same seed, two methods or variants) with its 95% "
        f"interval (Student's t), over at least {plan.VERDICT_SEEDS} seeds; this run has {len(world.seeds)}.",
        "",
    ]
    rows = [[c.number, c.text, c.paper, c.verdict] for c in claims if c.artifact in artifacts]
    lines += [tabulate(rows, headers=["#", "Claim", "The paper", "This run"], tablefmt="github",
                       disable_numparse=True), ""]
    lines += ["Verdicts: " + "; ".join(f"**{k}**: {v}" for k, v in MEANINGS.items()) + ".", ""]
    for c in claims:
        if c.artifact in artifacts:
            lines += [f"### Claim {c.number}: {c.verdict}", "", c.text + ".", ""] + [f"- {d}" for d in c.details] + [""]
    lines += ["## Artifacts", ""]
    for artifact in artifacts:
        title, setting = TITLES[artifact]
        names = ", ".join(f"[{osp.basename(p)}]({osp.basename(p)})" for p in files.get(artifact, []))
        lines += [f"- {title} (paper: {setting}): {names}"]
        if flags.get(artifact):
            lines += [f"  - {len(flags[artifact])} flagged run(s): see {artifact}.md"]
    lines.append("")
    for artifact in artifacts:
        md = osp.join(out, f"{artifact}.md")
        if osp.isfile(md):
            with open(md, encoding="utf-8") as f:
                body = f.read().replace("\n# ", "\n### ").replace("# ", "## ", 1)
            lines += [body, ""]
    path = osp.join(out, "report.md")
    write_text("\n".join(lines) + "\n", path, encoding="utf-8")
    return path


def evidence(world: plan.World, summaries: Dict[str, Summary], fig3_rows) -> Evidence:
    return Evidence(world.name, plan.VERDICT_SEEDS, summaries.get("table1"), summaries.get("table2"),
                    {k: v for k, v in summaries.items() if k in plan.ABLATIONS}, fig3_rows)


def ensure_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path
