"""A kill at every file boundary of a checkpoint save, for every trainer that saves several
modules (and MaPLe, with one): the identical command, rerun, ends with the checkpoints and result.json of an
uninterrupted run, bit for bit (every file of every module folder: tensors, epochs, val results,
optimizer and scheduler state, random-number state). A full disk or a file-size limit is one
``Error:`` line naming the folder and the space needed, and the previous checkpoint survives.

The kills are exact: every run is a fork of one clean process (``fork_runner``), and a killed
run SIGKILLs itself on reaching the k-th file operation of its saves (``checkpoint._reached``: a
staged file, the commit, a rename, a pointer).
"""
import json
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, SYNTHETIC_YAML, TINY
from fork_runner import ForkRunner

CONFIGS = {
    "CoOp_TextRefiner": "CoOp_TextRefiner/vit_b16_ep10_ctxv1.yaml",
    "MaPLe_TextRefiner": "MaPLe_TextRefiner/vit_b16_c2_ep5_batch4_2ctx.yaml",
    # one module: the MaPLe resumed from model-best of epoch 1 and never wrote model.pth.tar-1
    "MaPLe": "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
    "PromptKD": "PromptKD/vit_b16_c2_ep20_batch8_4+4ctx.yaml",
    "PromptKD_TextRefiner": "PromptKD_TextRefiner/vit_b16_c2_ep20_batch8_4+4ctx.yaml",
    "PromptSRC": "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
    "PromptSRC_TextRefiner": "PromptSRC_TextRefiner/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
}
# tiny CLIP, fp32, 2 epochs of 3 batches, a checkpoint every epoch, best-val selection (so every
# save of epoch 1 holds model-best and model.pth.tar-1 of every module)
OPTS = [
    "MODEL.BACKBONE.NAME", TINY, "DATALOADER.NUM_WORKERS", 0, "DATALOADER.TRAIN_X.BATCH_SIZE", 4,
    "DATALOADER.TEST.BATCH_SIZE", 50, "DATASET.NUM_SHOTS", 1, "OPTIM.MAX_EPOCH", 2, "TRAIN.CHECKPOINT_FREQ", 1,
    "TRAIN.PRINT_FREQ", 100, "TEST.FINAL_MODEL", "best_val",
    "TRAINER.COOP.PREC", "fp32", "TRAINER.MAPLE.PREC", "fp32", "TRAINER.MAPLE.PROMPT_DEPTH", 2,
    "TRAINER.PROMPTKD.PREC", "fp32", "TRAINER.PROMPTKD.TEACHER_NAME", "random:tiny-wide",
    "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION", 2, "TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_TEXT", 2,
    "TRAINER.PROMPTKD.TEACHER_PROMPT_DEPTH_VISION", 2, "TRAINER.PROMPTKD.TEACHER_PROMPTS", "init",
    "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 2, "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 2,
    "TRAINER.PROMPTSRC.PREC", "fp32", "TRAINER.PROMPTSRC.GPA_MEAN", 2, "TRAINER.PROMPTSRC.GPA_STD", 1,
]
METRICS = ("accuracy", "macro_f1", "per_class_accuracy", "num_images")


def argv(root, out, trainer, opts=()):
    return [str(a) for a in [
        "--root", root, "--seed", 1, "--trainer", trainer, "--dataset-config-file", SYNTHETIC_YAML,
        "--config-file", REPO / "configs" / "trainers" / CONFIGS[trainer], "--output-dir", out, *OPTS, *opts]]


@pytest.fixture(scope="module")
def runner():
    server = ForkRunner()
    yield server
    server.close()


def train(runner, args, **faults):
    """The command, run to its end (or to the fault); returns the exit status and the save steps."""
    out = Path(args[args.index("--output-dir") + 1])
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.parent / f"{out.name}.console-{len(list(out.parent.glob(out.name + '.console-*')))}"
    code, steps = runner.run(args, log, steps=True, **faults)
    if not faults:
        assert code == 0, log.read_text()[-3000:]
    return code, steps, log


