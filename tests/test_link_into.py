"""``python -m textrefiner.resources --link-into CHECKOUT``: an upstream script inside a checkout
finds our configs where it looks them up (``configs/...`` relative to the checkout)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from textrefiner.resources import child_env, config_dir, link_into

# The shape of CoCoOp's scripts: run from their own folder, `cd ../..`, configs looked up
# relative to the checkout, the trainer a line of the script.
UPSTREAM_SCRIPT = """#!/bin/bash
cd ../..
DATA=/path/to/datasets
TRAINER=CoOp

DATASET=$1
CFG=$2
for SEED in 1 2
do
    python train.py --root ${DATA} --seed ${SEED} --trainer ${TRAINER} \\
    --dataset-config-file configs/datasets/${DATASET}.yaml \\
    --config-file configs/trainers/${TRAINER}/${CFG}.yaml \\
    --output-dir output/${DATASET}/${TRAINER}/${CFG}/seed${SEED} DATASET.NUM_SHOTS 16
done
"""
# Stands for the checkout's train.py (Dassl's config loading): opens both files by their relative paths.
FAKE_TRAIN_PY = """import argparse, yaml
p = argparse.ArgumentParser()
for flag in ("--root", "--seed", "--trainer", "--dataset-config-file", "--config-file", "--output-dir"):
    p.add_argument(flag)
