"""Variants as a sweep axis: each variant (a name and config overrides) is its own run identity,
folder (its name as the run tag) and table row; a rerun skips finished variants; mistakes are one
line; parse_test_res.py puts the variants side by side in a Variant column and against a numeric
override value (--x KEY: .md/.csv, and a .png where matplotlib is installed)."""
import csv
import importlib.util
import io
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from launch_helpers import LAUNCH_OPTS, finish_without_training
from textrefiner.cli.parse_test_res import main as parse_test_res
from textrefiner.results.layout import RunKey, run_dir
from textrefiner.sweep.cli import main as sweep
from textrefiner.sweep.cli import parse, settings_from

CFG = "vit_b16_ep10_ctxv1"
CACHE = "TRAINER.TEXTREFINER.CACHE_SIZE"
GRID = ["--protocol", "base2new", "--datasets", "synthetic", "--shots", "2", "--seeds", "1", "2",
        "--trainers", "CoOp_TextRefiner"]


def sweep_file(tmp_path, variants: str, extra: str = "") -> str:
    path = tmp_path / "sweep.yaml"
    path.write_text(f"opts: {{OPTIM.MAX_EPOCH: 1}}\n{extra}variants:\n{variants}")
    return str(path)


def test_each_variant_is_its_own_identity_folder_and_job(tmp_path):
    config = sweep_file(tmp_path, "  no_tr: {TRAINER.TEXTREFINER.ENABLED: false}\n  m10: {%s: 10}\n  release: {}\n"
                        % CACHE)
    settings = settings_from(*parse(["--config", config, *GRID, "--output", str(tmp_path / "out")]))
    assert settings.variants == {"no_tr": ["TRAINER.TEXTREFINER.ENABLED", "False"], "m10": [CACHE, "10"],
                                 "release": []}
    jobs = settings.jobs()
    assert len(jobs) == 6 and len({job.name for job in jobs}) == 6
    assert [job.label for job in jobs[:3]] == [
        f"base2new synthetic 2-shot CoOp_TextRefiner [{v}] seed 1" for v in ("no_tr", "m10", "release")]
    for job in jobs:
        variant = job.setup.tag
        assert job.setup.opts == ("OPTIM.MAX_EPOCH", "1", *settings.variants[variant])
        for step in job.steps:
            assert step.key.tag == variant
            assert step.output_dir == run_dir(str(tmp_path / "out"), RunKey(
                step.key.kind, "synthetic", 2, "CoOp_TextRefiner", CFG, job.seed, variant))
    hashes = {job.setup.tag: job.steps[0].expected for job in jobs if job.seed == 1}
    assert len({h for h, _ in hashes.values()}) == 3, "three settings, three identities"
    assert hashes["m10"][1][CACHE] == 10 and hashes["release"][1][CACHE] == 25
    assert hashes["no_tr"][1]["TRAINER.TEXTREFINER.ENABLED"] is False

    # the flags: --variant NAME [KEY VALUE ...], repeated; they replace the file's variants
    flags = settings_from(*parse(["--config", config, *GRID, "--variant", "m5", CACHE, "5", "--variant", "base"]))
    assert flags.variants == {"m5": [CACHE, "5"], "base": []}
    two = settings_from(*parse(["--config", config, *GRID, "--trainers", "CoOp", "CoOp_TextRefiner"]))
    assert len(two.jobs()) == 12 and two.compare is None, "with variants, no default A/B comparison"


def refused(argv, capsys) -> str:
    """The one ``Error:`` line a sweep ends with (exit status 1), before anything is written."""
    with pytest.raises(SystemExit) as stop:
        sweep([str(a) for a in argv])
    error, out = stop.value.code, capsys.readouterr()
    assert isinstance(error, str) and error.startswith("Error: ") and "\n" not in error, (error, out)
    assert "Traceback" not in out.out + out.err
    return error[len("Error: "):]


