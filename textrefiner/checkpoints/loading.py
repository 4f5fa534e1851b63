"""Load a release checkpoint (see ``upstream.py``) into a trainer's registered modules, strictly.

Every shape and key is checked before any module is touched, so a refused checkpoint
leaves the model as it was. ``--model-dir`` needs exactly the trainer's modules;
``MODEL.INIT_WEIGHTS`` initialises the modules the checkpoint has and leaves the others
(e.g. a fresh TextRefiner head over MaPLe's released prompts) as they were built.
"""
from typing import Dict, Optional

import torch.nn as nn

from .upstream import BEST_FILE, Mapped, ReleaseCheckpoint, UpstreamCheckpointError, find_release, read_release, \
    release_layout


def _check_module(name: str, module: nn.Module, mapped: Dict[str, Mapped], release: ReleaseCheckpoint) -> None:
    expected = module.state_dict()
    for key, m in mapped.items():
        if key in expected and expected[key].shape != m.value.shape:
            raise UpstreamCheckpointError(
                f'{m.source} has shape {tuple(m.value.shape)} but {name}.{key} of this model has shape '
                f"{tuple(expected[key].shape)}: {m.hint}"
            )
    unexpected = [k for k in mapped if k not in expected]
    if unexpected:
        m = mapped[unexpected[0]]
        raise UpstreamCheckpointError(
            f"{m.source} maps to {name}.{unexpected[0]}, which this model does not have: {release.describe()}"
        )
    missing = [f"{name}.{k}" for k in expected if k not in mapped]
    if missing:
        raise UpstreamCheckpointError(
            f"{release.describe()}, but it holds no weights for {', '.join(missing)}: a folder of it may be "
            f"missing (the release has {', '.join(f + '/' for f in release.layout.folders)} each with "
            f"{release.file_name})"
        )


def load_release(models: Dict[str, nn.Module], release: ReleaseCheckpoint, require_all: bool) -> None:
    """Load ``release`` into ``models`` (registered name -> module); ``require_all``: the two must
    hold the same modules (evaluation), otherwise the common ones are loaded (initialisation)."""
    ours, theirs = set(models), set(release.modules)
    if (require_all and ours != theirs) or not ours & theirs:
        raise UpstreamCheckpointError(
            f"{release.describe()}; it holds weights for {sorted(theirs)} but this trainer's modules are "
            f"{sorted(ours)}: use the trainer it fits"
            + ("" if not require_all else ", or start this trainer from it with MODEL.INIT_WEIGHTS")
        )
    for name in sorted(ours & theirs):
        _check_module(name, models[name], release.modules[name], release)
    state_dicts = release.state_dicts()
    for name, module in models.items():
        if name in theirs:
            print(f'Loading weights to {name} from "{release.directory}", {release.file_name} '
                  f"({release.layout.name}, epoch = {release.epoch})")
            module.load_state_dict(state_dicts[name], strict=True)
        else:
            print(f'{name} keeps its initial weights: "{release.directory}" has none for it')
    for name in sorted(theirs - ours):
        print(f'Ignoring the {name} weights of "{release.directory}": this trainer has no such module')


def load_release_model_dir(models: Dict[str, nn.Module], directory: str, epoch: Optional[int] = None) -> bool:
    """``--model-dir``: when ``directory`` is a release folder, load ``model.pth.tar-<epoch>`` (or
    ``model-best.pth.tar``) into every module and return True; False for any other folder."""
    file_name = BEST_FILE if epoch is None else f"model.pth.tar-{epoch}"
    layout = release_layout(directory, file_name) if directory else None
    if layout is None:
        return False
    load_release(models, read_release(directory, layout, file_name), require_all=True)
    return True


def init_from_release(models: Dict[str, nn.Module], path: str) -> bool:
    """``MODEL.INIT_WEIGHTS``: when ``path`` is a release folder (its best model, else its last epoch)
    or a file of one, load the modules it holds and return True; False for any other path."""
    release = find_release(path, latest=True)
    if release is None:
        return False
    load_release(models, release, require_all=False)
    return True
