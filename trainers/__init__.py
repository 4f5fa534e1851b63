"""Trainers of this project; importing the package registers them in the framework's TRAINER_REGISTRY."""
from . import coop, coop_textrefiner, maple, maple_textrefiner, zsclip  # noqa: F401
