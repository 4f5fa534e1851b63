"""CoOp_TextRefiner: cache state, gradients, equality with CoOp when disabled, evaluation caching."""

import pytest
import torch

from conftest import REPO, build, make_cfg, one_batch

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
