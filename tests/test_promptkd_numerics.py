"""PromptKD numerics against independent re-derivations written from PROMPTKD.md.

The ``ref_*`` functions share no code with ``textrefiner``: plain loops in float64 for the
losses, CLIP's own modules (``block(x)``, ``encode_text``) for the towers.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY
from textrefiner.backbones.openai import import_clip
from textrefiner.backbones.resolver import load_clip
from textrefiner.config import get_cfg
from textrefiner.hosts.ivlp import build_ivlp
from textrefiner.hosts.promptkd import PromptKDStudent
from textrefiner.modeling import SoftTargets, TextRefiner, semantic_loss
from textrefiner.precision import Precision
from textrefiner.trainers.promptkd import build_teacher

CLASSNAMES = ["red circle", "dog", "a very long class name", "blue ring"]


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [x / sum(e) for x in e]


def ref_kd(student, teacher, temperature):
    """sum over batch and classes of p_t (log p_t - log p_s) at T, times T^2, divided by B * C."""
    total, count = 0.0, 0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        p_s = _softmax([x / temperature for x in s_row])
        p_t = _softmax([x / temperature for x in t_row])
        total += sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
        count += len(s_row)
    return total * temperature ** 2 / count


def ref_semantic_kl(token_set, text, teacher, scale, temperature):
    """Each of an image's K tokens scored against the UNREFINED text, KL to that image's teacher."""
    total, count = 0.0, 0
    for tokens, t_row in zip(token_set.tolist(), teacher.tolist()):
        p_t = _softmax([x / temperature for x in t_row])
        for s in tokens:
            logits = [scale * sum(a * b for a, b in zip(s, t)) / temperature for t in text.tolist()]
            p_s = _softmax(logits)
            total += sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
            count += len(logits)
    return total * temperature ** 2 / count


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_kd_loss_is_forward_kl_summed_over_batch_and_classes(temperature):
    g = torch.Generator().manual_seed(0)
    student = torch.randn(3, 5, generator=g, dtype=torch.float64) * 4
    teacher = torch.randn(3, 5, generator=g, dtype=torch.float64) * 4
    loss = SoftTargets(teacher, temperature=temperature).loss(student)
    assert loss.item() == pytest.approx(ref_kd(student, teacher, temperature), rel=1e-6)
    # the direction matters: KL(student || teacher) is another number
    assert loss.item() != pytest.approx(ref_kd(teacher, student, temperature), rel=1e-3)


def test_semantic_loss_takes_the_kl_form_against_the_teacher():
    g = torch.Generator().manual_seed(1)
    token_set = torch.randn(2, 7, 6, generator=g, dtype=torch.float64)
    text = F.normalize(torch.randn(4, 6, generator=g, dtype=torch.float64), dim=-1)
    teacher = torch.randn(2, 4, generator=g, dtype=torch.float64) * 5
    for temperature in (1.0, 2.0):
        scale = torch.tensor(100.0, dtype=torch.float64)
        loss = semantic_loss(token_set, text, SoftTargets(teacher, temperature), scale)
        assert loss.item() == pytest.approx(ref_semantic_kl(token_set, text, teacher, 100.0, temperature), rel=1e-6)


def test_refined_teacher_features_and_the_regulariser_train_only_the_aggregation():
    """96-d teacher space, 64-d student tokens: t' = t + 0.2 W [t, softmax(t A^T) A]; the
    regulariser mean|normalize(t') - t| reaches the aggregation only (t is the teacher's, detached)."""
    torch.manual_seed(2)
    head = TextRefiner(dim=96, token_dim=64, cache_size=25).double().train()
    teacher_text = F.normalize(torch.randn(4, 96, dtype=torch.float64), dim=-1)
    tokens = torch.randn(2, 10, 64, dtype=torch.float64, requires_grad=True)
    attention = torch.rand(2, 9, dtype=torch.float64)
    teacher = torch.randn(2, 4, dtype=torch.float64)
    entries = head.cache.entries.clone()
    out = head(teacher_text, tokens, attention, SoftTargets(teacher), torch.tensor(100.0, dtype=torch.float64))
    weights = torch.tensor([_softmax(row) for row in (teacher_text @ entries.t()).tolist()], dtype=torch.float64)
    detail = weights @ entries
    expected = teacher_text + 0.2 * torch.cat([teacher_text, detail], dim=1) @ head.aggregation.linear.weight.t()
    torch.testing.assert_close(out.refined, expected)
    reg = (F.normalize(expected, dim=-1) - teacher_text).abs().mean()
    assert out.losses["regularization"].item() == pytest.approx(reg.item(), rel=1e-9)
    head.zero_grad()
    out.losses["regularization"].backward(retain_graph=True)
    assert head.aggregation.linear.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in head.alignment.parameters()) and tokens.grad is None
    # the semantic loss trains the alignment, never the aggregation
    head.zero_grad()
    out.losses["semantic"].backward()
    assert head.aggregation.linear.weight.grad is None
    assert all(p.grad is not None for p in head.alignment.parameters())
    assert head.cache.entries.shape == (25, 96)


def ref_prompted_tokens(clip_model, image, prompts):
    """IVLP's vision forward as its release writes it, with CLIP's own blocks: prompts appended after
    the positional embedding and normalised by ln_pre with the image tokens; before block i
    (1 <= i < J) the last n positions are replaced by block i's prompts; all tokens after ln_post/proj."""
    v = clip_model.visual
    b, n = image.shape[0], prompts.shape[1]
    x = v.conv1(image).flatten(2).permute(0, 2, 1)
    x = torch.cat([v.class_embedding.expand(b, 1, -1), x], dim=1) + v.positional_embedding
    x = v.ln_pre(torch.cat([x, prompts[0].expand(b, -1, -1)], dim=1)).permute(1, 0, 2)
    for i, block in enumerate(v.transformer.resblocks):
        if 0 < i < prompts.shape[0]:
            x = torch.cat([x[: x.shape[0] - n], prompts[i].unsqueeze(1).expand(-1, b, -1)])
        x = block(x)
    return v.ln_post(x.permute(1, 0, 2)) @ v.proj


