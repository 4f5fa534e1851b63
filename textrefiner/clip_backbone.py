"""Load OpenAI CLIP (from the ``clip-anytorch`` wheel) by name, from a file, or randomly initialised.

``MODEL.BACKBONE.NAME`` accepts:

* an OpenAI model name (``ViT-B/16``, ``ViT-L/14``, ...): read from ``MODEL.BACKBONE.PATH``
  if set, else from CLIP's cache folder ``~/.cache/clip`` (downloaded there by
  ``clip.load`` when the machine is online);
* a path to a CLIP checkpoint file (JIT archive or state_dict);
* ``random:<arch>``: random initialisation of a known architecture (``tiny`` and
  ``tiny-wide`` for tests and the demo, ``ViT-B/16``, ``ViT-B/32``, ``ViT-L/14`` for benchmarks).
  The weights come from a fixed seed, independent of the run's seed, so a model
  trained with one run and evaluated by another sees the same "pretrained" CLIP.

The model comes back in fp32 on the CPU; precision and device are the caller's policy.
"""
import hashlib
import importlib.util
import os
import re
import sys
import types
import warnings
import zipfile
from typing import Dict, Set

import torch

from .errors import UserError
from .safe_load import TRUST_ENV, UnsafeFileError, load_file, trusted

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


class WeightsNotFoundError(FileNotFoundError):
    """CLIP weights are neither at the configured path nor in CLIP's cache folder."""


def _pkg_resources_shim() -> types.ModuleType:
    """OpenAI's clip.py does ``from pkg_resources import packaging`` only to compare
    torch versions; setuptools >= 81 no longer ships pkg_resources."""
    shim = types.ModuleType("pkg_resources")
    try:
        import packaging.version

        shim.packaging = packaging
    except ImportError:
        def parse(v: str):
            return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0])[:3])

        shim.packaging = types.SimpleNamespace(version=types.SimpleNamespace(parse=parse))
    return shim


#: the module name clip-anytorch is loaded under when a checkout's own ``clip/`` folder takes ``clip``
PRIVATE_CLIP = "textrefiner_clip_anytorch"


def _installed_clip_dir():
    """The folder of clip-anytorch's ``clip`` package, or None if the wheel is not installed."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        return os.path.dirname(os.path.realpath(str(distribution("clip-anytorch").locate_file("clip/__init__.py"))))
    except (ImportError, PackageNotFoundError):
        return None


def _same_folder(module_file, folder) -> bool:
    return bool(module_file) and os.path.dirname(os.path.realpath(module_file)) == folder


def import_clip():
    """OpenAI's ``clip`` package from the clip-anytorch wheel, tolerating a setuptools without
    pkg_resources.

    CoOp-family checkouts ship their own (modified) ``clip/`` folder, which wins ``import clip``
    when their ``train.py`` runs; MaPLe's, for one, changes ``CLIP``'s constructor. Then the
    wheel is loaded under a private name, so their code keeps their ``clip`` and ours keeps OpenAI's.
    """
    if PRIVATE_CLIP in sys.modules:
        return sys.modules[PRIVATE_CLIP]
    wheel = _installed_clip_dir()
    loaded = sys.modules.get("clip")
    if loaded is not None and (wheel is None or _same_folder(getattr(loaded, "__file__", None), wheel)):
        return loaded
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pkg_resources.*")
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            sys.modules["pkg_resources"] = _pkg_resources_shim()
        if loaded is None:
            spec = importlib.util.find_spec("clip")
            if wheel is None or (spec is not None and _same_folder(spec.origin, wheel)):
                import clip

                return clip
        print(f"Note: `import clip` finds another clip package; using clip-anytorch's from {wheel}")
        spec = importlib.util.spec_from_file_location(
            PRIVATE_CLIP, os.path.join(wheel, "__init__.py"), submodule_search_locations=[wheel]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[PRIVATE_CLIP] = module
        spec.loader.exec_module(module)
        return module


def default_cache_dir() -> str:
    return os.path.expanduser("~/.cache/clip")


def _weights_file_for(name: str, path: str) -> str:
    clip = import_clip()
    if path:
        if not os.path.isfile(path):
            raise WeightsNotFoundError(f"MODEL.BACKBONE.PATH {path} does not exist: put the {name} CLIP weights there")
        return path
    url = clip.clip._MODELS[name]
    target = os.path.join(default_cache_dir(), os.path.basename(url))
    if os.path.isfile(target):
        return target
    try:
        return clip.clip._download(url, default_cache_dir())
    except Exception as e:  # offline machines fail here at once (URLError)
        raise WeightsNotFoundError(
            f"CLIP weights for {name} not found at {target} and could not be downloaded ({type(e).__name__}); "
            f"download {url} to {target} or set MODEL.BACKBONE.PATH /path/to/{os.path.basename(url)}"
        ) from e


def build_random_clip(arch: str) -> torch.nn.Module:
    clip = import_clip()
    if arch not in RANDOM_ARCHS:
        raise ValueError(f"Unknown random CLIP architecture {arch!r}; choose one of {sorted(RANDOM_ARCHS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return clip.model.CLIP(**RANDOM_ARCHS[arch]).float().eval()


#: joint embedding width of OpenAI's ViT CLIPs, known without their weights
OPENAI_EMBED_DIMS = {"ViT-B/32": 512, "ViT-B/16": 512, "ViT-L/14": 768, "ViT-L/14@336px": 768}


def embed_dim(name: str, path: str = "") -> int:
    """The joint embedding width of the CLIP ``load_clip(name, path)`` would load, without building it
    (a weights file is read for its ``text_projection`` only when ``name`` is a file)."""
    if name.startswith(RANDOM_PREFIX) and name[len(RANDOM_PREFIX):] in RANDOM_ARCHS:
        return RANDOM_ARCHS[name[len(RANDOM_PREFIX):]]["embed_dim"]
    if name in OPENAI_EMBED_DIMS:
        return OPENAI_EMBED_DIMS[name]
    return load_clip(name, path).text_projection.shape[1]


def openai_sha256s() -> Set[str]:
    """SHA-256 of OpenAI's published CLIP files: the folder name in each of their download addresses."""
    return {url.rstrip("/").split("/")[-2] for url in import_clip().clip._MODELS.values()}


