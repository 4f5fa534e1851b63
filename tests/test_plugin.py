"""The plug-in inside a user's own CoOp-family checkout: registration, config keys, the installed package."""
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from yacs.config import CfgNode as CN

from conftest import REPO, SYNTHETIC_YAML, TINY
from textrefiner.config import ConfigError, add_textrefiner_config, missing_project_keys
from textrefiner.framework import TRAINER_REGISTRY, build_trainer, get_cfg_default
from textrefiner.framework.builtin.registry import Registry
from textrefiner.framework.registration import register_if_free, report_kept
from textrefiner.resources import PACKAGE_PARENT, config_path

USER_CHECKOUT = Path(__file__).parent / "fixtures" / "user_checkout"
TR_YAML = REPO / "configs" / "trainers" / "CoOp_TextRefiner" / "vit_b16_ep10_ctxv1.yaml"
TINY_RUN = ["MODEL.BACKBONE.NAME", TINY, "DATALOADER.NUM_WORKERS", "0", "DATASET.NUM_SHOTS", "2",
            "OPTIM.MAX_EPOCH", "1", "TRAINER.COOP.PREC", "fp32", "DATALOADER.TEST.BATCH_SIZE", "32"]


def test_a_taken_name_keeps_the_users_class_and_is_reported_once(capsys):
    registry = Registry("TRAINER")

    class CoOp:  # the user's
        pass

    registry.register(CoOp)
    ours = type("CoOp", (), {"__module__": "textrefiner.trainers.coop"})
    register_if_free(registry, ours)
    register_if_free(registry, ours)
    report_kept()
    report_kept()
    assert registry.get("CoOp") is CoOp
    out = capsys.readouterr().out
    assert out.count("keeping the TRAINER registry's own CoOp") == 1 and out.count("\n") == 1


def test_a_users_class_registered_after_ours_replaces_ours_instead_of_raising(capsys):
    registry = Registry("TRAINER")
    ours = register_if_free(registry, type("MaPLe", (), {}))
    users = type("MaPLe", (), {"__module__": "trainers.maple"})
    registry.register(users)  # Dassl's plain register(): would raise KeyError without the plug-in's yield
    assert registry.get("MaPLe") is users
    with pytest.raises(KeyError):  # two user classes under one name still collide, as in Dassl
        registry.register(type("MaPLe", (), {}))
    assert ours is not users
    report_kept()
    assert capsys.readouterr().out.count("keeping the TRAINER registry's own MaPLe") == 1


def test_a_checkout_imported_after_the_plugin_gets_one_note_per_registry(capsys):
    """Plug-in first, then a CoOp checkout's 15 dataset readers and its trainers take their names
    over from ours: no line while they register, then one line per registry naming them all."""
    trainers, datasets = Registry("TRAINER"), Registry("DATASET")
    trainer_names = ["CheckoutCoOp", "CheckoutCoCoOp", "CheckoutZeroshotCLIP"]  # names no other test reports
    dataset_names = [f"CheckoutDataset{i}" for i in range(15)]
    for registry, names in ((trainers, trainer_names), (datasets, dataset_names)):
        for name in names:
            register_if_free(registry, type(name, (), {"__module__": "textrefiner.x"}))
    for registry, names in ((trainers, trainer_names), (datasets, dataset_names)):
        for name in names:
            registry.register(type(name, (), {"__module__": "checkout"}))
    assert capsys.readouterr().out == ""
    report_kept()
    report_kept()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("Note: ") for line in lines)
    assert f"TRAINER registry's own {', '.join(trainer_names)} (" in lines[0]
    assert f"DATASET registry's own {', '.join(dataset_names)} (" in lines[1]


def test_every_trainer_of_the_package_is_registered():
    import textrefiner.trainers as plugin

    for name in plugin.__all__:
        assert TRAINER_REGISTRY.get(name) is getattr(plugin, name)


