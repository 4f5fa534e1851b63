"""OpenAI's CLIP: their ``clip`` package (the ``clip-anytorch`` wheel), their model names and where
their weights files are (``MODEL.BACKBONE.PATH``, else CLIP's cache folder ``~/.cache/clip``)."""
import importlib.util
import os
import re
import sys
import types
import warnings
from typing import List, Set

from ..errors import WeightsNotFoundError

#: the module name clip-anytorch is loaded under when a checkout's own ``clip/`` folder takes ``clip``
PRIVATE_CLIP = "textrefiner_clip_anytorch"
#: joint embedding width of OpenAI's ViT CLIPs, known without their weights
OPENAI_EMBED_DIMS = {"ViT-B/32": 512, "ViT-B/16": 512, "ViT-L/14": 768, "ViT-L/14@336px": 768}


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


def openai_names() -> List[str]:
    """OpenAI's CLIP model names (``ViT-B/16``, ...), as ``clip.available_models()`` lists them."""
    return import_clip().available_models()


def default_cache_dir() -> str:
    return os.path.expanduser("~/.cache/clip")


def download_url(name: str) -> str:
    return import_clip().clip._MODELS[name]


def expected_file(name: str, path: str = "") -> str:
    """Where the weights of OpenAI model ``name`` are read from: ``path`` if set, else CLIP's cache."""
    return path or os.path.join(default_cache_dir(), os.path.basename(download_url(name)))


def weights_file(name: str, path: str = "") -> str:
    """The weights file of OpenAI model ``name``; downloaded into CLIP's cache when the machine is online."""
    if path:
        if not os.path.isfile(path):
            raise WeightsNotFoundError(f"MODEL.BACKBONE.PATH {path} does not exist: put the {name} CLIP weights there")
        return path
    url, target = download_url(name), expected_file(name)
    if os.path.isfile(target):
        return target
    try:
        return import_clip().clip._download(url, default_cache_dir())
    except Exception as e:  # offline machines fail here at once (URLError)
        raise WeightsNotFoundError(
            f"CLIP weights for {name} not found at {target} and could not be downloaded ({type(e).__name__}); "
            f"download {url} to {target} or set MODEL.BACKBONE.PATH /path/to/{os.path.basename(url)}"
        ) from e


def openai_sha256s() -> Set[str]:
    """SHA-256 of OpenAI's published CLIP files: the folder name in each of their download addresses."""
    return {url.rstrip("/").split("/")[-2] for url in import_clip().clip._MODELS.values()}
