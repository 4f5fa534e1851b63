"""Trained models and logs in the upstream repositories' layouts (CoCoOp and MaPLe cross-dataset,
MaPLe base-to-novel, PromptSRC few-shot: log.txt and checkpoints, no result.json) are found by
the evaluation steps and the tables; the upstream script names and argument forms work."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from launch_helpers import LAUNCH_OPTS, SHOTS, finish_without_training, launcher_env
from textrefiner.protocols import Setup
from textrefiner.protocols.steps import base2new_test, few_shot, xd_test
from textrefiner.results.tables import protocol_summary

MAPLE_B2N = "vit_b16_c2_ep5_batch4_2ctx"
MAPLE_XD = "vit_b16_c2_ep5_batch4_2ctx_cross_datasets"
COOP = "vit_b16_ep10_ctxv1"


def write(path, text=""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def result_lines(accuracy):
    return f"=> result\n* total: 100\n* correct: {accuracy:.0f}\n* accuracy: {accuracy:.1f}%\n* error: 0.0%\n"


def upstream_training(folder, accuracy, last_epoch):
    """What an upstream train.py leaves: a log whose test result follows Finish training, and checkpoints."""
    write(os.path.join(folder, "log.txt"), "Evaluate on the *val* set\n" + result_lines(1.0)
          + "Finish training\nEvaluate on the *test* set\n" + result_lines(accuracy))
    write(os.path.join(folder, "prompt_learner", f"model.pth.tar-{last_epoch}"))


def upstream_evaluation(folder, accuracy):
    write(os.path.join(folder, "log.txt"), "Loading weights to prompt_learner\n" + result_lines(accuracy))


def test_maple_base2new_models_are_evaluated_and_tabulated(tmp_path):
    tail = os.path.join("synthetic", "shots_16", "MaPLe", MAPLE_B2N, "seed1")
    upstream_training(tmp_path / "base2new" / "train_base" / tail, 80.0, last_epoch=5)
    step = base2new_test(Setup("MaPLe", MAPLE_B2N, output=str(tmp_path)), "synthetic", 1)
    command = step.command()  # MaPLe's base2new_test_maple.sh: --model-dir train_base/... --load-epoch 5
    assert command[command.index("--model-dir"):command.index("--model-dir") + 4] == [
        "--model-dir", str(tmp_path / "base2new" / "train_base" / tail), "--load-epoch", "5"]

    upstream_evaluation(tmp_path / "base2new" / "test_new" / tail, 60.0)
    assert step.done
    summary = protocol_summary(str(tmp_path), "base2new")
    assert (summary.get("MaPLe", "synthetic", "Base").mean, summary.get("MaPLe", "synthetic", "Novel").mean) == (80, 60)


def test_cross_dataset_models_in_cocoop_and_maple_layout_are_found(tmp_path):
    maple = tmp_path / "imagenet" / "MaPLe" / f"{MAPLE_XD}_16shots" / "seed1"
    upstream_training(maple, 70.0, last_epoch=2)
    command = xd_test(Setup("MaPLe", MAPLE_XD, output=str(tmp_path)), "caltech101", 1).command()
    assert command[command.index("--model-dir"):command.index("--model-dir") + 4] == [
        "--model-dir", str(maple), "--load-epoch", "2"]  # as MaPLe's xd_test_maple.sh

    cfg = "vit_b16_c4_ep10_batch1_ctxv1"  # CoCoOp's own scripts' output
    upstream_training(tmp_path / "imagenet" / "CoCoOp" / f"{cfg}_16shots" / "seed1", 71.0, last_epoch=10)
    upstream_evaluation(tmp_path / "evaluation" / "CoCoOp" / f"{cfg}_16shots" / "caltech101" / "seed1", 94.0)
    xd = protocol_summary(str(tmp_path), "xd", trainers=["CoCoOp"])
    assert (xd.get("CoCoOp", "imagenet", "Accuracy").mean, xd.get("CoCoOp", "caltech101", "Accuracy").mean) == (71, 94)


def test_promptsrc_few_shot_runs_are_tabulated(tmp_path):
    for seed, accuracy in ((1, 60.0), (2, 62.0), (3, 64.0)):
        folder = tmp_path / "dtd" / "PromptSRC" / "vit_b16_c2_ep50_batch4_4+4ctx_few_shot_4shots" / f"seed{seed}"
        upstream_training(folder, accuracy, last_epoch=50)
    summary = protocol_summary(str(tmp_path), "few_shot")
    stat = summary.get("PromptSRC", "dtd", "4 shots")
    assert (stat.mean, stat.seeds) == (62.0, (1, 2, 3))


def bash(script, *args, env, cwd):
    return subprocess.run(["bash", str(REPO / "scripts" / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_few_shot_without_seed_and_coop_main_sh_run_seeds_1_to_3(data_root, tmp_path):
    out = tmp_path / "output"
    env = launcher_env(data_root, out)
    setup = Setup("CoOp_TextRefiner", COOP, output=str(out), opts=tuple(LAUNCH_OPTS))
    for seed in (1, 2, 3):
        finish_without_training(few_shot(setup, "synthetic", SHOTS, seed))
    proc = bash("coop/few_shot.sh", "synthetic", SHOTS, *LAUNCH_OPTS, env=env, cwd=tmp_path)  # PromptSRC's form
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("Skip") == 3

    context = ("TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "False", "TRAINER.COOP.CLASS_TOKEN_POSITION", "end")
    tagged = Setup("CoOp_TextRefiner", COOP, output=str(out), opts=(*context, *LAUNCH_OPTS),
                   tag="nctx4_cscFalse_ctpend")
    for seed in (1, 2, 3):
        finish_without_training(few_shot(tagged, "synthetic", SHOTS, seed))
    proc = bash("coop/main.sh", "synthetic", COOP, "end", 4, SHOTS, "False", *LAUNCH_OPTS, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for seed in (1, 2, 3):  # CoOp's main.sh folder
        assert f"{out}/synthetic/CoOp_TextRefiner/{COOP}_{SHOTS}shots/nctx4_cscFalse_ctpend/seed{seed}" in proc.stdout

    assert bash("coop/main.sh", "synthetic", COOP, env=env, cwd=tmp_path).returncode == 2
    refused = bash("maple/xd_train_maple.sh", "dtd", 1, env=env, cwd=tmp_path)
    assert refused.returncode == 2 and "imagenet" in refused.stderr


def test_zeroshot_sh_writes_coops_folder(data_root, tmp_path):
    env = launcher_env(data_root, tmp_path / "output")
    proc = bash("coop/zeroshot.sh", "synthetic", COOP, "MODEL.BACKBONE.NAME", "random:tiny",
                "DATALOADER.NUM_WORKERS", 0, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    record = json.loads((tmp_path / "output" / "ZeroshotCLIP" / COOP / "synthetic" / "result.json").read_text())
    assert record["trainer"] == "ZeroshotCLIP" and 0 <= record["accuracy"] <= 100


@pytest.mark.parametrize("step", ["base2new_train", "base2new_test", "xd_test"])
def test_maple_aliases_reach_the_same_step(step, tmp_path):
    proc = subprocess.run(["bash", str(REPO / "scripts" / "maple" / f"{step}_maple.sh")], capture_output=True,
                          text=True, cwd=tmp_path, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 2 and f"scripts/maple/{step}.sh DATASET SEED" in proc.stderr


def test_a_yaml_of_a_method_we_do_not_have_fails_in_one_line_naming_the_fix(tmp_path, capsys):
    """KgCoOp's YAML (its own TRAINER.KGCOOP section): CoCoOp's is ours since CoCoOp became a host."""
    from textrefiner.cli.train import main as train_py

    config = tmp_path / "vit_b16_ep10_ctxv1.yaml"
    config.write_text("TRAINER:\n  KGCOOP:\n    N_CTX: 4\n    PREC: fp16\n")
    with pytest.raises(SystemExit) as exit_info:
        train_py(["--config-file", str(config), "--trainer", "CoOp", "--output-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()  # the Error line goes to stderr before the log file exists
    out = captured.out + captured.err
    assert "Unknown config key TRAINER.KGCOOP" in out and "configs/trainers/<Trainer>/" in out


PROMPTKD_B2N = "vit_b16_c2_ep20_batch8_4+4ctx"


def promptkd_training(folder, validations, novel):
    """A base-to-novel log of PromptKD's release: each epoch validates on the base classes, and the test
    after Finish training scores the novel classes with the best-validated model."""
    log = "".join(f"epoch [{e}/3]\nEvaluate on the *val* set\n{result_lines(v)}* macro_f1: {v - 1:.1f}%\n"
                  for e, v in enumerate(validations, 1))
    write(os.path.join(folder, "log.txt"), log + "Finish training\nDeploy the model with the best val performance\n"
          "Evaluate on the *test* set\n" + result_lines(novel) + f"* macro_f1: {novel - 1:.1f}%\n")
    write(os.path.join(folder, "VLPromptLearner", "model-best.pth.tar"))


def test_promptkd_release_layout_is_tabulated(tmp_path):
    """PromptKD's base2new_train.sh: .../shots_0/PromptKD/<cfg>/seed_<S>, Base (best validation) and Novel
    (final test) in one log; its xd_train.sh: <target>/PromptKD/<cfg>_cross_datasets_0shots/seed<S>."""
    tail = tmp_path / "base2new" / "train_base" / "dtd" / "shots_0" / "PromptKD" / PROMPTKD_B2N
    promptkd_training(tail / "seed_1", [70.0, 80.0, 75.0], novel=60.0)
    promptkd_training(tail / "seed_2", [82.0, 81.0, 78.0], novel=64.0)
    for seed, accuracy in ((1, 90.0), (2, 92.0)):
        upstream_training(tmp_path / "caltech101" / "PromptKD" / f"{PROMPTKD_B2N}_cross_datasets_0shots" /
                          f"seed{seed}", accuracy, last_epoch=20)

    b2n = protocol_summary(str(tmp_path), "base2new")
    base, novel = b2n.get("PromptKD", "dtd", "Base"), b2n.get("PromptKD", "dtd", "Novel")
    assert (base.mean, base.seeds, novel.mean, novel.seeds) == (81.0, (1, 2), 62.0, (1, 2))
    assert protocol_summary(str(tmp_path), "base2new", metric="macro_f1").get("PromptKD", "dtd", "Base").mean == 80.0
    xd = protocol_summary(str(tmp_path), "xd")
    assert xd.get("PromptKD", "caltech101", "Accuracy").mean == 91.0
    with pytest.raises(FileNotFoundError, match="No finished few_shot runs"):  # not a few-shot run
        protocol_summary(str(tmp_path), "few_shot")

    proc = subprocess.run([sys.executable, str(REPO / "parse_test_res.py"), str(tmp_path), "--table", "base2new",
                           "--format", "csv"], capture_output=True, text=True)
    assert "dtd,PromptKD,81.0000,1.0000,62.0000,2.0000" in proc.stdout, proc.stdout + proc.stderr
    # CoOp's per-seed form reads the same folders (seed_<S> are its seed folders)
    proc = subprocess.run([sys.executable, str(REPO / "parse_test_res.py"), str(tail)], capture_output=True, text=True)
    assert "* accuracy: 62.00% +- 2.00%" in proc.stdout, proc.stdout + proc.stderr


def test_promptkd_release_key_trainer_modal_is_an_alias(tmp_path, capsys):
    from textrefiner.run_config import build_run_config, merge as merge_module

    merge_module._noted.clear()
    base = ["--trainer", "PromptKD", "--dataset-config-file", str(REPO / "configs" / "datasets" / "dtd.yaml")]
    cfg = build_run_config([*base, "--config-file", str(REPO / "configs" / "trainers" / "PromptKD" /
                                                         f"{PROMPTKD_B2N}.yaml"), "TRAINER.MODAL", "cross"])
    assert cfg.TRAINER.PROMPTKD.MODAL == "cross"
    yaml_file = tmp_path / "release.yaml"  # a YAML that gives the release's key
    yaml_file.write_text("TRAINER:\n  MODAL: cross\n  PROMPTKD:\n    KD_WEIGHT: 200.0\n")
    cfg = build_run_config([*base, "--config-file", str(yaml_file)])
    assert (cfg.TRAINER.PROMPTKD.MODAL, cfg.TRAINER.PROMPTKD.KD_WEIGHT) == ("cross", 200.0)
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Note:")]
    assert notes == ["Note: TRAINER.MODAL (the PromptKD release's name) is read as TRAINER.PROMPTKD.MODAL"]
    # a launcher step given the release's key knows it was given ours (a test step does not replace it)
    step = base2new_test(Setup("PromptKD", PROMPTKD_B2N, opts=("TRAINER.MODAL", "base2novel")), "dtd", 1)
    assert step.given_keys == {"TRAINER.PROMPTKD.MODAL"}
