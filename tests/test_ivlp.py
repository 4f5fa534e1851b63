"""The IVLP host: deep-prompt insertion against CLIP's own blocks, and the teacher file's key layout."""
import copy

import pytest
import torch

from textrefiner.backbones.openai import import_clip
from conftest import deep_random_clip
from textrefiner.hosts.coop import CoOpCLIP, PromptLearner
from textrefiner.hosts.encoders import ImageEncoder
from textrefiner.checkpoints.ivlp import TeacherCheckpointError, load_teacher_state_dict, teacher_state_dict
from textrefiner.hosts.ivlp import IVLPCLIP, IVLPPromptLearner

CLASSNAMES = ["red circle", "dog", "a very long class name"]


def ivlp(clip_model, seed=1, **kwargs):
    torch.manual_seed(seed)
    args = dict(n_ctx_text=2, n_ctx_vision=3, depth_text=3, depth_vision=2)
    return IVLPCLIP(IVLPPromptLearner(CLASSNAMES, clip_model, **{**args, **kwargs}), clip_model)


def release_image_feature(clip_model, image, vpt, vpt_shallow):
    """The release's VisionTransformer.forward (IVLP) with CLIP's own blocks: ``vpt`` (n, W) appended
    after the positional embedding, ``vpt_shallow[i]`` replacing the last n tokens before block i."""
    v = clip_model.visual
    b, n = image.shape[0], vpt.shape[0]
    x = v.conv1(image).flatten(2).permute(0, 2, 1)
    x = torch.cat([v.class_embedding.expand(b, 1, -1), x], dim=1) + v.positional_embedding
    x = v.ln_pre(torch.cat([x, vpt.expand(b, -1, -1)], dim=1)).permute(1, 0, 2)
    for i, block in enumerate(v.transformer.resblocks):
        if i in vpt_shallow:
            x = torch.cat([x[:-n], vpt_shallow[i].unsqueeze(1).expand(-1, b, -1)])
        x = block(x)
    return v.ln_post(x.permute(1, 0, 2)[:, 0]) @ v.proj


def release_text_feature(clip_model, prompts, tokenized, vpt_shallow):
    """The release's text side with CLIP's own (77-token, masked) blocks: ``vpt_shallow[i]``
    replacing positions 1 .. n before block i."""
    n = next(iter(vpt_shallow.values())).shape[0] if vpt_shallow else 0
    x = (prompts + clip_model.positional_embedding).permute(1, 0, 2)
    for i, block in enumerate(clip_model.transformer.resblocks):
        if i in vpt_shallow:
            x = torch.cat([x[:1], vpt_shallow[i].unsqueeze(1).expand(-1, x.shape[1], -1), x[1 + n:]])
        x = block(x)
    x = clip_model.ln_final(x.permute(1, 0, 2))
    return x[torch.arange(x.shape[0]), tokenized.argmax(-1)] @ clip_model.text_projection


def normalized(x):
    return x / x.norm(dim=-1, keepdim=True)


def test_prompts_are_inserted_as_in_the_release(deep_clip):
    model = ivlp(deep_clip)
    pl = model.prompt_learner
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref_image = release_image_feature(deep_clip, image, pl.vision_ctx[0], {1: pl.vision_ctx[1]})
        ref_text = release_text_feature(deep_clip, pl(), pl.tokenized_prompts,
                                        {i: pl.deep_text_ctx[i - 1] for i in (1, 2)})
        visual = model.encode_image(image, with_local=True)
        text = model.text_features()
    torch.testing.assert_close(visual.global_feature, ref_image)
    torch.testing.assert_close(text, normalized(ref_text))
    # local tokens: CLS + 4 patches, the 3 vision prompt positions left out
    assert visual.tokens.shape == (2, 5, 32) and visual.cls_attention.shape == (2, 4)
    assert pl.ctx.shape == (2, 64) and pl.deep_text_ctx.shape == (2, 2, 64) and pl.vision_ctx.shape == (2, 3, 96)


def test_towers_are_independent(deep_clip):
    model = ivlp(deep_clip)
    pl = model.prompt_learner
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model.encode_image(image).global_feature, model.text_features()
        pl.ctx.add_(1.0)
        pl.deep_text_ctx.add_(1.0)
        assert torch.equal(model.encode_image(image).global_feature, before[0])
        pl.vision_ctx.add_(1.0)
        text = model.text_features()
    assert torch.equal(text, model.text_features()) and not torch.equal(text, before[1])


def test_depth_limits(tiny_clip):
    image = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        # no vision prompts: CLIP's image tower; text depth 1: CoOp with the same context
        model = ivlp(tiny_clip, depth_vision=0, depth_text=1, n_ctx_text=4)
        assert torch.equal(model.encode_image(image).global_feature, ImageEncoder(tiny_clip.visual)(image).global_feature)
        coop = CoOpCLIP(PromptLearner(CLASSNAMES, tiny_clip, ctx_init="a photo of a"), tiny_clip)
        assert torch.equal(model.text_features(), coop.text_features())
    with pytest.raises(ValueError, match="PROMPT_DEPTH_TEXT must be between 1 and 2"):
        ivlp(tiny_clip, depth_text=0)
    with pytest.raises(ValueError, match="PROMPT_DEPTH_VISION must be between 0 and 2"):
        ivlp(tiny_clip, depth_text=1, depth_vision=3)


