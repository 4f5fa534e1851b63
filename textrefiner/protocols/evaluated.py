"""What an evaluation step takes from the training run whose model it evaluates.

A test step (``base2new_test``, ``xd_test``) is launched with its own arguments, usually without
the overrides its training got (``base2new_train.sh DATASET SEED OPTIM.MAX_EPOCH 2``, then
``base2new_test.sh DATASET SEED``, as every CoOp/CoCoOp user runs them). The training's
``result.json`` lists its settings; the test step sorts them in three groups:

* the step's own: ``DATASET.*`` (what the step evaluates on: its dataset, split and shots, which the
  protocol sets) and the keys that are not settings at all (``results.record.NOT_SETTINGS``);
* keys that change what is evaluated (``EVALUATED_KEYS``, ``EVALUATED_LEAVES``: backbone, input size
  and normalisation, the model's prompts and refiner): the model was built with them, so the
  step's config must give the same values; a difference refuses with the ``KEY VALUE`` pairs to pass;
* every other key (optimiser, epochs, batch sizes, loss weights, precision, ...): the step takes the
  training's value unless its own ``KEY VALUE`` pairs give the key, so its config, its command and its
  ``result.json`` describe the model it evaluates (``OPTIM.MAX_EPOCH 2`` there, 2 in the evaluation).
"""
import ast
import shlex
from typing import Dict, Iterable, List, Tuple

from ..results.record import NOT_SETTINGS

#: keys outside the trainer nodes that change what an evaluation computes
EVALUATED_KEYS = frozenset({
    "MODEL.BACKBONE.NAME", "INPUT.SIZE", "INPUT.INTERPOLATION", "INPUT.PIXEL_MEAN", "INPUT.PIXEL_STD",
    "TRAINER.NAME",
})
#: leaves of ``TRAINER.<NODE>.*`` that shape the trained model or its forward pass: prompt length,
#: initialisation, depth and position, the teacher that sizes PromptKD's projector, and TextRefiner's
#: switch, cache size and fusion (its lambdas, momentum, update rule and top-k only act in training)
EVALUATED_LEAVES = frozenset({
    "N_CTX", "N_CTX_TEXT", "N_CTX_VISION", "CTX_INIT", "CSC", "CLASS_TOKEN_POSITION",
    "PROMPT_DEPTH", "PROMPT_DEPTH_TEXT", "PROMPT_DEPTH_VISION", "TEACHER_NAME",
    "ENABLED", "CACHE_SIZE", "ALPHA", "NORMALIZE_REFINED",
})
#: key prefixes that are the evaluation step's own (its dataset config and the protocol's split and shots)
STEP_OWN_PREFIXES = ("DATASET.",)

Change = Tuple[str, object, object]


def is_evaluated_key(key: str) -> bool:
    parts = key.split(".")
    return key in EVALUATED_KEYS or (len(parts) == 3 and parts[0] == "TRAINER" and parts[2] in EVALUATED_LEAVES)


def _step_own(key: str) -> bool:
    return key in NOT_SETTINGS or key.startswith(STEP_OWN_PREFIXES)


def _changes(trained: Dict[str, object], own: Dict[str, object]) -> List[Change]:
    """(key, training's value, this step's value) for every key both configs have that differ."""
    return [(k, trained[k], own[k]) for k in sorted(set(trained) & set(own))
            if not _step_own(k) and trained[k] != own[k]]


def model_mismatches(trained: Dict[str, object], own: Dict[str, object]) -> List[Change]:
    """The keys that change what is evaluated whose values differ between the training and this step."""
    return [c for c in _changes(trained, own) if is_evaluated_key(c[0])]


def adopted(trained: Dict[str, object], own: Dict[str, object], given: Iterable[str]) -> List[Tuple[str, object]]:
    """(key, training's value) for every other key that differs, unless this step's pairs give it."""
    given = set(given)
    return [(k, a) for k, a, _ in _changes(trained, own) if not is_evaluated_key(k) and k not in given]


def option_value(value: object) -> str:
    """``value`` as a ``KEY VALUE`` argument that yacs reads back as ``value`` (it literal-evaluates
    strings: a string that would read as another type is quoted)."""
    if isinstance(value, str):
        try:
            ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
        return repr(value)
    return repr(value)


def as_options(pairs: Iterable[Tuple[str, object]]) -> Tuple[str, ...]:
    return tuple(x for key, value in pairs for x in (key, option_value(value)))


def mismatch_message(model_dir: str, changes: List[Change]) -> str:
    """One line: what differs, and the ``KEY VALUE`` pairs that make this step evaluate that model."""
    shown = "; ".join(f"{k} {a!r} there, {b!r} here" for k, a, b in changes)
    fix = shlex.join(as_options((k, a) for k, a, _ in changes))
    return (f"the model in {model_dir} was built with other values of keys that change what is evaluated ({shown}): "
            f"pass the same KEY VALUE pairs to this step: {fix}")
