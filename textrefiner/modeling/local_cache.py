"""The local cache (paper Eqs. 2-6): M visual-attribute entries updated from local tokens.

Symbols: ``M`` entries of width ``d``; ``N`` local tokens; ``C`` classes.

Two update rules, both vectorised over entries (no Python loop) and gradient-free:

``release`` (default; what the authors' code computes, REFERENCE.md section 1):
  tokens are L2-normalised (``u``); ``S = u A^T`` (N, M); each token goes to its
  arg-max entry; for entry j the weight of token i is
  ``softmax_over_tokens(S[:, j])_i / max_over_all_tokens(softmax_over_tokens(S[:, j]))``;
  ``A_j <- momentum * A_j + (1 - momentum) * sum_i w_ij u_i`` for entries that
  received a token (a sum, not a mean); then every entry is re-normalised.

``paper`` (Eqs. 2-4 as printed): ``D = softmax_over_entries(cos(v_i, A_j))``; each
  token goes to its arg-max entry; ``A_j <- momentum * A_j + (1 - momentum) *
  sum_{i in G_j} D_ij v_i`` with the raw tokens ``v``, for entries that received a
  token; no re-normalisation.

The cache is kept in float32 whatever the model's precision (the release stores it
in the model dtype, float16 by default).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

UPDATE_RULES = ("release", "paper")


class LocalCache(nn.Module):
    """``entries`` (M, d): a persistent buffer, so it is saved, loaded and resumed with the model.

    Args:
        num_entries: M, number of cache entries.
        dim: d, width of an entry (the text embedding width).
        momentum: gamma in Eq. 4, weight of an entry's old value in an update.
        update_rule: "release" or "paper" (see the module docstring).
    """

    def __init__(self, num_entries: int = 25, dim: int = 512, momentum: float = 0.8, update_rule: str = "release"):
        super().__init__()
        if update_rule not in UPDATE_RULES:
            raise ValueError(f"update_rule must be one of {UPDATE_RULES}, got {update_rule!r}")
        self.momentum = momentum
        self.update_rule = update_rule
        self.register_buffer("entries", F.normalize(torch.rand(num_entries, dim), dim=-1))

    def read(self, text: torch.Tensor) -> torch.Tensor:
        """Eqs. 5-6: ``W = softmax_over_entries(cos(t, A))``, returns ``E_bar = W A`` (C, d).

        ``text``: (C, d) text features, or (..., C, d) (CoCoOp: one set per image). The cache takes no gradient.
        """
        entries = self.entries.to(text.dtype)
        similarity = F.normalize(text, dim=-1) @ F.normalize(entries, dim=-1).t()
        weights = similarity.softmax(dim=-1).to(text.dtype)
        return weights @ entries

    @torch.no_grad()
    def update(self, tokens: torch.Tensor) -> None:
        """Write local tokens (..., d) into the cache (call once per training step, after ``read``)."""
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            v = tokens.reshape(-1, tokens.shape[-1]).float()
            entries = self.entries.float()
            u = F.normalize(v, dim=-1)
            similarity = u @ F.normalize(entries, dim=-1).t()  # (N, M)
            assigned = F.one_hot(similarity.softmax(dim=1).argmax(dim=1), entries.shape[0]).to(v.dtype)
            if self.update_rule == "release":
                over_tokens = similarity.softmax(dim=0)
                weights = over_tokens / over_tokens.max(dim=0, keepdim=True).values
                gathered = (weights * assigned).t() @ u  # (M, d)
            else:
                weights = similarity.softmax(dim=1)
                gathered = (weights * assigned).t() @ v
            touched = assigned.sum(dim=0, keepdim=True).t() > 0  # (M, 1)
            updated = torch.where(touched, self.momentum * entries + (1 - self.momentum) * gathered, entries)
            if self.update_rule == "release":
                updated = F.normalize(updated, dim=-1)
        # A new tensor, not an in-place write: this step's read still needs the old entries for backward.
        self.entries = updated.to(self.entries.dtype)
