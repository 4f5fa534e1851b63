"""parse_test_res.py: CoOp's per-seed log parsing (Dassl's exact lines, reruns, a missing seed)
and the protocol tables built from result.json files (missing seeds and datasets listed)."""
import importlib.util
import json
import os

import numpy as np
import pytest

from textrefiner.cli.parse_test_res import main
from textrefiner.results.layout import RunKey, run_dir
from textrefiner.results.render import render
from textrefiner.results.tables import harmonic_mean, protocol_summary

CFG = "vit_b16_ep10_ctxv1"


def dassl_result(accuracy: float, total: int = 500) -> str:
    correct = round(total * accuracy / 100)
    return (f"=> result\n* total: {total:,}\n* correct: {correct:,}\n* accuracy: {accuracy:.1f}%\n"
            f"* error: {100 - accuracy:.1f}%\n* macro_f1: {accuracy - 1:.1f}%\n")


def training_log(final: float, validation: float = 12.5, finished: bool = True) -> str:
    """A Dassl training log: a validation result before ``Finish training``, the test result after."""
    log = "epoch [1/1] batch [1/1] time 0.1 (0.1) data 0.0 (0.0) loss 1.0 (1.0) lr 2.0000e-03 eta 0:00:00\n"
    log += "Evaluate on the *val* set\n" + dassl_result(validation)
    if finished:
        log += "Finish training\nDeploy the model with the best val performance\nEvaluate on the *test* set\n"
        log += dassl_result(final) + "Elapsed: 0:00:05\n"
    return log


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture
def seed_logs(tmp_path):
    """seed1: one run (70%); seed2: a finished rerun (90%, newer than log.txt's 50%) and a newer
    crashed one; seed3: only a crashed run."""
    exp = tmp_path / "exp"
    write(exp / "seed1" / "log.txt", training_log(70.0))
    write(exp / "seed2" / "log.txt", training_log(50.0))
    write(exp / "seed2" / "log.txt-2025-03-01-10-00-00", training_log(90.0))
    write(exp / "seed2" / "log.txt-2025-03-02-09-00-00", training_log(0, finished=False))
    write(exp / "seed3" / "log.txt", training_log(0, finished=False))
    return exp


