"""The CoOp host and trainer: prompts, gradients, evaluation caching, checkpoints, resume."""
import copy

import pytest
import torch

from conftest import build, make_cfg, one_batch, trainable_state
from textrefiner.framework import load_checkpoint
from textrefiner.hosts.coop import CoOpCLIP, PromptLearner, name_lengths

CLASSNAMES = ["red circle", "dog", "a very long class name"]


def _coop_loop_reference(pl: PromptLearner, name_lens):
    """CoOp's own per-class concatenation for middle/front positions (the release's loop)."""
    ctx = pl.ctx.unsqueeze(0).expand(pl.n_cls, -1, -1) if pl.ctx.dim() == 2 else pl.ctx
    half = pl.n_ctx // 2
    out = []
    for i, n in enumerate(name_lens):
        prefix, cls, rest = pl.token_prefix[i : i + 1], pl.token_suffix[i : i + 1, :n], pl.token_suffix[i : i + 1, n:]
        c = ctx[i : i + 1]
        if pl.class_token_position == "middle":
            out.append(torch.cat([prefix, c[:, :half], cls, c[:, half:], rest], dim=1))
        else:
            out.append(torch.cat([prefix, cls, c, rest], dim=1))
    return torch.cat(out)


@pytest.mark.parametrize("position", ["middle", "front"])
@pytest.mark.parametrize("csc", [False, True])
def test_class_token_positions_match_coop(tiny_clip, position, csc):
    torch.manual_seed(0)
    pl = PromptLearner(CLASSNAMES, tiny_clip, n_ctx=4, csc=csc, class_token_position=position)
    expected = _coop_loop_reference(pl, name_lengths(CLASSNAMES))
    assert torch.equal(pl(), expected)


def test_end_position_and_ctx_init(tiny_clip):
    pl = PromptLearner(CLASSNAMES, tiny_clip, ctx_init="a photo of a")
    assert pl.n_ctx == 4 and pl.ctx.shape == (4, 128)
    prompts = pl()
    with torch.no_grad():
        embedded = tiny_clip.token_embedding(pl.tokenized_prompts)
    # "a photo of a" initialisation reproduces the hand-written prompt exactly
    assert torch.equal(prompts, embedded)


def test_text_features_equal_clip_on_hand_written_prompts(tiny_clip):
    model = CoOpCLIP(PromptLearner(CLASSNAMES, tiny_clip, ctx_init="a photo of a"), tiny_clip)
    with torch.no_grad():
        ours = model.text_features()
        ref = tiny_clip.encode_text(model.prompt_learner.tokenized_prompts)
    torch.testing.assert_close(ours, ref / ref.norm(dim=-1, keepdim=True), rtol=1e-5, atol=1e-6)


def test_only_context_changes_and_gets_gradient(data_root, tmp_path):
    trainer = build(make_cfg(data_root, "CoOp", str(tmp_path)))
    before = copy.deepcopy(trainer.model.state_dict())
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 5
    trainer.forward_backward(one_batch(trainer))
    grads = {n: p.grad for n, p in trainer.model.named_parameters() if p.grad is not None}
    assert list(grads) == ["prompt_learner.ctx"] and grads["prompt_learner.ctx"].abs().sum() > 0
    after = trainer.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == ["prompt_learner.ctx"]


def test_cached_text_features_equal_per_batch_evaluation(data_root, tmp_path):
    trainer = build(make_cfg(data_root, "CoOp", str(tmp_path)))
    trainer.set_model_mode("eval")
    image = one_batch(trainer)["img"]
    with torch.no_grad():
        per_batch = trainer.model(image)
        cached = trainer.model(image, text_features=trainer.model.text_features())
    assert torch.equal(per_batch, cached)
    # test() computes the text side exactly once
    calls = []
    original = trainer.model.text_features
    trainer.model.text_features = lambda: calls.append(1) or original()
    trainer.test()
    assert len(calls) == 1


def test_save_load_round_trip_reproduces_logits(data_root, tmp_path):
    trainer = build(make_cfg(data_root, "CoOp", str(tmp_path / "a")))
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 5
    trainer.forward_backward(one_batch(trainer))
    trainer.save_model(0, str(tmp_path / "a"))
    fresh = build(make_cfg(data_root, "CoOp", str(tmp_path / "b")))
    fresh.load_model(str(tmp_path / "a"), epoch=1)
    image = one_batch(trainer)["img"]
    trainer.set_model_mode("eval")
    fresh.set_model_mode("eval")
    with torch.no_grad():
        assert torch.equal(trainer.model(image), fresh.model(image))
    # the checkpoint holds the trainable context only, never CLIP
    saved = load_checkpoint(str(tmp_path / "a" / "prompt_learner" / "model.pth.tar-1"))
    assert list(saved["state_dict"]) == ["ctx"]


def test_load_missing_epoch_names_what_exists(data_root, tmp_path):
    trainer = build(make_cfg(data_root, "CoOp", str(tmp_path)))
    trainer.save_model(1, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"model\.pth\.tar-2.*--load-epoch"):
        trainer.load_model(str(tmp_path), epoch=9)


def test_two_seeded_runs_are_identical(data_root, tmp_path):
    results = []
    for run in ("a", "b"):
        trainer = build(make_cfg(data_root, "CoOp", str(tmp_path / run), opts=["OPTIM.MAX_EPOCH", 2]))
        trainer.train()
        results.append((trainable_state(trainer), trainer.test()))
    assert results[0][1] == results[1][1]
    assert all(torch.equal(results[0][0][k], results[1][0][k]) for k in results[0][0])


def test_resume_continues_from_saved_epoch(data_root, tmp_path, capsys):
    opts = ["OPTIM.MAX_EPOCH", 3, "TRAIN.CHECKPOINT_FREQ", 1, "TEST.FINAL_MODEL", "last_step"]
    trainer = build(make_cfg(data_root, "CoOp", str(tmp_path), opts=opts))

    class Interrupt(Exception):
        pass

    def stop_after_second_epoch():
        type(trainer).after_epoch(trainer)
        if trainer.epoch == 1:
            raise Interrupt

    trainer.after_epoch = stop_after_second_epoch
    with pytest.raises(Interrupt):
        trainer.train()
    capsys.readouterr()
    resumed = build(make_cfg(data_root, "CoOp", str(tmp_path), opts=opts))
    resumed.train()
    out = capsys.readouterr().out
    assert resumed.start_epoch == 2
    assert "epoch [3/3]" in out and "epoch [1/3]" not in out and "epoch [2/3]" not in out
    # the scheduler state came back too: epoch 3 ran at the cosine lr of its position
    assert resumed.get_current_lr() == pytest.approx(0.001 * (1 + torch.cos(torch.tensor(torch.pi * 2 / 3)).item()))
