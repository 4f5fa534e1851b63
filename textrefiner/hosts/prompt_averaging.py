"""Gaussian prompt aggregation (GPA, PromptSRC Sec. 3.3): a Gaussian-weighted average of the
trainable tensors over the training epochs, loaded into the model after the last epoch."""
import math
from typing import Dict, List

import torch
import torch.nn as nn

from ..errors import SettingError


def gaussian_weights(epochs: int, mean: float, std: float) -> List[float]:
    """Weight of each epoch 1 .. ``epochs``: the N(mean, std^2) density at the epoch number,
    normalised to sum 1 (the release's ``get_gauss``; mean 15, std 1, 20 epochs puts
    0.054 / 0.242 / 0.399 / 0.242 / 0.054 on epochs 13 .. 17)."""
    if epochs < 1 or std <= 0:
        raise SettingError(f"GPA needs at least one epoch and TRAINER.PROMPTSRC.GPA_STD > 0; got {epochs} epochs, "
                           f"std {std}")
    density = [math.exp(-0.5 * ((e - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi)) for e in range(1, epochs + 1)]
    total = sum(density)
    if total == 0.0:
        raise SettingError(
            f"TRAINER.PROMPTSRC.GPA_MEAN {mean} with GPA_STD {std} gives every one of the {epochs} epochs weight 0 in float64: "
            "put GPA_MEAN within the epochs or widen GPA_STD"
        )
    return [d / total for d in density]


class GaussianPromptAverage(nn.Module):
    """The running weighted sum of some parameters, in float32 buffers (so it is saved with the
    checkpoints and survives a resume); the parameters themselves are only referenced.

    Args:
        parameters: name -> trainable parameter to average (frozen weights are never touched).
        weights: per-epoch weights (``gaussian_weights``), indexed by the 0-based epoch.
    """

    def __init__(self, parameters: Dict[str, nn.Parameter], weights: List[float]):
        super().__init__()
        self.weights = list(weights)
        # A plain dict, not a ModuleDict: the averaged modules belong to (and are saved by) their owners.
        self._targets = dict(parameters)
        for name, p in self._targets.items():
            self.register_buffer(self._buffer(name), torch.zeros_like(p, dtype=torch.float32))

    @staticmethod
    def _buffer(name: str) -> str:
        return "sum__" + name.replace(".", "__")

    @torch.no_grad()
    def add(self, epoch: int) -> None:
        """Add ``weights[epoch] * parameter`` to each running sum (``epoch`` 0-based)."""
        for name, p in self._targets.items():
            getattr(self, self._buffer(name)).add_(p.float(), alpha=self.weights[epoch])

    @torch.no_grad()
    def load(self) -> None:
        """Copy the averages into the parameters (in their own dtype)."""
        for name, p in self._targets.items():
            p.copy_(getattr(self, self._buffer(name)).to(p.dtype))
