"""A test step evaluates the model its training made, whatever training-only overrides that
training got: it takes them from the training's result.json; keys that change what is evaluated
must agree (else one line names the KEY VALUE pairs to pass); OVERWRITE=1 on a test step replaces
the evaluation, never the model."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import REPO, TINY
from launch_helpers import LAUNCH_OPTS, SHOTS, finish_without_training, launcher_env
from textrefiner.protocols import Setup
from textrefiner.protocols.evaluated import adopted, is_evaluated_key, model_mismatches, option_value
from textrefiner.protocols.steps import ModelMismatch, base2new_test, base2new_train

CFG = "vit_b16_ep10_ctxv1"
#: the fast training overrides, with OPTIM.MAX_EPOCH 2 as in the issue's command
TRAIN_OPTS = [*(x for k, v in zip(LAUNCH_OPTS[::2], LAUNCH_OPTS[1::2]) if k != "OPTIM.MAX_EPOCH" for x in (k, v)),
              "OPTIM.MAX_EPOCH", "2"]
BACKBONE = ["MODEL.BACKBONE.NAME", TINY]


def launch(script, *args, env, cwd, extra_env=()):
    return subprocess.run(["bash", str(REPO / "scripts" / "coop" / script), *map(str, args)], cwd=cwd,
                          env={**env, **dict(extra_env)}, capture_output=True, text=True)


def snapshot(folder):
    """Every file under ``folder`` with its size and modification time."""
    return {os.path.relpath(os.path.join(d, n), folder): (os.stat(os.path.join(d, n)).st_size,
                                                          os.stat(os.path.join(d, n)).st_mtime_ns)
            for d, _, names in os.walk(folder) for n in names}


def test_a_test_step_without_the_training_overrides_evaluates_that_model(data_root, tmp_path):
    out = tmp_path / "output"
    env = launcher_env(data_root, out)
    trained = launch("base2new_train.sh", "synthetic", 1, *TRAIN_OPTS, env=env, cwd=tmp_path)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    tail = os.path.join("synthetic", f"shots_{SHOTS}", "CoOp_TextRefiner", CFG, "seed1")
    model, evaluation = out / "base2new" / "train_base" / tail, out / "base2new" / "test_new" / tail
    before = snapshot(model)

    # no overrides at all: the backbone changes what is evaluated, so the step names the pair to pass
    refused = launch("base2new_test.sh", "synthetic", 1, env=env, cwd=tmp_path)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert f"pass the same KEY VALUE pairs to this step: MODEL.BACKBONE.NAME {TINY}" in refused.stderr
    assert "OVERWRITE" not in refused.stderr and "TAG=" not in refused.stderr

    # the backbone alone: OPTIM.MAX_EPOCH, batch sizes, workers, precision come from the training
    tested = launch("base2new_test.sh", "synthetic", 1, *BACKBONE, env=env, cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout[-2000:] + tested.stderr[-2000:]
    assert "Note: evaluating the model in" in tested.stdout and "OPTIM.MAX_EPOCH 2" in tested.stdout
    record = json.loads((evaluation / "result.json").read_text())
    trained_settings = json.loads((model / "result.json").read_text())["settings"]
    assert record["settings"]["OPTIM.MAX_EPOCH"] == 2 and record["model_dir"] == str(model)
    assert record["split"] == "new" and trained_settings["DATASET.SUBSAMPLE_CLASSES"] == "base"
    assert {k: v for k, v in record["settings"].items() if not k.startswith("DATASET.")} == {
        k: v for k, v in trained_settings.items() if not k.startswith("DATASET.")}
    again = launch("base2new_test.sh", "synthetic", 1, *BACKBONE, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "Skip" in again.stdout

    # a key that shapes the model: refused in one line naming the training's value
    other_cache = launch("base2new_test.sh", "synthetic", 1, *BACKBONE, "TRAINER.TEXTREFINER.CACHE_SIZE", 7,
                         env=env, cwd=tmp_path)
    assert other_cache.returncode == 2 and len(other_cache.stderr.strip().splitlines()) == 1
    assert "TRAINER.TEXTREFINER.CACHE_SIZE 25 there, 7 here" in other_cache.stderr
    assert other_cache.stderr.rstrip().endswith("TRAINER.TEXTREFINER.CACHE_SIZE 25")

    # an evaluation-time change over a finished evaluation: refused without a word of the model's
    # deletion; OVERWRITE=1 replaces the evaluation only
    batch = ("DATALOADER.TEST.BATCH_SIZE", 8)
    refused = launch("base2new_test.sh", "synthetic", 1, *BACKBONE, *batch, env=env, cwd=tmp_path)
    assert refused.returncode == 2 and "DATALOADER.TEST.BATCH_SIZE: 16 there, 8 now" in refused.stderr
    assert "TAG=" not in refused.stderr and f"the model in {model} is not touched" in refused.stderr
    replaced = launch("base2new_test.sh", "synthetic", 1, *BACKBONE, *batch, env=env, cwd=tmp_path,
                      extra_env={"OVERWRITE": "1"})
    assert replaced.returncode == 0, replaced.stdout[-2000:] + replaced.stderr[-2000:]
    assert f"Overwrite: deleting {evaluation}" in replaced.stdout
    record = json.loads((evaluation / "result.json").read_text())
    assert record["settings"]["DATALOADER.TEST.BATCH_SIZE"] == 8 and record["settings"]["OPTIM.MAX_EPOCH"] == 2
    assert snapshot(model) == before  # no test step touched the model's folder


def test_which_keys_an_evaluation_takes_and_which_must_agree(tmp_path):
    trained = {"OPTIM.MAX_EPOCH": 2, "OPTIM.LR": 0.01, "TRAINER.COOP.N_CTX": 8, "DATASET.SUBSAMPLE_CLASSES": "base",
               "TRAINER.TEXTREFINER.LAMBDA_SEM": 0.5, "INPUT.SIZE": [224, 224], "SEED": 1}
    own = {"OPTIM.MAX_EPOCH": 10, "OPTIM.LR": 0.002, "TRAINER.COOP.N_CTX": 16, "DATASET.SUBSAMPLE_CLASSES": "new",
           "TRAINER.TEXTREFINER.LAMBDA_SEM": 0.02, "INPUT.SIZE": [224, 224], "SEED": 2}
    assert model_mismatches(trained, own) == [("TRAINER.COOP.N_CTX", 8, 16)]
    assert adopted(trained, own, given=["OPTIM.LR"]) == [("OPTIM.MAX_EPOCH", 2), ("TRAINER.TEXTREFINER.LAMBDA_SEM", 0.5)]
    assert all(map(is_evaluated_key, ("TRAINER.MAPLE.PROMPT_DEPTH", "TRAINER.TEXTREFINER.ENABLED", "INPUT.SIZE")))
    assert not any(map(is_evaluated_key, ("OPTIM.MAX_EPOCH", "TRAINER.COOP.PREC", "TRAIN.PRINT_FREQ")))
    # values go through the command line and come back as the same type (yacs literal-evaluates strings)
    assert [option_value(v) for v in ("a photo of a", "8", 1e-5, True, [224, 224], "")] == [
        "a photo of a", "'8'", "1e-05", "True", "[224, 224]", ""]

    # on steps: a model trained with other training-only values is evaluated with them; another
    # context length refuses with the pair to pass; the model's folder is never the step's to replace
    trained_setup = Setup("CoOp", CFG, output=str(tmp_path), opts=(*LAUNCH_OPTS, "OPTIM.LR", "0.01"))
    finish_without_training(base2new_train(trained_setup, "synthetic", 1, 2))
    test = base2new_test(Setup("CoOp", CFG, output=str(tmp_path), opts=tuple(BACKBONE)), "synthetic", 1, 2)
    command = test.command()
    assert command[command.index("OPTIM.LR") + 1] == "0.01" and "--eval-only" in command
    assert test.expected[1]["OPTIM.LR"] == 0.01 and test.expected[1]["OPTIM.MAX_EPOCH"] == 1
    other = base2new_test(Setup("CoOp", CFG, output=str(tmp_path), opts=(*BACKBONE, "TRAINER.COOP.N_CTX", "8")),
                          "synthetic", 1, 2)
    with pytest.raises(ModelMismatch, match=r"pass the same KEY VALUE pairs to this step: TRAINER.COOP.N_CTX 16\Z"):
        other.command()

    # a finished evaluation stays finished when its model's folder is deleted (disk space): it recorded
    # the settings it took, so it is skipped as before, not refused as "other settings"
    finish_without_training(test)
    shutil.rmtree(test.evaluates.output_dir)
    again = base2new_test(Setup("CoOp", CFG, output=str(tmp_path), opts=tuple(BACKBONE)), "synthetic", 1, 2)
    assert again.done and again.conflict() is None
