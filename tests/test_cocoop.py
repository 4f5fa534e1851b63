"""CoCoOp and CoCoOp_TextRefiner: the meta-net, image-conditioned prompts, the loss by hand, the
release's per-image computation (rebuilt here from CLIP's own modules: every image on its own,
all 77 positions), TextRefiner on instance-conditioned text features, evaluation in groups."""
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import REPO, build, make_cfg, one_batch
from host_promises import step
from textrefiner.hosts.cocoop import CoCoOpCLIP, CoCoOpPromptLearner

CLASSNAMES = ["red circle", "dog", "a very long class name", "cat"]
COCOOP_YAML = REPO / "configs" / "trainers" / "CoCoOp" / "vit_b16_c4_ep10_batch1_ctxv1.yaml"
TR_YAML = REPO / "configs" / "trainers" / "CoCoOp_TextRefiner" / "vit_b16_c4_ep10_batch1_ctxv1.yaml"
FP32 = ["TRAINER.COCOOP.PREC", "fp32"]


def release_text_features(encoder, prompts, tokenized):
    """CLIP's text tower (``encoder``'s modules) on prompt embeddings (C, 77, W) over all 77
    positions, features at the EOT token."""
    x = prompts + encoder.positional_embedding
    x = encoder.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = encoder.ln_final(x)
    return x[torch.arange(x.shape[0]), tokenized.argmax(dim=-1)] @ encoder.text_projection


def release_logits(model: CoCoOpCLIP, image):
    """The release's forward: each image's context shifted by the meta-net, its C prompts encoded
    on their own at full length, one image after another."""
    pl = model.prompt_learner
    features = model.encode_image(image).global_feature
    features = features / features.norm(dim=-1, keepdim=True)
    rows = []
    for f in features:
        ctx = pl.ctx + pl.meta_net(f.unsqueeze(0))  # (M, W)
        prompts = torch.cat([pl.token_prefix, ctx.unsqueeze(0).expand(pl.n_cls, -1, -1), pl.token_suffix], dim=1)
        text = release_text_features(model.text_encoder, prompts, pl.tokenized_prompts)
        text = text / text.norm(dim=-1, keepdim=True)
        rows.append(model.logit_scale.exp() * f @ text.t())
    return torch.stack(rows)


