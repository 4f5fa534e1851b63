"""Register this project's classes next to a user's own, never over them.

A CoOp-family checkout registers its own ``CoOp``, ``MaPLe``, ``PromptKD``,
``ZeroshotCLIP`` and dataset readers (``OxfordPets``, ...) in the same registries,
before or after importing this plug-in. Dassl's ``register()`` raises ``KeyError`` on
a taken name. So:

* ``register_if_free`` adds our class only if its name is free, and otherwise keeps
  the user's and says so once;
* a user's class registered AFTER ours under the same name replaces ours (and says
  so once) instead of raising, so the import order in the user's ``train.py`` does
  not matter. A user's class is never replaced.

Either way the user's class holds the name, which is said once per registry in ONE line
(``report_kept``): at the end of ``import textrefiner.trainers`` / ``textrefiner.data`` (names
taken before us), in ``add_textrefiner_config`` (the plug-in's second line, after a checkout
imported its own classes over ours), and at exit for anything still unsaid.
"""
import atexit
from typing import Callable, Dict, List, Set, Tuple

_reported: Set[Tuple[str, str]] = set()
#: registry name -> names a user's class holds instead of ours (kept or taken over), not yet reported
_kept: Dict[str, List[str]] = {}
#: ids of the objects this package registered (a user's subclass of ours is not ours)
_ours: Set[int] = set()
_at_exit: List[bool] = []


def _users_class(registry, name: str) -> None:
    """Remember, once per registry and name, that a user's class holds ``name``."""
    key = (registry._name, name)
    if key in _reported:
        return
    _reported.add(key)
    _kept.setdefault(registry._name, []).append(name)
    if not _at_exit:  # whatever no later report_kept() says is said at exit
        _at_exit.append(True)
        atexit.register(report_kept)


def _let_users_replace_ours(registry) -> None:
    """Wrap ``registry._do_register`` (once per registry) so a user's class takes a name from ours."""
    if getattr(registry, "_textrefiner_yields", False):
        return
    original = registry._do_register

    def _do_register(name, obj, force=False):
        held = registry._obj_map.get(name)
        if held is not None and held is not obj and id(held) in _ours:
            _users_class(registry, name)
            force = True
        original(name, obj, force=force)

    registry._do_register = _do_register
    registry._textrefiner_yields = True


def register_if_free(registry, obj: Callable) -> Callable:
    """Register ``obj`` under its ``__name__`` unless that name is taken; returns ``obj``.

    Usable as a class decorator. A name held by another object is left alone (the
    user's class wins) and reported once per registry and name (``report_kept``).
    """
    _let_users_replace_ours(registry)
    name = obj.__name__
    held = registry._obj_map.get(name)  # Dassl's Registry and ours both keep _obj_map
    if held is None:
        registry.register(obj)
        _ours.add(id(obj))
    elif held is not obj:
        _users_class(registry, name)
    return obj


def report_kept() -> None:
    """One line per registry naming the names held by the user's classes since the last report
    (registered before ours, or after ours and taking the name over)."""
    for registry_name, names in _kept.items():
        print(f"Note: keeping the {registry_name} registry's own {', '.join(names)} (your classes of these names "
              "are used; textrefiner's stay importable from textrefiner.trainers / textrefiner.data)")
    _kept.clear()
