"""The paper command's verdict rule (paired per-seed differences, Student's t interval) and its
claims, on tables built from made-up runs: what is shown, contradicted, within noise or lacks seeds."""
import math

import pytest

from textrefiner.paper import claims as C
from textrefiner.paper.health import outlier_flags, run_flags
from textrefiner.paper.stats import CONTRADICTED, NO_DATA, NOISE, SHOWN, TOO_FEW, combine, paired, verdict
from textrefiner.results.collect import Run
from textrefiner.results.layout import RunKey
from textrefiner.results.tables import base2new_summary


def runs(values, cfg="c", tag=""):
    """values: {(trainer, dataset, seed): (base, novel)} -> the two runs of each."""
    out = []
    for (trainer, dataset, seed), (base, novel) in values.items():
        settings = {"TRAINER.TEXTREFINER.CACHE_SIZE": int(tag[1:])} if tag.startswith("m") else {}
        for kind, acc in (("base2new_train", base), ("base2new_test", novel)):
            key = RunKey(kind, dataset, 16, trainer, cfg, seed, tag)
            out.append(Run(key, {"accuracy": acc, "settings": settings}, f"/{trainer}/{dataset}/{seed}/{kind}"))
    return out


def test_paired_interval_is_students_t():
    a, b = {1: 3.0, 2: 5.0, 3: 4.0, 4: 6.0, 5: 2.0}, {s: 1.0 for s in range(1, 6)}
    d = paired(a, b)
    diffs = [2.0, 4.0, 3.0, 5.0, 1.0]
    sd = math.sqrt(sum((x - 3.0) ** 2 for x in diffs) / 4)
    assert d.mean == 3.0 and d.n == 5
    assert d.low == pytest.approx(3.0 - 2.776 * sd / math.sqrt(5)) and d.high == pytest.approx(3.0 + 2.776 * sd / math.sqrt(5))
    assert paired({1: 1.0}, {2: 1.0}) is None
    assert paired({1: 2.0}, {1: 1.0}).low is None  # one seed: no interval


def test_verdicts():
    up = paired({s: 10.0 + s % 2 for s in range(5)}, {s: 5.0 for s in range(5)})
    mixed = paired({0: 1.0, 1: -1.0, 2: 2.0, 3: -2.0, 4: 0.5}, {s: 0.0 for s in range(5)})
    assert verdict(up, 5) == SHOWN
    assert verdict(up, 5, direction=-1) == CONTRADICTED
    assert verdict(mixed, 5) == NOISE
    assert verdict(up, 6) == TOO_FEW  # five seeds where six are asked for
    assert verdict(None, 5) == NO_DATA
    assert combine([SHOWN, SHOWN]) == SHOWN and combine([SHOWN, NOISE]) == NOISE
    assert combine([SHOWN, CONTRADICTED, NOISE]) == CONTRADICTED and combine([]) == NO_DATA


def _table1(gain_patterns):
    values = {}
    for seed in range(1, 6):
        jitter = (seed % 3) * 0.3
        for dataset, gain in (("testbed_shapes", 4.0), ("testbed_patterns", gain_patterns)):
            values[("CoOp", dataset, seed)] = (80.0 + jitter, 60.0 + jitter)
            values[("CoOp_TextRefiner", dataset, seed)] = (80.0 + jitter + gain, 60.0 + jitter + gain)
    return base2new_summary(runs(values))


def test_claim_1_shown_and_not():
    ev = C.Evidence("testbed", 5, table1=_table1(3.0))
    claim = C.tr_improves_hosts(ev, [("CoOp", "CoOp_TextRefiner"), ("MaPLe", "MaPLe_TextRefiner")])
    assert claim.verdict == SHOWN
    assert len(claim.details) == 2  # MaPLe was not run: only CoOp's two datasets are compared
    ev = C.Evidence("testbed", 5, table1=_table1(-3.0))
    assert C.tr_improves_hosts(ev, [("CoOp", "CoOp_TextRefiner")]).verdict == CONTRADICTED
    ev = C.Evidence("testbed", 6, table1=_table1(3.0))  # five seeds, six asked for
    assert C.tr_improves_hosts(ev, [("CoOp", "CoOp_TextRefiner")]).verdict == TOO_FEW