def test_meta_net_shapes_and_image_conditioned_context(tiny_clip):
    torch.manual_seed(0)
    pl = CoCoOpPromptLearner(CLASSNAMES, tiny_clip, ctx_init="a photo of a")
    d, width = tiny_clip.visual.output_dim, tiny_clip.ln_final.weight.shape[0]
    assert [name for name, _ in pl.meta_net.named_children()] == ["linear1", "relu", "linear2"]
    assert pl.meta_net.linear1.weight.shape == (d // 16, d) and pl.meta_net.linear2.weight.shape == (width, d // 16)
    features = F.normalize(torch.randn(3, d), dim=-1)
    prompts = pl(features)
    assert prompts.shape == (3, len(CLASSNAMES), 77, width)
    bias = pl.meta_net(features)
    for i in range(3):  # every class of image i gets ctx + pi(x_i); the rest is the fixed tokens
        assert torch.equal(prompts[i, :, 1:5], (pl.ctx + bias[i]).expand(len(CLASSNAMES), -1, -1))
        assert torch.equal(prompts[i, :, :1], pl.token_prefix) and torch.equal(prompts[i, :, 5:], pl.token_suffix)
    assert not torch.equal(prompts[0], prompts[1])
    assert torch.equal(pl(features, pl.text_length), prompts[:, :, : pl.text_length])


def test_same_seed_same_initial_weights_as_the_release_order(tiny_clip):
    """The release draws the random context first, then builds the meta-net's Linear layers."""
    torch.manual_seed(3)
    ours = CoCoOpPromptLearner(CLASSNAMES, tiny_clip, n_ctx=4)
    torch.manual_seed(3)
    width, d = tiny_clip.ln_final.weight.shape[0], tiny_clip.visual.output_dim
    ctx = torch.empty(4, width)
    nn.init.normal_(ctx, std=0.02)
    meta = nn.Sequential(OrderedDict([("linear1", nn.Linear(d, d // 16)), ("relu", nn.ReLU(inplace=True)),
                                      ("linear2", nn.Linear(d // 16, width))]))
    assert torch.equal(ours.ctx, ctx)
    assert all(torch.equal(v, meta.state_dict()[k]) for k, v in ours.meta_net.state_dict().items())


def test_logits_and_loss_equal_the_release_per_image_loop_and_a_hand_computation(tiny_clip):
    torch.manual_seed(0)
    model = CoCoOpCLIP(CoCoOpPromptLearner(CLASSNAMES, tiny_clip, ctx_init="a photo of a"), tiny_clip)
    image, label = torch.randn(3, 3, 224, 224), torch.tensor([0, 2, 3])
    with torch.no_grad():
        ours = model(image)
        release = release_logits(model, image)
    torch.testing.assert_close(ours, release, rtol=1e-5, atol=1e-5)
    # cross-entropy by hand: -log softmax at the label, averaged over the batch
    by_hand = -torch.stack([release[i, label[i]] - release[i].exp().sum().log() for i in range(3)]).mean()
    torch.testing.assert_close(F.cross_entropy(ours, label), by_hand, rtol=1e-5, atol=1e-6)



def test_shared_prefix_encoding_equals_every_prompt_encoded_whole(tiny_clip):
    """Each image's [SOS] ctx + pi(x) runs once and its keys and values serve all its classes: the
    features and the gradients of the context and the meta-net are those of encoding all B x C
    prompts on their own (float rounding). 96 classes of 1, 3 and 5 words make several length groups."""
    from textrefiner.hosts.encoders import length_groups

    words = ["red", "dog", "a", "very", "long", "name"]
    names = [" ".join(words[: 1 + 2 * (i // 32)]) for i in range(96)]
    torch.manual_seed(0)
    model = CoCoOpCLIP(CoCoOpPromptLearner(names, tiny_clip, ctx_init="a photo of a"), tiny_clip).float()
    model.requires_grad_(False)
    model.prompt_learner.requires_grad_(True)
    pl = model.prompt_learner
    assert len(length_groups([e - 1 - pl.n_ctx for e in pl.eot_positions])) > 1
    features = torch.randn(3, tiny_clip.visual.output_dim)

    def every_prompt(image_features):
        normed = image_features / image_features.norm(dim=-1, keepdim=True)
        prompts = pl(normed)  # (B, C, 77, W): every position
        text = release_text_features(model.text_encoder, prompts.flatten(0, 1), pl.tokenized_prompts.repeat(3, 1))
        text = text.view(3, len(names), -1)
        return text / text.norm(dim=-1, keepdim=True)

    results = []
    for encode in (model.text_features, every_prompt):
        pl.zero_grad()
        text = encode(features)
        (text * torch.linspace(-1, 1, text.numel()).view_as(text)).sum().backward()
        results.append((text.detach(), {k: v.grad.clone() for k, v in pl.named_parameters()}))
    (ours, ours_grads), (whole, whole_grads) = results
    assert ours.shape == (3, len(names), tiny_clip.text_projection.shape[1])
    torch.testing.assert_close(ours, whole, rtol=1e-5, atol=1e-5)
    for name, grad in whole_grads.items():
        # each gradient sums 3 x 96 prompts' contributions through 4 blocks: float32's unit roundoff
        # 6e-8, growing at worst linearly over 288 terms and 4 blocks, stays under 1e-4 of its norm
        # (measured here: 2e-6 at most); element by element, small entries of a sum carry its rounding
        assert (ours_grads[name] - grad).norm() <= 1e-4 * grad.norm(), name
    # with TEXT_CHUNK_SIZE the prompts go through the chunked encoder (checkpointed), to the same numbers
    model.text_encoder.chunk_size = 7
    with torch.no_grad():
        torch.testing.assert_close(model.text_features(features), whole, rtol=1e-5, atol=1e-5)

def test_training_steps_follow_the_release_step_by_step(data_root, tmp_path):
    """Five steps of the trainer, and five of the release's per-image computation through a second
    trainer's optimizer and schedule, from the same seed: the same initial weights, and losses that
    agree to float rounding (relative 1e-5) at every step."""
    opts = [*FP32, "DATALOADER.TRAIN_X.BATCH_SIZE", 2, "OPTIM.WARMUP_EPOCH", 0]
    ours = build(make_cfg(data_root, "CoCoOp", str(tmp_path / "ours"), COCOOP_YAML, opts))
    release = build(make_cfg(data_root, "CoCoOp", str(tmp_path / "release"), COCOOP_YAML, opts))
    initial = ours.model.prompt_learner.state_dict()
    assert all(torch.equal(v, release.model.prompt_learner.state_dict()[k]) for k, v in initial.items())
    batch = one_batch(ours)
    for _ in range(5):
        loss = step(ours, batch)["loss"]
        release.set_model_mode("train")
        reference = F.cross_entropy(release_logits(release.model, batch["img"]), batch["label"])
        release.model_backward_and_update(reference)
        assert abs(loss - reference.item()) <= 1e-5 * abs(reference.item()), (loss, reference.item())
    assert loss != pytest.approx(0.0)


def test_evaluation_in_groups_equals_one_group(data_root, tmp_path, monkeypatch):
    import textrefiner.trainers.cocoop as cocoop

    trainer = build(make_cfg(data_root, "CoCoOp", str(tmp_path), COCOOP_YAML, FP32))
    image = one_batch(trainer)["img"]
    trainer.set_model_mode("eval")
    with torch.no_grad():
        whole = trainer.evaluation_logits(image, None)
        monkeypatch.setattr(cocoop, "EVAL_PROMPTS_PER_GROUP", 1)  # one image per group
        grouped = trainer.evaluation_logits(image, None)
    torch.testing.assert_close(grouped, whole, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="depend on the image"):
        trainer.model(image, text_features=torch.zeros(3, 4))


def test_cocoop_textrefiner_refines_each_images_features_and_trains_its_head(data_root, tmp_path):
    trainer = build(make_cfg(data_root, "CoCoOp_TextRefiner", str(tmp_path), TR_YAML, FP32))
    head = trainer.refiner
    cache, weights = head.cache.entries.clone(), head.aggregation.linear.weight.detach().clone()
    losses = step(trainer, one_batch(trainer))
    assert {"ce", "semantic", "regularization"} <= losses.keys()
    assert not torch.equal(head.cache.entries, cache), "the cache takes the batch's tokens"
    assert not torch.equal(head.aggregation.linear.weight, weights), "the head trains"
    # evaluation: image i's class features refined from the frozen cache, then its logits
    image = one_batch(trainer)["img"]
    trainer.set_model_mode("eval")
    with torch.no_grad():
        logits = trainer.evaluation_logits(image, None)
        features = trainer.model.encode_image(image).global_feature
        for i in range(image.shape[0]):
            text = trainer.model.text_features(features[i : i + 1])  # (1, C, d)
            expected = trainer.model.logits(features[i : i + 1], head.refine(text))
            torch.testing.assert_close(logits[i : i + 1], expected, rtol=1e-5, atol=1e-5)


def test_semantic_loss_scores_each_image_against_its_own_class_features():
    from textrefiner.modeling.losses import semantic_loss

    torch.manual_seed(0)
    tokens, text, labels = torch.randn(2, 3, 8), F.normalize(torch.randn(2, 5, 8), dim=-1), torch.tensor([1, 4])
    scale = torch.tensor(10.0)
    per_image = torch.stack([
        F.cross_entropy(scale * tokens[i] @ text[i].t(), labels[i].repeat(3), reduction="sum") for i in range(2)
    ]).sum() / 6
    torch.testing.assert_close(semantic_loss(tokens, text, labels, scale), per_image)
    # shared (C, d) features: the same as every image holding that one copy
    shared = text[0]
    torch.testing.assert_close(semantic_loss(tokens, shared, labels, scale),
                               semantic_loss(tokens, shared.expand(2, -1, -1), labels, scale))
