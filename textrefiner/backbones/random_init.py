"""``random:<arch>``: a randomly initialised CLIP of a known architecture (``tiny`` and ``tiny-wide``
for tests and the demo, ``ViT-B/16``, ``ViT-B/32``, ``ViT-L/14`` for benchmarks).

The weights come from a fixed seed, independent of the run's seed, so a model trained with one
run and evaluated by another sees the same "pretrained" CLIP.
"""
from typing import Dict

import torch

from .openai import import_clip

RANDOM_PREFIX = "random:"
RANDOM_INIT_SEED = 0

# Keyword arguments of clip.model.CLIP. Head counts follow clip.model.build_model
# (width // 64) so a saved random model reloads into the same architecture.
RANDOM_ARCHS: Dict[str, dict] = {
    "tiny": dict(
        embed_dim=64, image_resolution=224, vision_layers=2, vision_width=128, vision_patch_size=32,
        context_length=77, vocab_size=49408, transformer_width=128, transformer_heads=2, transformer_layers=2,
    ),
    # a wider tiny CLIP (joint width 96), e.g. a PromptKD teacher for a random:tiny student
    "tiny-wide": dict(
        embed_dim=96, image_resolution=224, vision_layers=2, vision_width=192, vision_patch_size=32,
        context_length=77, vocab_size=49408, transformer_width=192, transformer_heads=3, transformer_layers=2,
    ),
    "ViT-B/32": dict(
        embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=32,
        context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8, transformer_layers=12,
    ),
    "ViT-B/16": dict(
        embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=16,
        context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8, transformer_layers=12,
    ),
    "ViT-L/14": dict(
        embed_dim=768, image_resolution=224, vision_layers=24, vision_width=1024, vision_patch_size=14,
        context_length=77, vocab_size=49408, transformer_width=768, transformer_heads=12, transformer_layers=12,
    ),
}


def build_random_clip(arch: str) -> torch.nn.Module:
    clip = import_clip()
    if arch not in RANDOM_ARCHS:
        raise ValueError(f"Unknown random CLIP architecture {arch!r}; choose one of {sorted(RANDOM_ARCHS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return clip.model.CLIP(**RANDOM_ARCHS[arch]).float().eval()
