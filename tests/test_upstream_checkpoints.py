"""Checkpoints in the TextRefiner release's and the MaPLe release's layouts load through --model-dir
and MODEL.INIT_WEIGHTS and give the original modules' logits; what cannot map refuses clearly.

The release files are written here from our own trained modules under the releases' names,
prefixes and shapes (whole model under ``prompt_learner.`` with the frozen CLIP beside it,
1x1-convolution alignment, ``memory_item`` outside the state_dict, MaPLe's ``proj`` /
``compound_prompts_text`` / ``compound_prompt_projections``); nothing is downloaded.
"""
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from conftest import REPO, build, make_cfg, one_batch, run_train_py, trainable_state
from textrefiner.checkpoints import UpstreamCheckpointError
from textrefiner.cli.convert_checkpoint import main as convert

TR_YAML = REPO / "configs" / "trainers" / "CoOp_TextRefiner" / "vit_b16_ep10_ctxv1.yaml"
MAPLE_YAML = REPO / "configs" / "trainers" / "MaPLe" / "vit_b16_c2_ep5_batch4_2ctx.yaml"
MAPLE_TR_YAML = REPO / "configs" / "trainers" / "MaPLe_TextRefiner" / "vit_b16_c2_ep5_batch4_2ctx.yaml"
MAPLE_OPTS = ["TRAINER.MAPLE.PROMPT_DEPTH", 2, "TRAINER.MAPLE.PREC", "fp32"]  # random:tiny has 2 layers


def tr_cfg(root, out, opts=()):
    return make_cfg(root, "CoOp_TextRefiner", str(out), config_file=TR_YAML, opts=opts)


def maple_cfg(root, out, trainer="MaPLe", opts=()):
    config = MAPLE_TR_YAML if trainer == "MaPLe_TextRefiner" else MAPLE_YAML
    return make_cfg(root, trainer, str(out), config_file=config, opts=[*MAPLE_OPTS, *opts])


def trained(cfg):
    """A trainer after one training step, so prompts, head, BatchNorm statistics and cache all moved."""
    trainer = build(cfg)
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 5
    trainer.forward_backward(one_batch(trainer))
    return trainer


def eval_logits(trainer, image):
    trainer.set_model_mode("eval")
    with torch.no_grad():
        return trainer.model(image, text_features=trainer.classifier_text_features())


def frozen_clip(model):
    """The frozen CLIP the releases saved beside the prompts (their whole CustomCLIP's state_dict)."""
    state = {f"image_encoder.{k}": v for k, v in model.image_encoder.visual.state_dict().items()}
    state.update({f"text_encoder.{k}": v for k, v in model.text_encoder.state_dict().items()})
    state["logit_scale"] = model.logit_scale.detach()
    return state


def release_save(path: Path, state_dict, epoch, **extra):
    """Dassl's save_checkpoint as the releases call it, a pickled scheduler object included."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.002)
    scheduler = {"successor": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 10), "last_epoch": epoch}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state_dict, "epoch": epoch, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler, "val_result": 50.0, **extra}, path)


def write_textrefiner_release(trainer, root: Path, epoch=10, file_name=None):
    """The TextRefiner release's folders: prompt_learner/ (whole model) and Memory/ (aggregation + cache)."""
    file_name = file_name or f"model.pth.tar-{epoch}"
    pl, head = trainer.model.prompt_learner, trainer.refiner
    state = {
        "prompt_learner.ctx": pl.ctx.detach(),
        "prompt_learner.token_prefix": pl.token_prefix,
        "prompt_learner.token_suffix": pl.token_suffix,
        "prompt_learner.tokenized_prompts": pl.tokenized_prompts,
        **frozen_clip(trainer.model),
    }
    convs = {"0": head.alignment.fc1, "1": head.alignment.norm, "3": head.alignment.fc2}
    for index, module in convs.items():
        for key, value in module.state_dict().items():
            as_conv = value[:, :, None, None] if key == "weight" and value.dim() == 2 else value
            state[f"mid_image_trans.conv1.{index}.{key}"] = as_conv
    release_save(root / "prompt_learner" / file_name, state, epoch)
    release_save(root / "Memory" / file_name, {"extractor.weight": head.aggregation.linear.weight.detach()}, epoch,
                 memory_item=head.cache.entries.clone())
    return root


