"""The prepared GPU check keeps working: its CPU quick mode runs every trainer in every
precision end to end and writes results that say what ran and what was shrunk."""
import json

import pytest
import torch

from benchmarks import gpu_check, rounding, trainer_check
from benchmarks.gpu_check import TOLERANCES
from textrefiner.framework import TRAINER_REGISTRY
from textrefiner.precision import PRECISIONS


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    status = gpu_check.main(["--device", "cpu", "--quick", "--out", str(out)])
    (md,), (js,) = out.glob("*.md"), out.glob("*.json")
    return status, md, json.loads(js.read_text())


def test_quick_run_checks_every_trainer_in_every_precision(quick_run):
    status, _, results = quick_run
    assert status == 0, results["failed"]
    rows = {(r["trainer"], r["prec"]): r for r in results["trainers"]}
    assert set(rows) == {(s.name, p) for s in trainer_check.TRAINERS for p in PRECISIONS}
    registered = [s for s in trainer_check.TRAINERS if s.name in TRAINER_REGISTRY.registered_names()]
    assert {"CoOp", "CoOp_TextRefiner", "MaPLe", "MaPLe_TextRefiner", "ZeroshotCLIP"} <= {s.name for s in registered}
    for spec in trainer_check.TRAINERS:
        for prec in PRECISIONS:
            row = rows[(spec.name, prec)]
            if spec not in registered:
                assert row["skipped"] == "not registered"
                continue
            assert "error" not in row, row.get("traceback")
            # on the CPU fp16 and amp fall back to fp32, and the row says so
            assert row["prec_ran"] == ("fp32" if prec in ("fp16", "amp") else prec)
            assert row["logits_finite"] and row["images_per_s"] > 0
            if spec.train:
                assert row["losses_finite"] and len(row["losses"]) == results["settings"]["steps"]
                assert row["prompts_moved"] and not row["unchanged_modules"]
                assert row["cache_moved"] is (True if spec.name.endswith("_TextRefiner") else None)
                assert row["reload_equal"] is True and row["reload_max_abs_diff"] == 0
            else:
                assert "reload_equal" not in row and "losses" not in row
            if prec == "fp32":
                assert "vs_fp32" not in row
            else:
                vs = row["vs_fp32"]
                # on the CPU the criterion is the rounding bounds (the fixed tolerance depends on the CPU)
                assert vs["criterion"] == trainer_check.BOUNDS and vs["within_bounds"]
                assert vs["tolerance"] == TOLERANCES[prec]
                # the fallbacks compute exactly fp32's numbers; bf16 rounds differently but stays close
                if prec in ("fp16", "amp"):
                    assert vs["max_abs_diff"] == vs["relative_diff"] == 0 and vs["prediction_agreement"] == 1
                    assert vs["forward_cosine"] == vs["trajectory_cosine"] == 0
                else:
                    assert 0 < vs["forward_units"] <= rounding.FORWARD_UNITS
                    assert vs["trajectory_ratio"] <= rounding.TRAJECTORY_RATIO
                    assert vs["fp32_movement_cosine"] > 0 if spec.train else vs["trajectory_cosine"] == 0


def test_quick_run_writes_its_table_and_says_it_is_not_a_gpu_run(quick_run):
    _, md, results = quick_run
    assert md.name.startswith("cpu-quick-") and results["meta"]["mode"] == "cpu-quick"
    assert results["quick_changes"] == gpu_check.QUICK_CHANGES
    assert results["tolerances"] == TOLERANCES
    text = md.read_text()
    assert "Quick mode, not a GPU run" in text and all(change in text for change in gpu_check.QUICK_CHANGES)
    assert "fp16 0.03, amp 0.03, bf16 0.1" in text and "is reported, not enforced" in text
    assert f"at most {rounding.FORWARD_UNITS:g} u" in text
    for row in results["trainers"]:
        ran = row.get("prec_ran", row["prec"])
        label = row["prec"] if ran == row["prec"] else f"{row['prec']} ({ran})"
        assert f"| {row['trainer']} | {label} |" in text
    (speed,) = results["speed"]
    assert "error" not in speed, speed.get("log_tail")
    assert speed["prec"] == speed["results"]["meta"]["prec"] == "fp16"
    assert speed["results"]["meta"]["prec_ran"] == "fp32" and "fp16 (ran as fp32)" in text
    assert "## Speed benchmark fp16" in text and "### Training step" in text and "### Ratios" in text


def _row(**changes) -> dict:
    row = dict(trainer="X", prec="fp16", train=True, logits_finite=True, losses_finite=True, prompts_moved=True,
               cache_moved=None, reload_equal=True, vs_fp32=dict(within_tolerance=True))
    return {**row, **changes}


