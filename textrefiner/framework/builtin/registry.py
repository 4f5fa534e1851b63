"""Name -> class registries with Dassl's ``Registry`` interface."""
from typing import Callable, Dict, List, Optional


class Registry:
    """Maps a class's ``__name__`` to the class; used as ``@REGISTRY.register()``."""

    def __init__(self, name: str):
        self._name = name
        self._obj_map: Dict[str, Callable] = {}

    def _do_register(self, name: str, obj: Callable, force: bool = False) -> None:
        if name in self._obj_map and not force:
            raise KeyError(f'An object named "{name}" was already registered in "{self._name}" registry')
        self._obj_map[name] = obj

    def register(self, obj: Optional[Callable] = None, force: bool = False):
        if obj is None:
            def wrapper(fn_or_class):
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class

            return wrapper
        self._do_register(obj.__name__, obj, force=force)
        return obj

    def get(self, name: str) -> Callable:
        if name not in self._obj_map:
            raise KeyError(
                f'"{name}" is not in the {self._name} registry; registered: {sorted(self._obj_map)}'
            )
        return self._obj_map[name]

    def registered_names(self) -> List[str]:
        return list(self._obj_map.keys())

    def __contains__(self, name: str) -> bool:
        return name in self._obj_map


TRAINER_REGISTRY = Registry("TRAINER")
DATASET_REGISTRY = Registry("DATASET")
