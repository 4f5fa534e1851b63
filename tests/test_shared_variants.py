"""Variants sharing the frozen image tower (``trainers/lockstep.py``): the data stream key, lockstep
training and shared evaluation features bit-identical to alone runs in fp32, refusals."""
import json
import os
import os.path as osp

import pytest
import torch

from conftest import REPO, build, make_cfg
from textrefiner.errors import UserError
from textrefiner.trainers.lockstep import Variant, run_lockstep, unsharable, flat

TR_YAML = REPO / "configs" / "trainers" / "CoOp_TextRefiner" / "vit_b16_ep10_ctxv1.yaml"
STREAM = ["TRAIN.SEEDED_DATA_STREAM", True]
#: the rows of the paper's Table 3, as TextRefiner overrides
TABLE3 = {
    "coop": ["TRAINER.TEXTREFINER.ENABLED", False],
    "aggregation": ["TRAINER.TEXTREFINER.LAMBDA_SEM", 0.0, "TRAINER.TEXTREFINER.LAMBDA_REG", 0.0],
    "plus_semantic": ["TRAINER.TEXTREFINER.LAMBDA_REG", 0.0],
    "plus_regularization": ["TRAINER.TEXTREFINER.LAMBDA_SEM", 0.0],
    "all": [],
}
TRAIN_OPTS = ["OPTIM.MAX_EPOCH", 2, "DATASET.SUBSAMPLE_CLASSES", "base"]


def cfg_of(root, out, overrides=(), trainer="CoOp_TextRefiner", seed=1):
    return make_cfg(root, trainer, str(out), config_file=TR_YAML, opts=[*TRAIN_OPTS, *overrides], seed=seed)


def first_epoch_paths(trainer):
    """The training images of the first epoch, in order, as train() would draw them."""
    trainer.before_train()
    paths = [p for batch in trainer.train_loader_x for p in batch["impath"]]
    trainer.close_writer()
    return paths


def checkpoint_tensors(folder):
    out = {}
    for name in ("prompt_learner", "textrefiner"):
        path = osp.join(folder, name, "model.pth.tar-2")
        if osp.exists(path):
            state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
            out.update({f"{name}.{k}": v for k, v in state.items()})
    return out


def accuracy(folder):
    with open(osp.join(folder, "result.json")) as f:
        return json.load(f)["accuracy"]


def test_data_stream_depends_on_model_building_unless_seeded(data_root, tmp_path):
    """Measured: alone, CoOp and CoOp_TextRefiner of one seed see different batches (building the head
    draws from the random stream the sampler uses); with TRAIN.SEEDED_DATA_STREAM they see the same."""
    plain = {name: first_epoch_paths(build(cfg_of(data_root, tmp_path / f"a{name}", TABLE3[name])))
             for name in ("coop", "all")}
    assert plain["coop"] != plain["all"]
    seeded = {name: first_epoch_paths(build(cfg_of(data_root, tmp_path / f"b{name}", [*TABLE3[name], *STREAM])))
              for name in ("coop", "all")}
    assert seeded["coop"] == seeded["all"]
    assert sorted(seeded["coop"]) == sorted(plain["coop"])


def alone(data_root, folder, overrides):
    trainer = build(cfg_of(data_root, folder, [*overrides, *STREAM]))
    trainer.train()
    return trainer


@pytest.mark.slow
def test_lockstep_equals_alone_bit_for_bit(data_root, tmp_path):
    """Table 3's variants (+ ZeroshotCLIP evaluated) in lockstep: every checkpoint tensor and accuracy
    equal its alone run's (fp32), and each folder holds what an alone run writes."""
    for name, overrides in TABLE3.items():
        alone(data_root, tmp_path / "alone" / name, overrides)
    variants = []
    for name, overrides in TABLE3.items():
        folder = tmp_path / "shared" / name
        folder.mkdir(parents=True)
        variants.append(Variant(cfg_of(data_root, folder, [*overrides, *STREAM]), open(folder / "log.txt", "w")))
    zs = tmp_path / "shared" / "zeroshot"
    zs.mkdir()
    variants.append(Variant(cfg_of(data_root, zs, STREAM, trainer="ZeroshotCLIP"), open(zs / "log.txt", "w"),
                            eval_only=True))
    lines = []
    assert run_lockstep(variants, say=lines.append) == []
    assert any("epoch 2/2" in line for line in lines)
    for name in TABLE3:
        a, s = tmp_path / "alone" / name, tmp_path / "shared" / name
        ta, ts = checkpoint_tensors(a), checkpoint_tensors(s)
        assert ta and ta.keys() == ts.keys()
        for key in ta:
            assert torch.equal(ta[key], ts[key]), f"{name}: {key} differs"
        assert accuracy(a) == accuracy(s)
        assert ("textrefiner" in {k.split(".")[0] for k in ts}) == (name != "coop")
        log = (s / "log.txt").read_text()
        assert "Finished training" in log and "accuracy" in log and "(image tower shared)" in log
    # the zero-shot evaluation from the shared features equals its alone evaluation
    solo = build(cfg_of(data_root, tmp_path / "zs_alone", STREAM, trainer="ZeroshotCLIP"))
    solo.test()
    assert accuracy(tmp_path / "zs_alone") == accuracy(zs)