@pytest.mark.parametrize("change", [
    dict(reload_equal=False), dict(losses_finite=False), dict(prompts_moved=False), dict(cache_moved=False),
    dict(logits_finite=False), dict(vs_fp32=dict(within_tolerance=False)), dict(error="RuntimeError: x"),
    dict(vs_fp32=dict(criterion=trainer_check.BOUNDS, within_bounds=False, within_tolerance=True)),
])
def test_a_row_fails_when_any_of_its_checks_fails(change):
    assert trainer_check.passed(_row())
    assert not trainer_check.passed(_row(**change))
    assert trainer_check.passed(dict(trainer="PromptKD", prec="fp32", skipped="not registered"))


def test_the_cpu_criterion_ignores_the_tolerance_and_the_cuda_one_the_bounds():
    on_cpu = dict(criterion=trainer_check.BOUNDS, within_bounds=True, within_tolerance=False)
    on_cuda = dict(criterion=trainer_check.TOLERANCE, within_bounds=False, within_tolerance=True)
    assert trainer_check.passed(_row(vs_fp32=on_cpu)) and trainer_check.passed(_row(vs_fp32=on_cuda))


def _split(prec="bf16", forward=0.0, trajectory=0.0, moved=1.0):
    """rounding.split on one logit, logit scale 1: the untrained model 0, fp32's after the steps ``moved``,
    the row's weights in fp32 ``moved + trajectory``, in the row's precision ``moved + trajectory + forward``."""
    t = lambda v: torch.tensor([[v]])  # noqa: E731
    return rounding.split(prec, 1.0, t(moved + trajectory + forward), t(moved + trajectory), t(moved), t(0.0))


def test_rounding_bounds_split_forward_rounding_from_the_trajectory():
    u = rounding.UNIT_ROUNDOFF["bf16"]
    ok = _split(forward=3 * u, trajectory=0.25)
    assert ok["within_bounds"] and ok["forward_units"] == pytest.approx(3) and ok["trajectory_ratio"] == 0.25
    # rounding beyond what bf16 can explain at the same weights
    assert not _split(forward=5 * u)["within_bounds"]
    # steps that went elsewhere: no update (the row stays at 0), a wrong sign, a doubled step
    for trajectory in (-1.0, -2.0, 1.0):
        assert not _split(trajectory=trajectory)["within_bounds"]
    # a fallback that ran in fp32 must be exact
    assert _split("fp32")["within_bounds"] and not _split("fp32", forward=1e-7)["within_bounds"]
    # fp16's unit roundoff is 8x finer than bf16's
    assert not _split("fp16", forward=3 * u)["within_bounds"]


def test_the_bounds_cover_what_another_cpu_measured_for_promptsrc():
    """The issue's failure: PromptSRC bf16, seed 1, 13.99 % of fp32's logits' spread on a CPU with other
    native bf16 kernels (oneDNN). Here: spread 0.108 and fp32's movement 15.3 u (cosine units), both
    fp32 figures, the same on every CPU. Whatever the split of that 13.99 % into forward and trajectory
    (the forward part at most the 1.1 u ever measured), it is inside the bounds."""
    u = rounding.UNIT_ROUNDOFF["bf16"]
    total, movement = 0.1399 * 0.108, 15.3 * u
    for forward in (0.0, 0.6 * u, 1.1 * u):
        assert _split(forward=forward, trajectory=total - forward, moved=movement)["within_bounds"]


def test_moved_names_the_modules_that_did_not_change():
    before = {"prompt_learner.ctx": torch.zeros(2), "textrefiner.cache.entries": torch.zeros(3),
              "textrefiner.aggregation.weight": torch.zeros(2)}
    after = {**before, "prompt_learner.ctx": torch.ones(2)}
    result = trainer_check.moved(before, after)
    assert result["unchanged_modules"] == ["textrefiner"] and not result["prompts_moved"]
    assert result["cache_moved"] is False


def test_comparison_is_relative_to_the_spread_of_the_reference_logits():
    reference = torch.tensor([[10.0, 0.0], [0.0, 10.0]])
    result = trainer_check.compare(reference + torch.tensor([[0.5, 0.0], [0.0, 0.0]]), reference, scale=100.0,
                                   tolerance=0.03)
    assert result["max_abs_diff"] == 0.5 and result["max_cosine_diff"] == pytest.approx(5e-3)
    assert result["relative_diff"] == pytest.approx(0.05) and not result["within_tolerance"]
    assert result["prediction_agreement"] == 1.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_names_the_cpu_mode(capsys):
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--device", "cuda"])
    assert "--device cpu --quick" in capsys.readouterr().err