def _is_torchscript(path: str) -> bool:
    """A TorchScript archive (OpenAI's CLIP files are), rather than a ``torch.save`` state_dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_clip_state_dict(model_file: str) -> Dict[str, torch.Tensor]:
    """A CLIP weights file's state_dict, without running code from the file.

    OpenAI's TorchScript archives are loaded by ``torch.jit.load`` only when their SHA-256 is one
    OpenAI published (TorchScript can run code when loaded); any other file is read as data
    (``safe_load``).
    """
    if _is_torchscript(model_file):
        digest = _sha256(model_file)
        if digest not in openai_sha256s() and not trusted(model_file):
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


def load_clip(name: str, path: str = "") -> torch.nn.Module:
    """A CLIP model in fp32 on the CPU, in eval mode (see the module docstring for ``name``)."""
    clip = import_clip()
    if name.startswith(RANDOM_PREFIX):
        return build_random_clip(name[len(RANDOM_PREFIX):])
    from .testbed.model import TESTBED_MODELS, load_testbed_state_dict

    if name in TESTBED_MODELS:  # shipped with the package; built as clip.load builds a state_dict file
        return clip.model.build_model(load_testbed_state_dict(name)).float().eval()
    if name in clip.available_models():
        model_file = _weights_file_for(name, path)
    elif os.path.isfile(name):
        model_file = name
    elif name.endswith((".pt", ".pth")) or os.path.isabs(name) or name.startswith(("./", "../", "~")):
        raise WeightsNotFoundError(
            f"MODEL.BACKBONE.NAME {name} is not a file: put the CLIP weights there, or give an OpenAI name "
            f"{clip.available_models()} (then MODEL.BACKBONE.PATH can point at the file)"
        )
    else:
        raise ValueError(
            f"MODEL.BACKBONE.NAME {name!r} is neither an OpenAI CLIP name {clip.available_models()}, "
            f"a weights file, the offline testbed CLIP 'testbed', nor '{RANDOM_PREFIX}<arch>' with arch in "
            f"{sorted(RANDOM_ARCHS)}"
        )
    state_dict = read_clip_state_dict(model_file)
    try:  # what clip.load(jit=False) does, without its unrestricted torch.load
        model = clip.model.build_model(state_dict)
    except Exception as e:  # build_model's errors on other files are internal (IndexError, KeyError, ...)
        raise UserError(
            f"{model_file} is not a CLIP checkpoint ({type(e).__name__}: {' '.join(str(e).split())[:120]}): "
            f"put OpenAI's {name if name in clip.available_models() else 'CLIP'} weights file there"
        ) from e
    if not hasattr(model.visual, "proj") or model.visual.proj is None:
        raise ValueError(f"{name}: TextRefiner needs a ViT image encoder (local tokens); ResNet CLIPs are not supported")
    return model.float().eval()
