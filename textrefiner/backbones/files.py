"""CLIP weights files: read without running code from them, and built as ``clip.load`` builds them."""
import hashlib
import warnings
import zipfile
from typing import Dict

import torch

from ..errors import UserError
from ..safe_load import TRUST_ENV, UnsafeFileError, load_file, trusted
from . import openai


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_torchscript(path: str) -> bool:
    """A TorchScript archive (OpenAI's CLIP files are), rather than a ``torch.save`` state_dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())


def read_clip_state_dict(model_file: str) -> Dict[str, torch.Tensor]:
    """A CLIP weights file's state_dict, without running code from the file.

    OpenAI's TorchScript archives are loaded by ``torch.jit.load`` only when their SHA-256 is one
    OpenAI published (TorchScript can run code when loaded); any other file is read as data
    (``safe_load``).
    """
    if _is_torchscript(model_file):
        digest = sha256(model_file)
        if digest not in openai.openai_sha256s() and not trusted(model_file):
            raise UnsafeFileError(
                f"{model_file} is a TorchScript archive but not one of OpenAI's published CLIP files (SHA-256 "
                f"{digest[:16]}... matches none), and TorchScript can run code when loaded: use OpenAI's file, a "
                f"state_dict saved with torch.save(model.state_dict()), or add it to {TRUST_ENV} if you trust it"
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=FutureWarning)
            return torch.jit.load(model_file, map_location="cpu").state_dict()
    state = load_file(model_file, "CLIP weights file")
    if not isinstance(state, dict):
        raise UserError(f"{model_file} holds a {type(state).__name__}, not CLIP weights (a state_dict): put OpenAI's "
                        "CLIP weights file there")
    return state


def load_clip_file(model_file: str, name: str) -> torch.nn.Module:
    """The ViT CLIP in ``model_file`` (fp32, CPU, eval mode), as ``clip.load(jit=False)`` builds it,
    without its unrestricted ``torch.load``; ``name`` is the backbone name the file was found for."""
    clip = openai.import_clip()
    state_dict = read_clip_state_dict(model_file)
    try:
        model = clip.model.build_model(state_dict)
    except Exception as e:  # build_model's errors on other files are internal (IndexError, KeyError, ...)
        raise UserError(
            f"{model_file} is not a CLIP checkpoint ({type(e).__name__}: {' '.join(str(e).split())[:120]}): "
            f"put OpenAI's {name if name in openai.openai_names() else 'CLIP'} weights file there"
        ) from e
    if not hasattr(model.visual, "proj") or model.visual.proj is None:
        raise ValueError(f"{name}: TextRefiner needs a ViT image encoder (local tokens); ResNet CLIPs are not supported")
    return model.float().eval()