def same(a, b, where="") -> None:
    """Deep equality of loaded checkpoints; tensors bit for bit (dtype, shape, values)."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for key in a:
            same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, str) and "OUTPUT_DIR" in a:  # the config dump: equal but for the output folder
        strip = lambda text: [line for line in text.splitlines() if not line.startswith(("OUTPUT_DIR", "RESUME"))]
        assert strip(a) == strip(b), where
    else:
        assert type(a) is type(b) and (a == b or (a != a and b != b)), f"{where}: {a!r} vs {b!r}"


def saved_files(out: Path) -> dict:
    return {str(p.relative_to(out)): p for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.startswith(("log.txt", "result.json")) and "tensorboard" not in p.parts}


def assert_same_outputs(ref: Path, out: Path) -> None:
    files, ref_files = saved_files(out), saved_files(ref)
    assert sorted(files) == sorted(ref_files), (f"only in the uninterrupted run: {sorted(set(ref_files) - set(files))}, "
                                                f"only here: {sorted(set(files) - set(ref_files))}")
    for name, path in ref_files.items():
        if name.endswith(".pth.tar") or ".pth.tar-" in name:
            same(torch.load(path, weights_only=True), torch.load(files[name], weights_only=True), name)
        else:  # pointers and the manifest
            assert path.read_bytes() == files[name].read_bytes(), name
    results = [json.loads((d / "result.json").read_text()) for d in (ref, out)]
    assert [{k: r[k] for k in METRICS} for r in results][0] == {k: results[1][k] for k in METRICS}


@pytest.fixture(scope="module")
def reference(data_root, tmp_path_factory, runner):
    """Per trainer: the uninterrupted run's folder and its save steps."""
    cache = {}

    def get(trainer):
        if trainer not in cache:
            out = tmp_path_factory.mktemp("ref") / trainer
            _, steps, _ = train(runner, argv(data_root, out, trainer))
            cache[trainer] = out, [tuple(step) for step in steps]
        return cache[trainer]

    return get


def kill_points(steps, every: bool):
    """1-based indices of the steps to kill at: all steps of the first save (``every``), or the
    distinct states: the first module's file staged, the last one staged (all written, no commit),
    the commit, a rename half done, a pointer half done; and the second save's commit and its
    renames half done (``model-best`` replaced for one module, where epoch 2 is better)."""
    commits = [i for i, (step, _) in enumerate(steps, 1) if step == "commit"]
    second = next(i for i, (step, _) in enumerate(steps, 1) if step == "stage" and i > commits[0])
    first_save = list(range(1, second))
    if every:
        points = first_save
    else:
        stage = [i for i in first_save if steps[i - 1][0] == "stage"]
        rename = [i for i in first_save if steps[i - 1][0] == "rename"]
        pointer = [i for i in first_save if steps[i - 1][0] == "pointer"]
        points = [stage[1], stage[-1], stage[-1] + 1, rename[1], pointer[-1]]
    later = [i for i in range(commits[1] + 1, len(steps) + 1) if steps[i - 1][0] == "rename"]
    return sorted(set(points + commits[1:2] + later[1:2]))


CASES = [("CoOp_TextRefiner", True)] + [(t, False) for t in CONFIGS if t != "CoOp_TextRefiner"]


@pytest.mark.slow
@pytest.mark.parametrize("trainer,every", CASES, ids=[c[0] for c in CASES])
def test_a_kill_at_any_save_boundary_then_the_same_command_ends_bit_identical(
        data_root, tmp_path, runner, reference, trainer, every):
    ref, steps = reference(trainer)
    assert {step for step, _ in steps} == {"stage", "commit", "rename", "pointer"}
    for k in kill_points(steps, every):
        out = tmp_path / f"killed-{k}"
        args = argv(data_root, out, trainer)
        code, _, _ = train(runner, args, kill_at=k)
        assert code == -signal.SIGKILL
        _, _, log = train(runner, args)  # the same command: never refused as another's folder, no file lost
        try:
            assert_same_outputs(ref, out)
        except AssertionError as e:
            raise AssertionError(f"killed before step {k} {steps[k - 1]}: {e} (rerun: {log})") from None
        shutil.rmtree(out)


