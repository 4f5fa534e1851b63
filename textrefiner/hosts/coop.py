"""The CoOp host: learnable context tokens shared by all classes (or one set per class).

``PromptLearner`` assembles ``[SOS] ctx_1..ctx_M [CLASS] . [EOS]`` token embeddings
(class token at the end, middle or front); ``CoOpCLIP`` encodes prompts and images
with CLIP's frozen towers and returns scaled cosine logits.
"""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn

from ..backbones.openai import import_clip
from ..precision import float32_under_autocast
from .encoders import ImageEncoder, TextEncoder, VisualOutput

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


def tokenize(texts: Sequence[str]) -> torch.Tensor:
    return import_clip().tokenize(list(texts))


def name_lengths(classnames: Sequence[str]) -> List[int]:
    """Number of BPE tokens of each class name."""
    tokenizer = import_clip().simple_tokenizer.SimpleTokenizer()
    return [len(tokenizer.encode(name)) for name in classnames]


class PromptLearner(nn.Module):
    """CoOp's learnable context.

    Args:
        classnames: C class names ("_" is read as a space).
        clip_model: CLIP whose token embedding initialises the prompts (its dtype is used).
        n_ctx: number of context tokens M when ``ctx_init`` is empty.
        ctx_init: words initialising the context ("a photo of a"); sets M to their count.
        csc: class-specific context, (C, M, W) instead of (M, W); only with random init.
        class_token_position: "end", "middle" or "front".
    """

    def __init__(
        self,
        classnames: Sequence[str],
        clip_model: nn.Module,
        n_ctx: int = 16,
        ctx_init: str = "",
        csc: bool = False,
        class_token_position: str = "end",
    ):
        super().__init__()
        if class_token_position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(f"CLASS_TOKEN_POSITION must be one of {CLASS_TOKEN_POSITIONS}, got {class_token_position!r}")
        dtype = clip_model.text_projection.dtype
        width = clip_model.ln_final.weight.shape[0]
        n_cls = len(classnames)
        embed = clip_model.token_embedding
        if ctx_init:
            ctx_init = ctx_init.replace("_", " ")
            n_ctx = len(ctx_init.split(" "))
            with torch.no_grad():
                ctx_vectors = embed(tokenize([ctx_init]).to(embed.weight.device)).type(dtype)[0, 1 : 1 + n_ctx]
            prompt_prefix = ctx_init
        else:
            shape = (n_cls, n_ctx, width) if csc else (n_ctx, width)
            ctx_vectors = torch.empty(*shape, dtype=dtype)
            nn.init.normal_(ctx_vectors, std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx_vectors)

        classnames = [name.replace("_", " ") for name in classnames]
        tokenized = tokenize([f"{prompt_prefix} {name}." for name in classnames])
        with torch.no_grad():
            embedding = embed(tokenized.to(embed.weight.device)).type(dtype)
        # Fixed token embeddings; not saved, so a checkpoint transfers to other class names.
        self.register_buffer("token_prefix", embedding[:, :1, :], persistent=False)
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :, :], persistent=False)
        self.register_buffer("tokenized_prompts", tokenized, persistent=False)
        self.register_buffer(
            "order", self._token_order(name_lengths(classnames), n_ctx, tokenized.shape[1], class_token_position),
            persistent=False,
        )
        self.n_cls = n_cls
        self.n_ctx = n_ctx
        self.class_token_position = class_token_position
        # Where each prompt's end-of-text token is (EOT has the largest id): the causal text
        # encoder reads nothing after it. Host-side, so a training step never reads them back.
        self.eot_positions: List[int] = tokenized.argmax(dim=-1).tolist()
        self.text_length = max(self.eot_positions) + 1

    def learn_only_first(self, n_ctx: int) -> None:
        """Keep the first ``n_ctx`` context tokens learnable and fix the remaining context words
        into the prompt (``ctx_init`` "a photo of a", 2: learnable "a photo", fixed "of a");
        as MaPLe's and IVLP's prompt learners do. Needs the class token at the end."""
        if n_ctx > self.n_ctx:
            raise ValueError(f"{n_ctx} learnable context tokens asked for, but the context has only {self.n_ctx}")
        words = self.ctx.detach()
        self.ctx = nn.Parameter(words[:n_ctx].clone())
        self.token_suffix = torch.cat([words[n_ctx:].expand(self.n_cls, -1, -1), self.token_suffix], dim=1)
        self.n_ctx = n_ctx

    @staticmethod
    def _token_order(name_lens: List[int], n_ctx: int, length: int, position: str) -> Optional[torch.Tensor]:
        """Per-class permutation of the "end" layout [SOS, ctx, name, rest] into the requested layout."""
        if position == "end":
            return None
        half = n_ctx // 2
        orders = []
        for name_len in name_lens:
            sos, ctx = [0], list(range(1, 1 + n_ctx))
            name = list(range(1 + n_ctx, 1 + n_ctx + name_len))
            rest = list(range(1 + n_ctx + name_len, length))
            if position == "middle":
                orders.append(sos + ctx[:half] + name + ctx[half:] + rest)
            else:
                orders.append(sos + name + ctx + rest)
        return torch.tensor(orders, dtype=torch.long)

    def forward(self, length: Optional[int] = None) -> torch.Tensor:
        """Prompt token embeddings (C, L, W); only the first ``length`` positions if given.

        Any ``length >= text_length`` keeps every class's prompt up to its EOT token, in
        every class-token position (the layouts only permute positions before EOT).
        """
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        suffix = self.token_suffix if length is None else self.token_suffix[:, : length - 1 - self.n_ctx]
        prompts = torch.cat([self.token_prefix, ctx, suffix], dim=1)
        if self.order is None:
            return prompts
        order = self.order[:, : prompts.shape[1]]
        return torch.gather(prompts, 1, order.unsqueeze(-1).expand(-1, -1, prompts.shape[-1]))