def test_add_textrefiner_config_adds_only_missing_keys():
    cfg = get_cfg_default()
    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 4  # the user's own value for a key we also define
    cfg.TRAINER.COOP.PREC = "amp"
    add_textrefiner_config(cfg)
    assert (cfg.TRAINER.COOP.N_CTX, cfg.TRAINER.COOP.PREC) == (4, "amp")
    assert cfg.TRAINER.COOP.TEXT_CHUNK_SIZE == 0 and cfg.TRAINER.TEXTREFINER.CACHE_SIZE == 25
    assert missing_project_keys(cfg) == []
    assert add_textrefiner_config(cfg.clone()) == cfg  # idempotent
    frozen = get_cfg_default()
    frozen.freeze()
    add_textrefiner_config(frozen)
    assert frozen.is_frozen() and "TEXTREFINER" in frozen.TRAINER


def test_a_foreign_config_without_our_keys_fails_in_one_line_naming_the_call(data_root, tmp_path):
    cfg = get_cfg_default()
    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.PREC = "fp32"
    cfg.DATASET.NAME, cfg.DATASET.ROOT, cfg.OUTPUT_DIR = "Synthetic", data_root, str(tmp_path)
    cfg.MODEL.BACKBONE.NAME, cfg.TRAINER.NAME = TINY, "CoOp_TextRefiner"
    with pytest.raises(ConfigError) as info:
        build_trainer(cfg)
    message = str(info.value)
    assert "\n" not in message
    assert "add_textrefiner_config(cfg)" in message and "TRAINER.COOP.N_CTX" in message


def test_configs_are_found_through_the_package():
    assert config_path("trainers", "CoOp_TextRefiner", "vit_b16_ep10_ctxv1.yaml") == str(TR_YAML)
    with pytest.raises(FileNotFoundError, match="CoOp_TextRefiner"):
        config_path("trainers", "NoSuchTrainer", "x.yaml")
    out = subprocess.run([sys.executable, "-m", "textrefiner.resources"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(REPO / "configs")


def _user_train(checkout: Path, data_root: str, out: Path, env_extra: dict, trainer="CoOp_TextRefiner"):
    env = {**os.environ, "PYTHONPATH": PACKAGE_PARENT, **env_extra}
    cmd = [sys.executable, "train.py", "--root", data_root, "--output-dir", str(out), "--trainer", trainer,
           "--dataset-config-file", str(SYNTHETIC_YAML), "--config-file", str(TR_YAML), *TINY_RUN]
    return subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("order", ["plugin-last", "plugin-first"])
def test_coop_textrefiner_trains_through_a_users_train_py_next_to_their_coop(data_root, tmp_path, order):
    checkout = tmp_path / "CoOp"
    shutil.copytree(USER_CHECKOUT, checkout)
    proc = _user_train(checkout, data_root, tmp_path / "out", {"USER_IMPORT_ORDER": order})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Registry CoOp: trainers" in proc.stdout  # the user's CoOp, whichever import came first
    assert proc.stdout.count("CoOp") >= 1 and proc.stdout.count("Note: keeping the TRAINER registry") == 1
    assert proc.stdout.count("Note:") == 1, "one line per registry whose names the checkout holds"
    assert "Finish training" in proc.stdout and (tmp_path / "out" / "result.json").is_file()
    assert (tmp_path / "out" / "textrefiner" / "model.pth.tar-1").is_file()


def test_a_users_train_py_without_the_config_call_gets_one_line(data_root, tmp_path):
    checkout = tmp_path / "CoOp"
    shutil.copytree(USER_CHECKOUT, checkout)
    proc = _user_train(checkout, data_root, tmp_path / "out", {"USER_SKIPS_ADD_CONFIG": "1"})
    assert proc.returncode != 0
    # merging our YAML fails first (yacs: key not in config): the keys are missing
    assert "TEXTREFINER" in proc.stderr or "add_textrefiner_config" in proc.stderr


#: what the README's commands need beside the package, shipped in the source distribution
SDIST_FILES = ["train.py", "parse_test_res.py", "bootstrap.sh", "LICENSE", "README.md", "setup.py",
               "scripts/protocol.sh", "scripts/coop/base2new_train.sh", "scripts/coop/main.sh",
               "scripts/maple/base2new_train_maple.sh", "scripts/promptkd/train_teacher.sh",
               "scripts/testbed/base2new.sh", "scripts/testbed/xd.sh", "scripts/testbed/common.sh",
               "scripts/cocoop/base2new_train.sh", "configs/trainers/CoOp_TextRefiner/vit_b16_ep10_ctxv1.yaml",
               "configs/datasets/testbed_shapes.yaml", "configs/sweeps/base2new_synthetic.yaml",
               "trainers/__init__.py", "tests/conftest.py", "tests/test_plugin.py",
               "tests/fixtures/user_checkout/train.py", "benchmarks/speed.py", "benchmarks/results/cpu-2026-11-22.md",
               "textrefiner/testbed/weights/testbed-clip.pt", "textrefiner/results/paper_tables.csv"]
CONSOLE_COMMANDS = ["textrefiner-train", "textrefiner-table", "textrefiner-sweep", "textrefiner-paper",
                    "textrefiner-demo", "textrefiner-launch"]


@pytest.fixture(scope="module")
def sdist_install(tmp_path_factory):
    """The source distribution built from a copy of this tree, and a non-editable pip install of
    it into a folder (``--target``): (the sdist's file list, the install folder)."""
    root = tmp_path_factory.mktemp("sdist")
    tree = root / "tree"
    shutil.copytree(REPO, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv*", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
        "output", "outputs", "data", "third_party"))
    sdist = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(root / "dist")],
                           cwd=tree, capture_output=True, text=True)
    assert sdist.returncode == 0, sdist.stderr[-3000:]
    (archive,) = (root / "dist").glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        names = [name.split("/", 1)[1] for name in tar.getnames() if "/" in name]
    site = root / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-compile",
         "--target", str(site), str(archive)],
        capture_output=True, text=True, cwd=root,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    return names, site


