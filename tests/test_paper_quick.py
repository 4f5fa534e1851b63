"""``python -m textrefiner.paper all --quick`` end to end on the offline testbed (the CI's run of the
paper command): every artifact's files, every expected row, the paper's numbers beside ours, and a
verdict per claim; then a rerun skips every finished run."""
import csv
import os
import subprocess
import sys

import pytest

from textrefiner.paper import plan
from textrefiner.resources import child_env

pytestmark = pytest.mark.slow

FILES = ["table1.md", "table1.csv", "table2.md", "table2.csv", "fig3.md", "fig3.csv", "fig3.png",
         "table3.md", "table3.csv", "table3.png", "table4.md", "table4.csv", "table4-lambda1.png",
         "table4-lambda2.png", "fig4.md", "fig4.csv", "fig4.png", "fig5.md", "fig5.csv", "fig5.png", "report.md"]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    out = root / "out"
    command = [sys.executable, "-m", "textrefiner.paper", "all", "--quick", "--out", str(out),
               "--testbed-data", str(root / "data"), "--jobs", "2"]
    env = child_env({k: v for k, v in os.environ.items() if k != "TEACHER_DIR"})
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return out, command, env, done.stdout


def test_every_artifact_is_written(quick):
    out, _, _, _ = quick
    missing = [name for name in FILES if not (out / name).is_file()]
    assert not missing
    assert all((out / name).stat().st_size > 0 for name in FILES)


def test_every_expected_row(quick):
    out, _, _, _ = quick
    table1 = {row["Method"] for row in _rows(out / "table1.csv")}
    world = plan.make_world(None, str(out), None, True)  # the command's: the paper's rows
    expected1 = {t for _, trainers in plan.table_rows(world, plan.TABLE1_GROUPS) for t in trainers}
    assert expected1 <= table1
    assert "CoCoOp" in table1 and not table1 & set(plan.NOT_IN_THE_PAPER)
    table2 = {row["Method"] for row in _rows(out / "table2.csv")}
    assert {t for _, trainers in plan.table_rows(world, plan.TABLE2_GROUPS) for t in trainers} <= table2
    assert "CoCoOp" in table2 and not table2 & set(plan.NOT_IN_THE_PAPER)
    for artifact in ("table3", "table4", "fig4", "fig5"):
        variants = {row["Variant"] for row in _rows(out / f"{artifact}.csv")}
        assert variants == set(plan.ablation_variants(artifact)), artifact
    fig3 = {row["method"] for row in _rows(out / "fig3.csv")}
    assert {"CoOp", "CoOp_TextRefiner", "PromptKD_TextRefiner", "ZeroshotCLIP"} <= fig3


def test_report_has_the_paper_and_a_verdict_per_claim(quick):
    out, _, _, _ = quick
    report = (out / "report.md").read_text()
    for number in ("1", "2", "3", "4", "5", "6", "7", "8a", "8b"):
        assert f"### Claim {number}: " in report
    # one seed: no claim that rests on seeds gets a verdict other than "too few seeds"
    for line in report.splitlines():
        if line.startswith("### Claim ") and not line.startswith("### Claim 5"):
            assert line.endswith("too few seeds"), line
    assert "11-dataset Average" in report and "76.94" in report  # the paper's CoOp w/TR HM beside ours
    assert "73.56" in report  # the paper's Table 3 (all three components)
    assert "Run health" in report


def test_rerun_skips_finished_runs(quick):
    out, command, env, _ = quick
    rerun = command[:3] + ["table1", "table3"] + command[4:]  # the artifacts before the options
    done = subprocess.run(rerun, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " ran, " in done.stdout or "skipped" in done.stdout
    assert "running" not in done.stdout.replace("running on", "")
