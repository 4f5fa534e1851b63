"""What a host's loss compares logits to, so that a plug-in's losses follow the host's form.

A target scores logits ``(B * K, C)`` in which each of the batch's ``B`` images owns ``K``
consecutive rows (``K = 1`` for the host's own logits, ``K = k + 2`` for TextRefiner's
semantic token set), so the same object scores the host's logits and a plug-in's.
``weight`` is the host's loss weight (1 for cross-entropy hosts, ``KD_WEIGHT`` for
PromptKD); a plug-in's lambdas are relative to it, which is how the TextRefiner release's
PromptKD variant weights its terms (KD/100, KD/50).
"""
from typing import Dict, NamedTuple

import torch
import torch.nn.functional as F


class HardLabels(NamedTuple):
    """Class labels; the loss is cross-entropy (CoOp, MaPLe)."""

    labels: torch.Tensor  # (B,)
    weight: float = 1.0

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        repeats = logits.shape[0] // self.labels.shape[0]
        return F.cross_entropy(logits, self.labels.repeat_interleave(repeats))

    def metrics(self, logits: torch.Tensor) -> Dict[str, float]:
        correct = (logits.argmax(dim=1) == self.labels).float().sum()
        return {"acc": correct.mul_(100.0 / self.labels.shape[0]).item()}  # Dassl's compute_accuracy


class SoftTargets(NamedTuple):
    """A teacher's logits; the loss is forward KL at a temperature (PromptKD).

    ``KL(softmax(z_t / T) || softmax(z / T)) * T^2``, summed over rows and classes and
    divided by the number of logits (``B * K * C``), as the PromptKD release reduces it.
    """

    teacher_logits: torch.Tensor  # (B, C)
    temperature: float = 1.0
    weight: float = 1.0

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        repeats = logits.shape[0] // self.teacher_logits.shape[0]
        target = F.softmax(self.teacher_logits.float() / t, dim=1).repeat_interleave(repeats, dim=0)
        log_probs = F.log_softmax(logits.float() / t, dim=1)
        return F.kl_div(log_probs, target, reduction="sum") * (t * t) / logits.numel()

    def metrics(self, logits: torch.Tensor) -> Dict[str, float]:
        """Share of images whose top-1 class is the teacher's (no labels involved)."""
        agree = logits.argmax(dim=1) == self.teacher_logits.argmax(dim=1)
        return {"teacher_agreement": 100.0 * agree.float().mean().item()}