def test_context_init_as_the_release(tiny_clip):
    pl = IVLPPromptLearner(CLASSNAMES, tiny_clip, n_ctx_text=2, depth_text=1, depth_vision=1)
    with torch.no_grad():
        embedded = tiny_clip.token_embedding(pl.tokenized_prompts)
    assert torch.equal(pl(), embedded) and torch.equal(pl.ctx, embedded[0, 1:3])
    # more tokens than words: random context, "X" placeholders (the release's fallback)
    wide = IVLPPromptLearner(CLASSNAMES, tiny_clip, n_ctx_text=5, depth_text=1, depth_vision=1)
    assert wide.ctx.shape == (5, 128) and wide.ctx.std() < 0.05


def test_fp16_clip_keeps_the_release_dtypes(tiny_clip):
    half = copy.deepcopy(tiny_clip)
    import_clip().model.convert_weights(half)
    model = ivlp(half, depth_text=2, depth_vision=2)
    pl = model.prompt_learner
    # the input text context in CLIP's fp16; the deeper and vision prompts fp32 (the release's VPT), cast when used
    assert pl.ctx.dtype == torch.float16 and pl.deep_text_ctx.dtype == pl.vision_ctx.dtype == torch.float32
    logits = model(torch.randn(1, 3, 224, 224))
    logits.float().sum().backward()
    assert logits.dtype == torch.float16 and all(p.grad is not None for p in pl.parameters())


def expected_release_keys(clip_model, depth_text, depth_vision):
    keys = {"prompt_learner.ctx", "prompt_learner.token_prefix", "prompt_learner.token_suffix", "logit_scale"}
    keys |= {f"image_encoder.{k}" for k in clip_model.visual.state_dict()} | {"image_encoder.VPT"}
    keys |= {f"image_encoder.transformer.resblocks.{i}.VPT_shallow" for i in range(1, depth_vision)}
    keys |= {f"text_encoder.transformer.{k}" for k in clip_model.transformer.state_dict()}
    keys |= {"text_encoder.positional_embedding", "text_encoder.ln_final.weight", "text_encoder.ln_final.bias",
             "text_encoder.text_projection"}
    keys |= {f"text_encoder.transformer.resblocks.{i}.VPT_shallow" for i in range(1, depth_text)}
    return keys


def test_teacher_state_dict_has_the_release_layout_and_meaning(deep_clip):
    model = ivlp(deep_clip)
    state = teacher_state_dict(model)
    assert set(state) == expected_release_keys(deep_clip, depth_text=3, depth_vision=2)
    assert state["image_encoder.VPT"].shape == (3, 96)
    assert state["image_encoder.transformer.resblocks.1.VPT_shallow"].shape == (3, 96)
    assert state["text_encoder.transformer.resblocks.2.VPT_shallow"].shape == (2, 64)
    assert state["prompt_learner.ctx"].shape == (2, 64) and state["prompt_learner.token_prefix"].shape == (3, 1, 64)
    # The keys mean what the release means: a different CLIP loaded from the file's tensors, run
    # with the release's forward and the file's prompts, reproduces our features.
    other = deep_random_clip(seed=5)
    other.visual.load_state_dict({k[14:]: v for k, v in state.items()
                                  if k.startswith("image_encoder.") and "VPT" not in k})
    text_part = {k[13:]: v for k, v in state.items() if k.startswith("text_encoder.") and "VPT" not in k}
    other.load_state_dict({**other.state_dict(), **text_part})
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref_image = release_image_feature(other, image, state["image_encoder.VPT"],
                                          {1: state["image_encoder.transformer.resblocks.1.VPT_shallow"]})
        pl = model.prompt_learner
        prompts = torch.cat([state["prompt_learner.token_prefix"], state["prompt_learner.ctx"].expand(3, -1, -1),
                             state["prompt_learner.token_suffix"]], dim=1)
        ref_text = release_text_feature(other, prompts, pl.tokenized_prompts, {
            i: state[f"text_encoder.transformer.resblocks.{i}.VPT_shallow"] for i in (1, 2)})
        torch.testing.assert_close(model.encode_image(image).global_feature, ref_image)
        torch.testing.assert_close(model.text_features(), normalized(ref_text))


def test_teacher_state_dict_round_trips_strictly(deep_clip):
    # Everything but the token embedding comes from the file (the release does not save it: the
    # class-name prompts are rebuilt with the loading CLIP's embedding, the same OpenAI weights in practice).
    other = deep_random_clip(seed=3)
    other.token_embedding.load_state_dict(deep_clip.token_embedding.state_dict())
    source, target = ivlp(deep_clip, seed=1), ivlp(other, seed=2)
    state = teacher_state_dict(source)
    load_teacher_state_dict(target, {**state, "prompt_learner.ZS_image_encoder.conv1.weight": torch.zeros(1)})
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source.text_features(), target.text_features())
        assert torch.equal(source.encode_image(image).global_feature, target.encode_image(image).global_feature)
    missing = {k: v for k, v in state.items() if k != "image_encoder.VPT"}
    with pytest.raises(TeacherCheckpointError, match=r"missing keys: image_encoder\.VPT"):
        load_teacher_state_dict(target, missing)
    with pytest.raises(TeacherCheckpointError, match=r"shape mismatches: prompt_learner\.ctx \(4, 64\)"):
        load_teacher_state_dict(target, {**state, "prompt_learner.ctx": torch.zeros(4, 64)})
