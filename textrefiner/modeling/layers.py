"""Feature aggregation (paper Eq. 7) and feature alignment (Eq. 8)."""
import torch
import torch.nn as nn


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


class FeatureAlignment(nn.Module):
    """Token-wise ``Linear -> BatchNorm -> ReLU -> Linear`` into the text space (Eq. 8).

    BatchNorm statistics run over all tokens of the batch (B * T of them), as the
    release's 1x1-convolution version computes them.

    Args:
        in_dim: width of the local tokens (the image embedding width).
        out_dim: width of the text space (hidden and output width).
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, out_dim)
        self.norm = nn.BatchNorm1d(out_dim)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(out_dim, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` (B, T, in_dim) -> aligned tokens (B, T, out_dim)."""
        b, t, _ = tokens.shape
        x = self.fc1(tokens.reshape(b * t, -1))
        x = self.fc2(self.act(self.norm(x)))
        return x.reshape(b, t, -1)
