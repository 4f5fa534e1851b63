"""Feature aggregation (paper Eq. 7) and feature alignment (Eq. 8)."""
import torch
import torch.nn as nn

from .mlp import TwoLayerMLP


class FeatureAggregation(nn.Module):
    """``t' = t + alpha * Linear_{2d -> d}([t, E_bar])`` (Eq. 7, no bias, no re-normalisation).

    Args:
        dim: d, the text embedding width.
        alpha: weight of the aggregated detail in the residual sum.
    """

    def __init__(self, dim: int, alpha: float = 0.2):
        super().__init__()
        self.alpha = alpha
        self.linear = nn.Linear(2 * dim, dim, bias=False)

    def forward(self, text: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
        """``text`` t (C, d) and ``detail`` E_bar (C, d) from the cache -> refined t' (C, d)."""
        return text + self.alpha * self.linear(torch.cat([text, detail], dim=-1))


class FeatureAlignment(TwoLayerMLP):
    """Token-wise ``Linear -> BatchNorm -> ReLU -> Linear`` from the image tokens into the text space (Eq. 8).

    BatchNorm statistics run over all tokens of the batch (B * T of them), as the
    release's 1x1-convolution version computes them. ``forward``: tokens (B, T, in_dim) ->
    aligned tokens (B, T, out_dim).

    Args:
        in_dim: width of the local tokens (the image embedding width).
        out_dim: width of the text space (hidden and output width).
    """
