"""The bad-input catalogue: every mistake ends train.py with exit status 1 and ONE ``Error:`` line
naming the fix, no traceback, and leaves --root and the output folder's existing files as they were."""
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import COOP_YAML, REPO, SYNTHETIC_YAML, TINY
from textrefiner.cli.train import main

TR_YAML = REPO / "configs" / "trainers" / "CoOp_TextRefiner" / "vit_b16_ep10_ctxv1.yaml"
MAPLE_TR_YAML = REPO / "configs" / "trainers" / "MaPLe_TextRefiner" / "vit_b16_c2_ep5_batch4_2ctx.yaml"
FAST = ["MODEL.BACKBONE.NAME", TINY, "DATALOADER.NUM_WORKERS", 0, "DATALOADER.TRAIN_X.BATCH_SIZE", 8,
        "DATASET.NUM_SHOTS", 2, "OPTIM.MAX_EPOCH", 1, "TRAINER.COOP.PREC", "fp32", "TRAINER.MAPLE.PREC", "fp32",
        "TRAINER.MAPLE.PROMPT_DEPTH", 2, "TEST.FINAL_MODEL", "last_step"]


def args(root, out, trainer="CoOp_TextRefiner", config=TR_YAML, flags=(), opts=()):
    return ["--root", root, "--seed", 1, "--trainer", trainer, "--dataset-config-file", SYNTHETIC_YAML,
            "--config-file", config, "--output-dir", out, *flags, *FAST, *opts]


def fingerprint(folder: Path, skip_logs: bool = False) -> dict:
    """path -> content hash of every file (new log.txt-* files of a refused run are allowed, and so
    are the few-shot split caches CoOp-family code writes under --root before reading images)."""
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not (skip_logs and p.name.startswith("log.txt")) and p.parent.name != "split_fewshot"
    }


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    """One finished CoOp_TextRefiner run (1 epoch) and one MaPLe_TextRefiner run, as model dirs."""
    runs = {}
    for trainer, config in (("CoOp_TextRefiner", TR_YAML), ("MaPLe_TextRefiner", MAPLE_TR_YAML)):
        out = tmp_path_factory.mktemp(trainer)
        main([str(a) for a in args(data_root, out, trainer, config)])
        runs[trainer] = out
    return runs