class ScaledCosineClassifier:
    """``logits = s * normalize(f) @ t^T`` for a module with ``logit_scale``, ``encode_image`` and
    ``text_features`` (CoOp-family hosts, PromptKD's student)."""

    @float32_under_autocast
    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """``image_features`` (B, d) unnormalised, ``text_features`` (C, d) -> (B, C); float32 under autocast."""
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        return self.logit_scale.exp() * image_features @ text_features.t()

    def forward(self, image: torch.Tensor, text_features: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits (B, C); pass ``text_features`` computed once to skip the text tower."""
        # Image first: the image tower's activations are freed before the text side builds the
        # graph it keeps for backward, so the two never add up in the peak memory of a step.
        image_features = self.encode_image(image).global_feature
        if text_features is None:
            text_features = self.text_features()
        return self.logits(image_features, text_features)


class CoOpCLIP(ScaledCosineClassifier, nn.Module):
    """CLIP with CoOp prompts: ``logits = s * normalize(f) @ normalize(t)^T``.

    ``text_chunk_size``: encode the class prompts this many at a time (0: all at once),
    checkpointed when training (see ``TextEncoder``); saves memory at many classes.
    """

    def __init__(self, prompt_learner: PromptLearner, clip_model: nn.Module, text_chunk_size: int = 0):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.image_encoder = ImageEncoder(clip_model.visual)
        self.text_encoder = TextEncoder(clip_model, chunk_size=text_chunk_size)
        self.logit_scale = clip_model.logit_scale

    @property
    def text_dim(self) -> int:
        """Width of the space the class text features live in (CLIP's joint embedding)."""
        return self.text_encoder.text_projection.shape[1]

    @property
    def token_dim(self) -> int:
        """Width of the local image tokens (after ln_post and proj)."""
        return self.image_encoder.visual.proj.shape[1]

    def text_features(self) -> torch.Tensor:
        """L2-normalised class text features t (C, d) of the current prompts."""
        pl = self.prompt_learner
        # Built only up to the last EOT token: a full (C, 77, W) copy and its gradient would be for nothing.
        features = self.text_encoder(pl(pl.text_length), pl.tokenized_prompts, eot_positions=pl.eot_positions)
        return features / features.norm(dim=-1, keepdim=True)

    def encode_image(self, image: torch.Tensor, with_local: bool = False) -> VisualOutput:
        return self.image_encoder(image, with_local=with_local)