def test_student_deep_prompts_are_inserted_as_in_the_release(deep_clip):
    torch.manual_seed(3)
    student = PromptKDStudent(deep_clip, teacher_dim=48, n_ctx=3, depth=3, classnames=CLASSNAMES).eval()
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        prompts = student.vision_prompts()
        expected = ref_prompted_tokens(deep_clip, image, prompts)
        visual = student.encode_image(image, with_local=True)
        projected = student.projector.fc2(F.relu(student.projector.norm(student.projector.fc1(expected[:, 0]))))
    assert prompts.shape == (3, 3, 96)
    torch.testing.assert_close(visual.global_feature, projected)
    # local tokens: CLS + 4 patches in the student's width, the 3 prompt positions left out
    assert visual.tokens.shape == (2, 5, 32) and visual.cls_attention.shape == (2, 4)
    torch.testing.assert_close(visual.tokens, expected[:, :5])
    assert student.text_dim == 48 and student.token_dim == 32


def ref_ivlp_text(clip_model, tokenized, ctx, deep_ctx):
    """IVLP's text forward with CLIP's own (77-token, masked) blocks: positions 1..n hold the context,
    overwritten before blocks 1 .. J-1 by their own prompts."""
    n = ctx.shape[0]
    x = clip_model.token_embedding(tokenized)
    x = torch.cat([x[:, :1], ctx.expand(x.shape[0], -1, -1), x[:, 1 + n:]], dim=1) + clip_model.positional_embedding
    x = x.permute(1, 0, 2)
    for i, block in enumerate(clip_model.transformer.resblocks):
        if 0 < i <= deep_ctx.shape[0]:
            x = torch.cat([x[:1], deep_ctx[i - 1].unsqueeze(1).expand(-1, x.shape[1], -1), x[1 + n:]])
        x = block(x)
    x = clip_model.ln_final(x.permute(1, 0, 2))
    return F.normalize(x[torch.arange(x.shape[0]), tokenized.argmax(-1)] @ clip_model.text_projection, dim=-1)


def test_teacher_text_and_image_equal_the_release_forward(deep_clip):
    teacher = build_ivlp(CLASSNAMES, deep_clip, 4, "a photo of a", 3, 2, 4, generator_seed=0)
    pl = teacher.prompt_learner
    image = torch.randn(2, 3, 64, 64)
    tokenized = import_clip().tokenize([f"a photo of a {c}." for c in CLASSNAMES])
    with torch.no_grad():
        torch.testing.assert_close(teacher.text_features(),
                                   ref_ivlp_text(deep_clip, tokenized, pl.ctx, pl.deep_text_ctx))
        expected = ref_prompted_tokens(deep_clip, image, pl.vision_ctx)
        torch.testing.assert_close(teacher.encode_image(image).global_feature, expected[:, 0])
    again = build_ivlp(CLASSNAMES, deep_clip, 4, "a photo of a", 3, 2, 4, generator_seed=0)
    assert torch.equal(again.prompt_learner.vision_ctx, pl.vision_ctx), "seeded init is reproducible"


def test_zero_shot_teacher_is_plain_clip():
    clip_model = load_clip(TINY)
    cfg = get_cfg()
    cfg.TRAINER.PROMPTKD.TEACHER_PROMPTS, cfg.TRAINER.PROMPTKD.TEACHER_NAME = "none", TINY
    teacher = build_teacher(cfg, CLASSNAMES, Precision("fp32", torch.device("cpu")))
    tokenized = import_clip().tokenize([f"a photo of a {c}." for c in CLASSNAMES])
    image = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(teacher.text_features(), F.normalize(clip_model.encode_text(tokenized), dim=-1),
                                   rtol=0, atol=1e-6)
        torch.testing.assert_close(teacher.encode_image(image).global_feature, clip_model.encode_image(image),
                                   rtol=0, atol=1e-5)
