"""ONE resolver for every backbone name (``MODEL.BACKBONE.NAME``, ``TRAINER.PROMPTKD.TEACHER_NAME``).

* ``resolver.py``: ``resolve(name, path)`` says which kind a name is (``random:<arch>``, a
  registered name such as ``testbed``, an OpenAI name, a weights file), whether its weights are
  on this machine and its joint width; ``load_clip`` and ``embed_dim`` are what trainers call.
* ``registry.py``: backbones that parts of the project ship under a name. The offline testbed
  registers ``testbed`` when it is imported, and ``import textrefiner`` imports it, so the
  resolver knows the name without ever importing the testbed.
* ``openai.py`` (OpenAI's ``clip`` package, their names and files), ``files.py`` (reading a
  weights file without running code from it), ``random_init.py`` (``random:<arch>``).

This face imports no torch: registering a backbone stays as light as ``import textrefiner``.
"""
from .registry import NamedBackbone, register_backbone, registered_backbones  # noqa: F401
