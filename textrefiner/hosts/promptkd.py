"""The PromptKD host (Li et al., CVPR 2024): a prompted student image tower classifying with a teacher's
class text features.

* ``PromptKDStudent``: the student CLIP's frozen image tower with IVLP deep vision prompts
  (``ivlp.VisionPrompts``), its projected CLS feature mapped into the teacher's text space by the
  projector ``Linear -> BatchNorm -> ReLU -> Linear`` (``modeling.mlp.TwoLayerMLP``, student width
  -> teacher width, the release's 1x1 convolutions) and L2-normalised; logits ``s * f t^T`` with the student's
  logit scale and the teacher's text features ``t``. The student's text tower is never used.
* ``TeacherTextBank``: the teacher's L2-normalised class text features, stored with their
  class names in the student's checkpoint, so evaluation needs no teacher and each
  evaluation picks the rows of the classes it scores (base or novel half, or all).
"""
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from ..errors import SettingError
from ..modeling.mlp import TwoLayerMLP
from .coop import ScaledCosineClassifier
from .encoders import ImageEncoder, VisualOutput, encode_prompted_image
from .ivlp import VisionPrompts, check_depth


class TeacherTextBank(nn.Module):
    """The teacher's text features ``features`` (C, d), float32, keyed by class name.

    A persistent buffer plus the class names (the module's extra state): a checkpoint of any
    class set loads into a bank built for any other, and ``lookup`` finds rows by name.
    """

    #: state keys whose shape the checkpoint decides (its class set), not this module
    resizable_state = ("features",)

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("features", torch.zeros(0, dim))
        self.classnames: List[str] = []

    def store(self, classnames: Sequence[str], features: torch.Tensor) -> None:
        self.features = features.detach().float().clone().to(self.features.device)
        self.classnames = list(classnames)

    def has(self, classnames: Sequence[str]) -> bool:
        return set(classnames) <= set(self.classnames)

    def lookup(self, classnames: Sequence[str]) -> torch.Tensor:
        """Rows (len(classnames), d) of the given classes, in that order."""
        index = {name: i for i, name in enumerate(self.classnames)}
        missing = [name for name in classnames if name not in index]
        if missing:
            held = ", ".join(self.classnames[:5]) + (", ..." if len(self.classnames) > 5 else "")
            raise SettingError(
                f"No teacher text features for {len(missing)} class(es) ({', '.join(missing[:5])}); the model holds "
                f"{len(self.classnames)} ({held}). Evaluate a model trained on this dataset, or make the teacher "
                "available to compute them"
            )
        rows = torch.tensor([index[name] for name in classnames], device=self.features.device)
        return self.features.index_select(0, rows)

    def get_extra_state(self) -> Dict[str, List[str]]:
        return {"classnames": list(self.classnames)}

    def set_extra_state(self, state: Dict[str, List[str]]) -> None:
        self.classnames = list(state["classnames"])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The stored class set decides the buffer's size, not the one this bank was built with.
        stored = state_dict.get(prefix + "features")
        if stored is not None:
            self.features = torch.empty_like(stored, dtype=torch.float32, device=self.features.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if len(self.classnames) != len(self.features):
            raise SettingError(
                f"The stored teacher text features are damaged: {len(self.features)} rows for "
                f"{len(self.classnames)} class names; evaluate another checkpoint or train the student again"
            )


class PromptKDStudent(ScaledCosineClassifier, nn.Module):
    """The student: prompted image tower, projector into the teacher's space, the teacher's text.

    Args:
        clip_model: the student CLIP (its image tower and logit scale are used, frozen).
        teacher_dim: width of the teacher's text space (the projector's hidden and output width).
        n_ctx: vision prompt tokens per prompted block.
        depth: J, blocks 1 .. J of the image tower receive prompts.
        classnames: the classes the training step scores (the teacher's text features of these).
    """

    def __init__(self, clip_model: nn.Module, teacher_dim: int, n_ctx: int = 4, depth: int = 9,
                 classnames: Sequence[str] = ()):
        super().__init__()
        visual = clip_model.visual
        # at least one prompted block: besides the projector, the prompts are all the student learns
        check_depth(depth, len(visual.transformer.resblocks), "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION")
        self.image_encoder = ImageEncoder(visual)
        self.vision_prompts = VisionPrompts(depth, n_ctx, visual.conv1.weight.shape[0])
        student_dim = visual.proj.shape[1]
        self.projector = TwoLayerMLP(student_dim, teacher_dim).to(visual.proj.dtype)
        self.teacher_text = TeacherTextBank(teacher_dim)
        self.logit_scale = clip_model.logit_scale
        self.classnames = list(classnames)

    @property
    def text_dim(self) -> int:
        """The teacher's text width: the space the logits, the cache and the alignment live in."""
        return self.teacher_text.features.shape[1]

    @property
    def token_dim(self) -> int:
        """Width of the student's local tokens (after ln_post and proj)."""
        return self.image_encoder.visual.proj.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.projector.fc1.weight.dtype

    def text_features(self, classnames: Optional[Sequence[str]] = None) -> torch.Tensor:
        """The teacher's text features (C, d) of ``classnames`` (default: the training classes)."""
        return self.teacher_text.lookup(self.classnames if classnames is None else classnames).to(self.dtype)

    def encode_image(self, image: torch.Tensor, with_local: bool = False) -> VisualOutput:
        """``global_feature``: the projected CLS feature in the teacher's space (not normalised);
        ``tokens``: the last block's CLS and patch tokens in the student's space (prompts left out)."""
        visual = encode_prompted_image(self.image_encoder, image, self.vision_prompts(), with_local)
        projected = self.projector(visual.global_feature)  # (B, d_student) -> (B, d_teacher)
        return VisualOutput(projected, visual.tokens, visual.cls_attention)

