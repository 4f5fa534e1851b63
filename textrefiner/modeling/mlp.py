"""A neutral building block: the two-layer MLP with batch norm that maps one embedding space into another.

Two methods use it and neither owns it: TextRefiner's feature alignment (``layers.FeatureAlignment``,
Eq. 8) and PromptKD's projector (``hosts/promptkd.py``); both releases write it as 1x1 convolutions.
A change here changes both, on purpose; a change to one of them stays there.
"""
import torch
import torch.nn as nn


class TwoLayerMLP(nn.Module):
    """``Linear(in, out) -> BatchNorm1d(out) -> ReLU -> Linear(out, out)``, row by row.

    BatchNorm statistics run over every row of the input (all B * T tokens of a (B, T, in) batch),
    as the releases' 1x1 convolutions over a (B * T, in, 1, 1) input compute them. Keys:
    ``fc1.*``, ``norm.*`` (with running statistics), ``fc2.*``.

    Args:
        in_dim: width of the input rows.
        out_dim: width of the hidden layer and the output.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, out_dim)
        self.norm = nn.BatchNorm1d(out_dim)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (..., in_dim) -> (..., out_dim); every leading position is one row of the batch statistics."""
        rows = self.fc1(x.reshape(-1, x.shape[-1]))
        return self.fc2(self.act(self.norm(rows))).reshape(*x.shape[:-1], -1)