def parse(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    return exit_info.value.code, capsys.readouterr().out


def test_seed_logs_mean_std_and_ci95(seed_logs, capsys):
    code, out = parse(capsys, seed_logs)
    assert code == 0
    assert f"file: {seed_logs / 'seed1' / 'log.txt'}. accuracy: 70.00%. " in out
    assert f"file: {seed_logs / 'seed2' / 'log.txt-2025-03-01-10-00-00'}. accuracy: 90.00%. " in out
    assert "Skipping" in out and "log.txt-2025-03-02-09-00-00" in out
    assert f"Missing: no log in {seed_logs / 'seed3'}" in out
    assert "* accuracy: 80.00% +- 10.00%" in out  # std of [70, 90] with ddof 0
    _, out = parse(capsys, seed_logs, "--ci95")
    assert f"* accuracy: 80.00% +- {1.96 * 10 / np.sqrt(2):.2f}%" in out
    _, out = parse(capsys, seed_logs, "--keyword", "macro_f1")
    assert "* macro_f1: 79.00% +- 10.00%" in out


def test_test_logs_and_multi_exp(tmp_path, capsys):
    for exp, values in (("a", (40.0, 60.0)), ("b", (70.0, 70.0))):
        for seed, value in enumerate(values, 1):
            write(tmp_path / "runs" / exp / f"seed{seed}" / "log.txt", "Loading weights\n" + dassl_result(value))
    _, out = parse(capsys, tmp_path / "runs" / "a", "--test-log")
    assert "* accuracy: 50.00% +- 10.00%" in out
    code, _ = parse(capsys, tmp_path / "runs" / "a")  # no "Finish training" in test logs
    assert code == 1
    _, out = parse(capsys, tmp_path / "runs", "--test-log", "--multi-exp")
    assert out.strip().endswith("Average performance\n* accuracy: 60.00%")


def fake_runs(root, kind, trainer, accuracies):
    """result.json files laid out as the launchers write them; accuracies: {(dataset, shots, seed): value}."""
    for (dataset, shots, seed), accuracy in accuracies.items():
        folder = run_dir(str(root), RunKey(kind, dataset, shots, trainer, CFG, seed))
        write(os.path.join(folder, "result.json"), json.dumps({"accuracy": accuracy, "macro_f1": accuracy / 2}))


def test_base2new_table_average_row_and_gaps(tmp_path):
    base = {("caltech101", 16, 1): 90.0, ("caltech101", 16, 2): 94.0, ("dtd", 16, 1): 70.0, ("dtd", 16, 2): 80.0}
    new = {("caltech101", 16, 1): 80.0, ("caltech101", 16, 2): 82.0, ("dtd", 16, 1): 50.0}  # dtd seed 2 not tested
    fake_runs(tmp_path, "base2new_train", "CoOp", base)
    fake_runs(tmp_path, "base2new_test", "CoOp", new)
    fake_runs(tmp_path, "base2new_train", "CoOp_TextRefiner", {("caltech101", 16, 1): 95.0})
    fake_runs(tmp_path, "base2new_test", "CoOp_TextRefiner", {("caltech101", 16, 1): 85.0})
    summary = protocol_summary(str(tmp_path), "base2new")
    assert summary.rows == ["Average", "caltech101", "dtd"]
    dtd_base = summary.get("CoOp", "dtd", "Base")
    assert (dtd_base.mean, dtd_base.seeds) == (70.0, (1,))  # seed 2 has no Novel, so it is left out of Base too
    assert summary.get("CoOp", "caltech101", "Base").spread == pytest.approx(2.0)
    average_base, average_new = np.mean([92.0, 70.0]), np.mean([81.0, 50.0])
    assert summary.get("CoOp", "Average", "HM").mean == pytest.approx(harmonic_mean(average_base, average_new))
    notes = "\n".join(summary.notes)
    assert "CoOp, dtd, Novel: seed 2 missing" in notes and "CoOp, dtd, Base: seed 2 left out" in notes
    assert "CoOp_TextRefiner: no results for dtd" in notes
    assert "CoOp_TextRefiner, caltech101, Base: seed 2 missing" in notes
    assert "Average covers 2 of the paper's 11 datasets" in notes
    table = render(summary, compare=["CoOp", "CoOp_TextRefiner"])
    caltech = next(line for line in table.splitlines() if line.startswith("caltech101")).split()
    assert caltech[:4] == ["caltech101", "92.00", "95.00", "+3.00"]  # Base: A, B, B - A


def test_xd_and_few_shot_tables(tmp_path):
    fake_runs(tmp_path, "xd_train", "CoOp", {("imagenet", 16, 1): 70.0, ("imagenet", 16, 2): 72.0})
    fake_runs(tmp_path, "xd_test", "CoOp", {("imagenetv2", 16, 1): 60.0, ("imagenet_a", 16, 1): 50.0,
                                           ("caltech101", 16, 1): 90.0})
    xd = protocol_summary(str(tmp_path), "xd")
    assert xd.rows == ["imagenet", "caltech101", "imagenetv2", "imagenet_a",
                       "Average (cross-dataset)", "Average (domain generalisation)"]
    assert xd.get("CoOp", "imagenet", "Accuracy").mean == 71.0
    assert xd.get("CoOp", "Average (domain generalisation)", "Accuracy").mean == 55.0
    assert "CoOp, imagenetv2, Accuracy: seed 2 missing" in xd.notes

    fake_runs(tmp_path, "few_shot", "CoOp", {("dtd", 1, 1): 40.0, ("dtd", 16, 1): 60.0, ("eurosat", 16, 1): 80.0})
    few = protocol_summary(str(tmp_path), "few_shot", metric="macro_f1")
    assert few.columns == ["1 shot", "16 shots"] and few.rows == ["Average", "dtd", "eurosat"]
    assert few.get("CoOp", "Average", "16 shots").mean == 35.0  # macro_f1 = accuracy / 2
    assert "CoOp, eurosat, 1 shot: seed 1 missing" in few.notes
    assert "CoOp, Average, 1 shot: over 1 of 2 datasets (missing: eurosat)" in few.notes
    assert not any(note.startswith("CoOp, Average, 16 shots") for note in few.notes)


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed")
def test_plots_are_written(tmp_path, capsys):
    fake_runs(tmp_path, "few_shot", "CoOp", {("dtd", 1, 1): 40.0, ("dtd", 2, 1): 60.0})
    fake_runs(tmp_path, "base2new_train", "CoOp", {("dtd", 16, 1): 40.0})
    fake_runs(tmp_path, "base2new_test", "CoOp", {("dtd", 16, 1): 30.0})
    for protocol in ("few_shot", "base2new"):
        png = tmp_path / f"{protocol}.png"
        code, _ = parse(capsys, tmp_path, "--table", protocol, "--save", png, tmp_path / f"{protocol}.md")
        assert code == 0 and png.read_bytes()[:4] == b"\x89PNG"
        assert (tmp_path / f"{protocol}.md").read_text().startswith("### ")


def test_table_errors_name_the_fix(tmp_path, capsys):
    for root in (tmp_path, tmp_path / "missing"):  # no runs there; no such folder
        with pytest.raises(SystemExit) as stop:
            main([str(root), "--table", "xd"])
        error = stop.value.code  # printed by Python as one stderr line, exit status 1
        assert error.startswith("Error: ") and "\n" not in error
        assert str(root) in error and error.endswith("pass the output root the launchers wrote into")
