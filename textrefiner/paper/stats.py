"""Paired per-seed differences and their 95% confidence interval: the rule behind every verdict.

Two methods run with the same seed see the same few-shot sample and, where their models are
built alike, the same batches; the difference of their accuracies seed by seed removes what the
seed does to both. Over n seeds the mean difference d has the interval d +- t(0.975, n-1) s/sqrt(n)
(s: the sample std of the differences, ddof 1; Student's t). A verdict is "shown" only when that
interval lies wholly on the claimed side of zero and n is at least the seeds a verdict needs
(``plan.VERDICT_SEEDS``); "contradicted" when it lies wholly on the other side; otherwise
"within noise" (or "too few seeds" below the minimum, whatever the interval says).
"""
import math
from dataclasses import dataclass
from typing import Dict, Optional

#: Student's t 0.975 quantile for 1..30 degrees of freedom (beyond: 1.96 is within 4%)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)

SHOWN, CONTRADICTED, NOISE, TOO_FEW, NO_DATA = "shown", "contradicted", "within noise", "too few seeds", "no data"


def t975(df: int) -> float:
    return _T975[df - 1] if df <= len(_T975) else 1.96


@dataclass(frozen=True)
class Paired:
    """Mean of per-seed differences a - b with its 95% interval (None with one seed)."""

    mean: float
    low: Optional[float]
    high: Optional[float]
    seeds: tuple

    @property
    def n(self) -> int:
        return len(self.seeds)

    def text(self) -> str:
        interval = f" [95% CI {self.low:+.2f}, {self.high:+.2f}]" if self.low is not None else ""
        return f"{self.mean:+.2f}{interval} (n={self.n})"


def paired(a: Dict[int, float], b: Dict[int, float]) -> Optional[Paired]:
    """a - b over the seeds both have; None when they share none."""
    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        return None
    diffs = [a[s] - b[s] for s in seeds]
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return Paired(mean, None, None, seeds)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return Paired(mean, mean - half, mean + half, seeds)


def verdict(diff: Optional[Paired], min_seeds: int, direction: int = 1) -> str:
    """``direction`` +1: the claim is a - b > 0; -1: a - b < 0."""
    if diff is None:
        return NO_DATA
    if diff.n < min_seeds or diff.low is None:
        return TOO_FEW
    low, high = (diff.low, diff.high) if direction > 0 else (-diff.high, -diff.low)
    if low > 0:
        return SHOWN
    if high < 0:
        return CONTRADICTED
    return NOISE


def combine(verdicts) -> str:
    """A claim over several comparisons is shown only if every one is; contradicted if any is."""
    verdicts = list(verdicts)
    if not verdicts or all(v == NO_DATA for v in verdicts):
        return NO_DATA
    for outcome in (CONTRADICTED, TOO_FEW, NO_DATA, NOISE):
        if outcome in verdicts:
            return outcome
    return SHOWN
