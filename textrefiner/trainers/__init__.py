"""The trainers of this project, as a plug-in for any Dassl setup.

``import textrefiner.trainers`` registers every trainer (and, through
``textrefiner.data``, every dataset reader) whose name is still free in the
framework's registries, and every host's config keys; a name a user's checkout already
registered (its own ``CoOp``, ``MaPLe``, ``OxfordPets``, ...) is left to the user's class. So
inside a CoOp-family checkout ``CoOp_TextRefiner``, ``MaPLe_TextRefiner`` and
``PromptKD_TextRefiner`` appear next to the checkout's own trainers; add our config keys with
``textrefiner.config.add_textrefiner_config(cfg)`` in that checkout's ``extend_cfg``.

One module per host holds its config keys and checks and its trainers (``X`` and
``X_TextRefiner``); every module of this package but the shared ones below is imported here, so
a new host's module needs no line in this file.
"""
import importlib
import pkgutil

import textrefiner.data  # noqa: F401  (registers the dataset readers whose names are free)
import textrefiner.testbed.datasets  # noqa: F401  (and the offline testbed's)
from textrefiner.framework import TrainerX
from textrefiner.framework.registration import report_kept

#: modules every host shares (the base trainer, resume, the TextRefiner mixin): no trainers of their own
SHARED_MODULES = ("base", "resume", "textrefiner")

HOST_MODULES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in SHARED_MODULES))


def _trainers_of(module) -> dict:
    """The trainer classes ``module`` defines (registered or not: a user's class may hold the name)."""
    return {name: value for name, value in vars(module).items()
            if isinstance(value, type) and issubclass(value, TrainerX) and value.__module__ == module.__name__}


#: every trainer this package defines, by name
TRAINERS = {}
for _module in HOST_MODULES:
    TRAINERS.update(_trainers_of(importlib.import_module(f"{__name__}.{_module}")))

report_kept()

globals().update(TRAINERS)
__all__ = sorted(TRAINERS)
