"""The paper command's plan on real data, without data or a GPU (``--data X --dry-run``): every
artifact's jobs with the paper's datasets, seeds, shots, configs and epochs."""
import os

import pytest

from textrefiner.errors import UserError
from textrefiner.paper import plan
from textrefiner.paper.cli import build_parser, config_value, main, make_plan
from textrefiner.results.benchmarks import BASE2NEW_DATASETS, DOMAIN_GENERALISATION_TARGETS

#: the paper's protocol (paper section "Implementation details" and the hosts' releases):
#: trainer -> (epochs, batch) of its base-to-novel config
PAPER_EPOCHS = {"CoOp": (10, 32), "CoCoOp": (10, 1), "MaPLe": (5, 4), "PromptSRC": (20, 4), "PromptKD": (20, 8)}


@pytest.fixture
def real(tmp_path):
    return plan.make_world(str(tmp_path), str(tmp_path / "out"), None, False)


def test_table1_is_the_papers_protocol(real):
    groups = plan.table1_groups(real)
    trainers = [t for g in groups for t in g.settings.trainers]
    for method in ("ZeroshotCLIP", "CoOp", "CoOp_TextRefiner", "CoCoOp", "MaPLe", "MaPLe_TextRefiner", "PromptSRC",
                   "PromptKD", "PromptKD_TextRefiner"):
        assert method in trainers
    for group in groups:
        s = group.settings
        assert tuple(s.datasets) == BASE2NEW_DATASETS and s.seeds == [1, 2, 3] and s.shots == [16]
        assert s.protocol == "base2new" and not s.opts and s.data == real.data
        base = s.trainers[0].replace("_TextRefiner", "")
        if base in PAPER_EPOCHS:
            epochs, batch = PAPER_EPOCHS[base]
            assert config_value(s.trainers[0], s.cfg, "OPTIM.MAX_EPOCH") == epochs
            assert config_value(s.trainers[0], s.cfg, "DATALOADER.TRAIN_X.BATCH_SIZE") == batch
        assert "testbed" not in s.cfg
        assert len(s.jobs()) == len(s.trainers) * 11 * 3


def test_table2_is_imagenet_to_its_shifts(real):
    for group in plan.table2_groups(real):
        s = group.settings
        assert s.protocol == "xd" and s.source == "imagenet" and tuple(s.datasets) == DOMAIN_GENERALISATION_TARGETS
        jobs = s.jobs()
        assert len(jobs) == len(s.trainers) * 3  # one model per seed, evaluated on every target
        assert [step.key.dataset for step in jobs[0].steps] == ["imagenet", *DOMAIN_GENERALISATION_TARGETS]



@pytest.mark.parametrize("testbed", [False, True])
def test_rows_not_in_the_paper_only_when_asked(tmp_path, monkeypatch, testbed):
    """CoCoOp w/TR is in neither of the paper's tables: by default Tables 1-2 have the paper's rows
    (and MaPLe w/TR in Table 1); --cocoop-textrefiner adds it right after CoCoOp in both, nothing else."""
    data = None if testbed else str(tmp_path)
    default, asked = (plan.make_world(data, str(tmp_path / "out"), (1,), False, cocoop_textrefiner=flag)
                      for flag in (False, True))
    for groups_of in (plan.table1_groups, plan.table2_groups):
        without = [t for g in groups_of(default) for t in g.settings.trainers]
        with_it = [t for g in groups_of(asked) for t in g.settings.trainers]
        assert "CoCoOp" in without and "CoCoOp_TextRefiner" not in without
        assert with_it.index("CoCoOp_TextRefiner") == with_it.index("CoCoOp") + 1
        assert [t for t in with_it if t != "CoCoOp_TextRefiner"] == without
    # the option reaches the plan from the command line
    monkeypatch.delenv("TEACHER_DIR", raising=False)  # make_plan sets it for the jobs; restored after
    args = build_parser().parse_args(["table1", "--cocoop-textrefiner", "--out", str(tmp_path / "o")])
    assert make_plan(args).world.cocoop_textrefiner
    assert not make_plan(build_parser().parse_args(["table1", "--out", str(tmp_path / "o")])).world.cocoop_textrefiner

def test_ablations_are_imagenet_with_the_coop_host(real):
    values = {}
    for artifact in ("table3", "table4", "fig4", "fig5"):
        (group,) = plan.ablation_groups(real, artifact)
        s = group.settings
        assert s.trainers == ["CoOp_TextRefiner"] and s.cfg == "vit_b16_ep10_ctxv1" and s.datasets == ["imagenet"]
        values[artifact] = s.variants
    assert list(values["table3"]) == ["coop", "aggregation", "plus_semantic", "plus_regularization", "all"]
    cache = {int(v[1]) for v in values["fig4"].values() if v} | {25}
    assert {1, 5, 10, 25, 50, 100} <= cache
    alpha = {float(v[1]) for v in values["fig5"].values() if v} | {0.2}
    assert {0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0} <= alpha
    lambda1 = {round(1 / float(v[1])) for v in values["table4"].values() if v and v[0].endswith("LAMBDA_SEM")} | {50}
    lambda2 = {float(v[1]) for v in values["table4"].values() if v and v[0].endswith("LAMBDA_REG")} | {20.0}
    assert lambda1 == {20, 30, 40, 50, 60} and lambda2 == {5.0, 10.0, 15.0, 20.0, 25.0}