def _yaml(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def _copy_root(data_root, tmp_path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(data_root, root)
    for cache in root.rglob("split_fewshot"):
        shutil.rmtree(cache)
    return root


def _label_37(root: Path) -> None:
    split = root / "synthetic" / "split_synthetic.json"
    content = json.loads(split.read_text())
    content["test"][0][1:] = [37, "stray class"]
    split.write_text(json.dumps(content))


def _truncate_two(root: Path) -> None:
    images = sorted((root / "synthetic" / "images").rglob("test_*.png"))[:2]
    for image in images:
        image.write_bytes(image.read_bytes()[:200])


# (case id, how to build the argv from (root, out, trained, tmp_path), a fragment the one line must hold,
#  optional setup(root, out, tmp_path) run first, True when the case needs its own copy of --root)
CASES = [
    ("unknown key", lambda r, o, t, p: args(r, o, opts=["OPTIM.LRR", 0.1]), "did you mean OPTIM.LR"),
    ("unknown key in yaml", lambda r, o, t, p: args(r, o, config=_yaml(p, "OPTIM:\n  MAX_EPOCHS: 3\n")),
     "did you mean OPTIM.MAX_EPOCH"),
    ("bad yaml", lambda r, o, t, p: args(r, o, config=_yaml(p, "OPTIM: [unclosed\n")), "Cannot read"),
    ("missing config file", lambda r, o, t, p: args(r, o, config=p / "nope.yaml"), "nope.yaml not found"),
    ("type mismatch", lambda r, o, t, p: args(r, o, opts=["OPTIM.LR", "fast"]), "give a value of the key's type"),
    ("odd overrides", lambda r, o, t, p: args(r, o, opts=["OPTIM.LR"]), "KEY VALUE pairs"),
    ("PREC fp8", lambda r, o, t, p: args(r, o, opts=["TRAINER.COOP.PREC", "fp8"]), "'fp32', 'fp16', 'amp', 'bf16'"),
    ("MaPLe PREC", lambda r, o, t, p: args(r, o, "MaPLe_TextRefiner", MAPLE_TR_YAML, opts=["TRAINER.MAPLE.PREC", "half"]),
     "TRAINER.MAPLE.PREC must be one of"),
    ("class position", lambda r, o, t, p: args(r, o, opts=["TRAINER.COOP.CLASS_TOKEN_POSITION", "left"]),
     "'end', 'middle', 'front'"),
    ("update rule", lambda r, o, t, p: args(r, o, opts=["TRAINER.TEXTREFINER.UPDATE_RULE", "ema"]), "'release', 'paper'"),
    ("semantic set", lambda r, o, t, p: args(r, o, opts=["TRAINER.TEXTREFINER.SEMANTIC_SET", "all"]), "'release', 'paper'"),
    ("subsample", lambda r, o, t, p: args(r, o, opts=["DATASET.SUBSAMPLE_CLASSES", "half"]), "'all', 'base', 'new'"),
    ("final model", lambda r, o, t, p: args(r, o, opts=["TEST.FINAL_MODEL", "best"]), "'best_val', 'last_step'"),
    ("optimizer", lambda r, o, t, p: args(r, o, opts=["OPTIM.NAME", "adamx"]), "OPTIM.NAME must be one of"),
    ("scheduler", lambda r, o, t, p: args(r, o, opts=["OPTIM.LR_SCHEDULER", "linear"]), "'cosine'"),
    ("CACHE_SIZE 0", lambda r, o, t, p: args(r, o, opts=["TRAINER.TEXTREFINER.CACHE_SIZE", 0]), ">= 1, got 0"),
    ("TOPK 0", lambda r, o, t, p: args(r, o, opts=["TRAINER.TEXTREFINER.TOPK", 0]), "TOPK"),
    ("TOPK 100", lambda r, o, t, p: args(r, o, opts=["TRAINER.TEXTREFINER.TOPK", 100]), "set TOPK to at most 49"),
    ("MaPLe N_CTX 0", lambda r, o, t, p: args(r, o, "MaPLe_TextRefiner", MAPLE_TR_YAML, opts=["TRAINER.MAPLE.N_CTX", 0]),
     "TRAINER.MAPLE.N_CTX"),
    ("CoOp N_CTX 0", lambda r, o, t, p: args(r, o, opts=["TRAINER.COOP.CTX_INIT", "", "TRAINER.COOP.N_CTX", 0]),
     "TRAINER.COOP.N_CTX"),
    ("MAX_EPOCH 0", lambda r, o, t, p: args(r, o, opts=["OPTIM.MAX_EPOCH", 0]), "OPTIM.MAX_EPOCH"),
    ("batch size 0", lambda r, o, t, p: args(r, o, opts=["DATALOADER.TRAIN_X.BATCH_SIZE", 0]), "BATCH_SIZE"),
    ("negative LR", lambda r, o, t, p: args(r, o, opts=["OPTIM.LR", -0.1]), "OPTIM.LR must be a number > 0"),
    ("momentum 1.5", lambda r, o, t, p: args(r, o, opts=["TRAINER.TEXTREFINER.MOMENTUM", 1.5]), "in [0.0, 1.0]"),
    ("unknown trainer", lambda r, o, t, p: args(r, o, trainer="CoOp_TextRefine"), "did you mean CoOp_TextRefiner"),
    ("unknown dataset", lambda r, o, t, p: args(r, o, opts=["DATASET.NAME", "Synthetik"]), "did you mean Synthetic"),
    ("random arch", lambda r, o, t, p: args(r, o, opts=["MODEL.BACKBONE.NAME", "random:huge"]), "random:tiny"),
    ("backbone name", lambda r, o, t, p: args(r, o, opts=["MODEL.BACKBONE.NAME", "ViT-B16"]), "OpenAI CLIP name"),
    ("transform", lambda r, o, t, p: args(r, o, opts=["INPUT.TRANSFORMS", "['random_spin']"]), "random_spin"),
    ("load-epoch alone", lambda r, o, t, p: args(r, o, flags=["--eval-only", "--load-epoch", 1]), "needs --model-dir"),
    ("model-dir missing", lambda r, o, t, p: args(r, o, flags=["--eval-only", "--model-dir", p / "none"]),
     "is not a folder"),
    ("model-dir without eval", lambda r, o, t, p: args(r, o, flags=["--model-dir", t["CoOp_TextRefiner"]]), "--resume"),
    ("resume missing", lambda r, o, t, p: args(r, o, flags=["--resume", p / "none"]), "is not a folder"),
    ("missing load-epoch", lambda r, o, t, p: args(r, o, flags=["--eval-only", "--model-dir", t["CoOp_TextRefiner"],
                                                                 "--load-epoch", 7]), "--load-epoch"),
    ("CoOp on a TextRefiner model", lambda r, o, t, p: args(r, o, "CoOp", COOP_YAML, flags=[
        "--eval-only", "--model-dir", t["CoOp_TextRefiner"], "--load-epoch", 1]), "--trainer CoOp_TextRefiner"),
    ("MaPLe model in CoOp", lambda r, o, t, p: args(r, o, flags=[
        "--eval-only", "--model-dir", t["MaPLe_TextRefiner"], "--load-epoch", 1]), "MaPLe_TextRefiner"),
    ("other prompt shape", lambda r, o, t, p: args(r, o, flags=[
        "--eval-only", "--model-dir", t["CoOp_TextRefiner"], "--load-epoch", 1],
        opts=["TRAINER.COOP.CTX_INIT", "a good photo of a"]), "prompt settings"),
    ("training into another trainer's folder", lambda r, o, t, p: args(r, t["CoOp_TextRefiner"], "CoOp", COOP_YAML),
     "holds the outputs of trainer CoOp_TextRefiner"),
    ("TextRefiner into a folder of CoOp checkpoints", lambda r, o, t, p: args(r, o),
     "would overwrite them"),
    ("changed settings on resume", lambda r, o, t, p: args(r, t["CoOp_TextRefiner"], opts=["OPTIM.LR", 0.01]),
     "OPTIM.LR: 0.002 in the checkpoint, 0.01 now"),
    ("locked folder", lambda r, o, t, p: args(r, o), "is being written by process"),
    ("output is a file", lambda r, o, t, p: args(r, p / "file" / "out"), "a file stands where a folder should be"),
    ("CLIP file not a checkpoint", lambda r, o, t, p: args(r, o, opts=[
        "MODEL.BACKBONE.NAME", "ViT-B/16", "MODEL.BACKBONE.PATH", REPO / "README.md"]),
     "cannot be read as a CLIP weights file"),
    ("label out of range", lambda r, o, t, p: args(r, o), "labels [37]"),
    ("truncated images", lambda r, o, t, p: args(r, o), "2 unreadable images"),
    ("full disk", lambda r, o, t, p: args(r, o), "on a full disk"),
    ("NaN loss", lambda r, o, t, p: args(r, o, opts=["OPTIM.LR", 1e38, "OPTIM.WARMUP_EPOCH", 0, "OPTIM.MAX_EPOCH", 3]),
     "lower OPTIM.LR"),
]
# cases whose --root is a modified copy
ROOT_SETUP = {"label out of range": _label_37, "truncated images": _truncate_two}


def _prepare(case, out: Path, tmp_path: Path, monkeypatch, trained) -> None:
    if case == "TextRefiner into a folder of CoOp checkpoints":  # as CoOp or an upstream release saves them
        import torch

        checkpoint = torch.load(trained["CoOp_TextRefiner"] / "prompt_learner" / "model.pth.tar-1", weights_only=True)
        checkpoint.pop("textrefiner_run")
        (out / "prompt_learner").mkdir(parents=True)
        torch.save(checkpoint, out / "prompt_learner" / "model.pth.tar-1")
        (out / "prompt_learner" / "checkpoint").write_text("model.pth.tar-1\n")
    elif case == "locked folder":
        out.mkdir(parents=True)
        (out / "train.lock").write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename}))
    elif case == "output is a file":
        (tmp_path / "file").write_text("not a folder")
    elif case == "full disk":
        import textrefiner.framework.checkpoint as checkpoint

        def no_space(text, fpath):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), fpath)

        monkeypatch.setattr(checkpoint, "write_text", no_space)  # the commit's atomic write


