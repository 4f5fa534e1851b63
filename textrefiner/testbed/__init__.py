"""The offline testbed: a procedural world (``world``), a miniature CLIP pre-trained on it
(``model``, ``pretrain``; shipped in ``weights/``, loaded as ``MODEL.BACKBONE.NAME testbed``)
and downstream datasets in CoOp's layout (``datasets``), so that accuracies mean something
without OpenAI weights or downloaded datasets. Importing the package registers ``testbed``
with the backbone resolver (``backbone``)."""
from . import backbone  # noqa: F401
