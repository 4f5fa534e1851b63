"""Register this project's classes next to a user's own, never over them.

A CoOp-family checkout registers its own ``CoOp``, ``MaPLe``, ``PromptKD``,
``ZeroshotCLIP`` and dataset readers (``OxfordPets``, ...) in the same registries
before or after importing this plug-in. Dassl's ``register()`` raises ``KeyError``
on a name that is taken; ``register_if_free`` keeps whatever holds the name and
says so once, so importing the plug-in only ever adds names.
"""
from typing import Callable, Set, Tuple

_reported: Set[Tuple[str, str]] = set()


def _holder(registry, name: str):
    return registry._obj_map.get(name)  # Dassl's Registry and ours both keep _obj_map


def register_if_free(registry, obj: Callable) -> Callable:
    """Register ``obj`` under its ``__name__`` unless that name is taken; returns ``obj``.

    Usable as a class decorator. A name held by another object is left alone (the
    user's class wins) and reported once per registry and name.
    """
    name = obj.__name__
    holder = _holder(registry, name)
    if holder is None:
        registry.register(obj)
    elif holder is not obj:
        key = (registry._name, name)
        if key not in _reported:
            _reported.add(key)
            print(
                f'Note: "{name}" is already registered in the {registry._name} registry by '
                f"{holder.__module__}; keeping it (this package's class stays importable as {obj.__module__}.{name})"
            )
    return obj
