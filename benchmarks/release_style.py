"""What the authors' release computes, rebuilt from our modules with our optimisations off.

For comparison only; nothing in the library uses it. Read from the public release
(``trainers/textrefiner.py`` and its ``clip/model.py``), these are the costs it pays
and we do not:

* text: all 77 positions (``truncate=False``), and every block asks
  ``nn.MultiheadAttention`` for its attention weights (the release's
  ``ResidualAttentionBlock`` always passes ``need_weights=True``), which rules out
  the fused attention kernels;
* image: every block's tokens after ``ln_post`` and ``proj`` and its CLS attention,
  kept for all 12 blocks, at training and at evaluation, although only the last
  block's are used and only in training;
* cache update: a Python loop over the entries with one ``nonzero`` (a host read)
  per entry;
* evaluation: the text side and its refinement recomputed for every test batch
  (``release_eval_batch``).

Weights are shared with the optimised model, so both compute the same numbers.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from textrefiner.hosts.cocoop import CoCoOpCLIP
from textrefiner.hosts.coop import CoOpCLIP, PromptLearner
from textrefiner.hosts.encoders import ImageEncoder, TextEncoder, VisualOutput, residual_block
from textrefiner.modeling import LocalCache


class _AttentionWithWeights(nn.Module):
    """Wraps a block's ``nn.MultiheadAttention`` so that it always computes attention weights."""

    def __init__(self, attn: nn.MultiheadAttention):
        super().__init__()
        self.inner = attn

    def forward(self, query, key, value, need_weights=False, attn_mask=None):
        return self.inner(query, key, value, need_weights=True, attn_mask=attn_mask)


class _ReleaseBlock(nn.Module):
    """A CLIP residual block (same weights) whose attention always returns its weights."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.ln_1, self.mlp, self.ln_2 = block.ln_1, block.mlp, block.ln_2
        self.attn = _AttentionWithWeights(block.attn)


class _ReleaseTransformer(nn.Module):
    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.resblocks = nn.ModuleList(_ReleaseBlock(block) for block in transformer.resblocks)


def release_text_encoder(clip_model: nn.Module) -> TextEncoder:
    """Our ``TextEncoder`` over blocks that compute attention weights, as the release's do."""
    encoder = TextEncoder(clip_model)
    encoder.transformer = _ReleaseTransformer(clip_model.transformer)
    return encoder


class ReleaseImageEncoder(ImageEncoder):
    """Tokens and CLS attention of every block, whatever the caller asks for."""

    def forward(self, image: torch.Tensor, with_local: bool = False) -> VisualOutput:
        x = self.embed(image)
        per_block = []
        for block in self.visual.transformer.resblocks:
            x, attn = residual_block(block, x, need_weights=True)
            per_block.append((self.project(x.permute(1, 0, 2)), attn[:, 0, 1:]))
        tokens, cls_attention = per_block[-1]
        return VisualOutput(tokens[:, 0, :], tokens, cls_attention)


class ReleaseCoOpCLIP(CoOpCLIP):
    """``CoOpCLIP`` on the release-style towers, encoding all 77 prompt positions."""

    def __init__(self, prompt_learner: PromptLearner, clip_model: nn.Module):
        super().__init__(prompt_learner, clip_model)
        self.image_encoder = ReleaseImageEncoder(clip_model.visual)
        self.text_encoder = release_text_encoder(clip_model)

    def text_features(self) -> torch.Tensor:
        pl = self.prompt_learner
        return F.normalize(self.text_encoder(pl(), pl.tokenized_prompts, truncate=False), dim=-1)


class LoopLocalCache(LocalCache):
    """The release's cache update, entry by entry ("release" rule only)."""

    def __init__(self, num_entries: int = 25, dim: int = 512, momentum: float = 0.8, update_rule: str = "release"):
        if update_rule != "release":
            raise ValueError("the loop formulation exists for the release rule only")
        super().__init__(num_entries, dim, momentum, update_rule)

    @torch.no_grad()
    def update(self, tokens: torch.Tensor) -> None:
        u = F.normalize(tokens.reshape(-1, tokens.shape[-1]).float().clone(), dim=-1)
        entries = self.entries.float()
        similarity = u @ entries.t()  # the entries are unit vectors: this is the cosine
        over_tokens = similarity.softmax(dim=0)
        nearest = similarity.softmax(dim=1).argmax(dim=1)
        updated = entries.clone()
        for j in range(entries.shape[0]):
            members = torch.nonzero(nearest == j).squeeze(1)
            if members.numel():
                weights = over_tokens[members, j] / over_tokens[:, j].max()
                gathered = (weights.unsqueeze(1) * u[members]).sum(dim=0)
                updated[j] = self.momentum * entries[j] + (1 - self.momentum) * gathered
        self.entries = F.normalize(updated, dim=-1).to(self.entries.dtype)


def with_loop_update(cache: LocalCache) -> LoopLocalCache:
    """A loop-updating copy of ``cache`` (same entries and momentum)."""
    loop = LoopLocalCache(cache.entries.shape[0], cache.entries.shape[1], cache.momentum, cache.update_rule)
    loop.entries = cache.entries.clone()
    return loop


def make_release_style(trainer, clip_model: nn.Module) -> None:
    """Turn a built CoOp / CoOp_TextRefiner trainer into the release-style computation, in place.

    The prompt learner, the TextRefiner head and their optimizers stay; the towers and
    the cache update are swapped.
    """
    trainer.model = ReleaseCoOpCLIP(trainer.model.prompt_learner, clip_model).to(trainer.device)
    if getattr(trainer, "refiner", None) is not None:
        trainer.refiner.cache = with_loop_update(trainer.refiner.cache)


def release_eval_batch(trainer, image: torch.Tensor) -> torch.Tensor:
    """One test batch as the release evaluates it: the (refined) text side recomputed."""
    with torch.no_grad(), trainer.precision.autocast():
        return trainer.model(image, text_features=trainer.classifier_text_features())


class ReleaseCoCoOpCLIP(CoCoOpCLIP):
    """CoCoOp as its release computes it (KaiyangZhou/CoOp ``trainers/cocoop.py``): one image at a
    time, each image's C prompts over all 77 positions (CLIP's plain blocks: that release's CLIP
    asks for no attention weights). Same modules and weights as the ``CoCoOpCLIP`` it wraps."""

    def __init__(self, model: CoCoOpCLIP):
        nn.Module.__init__(self)
        self.prompt_learner, self.image_encoder, self.text_encoder = model.prompt_learner, model.image_encoder, model.text_encoder
        self.logit_scale = model.logit_scale

    def forward(self, image: torch.Tensor, text_features=None) -> torch.Tensor:
        pl = self.prompt_learner
        features = self.encode_image(image).global_feature
        features = features / features.norm(dim=-1, keepdim=True)
        prompts = pl(features)  # (B, C, 77, W)
        rows = []
        for prompts_i, f in zip(prompts, features):
            text = self.text_encoder(prompts_i, pl.tokenized_prompts, truncate=False)
            text = text / text.norm(dim=-1, keepdim=True)
            rows.append(self.logit_scale.exp() * f @ text.t())
        return torch.stack(rows)


def release_cocoop_loss(model: ReleaseCoCoOpCLIP, batch: dict) -> torch.Tensor:
    return F.cross_entropy(model(batch["img"]), batch["label"])
