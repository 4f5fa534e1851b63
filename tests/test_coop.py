"""The CoOp host and trainer: prompts, gradients, evaluation caching, checkpoints, resume."""

import pytest
import torch

from conftest import build, make_cfg
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





def test_load_missing_epoch_names_what_exists(data_root, tmp_path):
    trainer = build(make_cfg(data_root, "CoOp", str(tmp_path)))
    trainer.save_model(1, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"model\.pth\.tar-2.*--load-epoch"):
        trainer.load_model(str(tmp_path), epoch=9)



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
