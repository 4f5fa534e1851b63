"""``MODEL.BACKBONE.NAME testbed``: the testbed registers its shipped CLIP with the backbone resolver.

The testbed package imports this module, and ``import textrefiner`` imports the testbed package,
so the resolver (``textrefiner.backbones``) knows ``testbed`` without importing the testbed. No
torch at import: ``model.py`` is read when the weights are.
"""
import os.path as osp
from functools import partial

from ..backbones import NamedBackbone, register_backbone

WEIGHTS_DIR = osp.join(osp.dirname(osp.abspath(__file__)), "weights")
#: backbone name -> shipped file
TESTBED_MODELS = {"testbed": osp.join(WEIGHTS_DIR, "testbed-clip.pt")}


def _read_state_dict(path: str):
    from .model import load_testbed_state_dict  # torch: only when the model is loaded

    return load_testbed_state_dict(path)


for _name in TESTBED_MODELS:
    register_backbone(NamedBackbone(
        name=_name,
        description="offline testbed CLIP",
        weights_file=partial(TESTBED_MODELS.__getitem__, _name),
        read_state_dict=_read_state_dict,
        how_to_get=("this version ships none yet. Build them with python -m textrefiner.testbed.pretrain --out "
                    "{file} (README, 'Offline testbed')"),
        configs="configs/trainers/<trainer>/testbed*.yaml",
    ))