@pytest.mark.parametrize("case,build_argv,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_line(case, build_argv, fragment, data_root, trained, tmp_path, capsys, monkeypatch):
    root = _copy_root(data_root, tmp_path) if case in ROOT_SETUP else Path(data_root)
    if case in ROOT_SETUP:
        ROOT_SETUP[case](root)
    out = tmp_path / "out"
    _prepare(case, out, tmp_path, monkeypatch, trained)
    assert_refused(build_argv(str(root), out, trained, tmp_path), root, capsys, fragment,
                   locked=case == "locked folder")


def assert_refused(argv, root: Path, capsys, fragment: str, locked: bool = False, untouched=()) -> str:
    """train.py ``argv`` exits 1 with one ``Error:`` line holding ``fragment``, no traceback, and leaves
    ``root``, the output folder's files and every file of ``untouched`` as they were; returns the line."""
    argv = [str(a) for a in argv]
    out_dir = Path(argv[argv.index("--output-dir") + 1])
    before_root, before_out = fingerprint(root), fingerprint(out_dir, skip_logs=True) if out_dir.is_dir() else {}
    before_files = {str(f): Path(f).read_bytes() for f in untouched}
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    errors = [line for line in text.splitlines() if line.startswith("Error: ")]
    assert exit_info.value.code == 1, text[-3000:]
    assert "Traceback" not in text
    assert len(errors) == 1, text[-3000:]
    assert fragment in errors[0], errors[0]
    assert fingerprint(root) == before_root
    assert {f: Path(f).read_bytes() for f in before_files} == before_files
    if before_out:
        after = fingerprint(out_dir, skip_logs=True)
        assert {k: v for k, v in after.items() if k in before_out} == before_out
        assert "train.lock" not in after or locked
    return errors[0]


def test_catalogue_has_at_least_30_cases():
    assert len(CASES) >= 30


def test_debug_shows_the_traceback(data_root, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(a) for a in args(data_root, tmp_path / "out", flags=["--debug"], opts=["TRAINER.COOP.PREC", "fp8"])])
    assert "Traceback" in capsys.readouterr().err


def test_eval_only_without_model_dir_is_recorded_as_untrained(data_root, tmp_path):
    out = tmp_path / "out"
    main([str(a) for a in args(data_root, out, flags=["--eval-only"])])
    assert json.loads((out / "result.json").read_text())["untrained"] is True
    assert "evaluates an untrained CoOp_TextRefiner" in (out / "log.txt").read_text()
