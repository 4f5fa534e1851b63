"""What a precision can promise against fp32 after the same training steps, on any CPU.

A row's logits in precision p after N steps, against fp32's after the same N steps, split in two
(L_p: the model evaluated in p, L: in fp32; theta_0 the initial weights, theta_p / theta_32 the
weights after p's / fp32's steps):

    L_p(theta_p) - L(theta_32) =  [L_p(theta_p) - L(theta_p)]   forward: p's rounding, same weights
                                + [L(theta_p) - L(theta_32)]    trajectory: where p's steps led

**Forward** (cosine units, |diff| / logit scale). The logits are computed in float32 under
autocast (``precision.float32_under_autocast``); what is left is the towers' rounding. Their last
matmul rounds each feature to p's unit roundoff u (2^-8 bf16, 2^-11 fp16), which moves the cosine
of two unit vectors by at most 2u; ``FORWARD_UNITS`` allows as much again for the blocks before
(measured on the quick check's tiny CLIP: at most 1.1u, any trainer, seeds 0-5, with and without
native bf16; 0.4u on a random ViT-B/16). This is continuous in the weights, so it does not depend on the CPU beyond float32
summation order.

**Trajectory** (relative to how far fp32's steps moved the logits, max |L(theta_32) - L(theta_0)|).
The gradients of p's steps are p's roundings of fp32's; where a loss is not smooth (L1 signs,
top-k token choice) or sums cancel, a rounding can flip a component, so this part is chaotic and
is what differs between CPUs (oneDNN's native bf16 kernels or their emulation: 7 % vs 14 % of the
logits' spread for one seed of PromptSRC). What holds on any CPU is that p's steps go where fp32's
go: ``TRAJECTORY_RATIO`` (the difference at most half of fp32's own movement; measured at most 0.19,
every trainer, seeds 0-5, native and emulated bf16: ``benchmarks/results/precision-bounds-*.md``). A
broken step (no gradient, a wrong sign, garbage) gives 1 or more.

Rows that ran in fp32 (fp16 and amp fall back on the CPU) must equal fp32 exactly.
"""
from typing import Optional

import torch

#: unit roundoff of each PREC's low-precision format (half the distance from 1 to the next number)
UNIT_ROUNDOFF = {"fp32": 2.0 ** -24, "fp16": 2.0 ** -11, "amp": 2.0 ** -11, "bf16": 2.0 ** -8}
#: forward bound in units of u: 2u for the towers' last rounding, as much again for the blocks before
FORWARD_UNITS = 4.0
#: trajectory bound: the largest fraction of fp32's own movement that p's steps may differ by
TRAJECTORY_RATIO = 0.5


def max_cosine(diff: torch.Tensor, scale: float) -> float:
    return float(diff.abs().max()) / scale if diff.numel() else 0.0


def split(prec_ran: str, scale: float, logits: torch.Tensor, same_weights_fp32: torch.Tensor,
          fp32_trained: torch.Tensor, fp32_untrained: Optional[torch.Tensor]) -> dict:
    """The two parts of a row's difference from fp32 and whether each is within its bound.

    Args:
        prec_ran: the precision that ran (``fp32`` for the CPU's fp16/amp fallbacks).
        scale: exp(logit_scale), the unit of a cosine in the logits.
        logits: (N, C) the row's evaluation, L_p(theta_p).
        same_weights_fp32: (N, C) the row's trained weights evaluated in fp32, L(theta_p).
        fp32_trained: (N, C) fp32's row, L(theta_32).
        fp32_untrained: (N, C) the fp32 model before any step, L(theta_0); None when nothing trains.
    """
    forward = max_cosine(logits - same_weights_fp32, scale)
    trajectory = max_cosine(same_weights_fp32 - fp32_trained, scale)
    movement = 0.0 if fp32_untrained is None else max_cosine(fp32_trained - fp32_untrained, scale)
    u = UNIT_ROUNDOFF[prec_ran]
    exact = prec_ran == "fp32"  # a fallback: nothing may differ
    forward_units, ratio = (0.0, 0.0) if exact else (FORWARD_UNITS, TRAJECTORY_RATIO)
    return dict(
        unit_roundoff=u, forward_cosine=forward, forward_units=forward / u, forward_bound_units=forward_units,
        trajectory_cosine=trajectory, fp32_movement_cosine=movement, trajectory_bound_ratio=ratio,
        trajectory_ratio=trajectory / movement if movement else (0.0 if trajectory == 0 else float("inf")),
        within_bounds=forward <= forward_units * u and trajectory <= ratio * movement,
    )