@pytest.mark.parametrize("variants, expected", [
    (["--variant", "a/b", CACHE, "5"], "variant 'a/b': Run tag 'a/b': use letters, digits"),
    (["--variant", "seed1", CACHE, "5"], "not seed<N>"),
    (["--variant", "..", CACHE, "5"], "not dots alone"),
    (["--variant", "m5", CACHE, "5", "--variant", "m5", CACHE, "6"], "--variant names m5 more than once"),
    (["--variant", "m5", CACHE], "variant 'm5': Config overrides come in KEY VALUE pairs"),
    (["--variant", "k1", "DATASET.NUM_SHOTS", "1"], "variant 'k1': Do not override DATASET.NUM_SHOTS"),
    (["--variant", "ep3", "OPTIM.MAX_EPOCH", "3"], "variant 'ep3' sets OPTIM.MAX_EPOCH, which opts also sets"),
    (["--variant", "s", "SEED", "3"], "variant 's' sets SEED: a path or the seed is not a setting"),
    (["--variant", "o", "OUTPUT_DIR", "x"], "variant 'o' sets OUTPUT_DIR"),
    (["--variant", "m5", CACHE, "5", CACHE, "6"], "variant 'm5' sets TRAINER.TEXTREFINER.CACHE_SIZE twice"),
    (["--variant", "m5", CACHE, "5", "--tag", "x"], "tag and variants: each variant's name is its run tag"),
    (["--variant", "m5", CACHE, "5", "--trainers", "CoOp", "CoOp_TextRefiner", "--compare", "CoOp",
      "CoOp_TextRefiner"], "compare and variants: the table has a row per trainer and variant"),
    # the config each variant builds, checked as train.py checks it
    (["--variant", "m0", CACHE, "0"], "TRAINER.TEXTREFINER.CACHE_SIZE (local-cache entries M) must be a whole "
                                      "number >= 1, got 0 (with variant m0 of --variant, on top of the overrides after --)"),
    (["--variant", "m5", "TRAINER.TEXTREFINER.CACHE_SIZ", "5"],
     "Unknown config key TRAINER.TEXTREFINER.CACHE_SIZ in variant m5 of --variant, on top of the overrides after "
     "-- (did you mean TRAINER.TEXTREFINER.CACHE_SIZE?)"),
    (["--variant", "m25", CACHE, "25", "--variant", "release"],
     "variants m25 and release of --variant build the same config for CoOp_TextRefiner"),
])
def test_a_bad_variant_is_one_error_line_and_nothing_runs(tmp_path, capsys, variants, expected):
    out = tmp_path / "out"
    message = refused([*GRID, "--output", out, "--dry-run", *variants, "--", "OPTIM.MAX_EPOCH", "1"], capsys)
    assert expected in message, message
    assert not out.exists()


def test_a_bad_variant_in_the_file_names_it(tmp_path, capsys):
    assert "must be a mapping of config keys to values" in refused(
        ["--config", sweep_file(tmp_path, "  m5: 5\n"), *GRID, "--dry-run"], capsys)
    assert "variants is an empty mapping" in refused(
        ["--config", sweep_file(tmp_path, "  {}\n"), *GRID, "--dry-run"], capsys)


def run_sweep(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "textrefiner.sweep", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True)