def test_shared_evaluation_features_equal_alone(data_root, tmp_path):
    """Evaluation-only variants (untrained CoOp and CoOp_TextRefiner): the logits from the once-computed
    test features give the same predictions as each alone evaluation."""
    names = {"coop": TABLE3["coop"], "all": []}
    variants = []
    for name, overrides in names.items():
        folder = tmp_path / "shared" / name
        folder.mkdir(parents=True)
        variants.append(Variant(cfg_of(data_root, folder, [*overrides, *STREAM]), open(folder / "log.txt", "w"),
                                eval_only=True))
    assert run_lockstep(variants, say=lambda line: None) == []
    assert variants[0].trainer.test_loader.batches is variants[1].trainer.test_loader.batches
    for name, overrides in names.items():
        trainer = build(cfg_of(data_root, tmp_path / "alone" / name, [*overrides, *STREAM]))
        trainer.untrained = True
        trainer.test()
        a, s = (json.loads((tmp_path / kind / name / "result.json").read_text()) for kind in ("alone", "shared"))
        assert a["accuracy"] == s["accuracy"] and a.get("per_class") == s.get("per_class")


@pytest.mark.parametrize("override, key", [
    (["INPUT.SIZE", (64, 64), "MODEL.BACKBONE.NAME", "random:tiny-64"], "INPUT.SIZE"),
    (["DATALOADER.TRAIN_X.BATCH_SIZE", 4], "DATALOADER.TRAIN_X.BATCH_SIZE"),
    (["OPTIM.MAX_EPOCH", 3], "OPTIM.MAX_EPOCH"),
])
def test_unsharable_key_is_refused_in_one_line(data_root, tmp_path, override, key):
    reference = cfg_of(data_root, tmp_path / "a", STREAM)
    other = make_cfg(data_root, "CoOp_TextRefiner", str(tmp_path / "b"), config_file=TR_YAML,
                     opts=[*TRAIN_OPTS, *STREAM], seed=1)
    other.defrost()
    other.merge_from_list([str(x) for x in override])
    why = unsharable(flat(reference), flat(other))
    assert why and key in why and "\n" not in why
    with pytest.raises(UserError, match=key):
        run_lockstep([Variant(reference, open(tmp_path / "la", "w")), Variant(other, open(tmp_path / "lb", "w"))])


def test_prompted_image_tower_and_missing_stream_key_refused(data_root, tmp_path):
    reference = flat(cfg_of(data_root, tmp_path / "a", STREAM))
    assert "MaPLe" in unsharable(reference, {**reference, "TRAINER.NAME": "MaPLe"})
    assert unsharable(reference, {**reference, "TRAINER.TEXTREFINER.CACHE_SIZE": 10}) is None
    assert unsharable(reference, {**reference, "OPTIM.LR": 0.1}) is None
    plain = cfg_of(data_root, tmp_path / "b")
    with pytest.raises(UserError, match="TRAIN.SEEDED_DATA_STREAM"):
        run_lockstep([Variant(plain, open(tmp_path / "lb", "w"))])