@pytest.mark.slow
def test_the_sdist_ships_what_the_readmes_commands_run(sdist_install):
    names, _ = sdist_install
    docs = [str(p.relative_to(REPO)) for p in REPO.glob("docs/*.md")]  # the pages the README links to
    assert [f for f in SDIST_FILES + docs if f not in names] == []
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@pytest.mark.slow
def test_a_non_editable_install_has_the_console_commands(sdist_install, tmp_path):
    _, site = sdist_install
    env = {**os.environ, "PYTHONPATH": str(site)}
    for command in CONSOLE_COMMANDS:
        script = site / "bin" / command
        assert script.is_file(), f"{command} not installed"
        run = subprocess.run([str(script), "--help"], env=env, cwd=tmp_path, capture_output=True, text=True)
        assert run.returncode == 0 and "usage" in run.stdout.lower(), command + run.stdout[-2000:] + run.stderr[-2000:]
    # a wheel user's launcher: the scripts' usage, named after the command
    launch = subprocess.run([str(site / "bin" / "textrefiner-launch"), "coop", "base2new_train"], env=env,
                            cwd=tmp_path, capture_output=True, text=True)
    assert launch.returncode == 2 and "usage: textrefiner-launch coop base2new_train DATASET SEED" in launch.stderr


@pytest.mark.slow
def test_a_non_editable_install_runs_a_protocol_step_from_another_folder(data_root, tmp_path, sdist_install):
    """pip install (not editable) into a folder, then a launcher step with only that folder importable."""
    _, site = sdist_install
    assert (site / "textrefiner" / "configs" / "trainers" / "CoOp_TextRefiner" / "vit_b16_ep10_ctxv1.yaml").is_file()
    assert not (site / "trainers").exists()  # the repository's top-level re-export is not installed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "DATA": data_root, "OUTPUT": str(elsewhere / "output"),
           "SHOTS": "2", "TRAINER": "CoOp_TextRefiner"}
    env.pop("CFG", None)
    opts = [x for x in TINY_RUN if x not in ("DATASET.NUM_SHOTS", "2")]
    where = subprocess.run([sys.executable, "-c", "import textrefiner; print(textrefiner.__file__)"],
                           env=env, cwd=elsewhere, capture_output=True, text=True)
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr
    step = subprocess.run([sys.executable, "-m", "textrefiner.protocols.launch", "coop", "base2new_train",
                           "synthetic", "1", *opts], env=env, cwd=elsewhere, capture_output=True, text=True)
    assert step.returncode == 0, step.stdout[-3000:] + step.stderr[-3000:]
    results = list((elsewhere / "output").rglob("result.json"))
    assert len(results) == 1 and "train_base" in str(results[0])
    log = (results[0].parent / "log.txt").read_text()
    assert str(site / "textrefiner" / "configs") in log  # the installed configs were used
