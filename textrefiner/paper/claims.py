"""The claims the paper makes in words, each checked against this run's tables by one rule
(``stats``: a paired per-seed difference whose 95% interval excludes zero, over enough seeds).

A claim names the artifact it rests on; when that artifact was not made, or lacks the methods or
variants the claim compares, its verdict is "no data" and says what is missing. Nothing here is
tuned to a result: each check is fixed before the numbers are read (docs/paper.md lists them).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from ..results.tables import AVERAGE, Summary
from ..results.versus import per_seed
from .stats import CONTRADICTED, NO_DATA, NOISE, SHOWN, TOO_FEW, Paired, combine, paired, verdict

#: the datasets a "fine-grained" claim is about, per world (the testbed's fine-grained dataset is
#: its patterns: classes that differ only in a thin surface pattern)
FINE_GRAINED = {"testbed": ("testbed_patterns",),
                "real": ("stanford_cars", "oxford_flowers", "fgvc_aircraft", "dtd", "eurosat")}
#: Figure 3's claim: TextRefiner "only slightly reduces" images/s; we call "slightly" at most 20%
SPEED_KEPT = 0.8


@dataclass
class Claim:
    number: str
    artifact: str
    text: str
    paper: str
    verdict: str = NO_DATA
    details: List[str] = field(default_factory=list)


@dataclass
class Evidence:
    """What the claims read: the artifacts' summaries (None when not made) and Figure 3's rows."""

    world: str
    min_seeds: int
    table1: Optional[Summary] = None
    table2: Optional[Summary] = None
    ablations: Dict[str, Summary] = field(default_factory=dict)
    fig3: Optional[list] = None


def _check(claim: Claim, label: str, diff: Optional[Paired], min_seeds: int, direction: int = 1) -> str:
    outcome = verdict(diff, min_seeds, direction)
    shown = diff.text() if diff is not None else "no shared seeds"
    claim.details.append(f"{label}: {shown}: {outcome}")
    return outcome


def _datasets(summary: Summary) -> List[str]:
    return [r for r in summary.rows if r not in summary.averages]


def _has(summary: Optional[Summary], *methods: str) -> bool:
    return summary is not None and all(m in summary.methods for m in methods)


def _missing(claim: Claim, what: str) -> Claim:
    claim.verdict = NO_DATA
    claim.details.append(f"not checked: {what}")
    return claim


def tr_improves_hosts(ev: Evidence, pairs: Sequence[tuple]) -> Claim:
    claim = Claim("1", "table1", "TextRefiner consistently improves the hosts it is added to (HM, every dataset)",
                  "Table 1: every host w/TR above its host on the 11-dataset average")
    s = ev.table1
    present = [(a, b) for a, b in pairs if _has(s, a, b)]
    if not present:
        return _missing(claim, "Table 1 has no host with its TextRefiner variant")
    claim.verdict = combine(_check(claim, f"{b} - {a}, HM, {d}", paired(per_seed(s, b, d, "HM"),
                                                                         per_seed(s, a, d, "HM")), ev.min_seeds)
                            for a, b in present for d in _datasets(s))
    return claim


def coop_novel_and_cocoop(ev: Evidence) -> Claim:
    claim = Claim("2", "table1", "TextRefiner raises CoOp's novel accuracy, and CoOp w/TR beats CoCoOp in HM",
                  "Table 1 average: CoOp novel 63.22 -> 74.32; HM CoOp w/TR 76.94 vs CoCoOp 75.83")
    s = ev.table1
    if not _has(s, "CoOp", "CoOp_TextRefiner"):
        return _missing(claim, "Table 1 lacks CoOp or CoOp_TextRefiner")
    outcomes = [_check(claim, f"CoOp_TextRefiner - CoOp, Novel, {d}",
                       paired(per_seed(s, "CoOp_TextRefiner", d, "Novel"), per_seed(s, "CoOp", d, "Novel")),
                       ev.min_seeds) for d in _datasets(s)]
    if _has(s, "CoCoOp"):
        outcomes += [_check(claim, f"CoOp_TextRefiner - CoCoOp, HM, {d}",
                            paired(per_seed(s, "CoOp_TextRefiner", d, "HM"), per_seed(s, "CoCoOp", d, "HM")),
                            ev.min_seeds) for d in _datasets(s)]
    else:
        claim.details.append("CoCoOp not in this Table 1: its half is not checked")
    claim.verdict = combine(outcomes)
    return claim


def promptkd_best(ev: Evidence) -> Claim:
    claim = Claim("3", "table1", "PromptKD w/TR has the best HM of all methods; its gains over PromptKD are "
                  "largest on fine-grained datasets",
                  "Table 1: PromptKD w/TR HM 82.33 (best); DTD novel +1.86, EuroSAT novel +7.63")
    s = ev.table1
    if not _has(s, "PromptKD", "PromptKD_TextRefiner"):
        return _missing(claim, "Table 1 lacks PromptKD or PromptKD_TextRefiner")
    outcomes = []
    for d in _datasets(s):
        others = [m for m in s.methods if m != "PromptKD_TextRefiner" and s.get(m, d, "HM")]
        if not others:
            continue
        best = max(others, key=lambda m: s.get(m, d, "HM").mean)
        outcomes.append(_check(claim, f"PromptKD_TextRefiner - {best} (the best other), HM, {d}",
                               paired(per_seed(s, "PromptKD_TextRefiner", d, "HM"), per_seed(s, best, d, "HM")),
                               ev.min_seeds))
    fine = [d for d in _datasets(s) if d in FINE_GRAINED[ev.world]]
    coarse = [d for d in _datasets(s) if d not in fine]
    if fine and coarse:
        def gain(datasets):  # per seed: the mean over datasets of PromptKD_TR - PromptKD novel
            parts = [paired_values(s, "PromptKD_TextRefiner", "PromptKD", d, "Novel") for d in datasets]
            seeds = set.intersection(*(set(p) for p in parts))
            return {k: sum(p[k] for p in parts) / len(parts) for k in seeds}
        outcomes.append(_check(claim, f"novel gain on {', '.join(fine)} - novel gain on {', '.join(coarse)}",
                               paired(gain(fine), gain(coarse)), ev.min_seeds))
    else:
        claim.details.append("fine-grained half not checked: needs fine-grained and other datasets both")
    claim.verdict = combine(outcomes)
    return claim


def paired_values(s: Summary, a: str, b: str, row: str, column: str) -> Dict[int, float]:
    """a - b seed by seed (the seeds both have)."""
    x, y = per_seed(s, a, row, column), per_seed(s, b, row, column)
    return {k: x[k] - y[k] for k in set(x) & set(y)}


def dg_all_targets(ev: Evidence, pairs: Sequence[tuple]) -> Claim:
    claim = Claim("4", "table2", "TextRefiner improves over its host on every domain-shifted target",
                  "Table 2: \"in all scenarios\" (though MaPLe w/TR is below MaPLe on -Sketch, 49.08 vs 49.15)")
    s = ev.table2
    present = [(a, b) for a, b in pairs if _has(s, a, b)]
    if not present:
        return _missing(claim, "Table 2 has no host with its TextRefiner variant")
    column = s.columns[0]
    targets = [r for r in _datasets(s) if r != s.rows[0]]  # the first row is the source
    claim.verdict = combine(_check(claim, f"{b} - {a}, {t}", paired(per_seed(s, b, t, column),
                                                                     per_seed(s, a, t, column)), ev.min_seeds)
                            for a, b in present for t in targets)
    return claim


def speed_kept(ev: Evidence, pairs: Sequence[tuple]) -> Claim:
    claim = Claim("5", "fig3", f"TextRefiner costs little inference speed (we call it little when each host keeps "
                  f">= {SPEED_KEPT:.0%} of its images/s)",
                  "Figure 3 / text: TR \"only slightly reduces FPS\"; PromptKD w/TR 12,793 images/s on an A800")
    if not ev.fig3:
        return _missing(claim, "Figure 3 was not measured")
    speed = {r["method"]: r["images_per_s"] for r in ev.fig3}
    outcomes = []
    for a, b in pairs:
        if a in speed and b in speed:
            ratio = speed[b] / speed[a]
            ok = ratio >= SPEED_KEPT
            claim.details.append(f"{b}: {speed[b]:.1f} images/s = {ratio:.2f}x {a}'s {speed[a]:.1f}: "
                                 f"{SHOWN if ok else CONTRADICTED}")
            outcomes.append(SHOWN if ok else CONTRADICTED)
    claim.details.append("one measurement per method (no seeds): timing noise of a few percent applies")
    claim.verdict = combine(outcomes)
    return claim


def _variants(s: Summary) -> Dict[str, str]:
    """run tag (variant) -> method label."""
    return {tag: method for method, (_, _, tag) in s.origins.items() if tag}


def components(ev: Evidence) -> Claim:
    claim = Claim("6", "table3", "Components: aggregation (the cache) alone gives most of the gain; the semantic "
                  "loss adds; the regularisation loss raises base and lowers novel; all three are best (HM)",
                  "Table 3 (ImageNet): HM 71.92 / 73.37 / 73.48 / 73.02 / 73.56")
    s = ev.ablations.get("table3")
    names = ("coop", "aggregation", "plus_semantic", "plus_regularization", "all")
    v = _variants(s) if s else {}
    if not s or any(n not in v for n in names):
        return _missing(claim, "Table 3's variants (" + ", ".join(names) + ") not all run")
    row = AVERAGE

    def diff(a, b, column="HM"):
        return paired(per_seed(s, v[a], row, column), per_seed(s, v[b], row, column))

    outcomes = [_check(claim, "aggregation - coop, HM", diff("aggregation", "coop"), ev.min_seeds)]
    gain, full = diff("aggregation", "coop"), diff("all", "coop")
    if gain and full and full.mean > 0:
        most = gain.mean >= 0.5 * full.mean
        share = ("more than all three together" if gain.mean > full.mean else
                 "most: yes" if most else "most: no")
        claim.details.append(f"aggregation's share of all three's gain: {gain.mean:+.2f} of {full.mean:+.2f} "
                             f"({share})")
        if not most:
            outcomes.append(CONTRADICTED)
    outcomes.append(_check(claim, "plus_semantic - aggregation, HM", diff("plus_semantic", "aggregation"),
                           ev.min_seeds))
    outcomes.append(_check(claim, "plus_regularization - aggregation, Base",
                           diff("plus_regularization", "aggregation", "Base"), ev.min_seeds))
    outcomes.append(_check(claim, "plus_regularization - aggregation, Novel",
                           diff("plus_regularization", "aggregation", "Novel"), ev.min_seeds, direction=-1))
    for other in names[:-1]:
        outcomes.append(_check(claim, f"all - {other}, HM", diff("all", other), ev.min_seeds))
    claim.details.append(f"over the {AVERAGE} row (every dataset of the ablation, per seed)")
    claim.verdict = combine(outcomes)
    return claim


def _x(value: float) -> str:
    """An x value as the paper writes it (1/lambda1 = 60, not 59.9999 from 1/0.0166667)."""
    return f"{value:.4g}"


def rises_then_falls(claim: Claim, s: Summary, points: List[tuple], column: str, min_seeds: int) -> str:
    """``points``: (x, method) sorted by x. Shown when the best mean is at an inner x and beats
    both ends (paired); contradicted when the best is at an end by a shown margin."""
    means = [(x, m, s.get(m, AVERAGE, column).mean) for x, m in points if s.get(m, AVERAGE, column)]
    if len(means) < 3:
        claim.details.append(f"{column}: fewer than 3 values run")
        return NO_DATA
    best = max(range(len(means)), key=lambda i: means[i][2])
    x_best, m_best, _ = means[best]
    claim.details.append(f"{column} (Average row) by value: " + ", ".join(f"{_x(x)}: {v:.2f}" for x, _, v in means)
                         + f"; best at {_x(x_best)}")
    if best in (0, len(means) - 1):
        inner = [i for i in range(1, len(means) - 1)]
        second = max(inner, key=lambda i: means[i][2])
        d = paired(per_seed(s, m_best, AVERAGE, column), per_seed(s, means[second][1], AVERAGE, column))
        outcome = _check(claim, f"{column}: end value {_x(x_best)} - best inner value {_x(means[second][0])}", d,
                         min_seeds)
        return CONTRADICTED if outcome == SHOWN else (outcome if outcome in (TOO_FEW, NO_DATA) else NOISE)
    return combine(_check(claim, f"{column}: {_x(x_best)} - {_x(means[end][0])}",
                          paired(per_seed(s, m_best, AVERAGE, column), per_seed(s, means[end][1], AVERAGE, column)),
                          min_seeds) for end in (0, len(means) - 1))


def _axis(s: Summary, key: str, tags: Sequence[str], invert: bool = False) -> List[tuple]:
    """(x, method) of the variants ``tags`` by their recorded value of ``key`` (1/value with ``invert``)."""
    v = _variants(s)
    points = []
    for tag in tags:
        if tag in v:
            value = float(s.settings[v[tag]][key])
            points.append((1.0 / value if invert and value else value, v[tag]))
    return sorted(points)


def loss_weights(ev: Evidence) -> Claim:
    claim = Claim("7", "table4", "Accuracy rises then falls along lambda1 (1/lambda1 in 20..60) and along "
                  "lambda2 (5..25), each with the other fixed (HM)",
                  "Table 4 (ImageNet): best at 1/lambda1 = 50 and lambda2 = 20 (HM 73.56)")
    s = ev.ablations.get("table4")
    if not s:
        return _missing(claim, "Table 4 was not run")
    tags = list(_variants(s))
    sem = _axis(s, "TRAINER.TEXTREFINER.LAMBDA_SEM", [t for t in tags if t.startswith("sem_") or t == "release"],
                invert=True)
    reg = _axis(s, "TRAINER.TEXTREFINER.LAMBDA_REG", [t for t in tags if t.startswith("reg_") or t == "release"])
    claim.details.append("1/lambda1:")
    a = rises_then_falls(claim, s, sem, "HM", ev.min_seeds)
    claim.details.append("lambda2:")
    b = rises_then_falls(claim, s, reg, "HM", ev.min_seeds)
    claim.verdict = combine([a, b])
    return claim


def cache_size(ev: Evidence) -> Claim:
    claim = Claim("8a", "fig4", "Accuracy rises with the cache size M, then declines (HM)",
                  "Figure 4 (ImageNet): \"improves as M increases, then declines\" (values not in the text)")
    s = ev.ablations.get("fig4")
    if not s:
        return _missing(claim, "Figure 4 was not run")
    claim.verdict = rises_then_falls(claim, s, _axis(s, "TRAINER.TEXTREFINER.CACHE_SIZE", list(_variants(s))),
                                     "HM", ev.min_seeds)
    return claim


def fusion(ev: Evidence) -> Claim:
    claim = Claim("8b", "fig5", "As the fusion alpha grows, base accuracy rises and novel accuracy rises then falls",
                  "Figure 5 (ImageNet): base rises continuously; novel rises, then decreases")
    s = ev.ablations.get("fig5")
    if not s:
        return _missing(claim, "Figure 5 was not run")
    points = _axis(s, "TRAINER.TEXTREFINER.ALPHA", list(_variants(s)))
    if len(points) < 3:
        return _missing(claim, "fewer than 3 values of alpha run")
    (x0, first), (x1, last) = points[0], points[-1]
    base = [s.get(m, AVERAGE, "Base").mean for _, m in points]
    monotone = all(b2 >= b1 for b1, b2 in zip(base, base[1:]))
    claim.details.append("Base (Average row) by alpha: " + ", ".join(f"{_x(x)}: {b:.2f}" for (x, _), b in
                                                                    zip(points, base))
                         + f" ({'never falls' if monotone else 'not monotone'})")
    rise = _check(claim, f"Base: alpha {_x(x1)} - alpha {_x(x0)}", paired(per_seed(s, last, AVERAGE, "Base"),
                                                                     per_seed(s, first, AVERAGE, "Base")), ev.min_seeds)
    novel = rises_then_falls(claim, s, points, "Novel", ev.min_seeds)
    claim.verdict = combine([rise, novel])
    return claim


def check_claims(ev: Evidence, pairs: Sequence[tuple]) -> List[Claim]:
    return [tr_improves_hosts(ev, pairs), coop_novel_and_cocoop(ev), promptkd_best(ev), dg_all_targets(ev, pairs),
            speed_kept(ev, pairs), components(ev), loss_weights(ev), cache_size(ev), fusion(ev)]


#: verdict -> what it means, for the report's legend
MEANINGS = {
    SHOWN: "the paired per-seed difference's 95% interval lies on the claimed side of zero",
    CONTRADICTED: "it lies on the other side",
    NOISE: "it includes zero: this run cannot tell",
    TOO_FEW: "fewer seeds than a verdict needs",
    NO_DATA: "the artifact or the methods it compares were not run",
}
