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
"""
from typing import Callable, Dict, List, Set, Tuple

_reported: Set[Tuple[str, str]] = set()
#: registry name -> names we left to a user's class, not yet reported
_kept: Dict[str, List[str]] = {}
#: ids of the objects this package registered (a user's subclass of ours is not ours)
_ours: Set[int] = set()


def _note_once(registry, name: str, message: str) -> None:
    key = (registry._name, name)
    if key not in _reported:
        _reported.add(key)
        print(f"Note: {message}")


def _let_users_replace_ours(registry) -> None:
    """Wrap ``registry._do_register`` (once per registry) so a user's class takes a name from ours."""
    if getattr(registry, "_textrefiner_yields", False):
        return
    original = registry._do_register

    def _do_register(name, obj, force=False):
        held = registry._obj_map.get(name)
        if held is not None and held is not obj and id(held) in _ours:
            _note_once(registry, name, f'"{name}" from {obj.__module__} replaces textrefiner\'s in the '
                                       f"{registry._name} registry (ours stays importable as {held.__module__}.{name})")
            force = True
        original(name, obj, force=force)

    registry._do_register = _do_register
    registry._textrefiner_yields = True


def register_if_free(registry, obj: Callable) -> Callable:
    """Register ``obj`` under its ``__name__`` unless that name is taken; returns ``obj``.

    Usable as a class decorator. A name held by another object is left alone (the
    user's class wins) and reported once per registry and name.
    """
    _let_users_replace_ours(registry)
    name = obj.__name__
    held = registry._obj_map.get(name)  # Dassl's Registry and ours both keep _obj_map
    if held is None:
        registry.register(obj)
        _ours.add(id(obj))
    elif held is not obj and (registry._name, name) not in _reported:
        _reported.add((registry._name, name))
        _kept.setdefault(registry._name, []).append(name)
    return obj


def report_kept() -> None:
    """One line per registry naming the names left to the user's classes since the last report."""
    for registry_name, names in _kept.items():
        print(f"Note: keeping the {registry_name} registry's own {', '.join(names)} (registered before "
              "textrefiner's; ours stay importable from textrefiner.trainers / textrefiner.data)")
    _kept.clear()