p.add_argument("opts", nargs="*")
a = p.parse_args()
trainer = yaml.safe_load(open(a.config_file))
dataset = yaml.safe_load(open(a.dataset_config_file))
print(f"seed {a.seed}: {a.trainer} on {dataset['DATASET']['NAME']}, {trainer['OPTIM']['MAX_EPOCH']} epochs")
"""
# The line the docs give: a copy of the user's script that runs our trainer.
EDIT_SCRIPT = "sed 's/^TRAINER=CoOp$/TRAINER=CoOp_TextRefiner/' main.sh > main_textrefiner.sh"


def _checkout(root: Path) -> Path:
    """A CoOp-like checkout with its own CoOp configs and one dataset config of its own."""
    checkout = root / "CoOp"
    (checkout / "configs" / "trainers" / "CoOp").mkdir(parents=True)
    (checkout / "configs" / "trainers" / "CoOp" / "vit_b16_ep10_ctxv1.yaml").write_text("OPTIM:\n  MAX_EPOCH: 200\n")
    (checkout / "configs" / "datasets").mkdir()
    (checkout / "configs" / "datasets" / "oxford_pets.yaml").write_text("DATASET:\n  NAME: TheirPets\n")
    (checkout / "scripts" / "coop").mkdir(parents=True)
    (checkout / "scripts" / "coop" / "main.sh").write_text(UPSTREAM_SCRIPT)
    (checkout / "train.py").write_text(FAKE_TRAIN_PY)
    return checkout


def _tree(path: Path) -> dict:
    """Every entry below ``path``: a link's target, a file's text, or None for a folder."""
    entries = {}
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            p = Path(folder) / name
            entries[str(p.relative_to(path))] = (
                os.readlink(p) if p.is_symlink() else None if p.is_dir() else p.read_text())
    return entries


def _run_script(checkout: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    return subprocess.run(["bash", script, *args], cwd=checkout / "scripts" / "coop", env=env,
                          capture_output=True, text=True)


def test_an_upstream_script_runs_our_trainer_after_link_into(tmp_path):
    checkout = _checkout(tmp_path)
    subprocess.run(EDIT_SCRIPT, shell=True, check=True, cwd=checkout / "scripts" / "coop")
    before = _run_script(checkout, "main_textrefiner.sh", "testbed_shapes", "vit_b16_ep10_ctxv1")
    assert before.returncode != 0 and "configs/trainers/CoOp_TextRefiner/vit_b16_ep10_ctxv1.yaml" in before.stderr

    linked = subprocess.run([sys.executable, "-m", "textrefiner.resources", "--link-into", str(checkout)],
                            capture_output=True, text=True, cwd=tmp_path, env=child_env())
    assert linked.returncode == 0, linked.stderr
    assert "linked configs/trainers/CoOp_TextRefiner ->" in linked.stdout
    assert "linked configs/datasets/testbed_shapes.yaml ->" in linked.stdout
    assert "kept the checkout's own 1 trainer folder(s) (CoOp) and 1 dataset file(s)" in linked.stdout

    after = _run_script(checkout, "main_textrefiner.sh", "testbed_shapes", "vit_b16_ep10_ctxv1")
    assert after.returncode == 0, after.stderr
    assert after.stdout.splitlines() == [f"seed {s}: CoOp_TextRefiner on TestbedShapes, 10 epochs" for s in (1, 2)]
    # the checkout's own configs still win for its own trainer and dataset
    theirs = _run_script(checkout, "main.sh", "oxford_pets", "vit_b16_ep10_ctxv1")
    assert theirs.returncode == 0 and "seed 1: CoOp on TheirPets, 200 epochs" in theirs.stdout


def test_every_trainer_folder_and_missing_dataset_is_linked_and_a_second_run_changes_nothing(tmp_path, capsys):
    checkout = _checkout(tmp_path)
    assert link_into(str(checkout)) == 0
    first = capsys.readouterr().out
    ours = Path(config_dir())
    for name in ("CoOp_TextRefiner", "CoCoOp_TextRefiner", "MaPLe_TextRefiner", "PromptKD_TextRefiner",
                 "PromptSRC_TextRefiner", "MaPLe", "PromptKD"):
        link = checkout / "configs" / "trainers" / name
        assert link.is_symlink() and link.resolve() == (ours / "trainers" / name).resolve()
    assert not (checkout / "configs" / "trainers" / "CoOp").is_symlink()  # theirs
    assert not (checkout / "configs" / "datasets" / "oxford_pets.yaml").is_symlink()
    assert (checkout / "configs" / "datasets" / "caltech101.yaml").is_symlink()
    created = [line for line in first.splitlines() if line.startswith("linked ")]
    assert len(created) == len(list((ours / "trainers").iterdir())) - 1 + len(list((ours / "datasets").glob("*.yaml"))) - 1

    tree = _tree(checkout)
    assert link_into(str(checkout)) == 0
    second = capsys.readouterr().out
    assert second.startswith(f"Nothing to do: {checkout} already sees this package's configs ({len(created)} links)")
    assert "linked" not in second and _tree(checkout) == tree


def test_dry_run_lists_the_links_and_makes_none(tmp_path, capsys):
    checkout = _checkout(tmp_path)
    tree = _tree(checkout)
    assert link_into(str(checkout), dry_run=True) == 0
    out = capsys.readouterr().out
    assert "would link configs/trainers/CoOp_TextRefiner ->" in out and "would be created" in out
    assert _tree(checkout) == tree


@pytest.mark.parametrize("kind", ["folder", "link elsewhere", "broken link"])
def test_a_users_own_file_where_our_link_belongs_is_refused_and_nothing_changes(tmp_path, capsys, kind):
    checkout = _checkout(tmp_path)
    mine = checkout / "configs" / "trainers" / "MaPLe_TextRefiner"
    if kind == "folder":
        mine.mkdir()
        (mine / "my_edit.yaml").write_text("OPTIM:\n  MAX_EPOCH: 3\n")
    elif kind == "link elsewhere":
        (tmp_path / "elsewhere").mkdir()
        mine.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    else:  # an earlier install's link to a dataset config, gone since: it would hide ours
        mine = checkout / "configs" / "datasets" / "dtd.yaml"
        mine.symlink_to(tmp_path / "old-venv" / "dtd.yaml")
    tree = _tree(checkout)
    assert link_into(str(checkout)) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert str(mine.relative_to(checkout)) in captured.err and "remove or move them and rerun" in captured.err
    assert {"folder": "your own folder", "link elsewhere": f"a link to {tmp_path / 'elsewhere'}",
            "broken link": f"a broken link to {tmp_path / 'old-venv'}"}[kind] in captured.err
    assert _tree(checkout) == tree


def test_a_folder_that_is_no_checkout_is_named(tmp_path, capsys):
    assert link_into(str(tmp_path)) == 1
    assert "has no configs/trainers folder: pass the root of your CoOp, MaPLe or PromptKD checkout" in \
        capsys.readouterr().err


def test_linking_into_this_repository_changes_nothing(capsys):
    assert link_into(str(REPO)) == 0
    assert "is this package's own configs folder" in capsys.readouterr().out