def test_claims_without_their_artifact_say_no_data():
    ev = C.Evidence("testbed", 5)
    results = C.check_claims(ev, [("CoOp", "CoOp_TextRefiner")])
    assert {c.verdict for c in results} == {NO_DATA}
    assert all(any("not checked" in d for d in c.details) for c in results)


def test_rises_then_falls_on_cache_size():
    values = {}
    peak = {1: 60.0, 5: 64.0, 25: 68.0, 100: 62.0}
    out = []
    for m, level in peak.items():
        for seed in range(1, 6):
            values = {("CoOp_TextRefiner", "testbed_shapes", seed): (level + seed % 2, level + seed % 2)}
            out += runs(values, tag=f"m{m}")
    summary = base2new_summary(out)
    claim = C.cache_size(C.Evidence("testbed", 5, ablations={"fig4": summary}))
    assert claim.verdict == SHOWN, claim.details
    assert "best at 25" in " ".join(claim.details)


def test_speed_claim_reads_the_ratio():
    rows = [{"method": "CoOp", "images_per_s": 100.0}, {"method": "CoOp_TextRefiner", "images_per_s": 95.0},
            {"method": "MaPLe", "images_per_s": 100.0}, {"method": "MaPLe_TextRefiner", "images_per_s": 50.0}]
    claim = C.speed_kept(C.Evidence("testbed", 5, fig3=rows), [("CoOp", "CoOp_TextRefiner"), ("MaPLe", "MaPLe_TextRefiner")])
    assert claim.verdict == CONTRADICTED
    assert any("0.95x" in d for d in claim.details) and any("0.50x" in d for d in claim.details)


def test_health_flags():
    key = RunKey("base2new_train", "testbed_shapes", 16, "PromptKD", "c", 1)
    curve = [{"epoch": 1, "loss": 1.0, "teacher_agreement": 80.0}, {"epoch": 2, "loss": 5.0, "teacher_agreement": 40.0}]
    flags = run_flags(Run(key, {"training_curve": curve, "best_epoch": 1, "max_epoch": 20}, "/x"), "PromptKD")
    assert len(flags) == 3 and "rose" in flags[0] and "epoch 1 of 20" in flags[1] and "fell" in flags[2]
    assert run_flags(Run(key, {"training_curve": curve[:1], "max_epoch": 1}, "/x"), "PromptKD") == []
    values = {("CoOp", "testbed_shapes", s): (80.0, 60.0) for s in range(1, 5)}
    values[("CoOp", "testbed_shapes", 5)] = (50.0, 60.0)
    flagged = outlier_flags(base2new_summary(runs(values)))
    assert [(f.seed, f.dataset) for f in flagged] == [(5, "testbed_shapes")]
    assert "Base 50.00" in flagged[0].what


@pytest.mark.parametrize("levels, share", [
    ({"coop": 60.0, "aggregation": 66.0, "plus_semantic": 67.0, "plus_regularization": 66.5, "all": 68.0},
     "most: yes"),
    ({"coop": 60.0, "aggregation": 64.0, "plus_semantic": 62.0, "plus_regularization": 62.0, "all": 61.0},
     "more than all three together"),
])
def test_components_says_how_much_of_the_gain_aggregation_gives(levels, share):
    out = []
    for tag, level in levels.items():
        for seed in range(1, 6):
            out += runs({("CoOp_TextRefiner", "testbed_shapes", seed): (level + seed % 2, level + seed % 2)}, tag=tag)
    claim = C.components(C.Evidence("testbed", 5, ablations={"table3": base2new_summary(out)}))
    line = next(d for d in claim.details if d.startswith("aggregation's share"))
    assert line.endswith(f"({share})"), line
    if share != "most: yes":  # all three below aggregation alone: "all three are best" is contradicted
        assert claim.verdict == CONTRADICTED, claim.details
