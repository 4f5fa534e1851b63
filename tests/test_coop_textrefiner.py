"""CoOp_TextRefiner: cache state, gradients, equality with CoOp when disabled, evaluation caching."""
import copy
from pathlib import Path

import pytest
import torch

from conftest import REPO, build, make_cfg, one_batch
from textrefiner.framework import load_checkpoint

TR_YAML = REPO / "configs" / "trainers" / "CoOp_TextRefiner" / "vit_b16_ep10_ctxv1.yaml"


def tr_cfg(root, out, opts=(), seed=1):
    return make_cfg(root, "CoOp_TextRefiner", str(out), config_file=TR_YAML, opts=opts, seed=seed)


def train_step(trainer, batch=None):
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 5
    return trainer.forward_backward(batch or one_batch(trainer))


def test_cache_is_state_not_parameter(data_root, tmp_path):
    trainer = build(tr_cfg(data_root, tmp_path))
    refiner = trainer.refiner
    assert "cache.entries" in refiner.state_dict()
    assert all("cache" not in name for name, _ in refiner.named_parameters())
    before = refiner.cache.entries.clone()
    summary = train_step(trainer)
    assert {"loss", "ce", "semantic", "regularization", "acc"} <= set(summary)
    assert not refiner.cache.entries.requires_grad and refiner.cache.entries.grad is None
    assert not torch.equal(refiner.cache.entries, before), "a training step must update the cache"
    after_step = refiner.cache.entries.clone()
    trainer.test(split="val")
    assert torch.equal(refiner.cache.entries, after_step), "evaluation must not touch the cache"


def test_every_trainable_parameter_gets_a_gradient_and_clip_stays_frozen(data_root, tmp_path):
    trainer = build(tr_cfg(data_root, tmp_path))
    clip_before = copy.deepcopy(trainer.model.state_dict())
    train_step(trainer)
    trainable = {f"{n}.{k}": p for n in trainer.get_model_names() for k, p in trainer._models[n].named_parameters()}
    assert set(trainable) == {
        "prompt_learner.ctx", "textrefiner.aggregation.linear.weight",
        "textrefiner.alignment.fc1.weight", "textrefiner.alignment.fc1.bias",
        "textrefiner.alignment.norm.weight", "textrefiner.alignment.norm.bias",
        "textrefiner.alignment.fc2.weight", "textrefiner.alignment.fc2.bias",
    }
    for name, p in trainable.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} received no gradient"
    after = trainer.model.state_dict()
    changed = {k for k in clip_before if not torch.equal(clip_before[k], after[k])}
    assert changed == {"prompt_learner.ctx"}


def test_disabled_refiner_is_exactly_coop(data_root, tmp_path):
    coop = build(make_cfg(data_root, "CoOp", str(tmp_path / "coop"), opts=["OPTIM.MAX_EPOCH", 2]))
    coop.train()
    off = build(tr_cfg(data_root, tmp_path / "off", opts=["OPTIM.MAX_EPOCH", 2, "TRAINER.TEXTREFINER.ENABLED", False]))
    off.train()
    assert off.refiner is None and off.get_model_names() == ["prompt_learner"]
    image = one_batch(coop)["img"]
    coop.set_model_mode("eval")
    off.set_model_mode("eval")
    with torch.no_grad():
        assert torch.equal(coop.model(image), off.model(image))


