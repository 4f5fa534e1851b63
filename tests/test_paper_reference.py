"""The paper's Table 1 and Table 2 as reference data: --paper prints our means beside them, and
each difference is ours minus the paper's figure; a --save folder that does not exist is made."""
import csv
import io

import pytest

from textrefiner.cli.parse_test_res import main
from textrefiner.results.paper import paper_values
from test_run_identity import fake_run


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_the_data_file_holds_the_papers_headline_numbers():
    table1, table2 = paper_values("base2new"), paper_values("xd")
    assert len({(t, d) for t, d, _ in table1}) == 9 * 12  # 9 methods x (11 datasets + Average)
    assert (table1[("CoOp", "Average", "Novel")], table1[("CoOp_TextRefiner", "Average", "Novel")]) == (63.22, 74.32)
    assert table1[("CoOp_TextRefiner", "Average", "HM")] == 76.94
    assert table1[("PromptKD_TextRefiner", "eurosat", "HM")] == 85.55
    assert table2[("CoOp_TextRefiner", "imagenet", "Accuracy")] == 72.06
    assert table2[("MaPLe_TextRefiner", "imagenet_a", "Accuracy")] == 51.49
    assert table2[("CoOp", "Average (domain generalisation)", "Accuracy")] == pytest.approx(
        (64.20 + 47.99 + 49.71 + 75.21) / 4)


def test_paper_columns_are_ours_minus_the_papers(tmp_path, capsys):
    measured = {("caltech101", 1): (97.0, 93.0), ("caltech101", 2): (99.0, 95.0), ("dtd", 1): (76.0, 57.0)}
    for (dataset, seed), (base, new) in measured.items():
        fake_run(tmp_path, "base2new_train", dataset, seed, base, "CoOp_TextRefiner")
        fake_run(tmp_path, "base2new_test", dataset, seed, new, "CoOp_TextRefiner")
    code, out, _ = run(capsys, tmp_path, "--table", "base2new", "--paper", "--format", "csv", "--seeds", "1")
    rows = {r["Dataset"]: r for r in csv.DictReader(io.StringIO(out))}
    paper = paper_values("base2new")
    for dataset in ("caltech101", "dtd", "Average"):
        for column in ("Base", "Novel", "HM"):
            row = rows[dataset]
            assert float(row[f"{column} paper"]) == paper[("CoOp_TextRefiner", dataset, column)]
            ours, reference = float(row[f"{column} ours"]), float(row[f"{column} paper"])
            assert float(row[f"{column} diff"]) == pytest.approx(ours - reference, abs=1e-4)
    assert float(rows["caltech101"]["Base ours"]) == 97.0
    assert code == 0

    code, out, _ = run(capsys, tmp_path, "--table", "base2new", "--paper")
    assert "ours vs the paper (TextRefiner (AAAI 2025), Table 1)" in out
    caltech = next(line for line in out.splitlines() if line.startswith("caltech101")).split()
    assert caltech[:5] == ["caltech101", "CoOp_TextRefiner", "98.00", "98.13", "-0.13"]  # mean of 97 and 99


def test_xd_paper_comparison_and_saving_into_a_new_folder(tmp_path, capsys):
    fake_run(tmp_path / "out", "xd_train", "imagenet", 1, 72.5, "MaPLe_TextRefiner")
    fake_run(tmp_path / "out", "xd_test", "imagenet_r", 1, 77.0, "MaPLe_TextRefiner")
    code, out, err = run(capsys, tmp_path / "out", "--table", "xd", "--paper", "--save", tmp_path / "new" / "xd.md")
    imagenet_r = next(line for line in out.splitlines() if line.startswith("imagenet_r")).split()
    assert imagenet_r[2:] == ["77.00", "77.71", "-0.71"]
    assert (tmp_path / "new" / "xd.md").is_file() and code == 0
    with pytest.raises(SystemExit, match="no few_shot table"):
        main([str(tmp_path / "out"), "--table", "few_shot", "--paper"])