@pytest.mark.slow
def test_sweep_shared_groups_variants_runs_unsharable_alone_and_skips_on_rerun(data_root, tmp_path):
    """``--shared`` end to end on a tiny grid: one group (three variants) in one process per step, a
    variant with another input pipeline run alone with its one line, each folder as an alone run's
    (result.json with TRAIN.SEEDED_DATA_STREAM), a variant run alone with the key bit-identical to its
    shared run, and a rerun that skips everything."""
    from launch_helpers import LAUNCH_OPTS
    from test_sweep_variants import CACHE, CFG, GRID, run_sweep, sweep_file
    from textrefiner.results.layout import RunKey, run_dir

    grid = [*GRID[:GRID.index("--seeds") + 1], "1", *GRID[GRID.index("--seeds") + 3:]]
    variants = ("  m1: {%s: 1}\n  m4: {%s: 4}\n  no_tr: {TRAINER.TEXTREFINER.ENABLED: false}\n"
                "  bilinear: {INPUT.INTERPOLATION: bilinear}\n" % (CACHE, CACHE))
    out = tmp_path / "output"
    args = ["--config", sweep_file(tmp_path, variants), *grid, "--data", data_root, "--output", out, "--shared",
            "--", *LAUNCH_OPTS]
    first = run_sweep(args, tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "[group 1/1] base2new synthetic 2-shot seed 1: 3 runs share the image tower" in first.stdout
    assert "[bilinear] seed 1: runs alone, not shared: it differs in INPUT.INTERPOLATION" in first.stdout
    assert "4 ran, 0 skipped" in first.stdout

    def folder(kind, variant, root=out):
        return run_dir(str(root), RunKey(kind, "synthetic", 2, "CoOp_TextRefiner", CFG, 1, variant))

    for variant in ("m1", "m4", "no_tr", "bilinear"):
        for kind in ("base2new_train", "base2new_test"):
            record = json.loads(open(osp.join(folder(kind, variant), "result.json")).read())
            assert record["settings"]["TRAIN.SEEDED_DATA_STREAM"] is True
            log = open(osp.join(folder(kind, variant), "log.txt")).read()
            assert ("Shared run" in log) == (variant != "bilinear")
    logs = sorted(p.name for p in (out / "sweep_logs").iterdir() if p.name.startswith("shared-"))
    assert logs == [f"shared-base2new-synthetic-shots2-seed1-{CFG}-3runs.log"]

    # the same variant alone (train.py, its own process) with the key: the same checkpoint and results
    alone_out = tmp_path / "alone"
    alone_out.mkdir()
    solo = run_sweep(["--config", sweep_file(alone_out, "  m4: {%s: 4}\n" % CACHE), *grid, "--data", data_root,
                      "--output", alone_out, "--", *LAUNCH_OPTS, "TRAIN.SEEDED_DATA_STREAM", "True"], tmp_path)
    assert solo.returncode == 0, solo.stdout[-3000:] + solo.stderr[-3000:]
    for kind in ("base2new_train", "base2new_test"):
        a, s = (json.loads(open(osp.join(folder(kind, "m4", root), "result.json")).read())
                for root in (alone_out, out))
        assert a["accuracy"] == s["accuracy"] and a["settings"] == s["settings"]
    assert checkpoint_tensors_at(folder("base2new_train", "m4", alone_out)) and all(
        torch.equal(x, y) for x, y in zip(checkpoint_tensors_at(folder("base2new_train", "m4", alone_out)).values(),
                                          checkpoint_tensors_at(folder("base2new_train", "m4")).values()))

    again = run_sweep(args, tmp_path)
    assert again.returncode == 0 and "0 ran, 4 skipped" in again.stdout, again.stdout[-3000:]
    # a group whose evaluations were lost reruns only those (the trained models are kept)
    for variant in ("m1", "m4"):
        os.remove(osp.join(folder("base2new_test", variant), "result.json"))
    third = run_sweep(args, tmp_path)
    assert third.returncode == 0 and "2 ran, 2 skipped" in third.stdout, third.stdout[-3000:]


def checkpoint_tensors_at(folder):
    """Every tensor of the last checkpoint of each module in ``folder``."""
    out = {}
    for name in ("prompt_learner", "textrefiner"):
        files = sorted(f for f in os.listdir(osp.join(folder, name)) if f.startswith("model.pth.tar-")) \
            if osp.isdir(osp.join(folder, name)) else []
        if files:
            state = torch.load(osp.join(folder, name, files[-1]), map_location="cpu", weights_only=False)
            out.update({f"{name}.{k}": v for k, v in state["state_dict"].items()})
    return out


@pytest.mark.slow
def test_interrupted_lockstep_resumes_exactly(data_root, tmp_path, monkeypatch):
    """A group stopped after its first epoch (checkpoints every epoch) and run again resumes each variant
    from its checkpoint: the final checkpoints equal those of an uninterrupted group, bit for bit."""
    from textrefiner.trainers import lockstep

    def group(root):
        variants = []
        for name in ("coop", "all"):
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            cfg = cfg_of(data_root, folder, [*TABLE3[name], *STREAM, "TRAIN.CHECKPOINT_FREQ", 1])
            variants.append(Variant(cfg, open(folder / "log.txt", "a")))
        return variants

    assert run_lockstep(group(tmp_path / "whole"), say=lambda line: None) == []
    real_epoch = lockstep._epoch

    def stop_at_second(members, epoch, encoder):
        if epoch == 1:
            raise KeyboardInterrupt
        real_epoch(members, epoch, encoder)

    monkeypatch.setattr(lockstep, "_epoch", stop_at_second)
    with pytest.raises(KeyboardInterrupt):
        run_lockstep(group(tmp_path / "cut"), say=lambda line: None)
    assert not (tmp_path / "cut" / "all" / "result.json").exists()
    monkeypatch.setattr(lockstep, "_epoch", real_epoch)
    lines = []
    assert run_lockstep(group(tmp_path / "cut"), say=lines.append) == []
    assert any("resume at epoch 2" in line for line in lines)
    for name in ("coop", "all"):
        whole, cut = checkpoint_tensors(tmp_path / "whole" / name), checkpoint_tensors(tmp_path / "cut" / name)
        assert whole and all(torch.equal(whole[k], cut[k]) for k in whole)
        assert accuracy(tmp_path / "whole" / name) == accuracy(tmp_path / "cut" / name)