def table(argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        parse_test_res([str(a) for a in argv])
    out = capsys.readouterr()
    assert stop.value.code == 0, out.out + out.err
    return out.out


def test_a_variant_sweep_runs_each_variant_skips_them_on_rerun_and_tabulates_them(data_root, tmp_path, capsys):
    out = tmp_path / "output"
    config = sweep_file(tmp_path, "  m1: {%s: 1}\n  m4: {%s: 4}\n" % (CACHE, CACHE))
    args = ["--config", config, *GRID, "--data", data_root, "--output", out, "--", *LAUNCH_OPTS]
    seed1 = [*args[:args.index("--seeds") + 1], "1", *args[args.index("--seeds") + 3:]]
    first = run_sweep(seed1, tmp_path)  # seed 1 trains (train.py, each variant); seed 2 is written below
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "x 2 variant(s) = 2 jobs" in first.stdout and "2 ran, 0 skipped" in first.stdout
    assert "Variant" in first.stdout.split("2 ran, 0 skipped")[1], "the sweep's own table has the Variant column"
    mtimes = {}
    for variant, cache in (("m1", 1), ("m4", 4)):
        for kind in ("base2new_train", "base2new_test"):
            folder = run_dir(str(out), RunKey(kind, "synthetic", 2, "CoOp_TextRefiner", CFG, 1, variant))
            record = json.loads(open(os.path.join(folder, "result.json")).read())
            assert record["settings"][CACHE] == cache
            mtimes[folder] = os.stat(os.path.join(folder, "result.json")).st_mtime_ns
    report = json.loads((out / "sweep_logs" / "sweep_report.json").read_text())
    assert [j["name"].rsplit("-", 2)[1:] for j in report["jobs"]] == [["seed1", "m1"], ["seed1", "m4"]]

    # seed 2 finished without training (its result.json as train.py writes it, other accuracies):
    # the rerun of the whole grid finds every variant done and runs nothing
    settings = settings_from(*parse([str(a) for a in args[:args.index("--")]] + ["--", *LAUNCH_OPTS]))
    for job in settings.jobs():
        for step in job.steps:
            if job.seed == 2:
                finish_without_training(step, accuracy=40.0 + 10 * len(job.setup.tag) + int(job.setup.tag[1:]))
    with pytest.raises(SystemExit) as again:
        sweep([str(a) for a in args])
    assert again.value.code == 0
    assert "0 ran, 4 skipped" in capsys.readouterr().out
    for folder, mtime in mtimes.items():
        assert os.stat(os.path.join(folder, "result.json")).st_mtime_ns == mtime, "a finished variant is skipped"

    # the table: one row per variant, its name in the Variant column
    rows = list(csv.DictReader(io.StringIO(table([out, "--table", "base2new", "--format", "csv"], capsys))))
    synthetic = [(r["Method"], r["Variant"], r["Seeds"]) for r in rows if r["Dataset"] == "synthetic"]
    assert synthetic == [("CoOp_TextRefiner", "m1", "1,2"), ("CoOp_TextRefiner", "m4", "1,2")]
    assert "Variant" in table([out, "--table", "base2new"], capsys)
    only = list(csv.DictReader(io.StringIO(table([out, "--table", "base2new", "--format", "csv", "--variants",
                                                  "m4"], capsys))))
    assert {r["Variant"] for r in only} == {"m4"}

    # against the cache size: x from each variant's recorded settings, seed spread as error bars
    files = [tmp_path / "m.md", tmp_path / "m.csv"]
    has_plot = importlib.util.find_spec("matplotlib") is not None
    if has_plot:
        files.append(tmp_path / "m.png")
    text = table([out, "--table", "base2new", "--x", CACHE, "--format", "csv", "--save", *files], capsys)
    rows = list(csv.DictReader(io.StringIO(text)))
    points = [(r["Dataset"], r[CACHE], r["Variant"]) for r in rows]
    assert points == [("Average", "1", "m1"), ("Average", "4", "m4"), ("synthetic", "1", "m1"),
                      ("synthetic", "4", "m4")]
    for row in rows:
        for column in ("Base", "Novel", "HM"):
            assert 0 <= float(row[column]) <= 100 and float(row[f"{column}_std"]) >= 0
        assert row["Seeds"] == "1,2"
    synthetic_m1 = next(r for r in rows if r["Dataset"] == "synthetic" and r["Variant"] == "m1")
    base = [json.loads(open(os.path.join(run_dir(str(out), RunKey("base2new_train", "synthetic", 2, "CoOp_TextRefiner",
                                                                   CFG, s, "m1")), "result.json")).read())["accuracy"]
            for s in (1, 2)]
    assert float(synthetic_m1["Base_std"]) == pytest.approx(abs(base[0] - base[1]) / 2, abs=1e-4)
    assert open(files[1]).read() == text
    assert f"against {CACHE}" in open(files[0]).read()
    if has_plot:
        assert open(files[2], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    else:  # no matplotlib here: the .png is refused in one line that says how to get it
        with pytest.raises(SystemExit) as stop:
            parse_test_res([str(out), "--table", "base2new", "--x", CACHE, "--save", str(tmp_path / "m.png")])
        assert "pip install matplotlib" in stop.value.code and not (tmp_path / "m.png").exists()


def test_the_shipped_ablation_sweep_lists_one_job_per_variant_and_seed(tmp_path, capsys):
    config = REPO / "configs" / "sweeps" / "ablation_cache_synthetic.yaml"
    sweep(["--config", str(config), "--output", str(tmp_path / "out"), "--dry-run"])
    out = capsys.readouterr().out
    assert "x 5 variant(s) = 10 jobs" in out
    for variant in ("no_tr", "m1", "m5", "m10", "m25"):
        assert f"CoOp_TextRefiner [{variant}] seed 2: todo" in out
        assert os.path.join("vit_b16_ep10_ctxv1", variant, "seed2") in out


TESTBED_ABLATIONS = {  # the paper's ablation artifacts as shipped sweep files: file -> (variants, x key)
    "ablation_testbed_table3.yaml": (["coop", "aggregation", "plus_semantic", "plus_regularization", "all"], ""),
    "ablation_testbed_table4.yaml": (["sem_1_20", "sem_1_30", "sem_1_40", "sem_1_60", "reg_5", "reg_10", "reg_15",
                                      "reg_25", "release"], ""),
    "ablation_testbed_fig4.yaml": ([f"m{m}" for m in (1, 5, 10, 25, 50, 100)], "TRAINER.TEXTREFINER.CACHE_SIZE"),
    "ablation_testbed_fig5.yaml": ([f"alpha{a}" for a in ("0.0", "0.1", "0.2", "0.4", "0.6", "0.8", "1.0")],
                                   "TRAINER.TEXTREFINER.ALPHA"),
}


@pytest.mark.parametrize("name", sorted(TESTBED_ABLATIONS))
def test_the_shipped_testbed_ablations_plan_every_variant_on_both_datasets_and_three_seeds(name, tmp_path, capsys):
    variants, x_key = TESTBED_ABLATIONS[name]
    config = REPO / "configs" / "sweeps" / name
    sweep(["--config", str(config), "--output", str(tmp_path / "out"), "--dry-run"])
    out = capsys.readouterr().out
    assert f"2 dataset(s) x 1 shot count(s) x 3 seed(s) x 1 trainer(s) x {len(variants)} variant(s)" in out
    for variant in variants:
        for dataset in ("testbed_shapes", "testbed_patterns"):
            assert f"{dataset} 16-shot CoOp_TextRefiner [{variant}] seed 3: todo" in out
    if x_key:  # a figure's x axis: every variant but the release's sets the key to a number, each a different one
        import yaml

        values = [v[x_key] for v in yaml.safe_load(config.read_text())["variants"].values() if v]
        assert len(values) == len(variants) - 1 and all(isinstance(v, (int, float)) for v in values)
        assert len(set(values)) == len(values)
