"""Trainers of this project; importing the package registers them in the framework's TRAINER_REGISTRY."""
from . import coop, zsclip  # noqa: F401
