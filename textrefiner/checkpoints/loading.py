"""Load a release checkpoint (see ``upstream.py``), or a folder our trainers wrote
(``read_model_dir``, ``load_module_strictly``), into a trainer's registered modules, strictly.

Every shape and key is checked before any module is touched, so a refused checkpoint
leaves the model as it was. ``--model-dir`` needs exactly the trainer's modules;
``MODEL.INIT_WEIGHTS`` initialises the modules the checkpoint has and leaves the others
(e.g. a fresh TextRefiner head over MaPLe's released prompts) as they were built.
"""
import os
import os.path as osp
from typing import Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn

from ..errors import SettingError, UserError
from ..framework.checkpoint import load_checkpoint
from ..safe_load import non_finite
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
    bad = [m.source for keys in release.modules.values() for m in keys.values()
           if torch.is_tensor(m.value) and m.value.is_floating_point() and not bool(torch.isfinite(m.value).all())]
    if bad:
        raise UpstreamCheckpointError(f"{', '.join(bad[:3])} hold NaN or inf: the release checkpoint is damaged "
                                      "(copy it again from its source)")
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


#: per-class buffers a prompt learner rebuilds from the class names (another dataset's never fit)
CLASS_BUFFERS = ("token_prefix", "token_suffix", "tokenized_prompts")


def init_from_file(models: Dict[str, nn.Module], path: str) -> None:
    """``MODEL.INIT_WEIGHTS`` for a checkpoint this project (or Dassl) wrote: every module takes the
    file's tensors of its own names and shapes (the class buffers are rebuilt, not taken).

    Refuses, before touching a module, a file none of whose tensors fits, one whose tensor of a
    module's name has another shape (other prompt settings), and one holding NaN or inf.
    """
    checkpoint = load_checkpoint(path, "MODEL.INIT_WEIGHTS checkpoint")
    state = checkpoint.get("state_dict", checkpoint)
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items() if torch.is_tensor(v)}
    bad = non_finite(state)
    if bad:
        raise UserError(f"MODEL.INIT_WEIGHTS {path} holds NaN or inf in {', '.join(bad[:4])}: the run that wrote it "
                        "diverged; start from another checkpoint")
    taken, wrong = {}, []
    for name, module in models.items():
        own = module.state_dict()
        for key, value in state.items():
            if key not in own or key.rsplit(".", 1)[-1] in CLASS_BUFFERS:
                continue
            if value.shape == own[key].shape:
                taken.setdefault(name, {})[key] = value
            else:
                wrong.append(f"{key} {tuple(value.shape)} there, {tuple(own[key].shape)} in {name}")
    if wrong:
        raise UserError(f"MODEL.INIT_WEIGHTS {path} does not fit these settings ({'; '.join(wrong[:3])}): pass the "
                        "prompt settings (N_CTX, CTX_INIT, CSC, PROMPT_DEPTH, ...) of the run that wrote it")
    if not taken:
        modules = {name: sorted(module.state_dict())[:3] for name, module in models.items()}
        raise UserError(f"MODEL.INIT_WEIGHTS {path} fits none of this trainer's modules (its tensors: "
                        f"{sorted(state)[:4]}; the modules' {modules}): pass a checkpoint of this trainer's "
                        "modules, e.g. <output>/prompt_learner/model.pth.tar-<epoch> of a run of it")
    for name, module in models.items():
        values = taken.get(name, {})
        if values:
            module.load_state_dict({**module.state_dict(), **values})
        print(f"{name}: {len(values)} of {len(module.state_dict())} tensors initialised from {path}"
              + ("" if values else " (none there: it keeps its initial weights)"))
    unused = sorted(set(state) - {k for values in taken.values() for k in values}
                    - {k for k in state if k.rsplit(".", 1)[-1] in CLASS_BUFFERS})
    if unused:
        print(f"Not used from {path}: {unused[:8]}{' ...' if len(unused) > 8 else ''}")


# Buffers CoOp-family releases saved although they are derived from class names.
FIXED_PROMPT_KEYS = ("token_prefix", "token_suffix", "tokenized_prompts")


def read_model_dir(directory: str, names: List[str], epoch: Optional[int] = None) -> Iterator[Tuple[str, str, dict]]:
    """``(name, path, checkpoint)`` of ``model-best.pth.tar`` (or ``model.pth.tar-<epoch>``) for each
    registered module name; a missing file names what the folder holds and the flags that pick one."""
    model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
    for name in names:
        path = osp.join(directory, name, model_file)
        if not osp.exists(path):
            folder = osp.join(directory, name)
            found = sorted(f for f in os.listdir(folder) if f.startswith("model")) if osp.isdir(folder) else []
            raise FileNotFoundError(
                f'Model not found at "{path}". Found in {folder}: {found or "nothing"}. '
                "Pass the training output folder as --model-dir and an epoch that was saved as --load-epoch "
                "(or none for model-best.pth.tar)."
            )
        checkpoint = load_checkpoint(path)
        if not isinstance(checkpoint.get("state_dict"), dict):
            raise UserError(f"{path} holds no state_dict (its keys: {sorted(map(str, checkpoint))[:6]}): it is not "
                            "a checkpoint a training run wrote; pass that run's output folder as --model-dir")
        yield name, path, checkpoint


def load_module_strictly(name: str, module: nn.Module, state_dict: Dict[str, torch.Tensor], source: str,
                         trainer_name: str) -> None:
    """Load ``state_dict`` into the registered module ``name`` of ``trainer_name``: every key and shape
    must fit (the fixed prompt-token buffers of older CoOp-family checkpoints are ignored); a mismatch,
    or NaN/inf in the file, is one error naming both sides."""
    state_dict = {k: v for k, v in state_dict.items() if k.rsplit(".", 1)[-1] not in FIXED_PROMPT_KEYS}
    bad = non_finite(state_dict)
    if bad:
        raise UserError(f"The {name} checkpoint in {source} holds NaN or inf in {', '.join(bad[:4])}: the run that "
                        "wrote it diverged; retrain it (a lower OPTIM.LR, or PREC fp32 / amp)")
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    # sub-modules may hold state sized by the checkpoint (PromptKD's class-keyed teacher text)
    resizable = {f"{prefix}.{key}" if prefix else key for prefix, sub in module.named_modules()
                 for key in getattr(sub, "resizable_state", ())}
    shapes = [f"{k}: {tuple(state_dict[k].shape)} there, {tuple(own[k].shape)} here"
              for k in own if k in state_dict and k not in resizable and torch.is_tensor(own[k])
              and state_dict[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        problems = "; ".join(filter(None, [
            f"missing {missing}" if missing else "", f"unexpected {unexpected}" if unexpected else "",
            ", ".join(shapes)]))
        raise UserError(
            f"The {name} checkpoint in {source} does not fit {trainer_name} with these settings "
            f"({problems}): pass the trainer and prompt settings (N_CTX, CTX_INIT, CSC, PROMPT_DEPTH, ...) "
            "that trained it"
        )
    try:
        module.load_state_dict(state_dict)
    except SettingError as e:  # a module's own check of what it loads (e.g. PromptKD's teacher text)
        raise SettingError(f"{source}: {e}") from None
