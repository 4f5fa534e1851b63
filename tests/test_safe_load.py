"""Checkpoints are data, never code: a payload planted in any file we load never runs, and the file is
refused with one line naming the class and the file; what Dassl and the releases pickle still loads."""
import shutil
from pathlib import Path

import pytest
import torch

from conftest import REPO
from test_bad_inputs import args
from test_promptkd import TINY_OPTS as PKD_OPTS, YAML as PKD_YAML, release_state_dict, trained_teacher, write_teacher
from textrefiner.backbones import files as backbone_files, openai as openai_clip
from textrefiner.cli.train import main
from textrefiner.framework.checkpoint import load_checkpoint
from textrefiner.safe_load import TRUST_ENV, UnsafeFileError, load_file


class Payload:
    """Unpickled by the full unpickler, it creates ``marker`` (a stand-in for any command)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def plant(path: Path, marker: Path) -> None:
    """Add the payload to the checkpoint at ``path``, keeping everything else."""
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["note"] = Payload(marker)
    torch.save(checkpoint, path)


def refused(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    errors = [line for line in (out.out + out.err).splitlines() if line.startswith("Error: ")]
    assert exit_info.value.code == 1 and len(errors) == 1, out.out[-2000:] + out.err[-2000:]
    return errors[0]


@pytest.fixture(scope="module")
def coop_run(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("coop_tr")
    main([str(a) for a in args(data_root, out)])
    return out


def test_a_payload_in_a_model_dir_checkpoint_never_runs(data_root, coop_run, tmp_path, capsys):
    model_dir, marker = tmp_path / "model", tmp_path / "PWNED"
    shutil.copytree(coop_run, model_dir)
    plant(model_dir / "prompt_learner" / "model.pth.tar-1", marker)
    error = refused(args(data_root, tmp_path / "eval", flags=["--eval-only", "--model-dir", model_dir,
                                                              "--load-epoch", 1]), capsys)
    assert not marker.exists()
    assert "pickles io.open" in error and "model.pth.tar-1" in error
    assert TRUST_ENV in error and not (tmp_path / "eval" / "result.json").exists()


def test_a_payload_in_init_weights_never_runs(data_root, coop_run, tmp_path, capsys):
    weights, marker = tmp_path / "init.pth.tar", tmp_path / "PWNED"
    shutil.copy(coop_run / "prompt_learner" / "model.pth.tar-1", weights)
    plant(weights, marker)
    error = refused(args(data_root, tmp_path / "out", opts=["MODEL.INIT_WEIGHTS", weights]), capsys)
    assert not marker.exists() and str(weights) in error and "io.open" in error


def test_a_payload_in_a_resumed_run_never_runs(data_root, coop_run, tmp_path, capsys):
    """A run killed before its final test is continued by the same command, which reads its checkpoints."""
    out, marker = tmp_path / "out", tmp_path / "PWNED"
    shutil.copytree(coop_run, out)
    (out / "result.json").unlink()
    plant(out / "prompt_learner" / "model.pth.tar-1", marker)
    error = refused(args(data_root, out), capsys)
    assert not marker.exists() and "io.open" in error


def test_a_payload_in_a_promptkd_teacher_never_runs(data_root, tmp_path, capsys):
    teacher_dir, marker = tmp_path / "teachers", tmp_path / "PWNED"
    path = write_teacher(str(teacher_dir / "Synthetic" / "VLPromptLearner" / "model-best.pth.tar"),
                         release_state_dict(trained_teacher()))
    plant(Path(path), marker)
    error = refused(args(data_root, tmp_path / "out", "PromptKD", PKD_YAML["PromptKD"],
                         opts=[*PKD_OPTS, "TRAINER.PROMPTKD.TEACHER_DIR", teacher_dir]), capsys)
    assert not marker.exists() and "PromptKD teacher" in error and "io.open" in error


def test_a_payload_in_the_testbed_resume_file_never_runs(tmp_path):
    from textrefiner.testbed import pretrain

    out, marker = tmp_path / "clip.pt", tmp_path / "PWNED"
    torch.save({"settings": {}, "step": 1, "note": Payload(marker)}, f"{out}.resume.pt")
    with pytest.raises(UnsafeFileError, match="resume file"):
        pretrain.main(["--out", str(out), "--steps", "2", "--batch-size", "4", "--eval-images", "4"])
    assert not marker.exists()


def test_the_named_opt_in_loads_a_trusted_file_and_only_that_one(tmp_path, monkeypatch, capsys):
    trusted, other = tmp_path / "trusted.pt", tmp_path / "other.pt"
    for path in (trusted, other):
        torch.save({"state_dict": {}, "note": Payload(tmp_path / f"ran-{path.stem}")}, path)
    monkeypatch.setenv(TRUST_ENV, str(trusted))
    assert load_file(str(trusted))["state_dict"] == {} and (tmp_path / "ran-trusted").exists()
    assert "it can run code" in capsys.readouterr().out
    with pytest.raises(UnsafeFileError):
        load_file(str(other))
    assert not (tmp_path / "ran-other").exists()
    monkeypatch.setenv(TRUST_ENV, str(tmp_path))  # a folder trusts the files under it
    assert load_file(str(other))["state_dict"] == {}


OPTIMIZERS = {"sgd": lambda p: torch.optim.SGD(p, lr=0.002, momentum=0.9, weight_decay=5e-4),
              "adam": lambda p: torch.optim.Adam(p, lr=0.002), "adamw": lambda p: torch.optim.AdamW(p, lr=0.002),
              "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.002)}
SCHEDULERS = {"cosine": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 5),
              "single_step": lambda o: torch.optim.lr_scheduler.StepLR(o, 2),
              "multi_step": lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 4])}


@pytest.mark.parametrize("optim", sorted(OPTIMIZERS))
@pytest.mark.parametrize("sched", sorted(SCHEDULERS))
def test_what_dassl_pickles_still_loads(optim, sched, tmp_path):
    """Dassl's save_model with a warm-up scheduler (every release config has one): the scheduler's state
    is its __dict__, which holds its successor scheduler object, which holds its optimizer (state a
    defaultdict). The classes were found by loading files that real Dassl's save_model wrote for each
    optimizer and scheduler its build functions make."""
    model = torch.nn.Linear(4, 3)
    optimizer = OPTIMIZERS[optim](model.parameters())
    successor = SCHEDULERS[sched](optimizer)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    successor.step()
    warmup_state = {"successor": successor, "warmup_epoch": 1, "cons_lr": 1e-5, "base_lrs": [0.002],
                    "last_epoch": 1, "_step_count": 2, "_last_lr": [1e-5]}
    path = tmp_path / "model.pth.tar-1"
    torch.save({"state_dict": model.state_dict(), "epoch": 1, "optimizer": optimizer.state_dict(),
                "scheduler": warmup_state, "val_result": 71.5}, path)
    loaded = load_checkpoint(str(path))
    assert torch.equal(loaded["state_dict"]["weight"], model.weight) and loaded["val_result"] == 71.5
    assert loaded["scheduler"]["successor"].state_dict()["last_epoch"] == successor.last_epoch
    assert isinstance(loaded["optimizer"]["state"], dict)


def test_the_allow_list_names_exactly_what_it_admits():
    from textrefiner import safe_load

    admitted = {f"{g.__module__}.{g.__qualname__}" if not isinstance(g, tuple) else g[1]
                for g in safe_load._release_globals()}
    assert admitted <= set(safe_load.ALLOWED_CLASS_NAMES)
    assert not any(name.startswith(("os.", "posix.", "subprocess.", "builtins.eval", "builtins.exec"))
                   for name in safe_load.ALLOWED_CLASS_NAMES)


def _torchscript_clip_like(path: Path) -> None:
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))


def test_a_torchscript_archive_is_loaded_only_when_openai_published_it(tmp_path, monkeypatch):
    archive = tmp_path / "ViT-B-16.pt"
    _torchscript_clip_like(archive)
    with pytest.raises(UnsafeFileError, match="not one of OpenAI's published CLIP files"):
        backbone_files.read_clip_state_dict(str(archive))
    digest = backbone_files.sha256(str(archive))
    monkeypatch.setattr(openai_clip, "openai_sha256s", lambda: {digest})
    assert set(backbone_files.read_clip_state_dict(str(archive))) == {"weight", "bias"}


def test_openai_checksums_come_from_their_download_addresses():
    digests = openai_clip.openai_sha256s()
    assert "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f" in digests  # ViT-B/16
    assert all(len(d) == 64 and set(d) <= set("0123456789abcdef") for d in digests)


def test_no_torch_load_in_the_package_bypasses_safe_load():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "textrefiner").rglob("*.py")
                 if "weights_only=False" in p.read_text() and p.name != "safe_load.py"]
    assert offenders == []