def test_dry_run_lists_every_job(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TEACHER_DIR", "")  # the command sets it for its PromptKD jobs: restored after the test
    with pytest.raises(SystemExit) as done:
        main(["table1", "table3", "--data", str(tmp_path), "--dry-run", "--out", str(tmp_path / "out")])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "seeds 1 2 3; shots 16; epochs 10; batch 32" in text
    assert "base2new_train" in text and "(done)" not in text
    # PromptKD's teachers come first: the release's ViT-L/14 PromptSRC, one per dataset, under the runs
    teachers = [line for line in text.splitlines() if line.startswith("teacher: ")]
    assert len(teachers) == 11 and all("PromptSRC vit_l14_c2_ep20_batch8_4+4ctx" in line for line in teachers)
    assert all(str(tmp_path / "out" / "runs" / "teachers") in line for line in teachers)
    assert not (tmp_path / "out" / "runs").exists()  # a dry run writes nothing


def test_quick_is_one_seed_one_epoch(tmp_path):
    world = plan.make_world(str(tmp_path), str(tmp_path / "out"), None, True)
    (group,) = plan.ablation_groups(world, "table3")
    assert world.seeds == (1,) and group.settings.opts == ["OPTIM.MAX_EPOCH", "1"]
    assert world.runs.endswith("runs_quick")


def test_mistakes_end_in_one_line(tmp_path, capsys):
    with pytest.raises(UserError, match="unknown artifact 'table9'"):
        plan.expand(["table9"])
    assert plan.expand(["fig3", "all", "table1"]) == list(plan.ARTIFACTS)
    with pytest.raises(SystemExit) as done:
        main(["table1", "--data", str(tmp_path / "absent"), "--dry-run"])
    assert "is not a folder" in str(done.value.code)


def test_report_only_runs_nothing_and_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("TEACHER_DIR", "")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as done:
        main(["table3", "--report-only", "--out", str(out), "--testbed-data", str(tmp_path / "data")])
    assert done.value.code == 0
    assert "No finished runs" in (out / "table3.md").read_text()
    report = (out / "report.md").read_text()
    assert "### Claim 6: no data" in report and "Table 3's variants" in report
    assert not (out / "runs").exists() and not (tmp_path / "data").exists()


def test_jobs_default_one_per_core_on_the_testbed_only(monkeypatch, tmp_path):
    """Without --jobs the testbed runs one job per core (at most 4); real data, GPUs and other executors one
    at a time; --jobs 0 is refused with one line."""
    from textrefiner.paper.cli import build_parser, default_jobs, make_plan

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert default_jobs(build_parser().parse_args(["table1"])) == 2
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert default_jobs(build_parser().parse_args(["table1"])) == 4
    assert default_jobs(build_parser().parse_args(["table1", "--data", str(tmp_path)])) == 1
    assert default_jobs(build_parser().parse_args(["table1", "--gpus", "0"])) == 1
    assert default_jobs(build_parser().parse_args(["table1", "--executor", "slurm"])) == 1
    with pytest.raises(UserError, match="--jobs 0"):
        make_plan(build_parser().parse_args(["table1", "--jobs", "0", "--out", str(tmp_path)]))


@pytest.mark.parametrize("jobs", [1, 2])
def test_ablations_run_side_by_side_on_the_cpu(monkeypatch, tmp_path, jobs):
    """Tables 1-2 first, alone; then the four ablations: with --jobs 2 two at a time, each running its
    groups one by one and every process with its share of the cores (OMP_NUM_THREADS restored after);
    with --jobs 1 one after another."""
    import threading
    import time

    from textrefiner.paper import cli
    from textrefiner.sweep import cli as sweep_cli
    from textrefiner.sweep.runner import JobOutcome

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    the_plan = cli.make_plan(cli.build_parser().parse_args(
        ["all", "--quick", "--jobs", str(jobs), "--out", str(tmp_path)]))
    calls, lock, running, peak = [], threading.Lock(), [0], [0]

    def fake_run_jobs(settings, batch):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            calls.append((bool(settings.variants), settings.parallel, os.environ.get("OMP_NUM_THREADS"), running[0]))
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return [JobOutcome(job.name, job.label, "ok") for job in batch]

    monkeypatch.setattr(sweep_cli, "run_jobs", fake_run_jobs)
    jobs_of = {i: g.settings.jobs() for i, g in enumerate(the_plan.groups)}
    assert cli.run_groups(the_plan, jobs_of, no_preflight=True) == 0
    assert calls[0] == (False, jobs, None, 1)  # Tables 1-2: one pool of --jobs slots, nothing else at the same time
    ablations = calls[1:]
    assert len(ablations) == 4 and all(variants for variants, *_ in ablations)
    if jobs == 2:
        assert peak[0] == 2 and all(parallel == 1 and omp == "2" for _, parallel, omp, _ in ablations)
    else:
        assert peak[0] == 1 and all(parallel == 1 and omp is None for _, parallel, omp, _ in ablations)
    assert "OMP_NUM_THREADS" not in os.environ