def write_maple_release(trainer, root: Path, epoch=5):
    """The MaPLe release's folder MultiModalPromptLearner/ (whole model, prompts under prompt_learner.)."""
    pl = trainer.model.prompt_learner
    state = {"prompt_learner.ctx": pl.ctx.detach()}
    state.update({f"prompt_learner.compound_prompts_text.{i}": p.detach() for i, p in enumerate(pl.deep_ctx)})
    state.update({"prompt_learner.token_prefix": pl.token_prefix, "prompt_learner.token_suffix": pl.token_suffix})
    state.update({f"prompt_learner.proj.{k}": v for k, v in pl.couplings[0].state_dict().items()})
    for i, coupling in enumerate(pl.couplings[1:]):
        prefix = f"prompt_learner.compound_prompt_projections.{i}"
        state.update({f"{prefix}.{k}": v for k, v in coupling.state_dict().items()})
    state.update(frozen_clip(trainer.model))
    release_save(root / "MultiModalPromptLearner" / f"model.pth.tar-{epoch}", state, epoch)
    return root


@pytest.fixture(scope="module")
def textrefiner_release(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("tr")
    original = trained(tr_cfg(data_root, out / "original"))
    image = one_batch(original)["img"]
    return original, write_textrefiner_release(original, out / "release"), image, eval_logits(original, image)


@pytest.fixture(scope="module")
def maple_release(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("maple")
    original = trained(maple_cfg(data_root, out / "original"))
    image = one_batch(original)["img"]
    return original, write_maple_release(original, out / "release"), image, eval_logits(original, image)


def assert_same_state(a, b):
    sa, sb = trainable_state(a), trainable_state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_textrefiner_release_evaluates_with_the_original_logits(textrefiner_release, data_root, tmp_path):
    original, release, image, logits = textrefiner_release
    fresh = build(tr_cfg(data_root, tmp_path))
    fresh.load_model(str(release), epoch=10)
    assert_same_state(fresh, original)  # context, alignment (BatchNorm statistics too), aggregation, cache
    assert torch.equal(eval_logits(fresh, image), logits)


def test_textrefiner_release_initialises_through_init_weights(textrefiner_release, data_root, tmp_path):
    original, release, _, _ = textrefiner_release
    from_folder = build(tr_cfg(data_root, tmp_path / "a", opts=["MODEL.INIT_WEIGHTS", release]))
    assert_same_state(from_folder, original)
    # one file of the release stands for its folder: Memory/ is read beside prompt_learner/
    one_file = release / "prompt_learner" / "model.pth.tar-10"
    from_file = build(tr_cfg(data_root, tmp_path / "b", opts=["MODEL.INIT_WEIGHTS", one_file]))
    assert_same_state(from_file, original)
    # a plain CoOp takes the context and leaves the head it has no place for
    coop = build(make_cfg(data_root, "CoOp", str(tmp_path / "c"), config_file=TR_YAML,
                          opts=["MODEL.INIT_WEIGHTS", release]))
    assert torch.equal(coop.model.prompt_learner.ctx, original.model.prompt_learner.ctx)


def test_maple_release_evaluates_with_the_original_logits(maple_release, data_root, tmp_path):
    original, release, image, logits = maple_release
    fresh = build(maple_cfg(data_root, tmp_path))
    fresh.load_model(str(release), epoch=5)
    assert_same_state(fresh, original)
    assert torch.equal(eval_logits(fresh, image), logits)


def test_maple_release_starts_maple_textrefiner_with_a_fresh_head(maple_release, data_root, tmp_path):
    original, release, _, _ = maple_release
    plain = build(maple_cfg(data_root, tmp_path / "a", trainer="MaPLe_TextRefiner"))
    started = build(maple_cfg(data_root, tmp_path / "b", trainer="MaPLe_TextRefiner",
                              opts=["MODEL.INIT_WEIGHTS", release]))
    for k, v in original.model.prompt_learner.state_dict().items():
        assert torch.equal(started.model.prompt_learner.state_dict()[k], v), k
    for k, v in plain.refiner.state_dict().items():
        assert torch.equal(started.refiner.state_dict()[k], v), k
    # evaluating it as it is would run an untrained head: refused, naming the trainer that fits
    with pytest.raises(UpstreamCheckpointError, match=r"MaPLe release.*fits --trainer MaPLe.*INIT_WEIGHTS"):
        started.load_model(str(release), epoch=5)


def test_maple_release_of_another_prompt_depth_refuses(maple_release, data_root, tmp_path):
    _, release, _, _ = maple_release
    shallow = build(maple_cfg(data_root, tmp_path, opts=["TRAINER.MAPLE.PROMPT_DEPTH", 1]))
    before = trainable_state(shallow)
    with pytest.raises(UpstreamCheckpointError) as refused:
        shallow.load_model(str(release), epoch=5)
    message = str(refused.value)
    assert "\n" not in message
    assert re.search(r"MultiModalPromptLearner/model\.pth\.tar-5: prompt_learner\.compound_prompts_text\.\* has shape "
                     r"\(1, 2, \d+\) but prompt_learner\.deep_ctx of this model has shape \(0, 2, \d+\)", message)
    assert "TRAINER.MAPLE.PROMPT_DEPTH 2" in message
    assert all(torch.equal(v, trainable_state(shallow)[k]) for k, v in before.items()), "nothing loads half-way"


@pytest.mark.parametrize("opts, fix", [
    (["TRAINER.COOP.CTX_INIT", "a photo"], "N_CTX"),
    (["TRAINER.TEXTREFINER.CACHE_SIZE", 7], "CACHE_SIZE"),
])
def test_textrefiner_release_with_other_shapes_refuses(textrefiner_release, data_root, tmp_path, opts, fix):
    _, release, _, _ = textrefiner_release
    other = build(tr_cfg(data_root, tmp_path, opts=opts))
    with pytest.raises(UpstreamCheckpointError, match=rf"model\.pth\.tar-10: \S+ has shape \(\d+, \d+\) but .*{fix}"):
        other.load_model(str(release), epoch=10)


def test_release_of_another_architecture_refuses(textrefiner_release, maple_release, data_root, tmp_path):
    _, tr_release, _, _ = textrefiner_release
    maple = build(maple_cfg(data_root, tmp_path / "a"))
    fits = r"TextRefiner release \(CoOp variant\).*--trainer CoOp_TextRefiner"
    with pytest.raises(UpstreamCheckpointError, match=fits):
        maple.load_model(str(tr_release), epoch=10)
    original, _, _, _ = maple_release
    cocoop = write_maple_release(original, tmp_path / "cocoop")
    path = cocoop / "MultiModalPromptLearner" / "model.pth.tar-5"
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["state_dict"]["prompt_learner.meta_net.linear1.weight"] = torch.zeros(2, 2)
    torch.save(checkpoint, path)
    unknown = r'key "prompt_learner\.meta_net\.linear1\.weight" has no counterpart'
    with pytest.raises(UpstreamCheckpointError, match=unknown):
        maple.load_model(str(cocoop), epoch=5)


def test_textrefiner_release_copied_without_its_memory_folder_refuses(textrefiner_release, data_root, tmp_path):
    original, _, _, _ = textrefiner_release
    release = write_textrefiner_release(original, tmp_path / "release")
    shutil.rmtree(release / "Memory")
    with pytest.raises(UpstreamCheckpointError, match=r"no weights for textrefiner\.cache\.entries.*Memory/"):
        build(tr_cfg(data_root, tmp_path / "a")).load_model(str(release), epoch=10)


def test_release_without_the_asked_epoch_names_what_it_has(maple_release, data_root, tmp_path):
    _, release, _, _ = maple_release
    with pytest.raises(FileNotFoundError, match=r"model-best\.pth\.tar.*model\.pth\.tar-5.*--load-epoch"):
        build(maple_cfg(data_root, tmp_path)).load_model(str(release))


def test_coop_release_checkpoints_still_load(data_root, tmp_path):
    """CoOp's release saves the prompt learner alone, with its fixed token buffers: loads as before."""
    original = trained(make_cfg(data_root, "CoOp", str(tmp_path / "a")))
    pl = original.model.prompt_learner
    state = {"ctx": pl.ctx.detach(), "token_prefix": pl.token_prefix, "token_suffix": pl.token_suffix}
    release_save(tmp_path / "coop" / "prompt_learner" / "model.pth.tar-50", state, 50)
    for opts in ([], ["MODEL.INIT_WEIGHTS", tmp_path / "coop" / "prompt_learner" / "model.pth.tar-50"]):
        fresh = build(make_cfg(data_root, "CoOp", str(tmp_path / "b"), opts=opts))
        if not opts:
            fresh.load_model(str(tmp_path / "coop"), epoch=50)
        assert torch.equal(fresh.model.prompt_learner.ctx, pl.ctx)


def test_converter_writes_our_layout_and_never_overwrites(textrefiner_release, data_root, tmp_path, capsys,
                                                          monkeypatch):
    original, release, image, logits = textrefiner_release
    dst = tmp_path / "converted"
    convert([str(release), str(dst)])
    assert "--trainer CoOp_TextRefiner" in capsys.readouterr().out
    assert sorted(os.listdir(dst)) == ["prompt_learner", "textrefiner"]
    saved = torch.load(dst / "prompt_learner" / "model.pth.tar-10", weights_only=True)
    assert list(saved["state_dict"]) == ["ctx"] and saved["epoch"] == 10  # no frozen CLIP, no optimizer
    assert (dst / "textrefiner" / "checkpoint").read_text() == "model.pth.tar-10\n"
    fresh = build(tr_cfg(data_root, tmp_path / "b"))
    fresh.load_model(str(dst), epoch=10)
    assert torch.equal(eval_logits(fresh, image), logits)
    with pytest.raises(SystemExit):
        convert([str(release), str(dst)])
    assert "exists" in capsys.readouterr().out
    # a failure half-way (disk full, interrupt) leaves neither the folder nor a partial one
    real_save, written = torch.save, []

    def save_once_then_fail(obj, path, **kwargs):
        if written:
            raise OSError("No space left on device")
        written.append(path)
        real_save(obj, path, **kwargs)

    monkeypatch.setattr(torch, "save", save_once_then_fail)
    with pytest.raises(OSError):
        convert([str(release), str(tmp_path / "again")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted"], "no partial folder left behind"


def test_train_py_evaluates_a_release_folder(maple_release, data_root, tmp_path):
    original, release, _, _ = maple_release
    original.test()
    expected = json.loads((Path(original.cfg.OUTPUT_DIR) / "result.json").read_text())
    run_train_py([
        "--root", data_root, "--seed", 1, "--trainer", "MaPLe", "--eval-only",
        "--dataset-config-file", REPO / "configs" / "datasets" / "synthetic.yaml", "--config-file", MAPLE_YAML,
        "--output-dir", tmp_path / "eval", "--model-dir", release, "--load-epoch", 5,
        "MODEL.BACKBONE.NAME", "random:tiny", "DATALOADER.NUM_WORKERS", 0, "DATASET.NUM_SHOTS", 4, *MAPLE_OPTS,
    ])
    result = json.loads((tmp_path / "eval" / "result.json").read_text())
    assert result["accuracy"] == expected["accuracy"]
    assert result["per_class_accuracy"] == expected["per_class_accuracy"]