def test_a_first_save_stranded_by_an_older_version_is_taken_up(data_root, tmp_path, runner, reference):
    """Before the commit record, a kill after the first module's file and before any pointer left
    one module's file and no pointer: the same command refused the folder as another trainer's."""
    ref, _ = reference("CoOp_TextRefiner")
    out = tmp_path / "old"
    (out / "prompt_learner").mkdir(parents=True)
    shutil.copy(ref / "prompt_learner" / "model-best.pth.tar", out / "prompt_learner" / "model-best.pth.tar")
    train(runner, argv(data_root, out, "CoOp_TextRefiner"))
    assert_same_outputs(ref, out)


def test_a_committed_set_wins_over_pointers_left_behind(data_root, tmp_path, runner, reference):
    """Killed after the commit, before anything was renamed or any pointer moved: the commit record
    names the set; the resume finishes the save (renames, pointers) and says so."""
    ref, steps = reference("CoOp_TextRefiner")
    out = tmp_path / "cut"
    args = argv(data_root, out, "CoOp_TextRefiner")
    second_commit = [i for i, (step, _) in enumerate(steps, 1) if step == "commit"][1]
    train(runner, args, kill_at=second_commit + 1)  # epoch 2 committed, nothing renamed
    assert (out / "prompt_learner" / "checkpoint").read_text() == "model.pth.tar-1\n"
    assert json.loads((out / "checkpoint_set.json").read_text())["epoch"] == 2
    _, _, log = train(runner, args)
    text = log.read_text()
    assert "Finished the interrupted save of epoch 2" in text and "Resuming after epoch 2" in text
    assert_same_outputs(ref, out)


def test_dassl_reads_the_pointers_of_a_finished_save(reference):
    """Dassl's ``resume_from_checkpoint`` reads ``<module>/checkpoint`` and the file it names."""
    ref, _ = reference("CoOp_TextRefiner")
    manifest = json.loads((ref / "checkpoint_set.json").read_text())
    for name in manifest["models"]:
        assert (ref / name / "checkpoint").read_text() == manifest["resume"] + "\n"
        assert torch.load(ref / name / manifest["resume"], weights_only=True)["epoch"] == manifest["epoch"] == 2
        assert not list((ref / name).glob("*.staged-*")) and not list((ref / name).glob("*.partial-*"))


def one_error_line(text: str) -> str:
    errors = [line for line in text.splitlines() if line.startswith("Error: ")]
    assert "Traceback" not in text and len(errors) == 1, text[-3000:]
    return errors[0]


def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(data_root, tmp_path, runner, reference):
    """Epoch 2's first file meets a full disk, and so does log.txt from then on: one Error line (on
    the console), exit 1, epoch 1's set intact; with space again the same command resumes from it."""
    ref, _ = reference("CoOp_TextRefiner")
    out = tmp_path / "full"
    args = argv(data_root, out, "CoOp_TextRefiner")
    code, _, console = train(runner, args, full_disk_after=4)  # epoch 1's four files fit
    error = one_error_line(console.read_text())
    assert code == 1
    assert f"in {out}: on a full disk (this save needs " in error and " free); the previous checkpoint is kept" in error
    assert json.loads((out / "checkpoint_set.json").read_text())["epoch"] == 1
    assert sorted(p.name for p in (out / "textrefiner").iterdir()) == [
        "checkpoint", "model-best.pth.tar", "model.pth.tar-1"]
    assert not (out / "train.lock").exists()
    train(runner, args)
    assert_same_outputs(ref, out)


def test_a_file_size_limit_is_one_line_through_the_real_torch_save(data_root, tmp_path):
    """``ulimit -f`` smaller than a checkpoint (the log stays below it): EFBIG from the real write."""
    out = tmp_path / "limited"
    limit = 40_000  # the tiny CLIP's prompt_learner checkpoint is ~60 KB, log.txt ~10 KB at the first save

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, str(REPO / "train.py"), *argv(data_root, out, "CoOp_TextRefiner")],
                          cwd=REPO, capture_output=True, text=True, preexec_fn=limit_file_size)
    error = one_error_line(proc.stdout + proc.stderr)
    assert proc.returncode == 1
    assert f"in {out}: over the file-size limit (39.1 KiB per file" in error, error
    assert not (out / "checkpoint_set.json").exists()
    assert not [p for p in out.rglob("*") if ".staged-" in p.name or ".partial-" in p.name]
