"""The paper's Table 1 and Table 2 as reference data: --paper prints our means beside them, and
each difference is ours minus the paper's figure; a --save folder that does not exist is made."""
import csv
import io

import pytest

from textrefiner.cli.parse_test_res import main
from textrefiner.results.paper import paper_values
from textrefiner.results.tables import harmonic_mean
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
    for dataset in ("caltech101", "dtd"):
        for column in ("Base", "Novel", "HM"):
            row = rows[dataset]
            assert float(row[f"{column} paper"]) == paper[("CoOp_TextRefiner", dataset, column)]
            ours, reference = float(row[f"{column} ours"]), float(row[f"{column} paper"])
            assert float(row[f"{column} diff"]) == pytest.approx(ours - reference, abs=1e-4)
    # the average compares ours and the paper's over the same two datasets, never the paper's 11-dataset one
    average = rows["Average over caltech101, dtd (2 of the paper's 11)"]
    same = {c: (paper[("CoOp_TextRefiner", "caltech101", c)] + paper[("CoOp_TextRefiner", "dtd", c)]) / 2
            for c in ("Base", "Novel")}
    same["HM"] = harmonic_mean(same["Base"], same["Novel"])
    for column in ("Base", "Novel", "HM"):
        assert float(average[f"{column} paper"]) == pytest.approx(same[column], abs=1e-4)
        ours, reference = float(average[f"{column} ours"]), float(average[f"{column} paper"])
        assert float(average[f"{column} diff"]) == pytest.approx(ours - reference, abs=1e-4)
    assert float(average["Base ours"]) == pytest.approx((97.0 + 76.0) / 2)
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


def test_paper_average_on_a_subset_compares_only_the_shared_datasets_and_says_which(tmp_path, capsys):
    # ours: two of the paper's datasets and one it never used; our own Average covers all three
    for dataset, (base, new) in {"caltech101": (97.0, 93.0), "dtd": (76.0, 57.0), "testbed_shapes": (20.0, 10.0)}.items():
        fake_run(tmp_path, "base2new_train", dataset, 1, base, "CoOp")
        fake_run(tmp_path, "base2new_test", dataset, 1, new, "CoOp")
    code, out, _ = run(capsys, tmp_path, "--table", "base2new", "--paper")
    paper = paper_values("base2new")
    average = next(line for line in out.splitlines() if line.startswith("Average"))
    assert average.startswith("Average over caltech101, dtd (2 of the paper's 11)  CoOp")
    base = average.split("CoOp", 1)[1].split()[:3]
    paper_base = (paper[("CoOp", "caltech101", "Base")] + paper[("CoOp", "dtd", "Base")]) / 2
    assert base == [f"{(97.0 + 76.0) / 2:.2f}", f"{paper_base:.2f}", f"{(97.0 + 76.0) / 2 - paper_base:+.2f}"]
    assert f"{paper[('CoOp', 'Average', 'Base')]:.2f}" not in out, "never the paper's 11-dataset average"
    assert "Not compared (the paper's Table 1 has no figure for them): testbed_shapes" in out
    assert "testbed_shapes  " not in out and code == 0


def test_paper_average_over_all_its_datasets_is_the_papers_own(tmp_path, capsys):
    from textrefiner.results.benchmarks import BASE2NEW_DATASETS

    for dataset in BASE2NEW_DATASETS:
        fake_run(tmp_path, "base2new_train", dataset, 1, 80.0, "CoOp_TextRefiner")
        fake_run(tmp_path, "base2new_test", dataset, 1, 70.0, "CoOp_TextRefiner")
    code, out, _ = run(capsys, tmp_path, "--table", "base2new", "--paper", "--format", "csv")
    average = next(r for r in csv.DictReader(io.StringIO(out)) if r["Dataset"].startswith("Average"))
    assert average["Dataset"] == "Average"
    assert float(average["HM paper"]) == paper_values("base2new")[("CoOp_TextRefiner", "Average", "HM")] == 76.94


def test_paper_on_the_testbed_says_there_is_nothing_to_compare_and_shows_the_table(tmp_path, capsys):
    fake_run(tmp_path, "base2new_train", "testbed_shapes", 1, 61.17, "CoOp")
    fake_run(tmp_path, "base2new_test", "testbed_shapes", 1, 62.67, "CoOp")
    code, out, _ = run(capsys, tmp_path, "--table", "base2new", "--paper")
    assert "Nothing to compare with the paper: the paper's Table 1 reports none of testbed_shapes" in out
    assert "diff" not in out and "paper (" not in out, "no difference, no paper column"
    assert "82.69" not in out, "the paper's average is not named beside ours"
    assert any(line.split()[:3] == ["testbed_shapes", "CoOp", "61.17"] for line in out.splitlines())
    assert code == 0
    code, out, err = run(capsys, tmp_path, "--table", "base2new", "--paper", "--format", "csv")
    assert out.splitlines()[0] == "Dataset,Method,Base,Base_std,Novel,Novel_std,HM,Seeds"
    assert "Nothing to compare with the paper" in err and code == 0


def test_xd_group_average_compares_the_shared_targets_only(tmp_path, capsys):
    fake_run(tmp_path, "xd_train", "imagenet", 1, 72.5, "MaPLe_TextRefiner")
    fake_run(tmp_path, "xd_test", "imagenet_r", 1, 77.0, "MaPLe_TextRefiner")
    fake_run(tmp_path, "xd_test", "imagenet_a", 1, 50.0, "MaPLe_TextRefiner")
    code, out, _ = run(capsys, tmp_path, "--table", "xd", "--paper")
    paper = paper_values("xd")
    line = next(line for line in out.splitlines() if line.startswith("Average (domain"))
    assert line.startswith("Average (domain generalisation) over imagenet_a, imagenet_r (2 of the paper's 4)")
    same = (paper[("MaPLe_TextRefiner", "imagenet_a", "Accuracy")] + paper[("MaPLe_TextRefiner", "imagenet_r",
                                                                               "Accuracy")]) / 2
    assert line.split()[-3:] == ["63.50", f"{same:.2f}", f"{63.5 - same:+.2f}"]
