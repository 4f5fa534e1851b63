"""The testbed CLIP: OpenAI CLIP's own architecture (``clip.model.CLIP``), miniature.

64-pixel input (the world's own images) cut into 8 x 8 patches of 8 pixels, a 4-layer ViT
(width 192) and a 4-layer causal text transformer (width 128, context 77, CLIP's BPE
vocabulary); joint width 128. Every forward of this project runs on it unchanged; configs
that use it set ``INPUT.SIZE (64, 64)`` (``configs/trainers/<Trainer>/testbed*.yaml``).
(A first version took 224-pixel input in 28-pixel patches so that every 224-pixel config would
work; measured, the same ViT learned shape more slowly that way, and each image cost a resize.)

The shipped file is compact: fp16 tensors, and of the 49,408-row token embedding only
the rows pretraining ever updated (the rest were never trained and load as zeros).
``expand_state_dict`` turns it back into a full CLIP state_dict, which then goes through
``clip.model.build_model`` exactly as an OpenAI checkpoint does.
"""
import os.path as osp
from typing import Dict

import torch

from ..atomic import save_torch, write_text
from ..backbones.files import sha256

#: keyword arguments of clip.model.CLIP (heads = width // 64, as build_model infers them)
TESTBED_ARCH = dict(
    embed_dim=128, image_resolution=64, vision_layers=4, vision_width=192, vision_patch_size=8,
    context_length=77, vocab_size=49408, transformer_width=128, transformer_heads=2, transformer_layers=4,
)
FORMAT = "textrefiner-testbed-clip/1"
EMBEDDING_KEY = "token_embedding.weight"


def compact_state_dict(model: torch.nn.Module, used_rows: torch.Tensor, meta: dict) -> dict:
    """What the shipped file holds: fp16 weights, only ``used_rows`` of the token embedding."""
    state = {k: v.detach().half().clone() for k, v in model.state_dict().items() if k != EMBEDDING_KEY}
    rows = used_rows.nonzero().flatten() if used_rows.dtype == torch.bool else used_rows
    embedding = model.state_dict()[EMBEDDING_KEY]
    return {"format": FORMAT, "arch": dict(TESTBED_ARCH), "state_dict": state, "token_rows": rows.long(),
            "token_embedding": embedding[rows].detach().half().clone(), "vocab_size": embedding.shape[0],
            "meta": meta}


def expand_state_dict(compact: dict) -> Dict[str, torch.Tensor]:
    """A full fp32 CLIP state_dict from a compact file's content (unused embedding rows = 0)."""
    if compact.get("format") != FORMAT:
        raise ValueError(f"not a testbed CLIP file (format {compact.get('format')!r}, expected {FORMAT!r})")
    state = {k: v.float() for k, v in compact["state_dict"].items()}
    rows = compact["token_embedding"]
    embedding = torch.zeros(compact["vocab_size"], rows.shape[1])
    embedding[compact["token_rows"]] = rows.float()
    state[EMBEDDING_KEY] = embedding
    return state


def load_testbed_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The full state_dict of a testbed CLIP file (``backbone.py`` registers the shipped ones), after
    checking the file's checksum."""
    checksum_file = path + ".sha256"
    if osp.isfile(checksum_file):
        expected = open(checksum_file).read().split()[0]
        if sha256(path) != expected:
            raise ValueError(f"{path} does not match its checksum in {checksum_file}: the file is damaged or "
                             "was regenerated without updating the checksum")
    return expand_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def write_compact(compact: dict, path: str) -> str:
    """Write ``compact`` atomically with its ``.sha256`` beside it; returns the checksum."""
    save_torch(compact, path)
    digest = sha256(path)
    write_text(f"{digest}  {osp.basename(path)}\n", path + ".sha256")
    return digest