def test_cached_refined_features_equal_per_batch_computation(data_root, tmp_path):
    """What ``test()`` predicts with t' computed once equals recomputing t' for every batch, as the
    release does; t' is computed once and no local tokens are asked for during evaluation."""
    trainer = build(tr_cfg(data_root, tmp_path, opts=["DATALOADER.TEST.BATCH_SIZE", 4]))
    train_step(trainer)
    images, outputs, refine_calls, asked_local = [], [], [], []
    inference, refine, encode_image = trainer.model_inference, trainer.refiner.refine, trainer.model.encode_image
    trainer.model_inference = lambda image: images.append(image) or outputs.append(inference(image)) or outputs[-1]
    trainer.refiner.refine = lambda t: refine_calls.append(1) or refine(t)
    trainer.model.encode_image = lambda image, with_local=False: asked_local.append(with_local) or encode_image(
        image, with_local=with_local)
    trainer.test(split="val")
    assert len(images) >= 2, "several batches are evaluated"
    assert len(refine_calls) == 1, "refined text features must be computed once per evaluation"
    assert asked_local and not any(asked_local), "evaluation must not compute local tokens"
    trainer.refiner.refine, trainer.model.encode_image = refine, encode_image
    with torch.no_grad():
        for image, output in zip(images, outputs):
            text = trainer.refiner.refine(trainer.model.text_features())  # recomputed per batch
            per_batch = trainer.model.logits(trainer.model.encode_image(image).global_feature, text)
            torch.testing.assert_close(output, per_batch, rtol=0, atol=1e-5)


def test_cache_survives_save_load_bit_exactly(data_root, tmp_path):
    trainer = build(tr_cfg(data_root, tmp_path / "a"))
    train_step(trainer)
    trainer.save_model(0, str(tmp_path / "a"))
    saved = load_checkpoint(str(tmp_path / "a" / "textrefiner" / "model.pth.tar-1"))
    assert torch.equal(saved["state_dict"]["cache.entries"], trainer.refiner.cache.entries)
    assert not any(k.startswith(("image_encoder", "text_encoder", "visual")) for k in saved["state_dict"])
    fresh = build(tr_cfg(data_root, tmp_path / "b", seed=7))
    assert not torch.equal(fresh.refiner.cache.entries, trainer.refiner.cache.entries)
    fresh.load_model(str(tmp_path / "a"), epoch=1)
    assert torch.equal(fresh.refiner.cache.entries, trainer.refiner.cache.entries)
    trainer.set_model_mode("eval")
    fresh.set_model_mode("eval")
    image = one_batch(trainer)["img"]
    with torch.no_grad():
        assert torch.equal(
            trainer.model(image, text_features=trainer.classifier_text_features()),
            fresh.model(image, text_features=fresh.classifier_text_features()),
        )


def test_cache_survives_resume(data_root, tmp_path):
    opts = ["OPTIM.MAX_EPOCH", 2, "TRAIN.CHECKPOINT_FREQ", 1, "TEST.FINAL_MODEL", "last_step"]
    first = build(tr_cfg(data_root, tmp_path, opts=opts))

    class Interrupt(Exception):
        pass

    def stop():
        type(first).after_epoch(first)
        raise Interrupt

    first.after_epoch = stop
    with pytest.raises(Interrupt):
        first.train()
    saved = first.refiner.cache.entries.clone()
    resumed = build(tr_cfg(data_root, tmp_path, opts=opts))
    seen = {}
    run_epoch = resumed.run_epoch

    def capture():
        seen["entries"] = resumed.refiner.cache.entries.clone()
        run_epoch()

    resumed.run_epoch = capture
    resumed.train()
    assert resumed.start_epoch == 1
    assert torch.equal(seen["entries"], saved)


def test_paper_switches_change_the_numerics(data_root, tmp_path):
    results = {}
    for name, opts in {
        "release": [],
        "paper": ["TRAINER.TEXTREFINER.UPDATE_RULE", "paper", "TRAINER.TEXTREFINER.SEMANTIC_SET", "paper",
                  "TRAINER.TEXTREFINER.NORMALIZE_REFINED", True],
    }.items():
        trainer = build(tr_cfg(data_root, tmp_path / name, opts=opts))
        batch = one_batch(trainer)
        summary = train_step(trainer, batch)
        results[name] = (summary["semantic"], trainer.refiner.cache.entries.clone())
        if name == "paper":
            assert torch.allclose(trainer.classifier_text_features().norm(dim=-1), torch.ones(trainer.num_classes))
    assert results["release"][0] != results["paper"][0]
    assert not torch.allclose(results["release"][1], results["paper"][1])
    assert torch.allclose(results["release"][1].norm(dim=-1), torch.ones(25, dtype=torch.float32))
