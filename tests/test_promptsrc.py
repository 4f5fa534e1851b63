"""PromptSRC and PromptSRC_TextRefiner: loss terms and GPA against independent re-derivations."""
import copy

import pytest
import torch

from conftest import REPO, build, make_cfg, one_batch
from textrefiner.config import ConfigError
from textrefiner.framework import load_checkpoint
from textrefiner.hosts.coop import tokenize
from textrefiner.hosts.prompt_averaging import GaussianPromptAverage, gaussian_weights
from textrefiner.hosts.templates import IMAGENET_TEMPLATES

PROMPTSRC_YAML = REPO / "configs" / "trainers" / "PromptSRC" / "vit_b16_c2_ep20_batch4_4+4ctx.yaml"
TR_YAML = REPO / "configs" / "trainers" / "PromptSRC_TextRefiner" / "vit_b16_c2_ep20_batch4_4+4ctx.yaml"
# random:tiny has 2 layers per tower; GPA centred in the short runs
TINY_OPTS = ["TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 2, "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 2,
             "TRAINER.PROMPTSRC.PREC", "fp32", "TRAINER.PROMPTSRC.GPA_MEAN", 2, "TRAINER.PROMPTSRC.GPA_STD", 1]


def promptsrc_cfg(root, out, trainer="PromptSRC", opts=(), seed=1):
    config = TR_YAML if trainer == "PromptSRC_TextRefiner" else PROMPTSRC_YAML
    return make_cfg(root, trainer, str(out), config_file=config, opts=[*TINY_OPTS, *opts], seed=seed)


def normalized(x):
    return x / x.norm(dim=-1, keepdim=True)


def train_step(trainer, batch=None):
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 5
    return trainer.forward_backward(batch or one_batch(trainer))


def test_gaussian_weights_are_the_release_values():
    weights = gaussian_weights(20, 15, 1)
    density = torch.distributions.Normal(15.0, 1.0).log_prob(torch.arange(1, 21, dtype=torch.float64)).exp()
    torch.testing.assert_close(torch.tensor(weights, dtype=torch.float64), density / density.sum())
    assert [round(w, 3) for w in weights[12:17]] == [0.054, 0.242, 0.399, 0.242, 0.054]
    assert sum(weights) == pytest.approx(1.0) and max(weights[:11] + weights[18:]) < 1e-3
    with pytest.raises(ValueError, match="GPA_MEAN"):
        gaussian_weights(20, 1e6, 1)


@pytest.fixture(scope="module")
def trainer(data_root, tmp_path_factory):
    return build(promptsrc_cfg(data_root, tmp_path_factory.mktemp("promptsrc")))


def test_frozen_text_targets_are_the_mean_over_60_templates(trainer, tiny_clip):
    assert len(IMAGENET_TEMPLATES) == len(set(IMAGENET_TEMPLATES)) == 60
    names = [n.replace("_", " ") for n in trainer.dm.dataset.classnames]
    with torch.no_grad():
        per_template = [tiny_clip.encode_text(tokenize([t.format(n) for n in names])) for t in IMAGENET_TEMPLATES]
    torch.testing.assert_close(trainer.model.frozen_text, torch.stack(per_template).mean(0))


def test_loss_terms_equal_the_release_formulas_and_only_prompts_train(trainer, tiny_clip):
    batch = one_batch(trainer)
    image, label = trainer.parse_batch_train(batch)
    model = trainer.model
    with torch.no_grad():
        f, t = normalized(model.encode_image(image).global_feature), model.text_features()
        scale = tiny_clip.logit_scale.exp()
        logits = scale * f @ t.t()
        # frozen targets from CLIP's own towers: encode_image without prompts, the template mean
        f0, t0 = normalized(tiny_clip.encode_image(image)), normalized(model.frozen_text)
        p0 = torch.softmax(scale * f0 @ t0.t(), dim=1)
        expected = {
            "ce": torch.nn.functional.cross_entropy(logits, label),
            "scl_logits": (p0 * (p0.log() - torch.log_softmax(logits, dim=1))).sum() / logits.numel(),
            "scl_text": 25 * (t - t0).abs().mean(),
            "scl_image": 10 * (f - f0).abs().mean(),
        }
    before = copy.deepcopy(model.state_dict())
    summary = train_step(trainer, batch)
    for name, value in expected.items():
        assert summary[name] == pytest.approx(value.item(), rel=1e-4, abs=1e-6), name
    assert summary["loss"] == pytest.approx(sum(v.item() for v in expected.values()), rel=1e-5)
    assert expected["scl_logits"] > 0 and expected["scl_image"] > 0
    # only the prompts train, and each receives a gradient
    prompts = {"prompt_learner.ctx", "prompt_learner.deep_text_ctx", "prompt_learner.vision_ctx"}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == prompts
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} received no gradient"
    after = model.state_dict()
    assert {k for k in before if not torch.equal(before[k], after[k])} == prompts


def test_gpa_averages_the_trainable_tensors_and_leaves_clip_bit_identical(data_root, tmp_path, monkeypatch):
    snapshots = []
    add = GaussianPromptAverage.add

    def recording_add(self, epoch):
        snapshots.append({n: p.detach().clone() for n, p in self._targets.items()})
        add(self, epoch)

    monkeypatch.setattr(GaussianPromptAverage, "add", recording_add)
    trainer = build(promptsrc_cfg(data_root, tmp_path, opts=["OPTIM.MAX_EPOCH", 3, "TEST.NO_TEST", True]))
    trainable = {f"prompt_learner.{n}" for n, _ in trainer.model.prompt_learner.named_parameters()}
    frozen_before = {k: v.clone() for k, v in trainer.model.state_dict().items() if k not in trainable}
    trainer.train()

    weights = gaussian_weights(3, 2, 1)
    assert len(snapshots) == 3
    for name, p in trainer.prompt_average._targets.items():
        expected = sum(w * s[name] for w, s in zip(weights, snapshots))
        torch.testing.assert_close(p.detach(), expected)
        assert not torch.equal(p.detach(), snapshots[-1][name])
    frozen_after = trainer.model.state_dict()
    assert all(torch.equal(v, frozen_after[k]) for k, v in frozen_before.items())
    # the last checkpoint holds the averaged prompts, and the running sums for a resume
    saved = load_checkpoint(str(tmp_path / "prompt_learner" / "model.pth.tar-3"))["state_dict"]
    assert torch.equal(saved["ctx"], trainer.model.prompt_learner.ctx.detach())
    assert (tmp_path / "gpa" / "model.pth.tar-3").exists()



def test_textrefiner_variant_adds_promptsrc_terms(data_root, tmp_path):
    teacher = str(tmp_path / "teacher.pth.tar")
    trainer = build(promptsrc_cfg(data_root, tmp_path, "PromptSRC_TextRefiner",
                                  opts=["TRAINER.PROMPTSRC.TEACHER_FILE", teacher]))
    # a PromptKD teacher has no TextRefiner head: refused before training
    with pytest.raises(ConfigError, match="--trainer PromptSRC"):
        trainer.check_teacher_file()
    summary = train_step(trainer)
    terms = ("ce", "semantic", "regularization", "scl_logits", "scl_text", "scl_image")
    assert summary["loss"] == pytest.approx(sum(summary[t] for t in terms), rel=1e-5)
    # GPA covers the TextRefiner head's parameters too, never its cache
    averaged = set(trainer.prompt_average._targets)
    assert "textrefiner.aggregation.linear.weight" in averaged or any(n.startswith("textrefiner.") for n in averaged)
    assert not any("cache" in n for n in averaged)
