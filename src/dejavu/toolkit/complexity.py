"""The cost of a network: parameters and multiply-accumulates of one forward pass."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["model_complexity"]


def model_complexity(
    model: nn.Module, input_size: Sequence[int] = (1, 3, 512, 512)
) -> dict[str, float | int]:
    """Parameters and multiply-accumulates of one forward pass (eval mode, no grad).

    ``input_size`` is ``(B, C, H, W)``, or ``(H, W)`` for one RGB image.

    MACs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2;
    it counts matmuls and convolutions, not element-wise ops).

    Returns:
        ``{"params": int, "gmacs": float}``.

    Example:
        >>> model_complexity(nn.Conv2d(3, 8, 1, bias=False), (1, 3, 10, 10))
        {'params': 24, 'gmacs': 2.4e-06}
    """
    from torch.utils.flop_counter import FlopCounterMode

    if len(input_size) == 2:  # (H, W): one RGB image
        input_size = (1, 3, *input_size)
    if len(input_size) != 4 or min(int(v) for v in input_size) < 1:
        raise ValueError(f"input_size must be (B, C, H, W) or (H, W), got {tuple(input_size)}")
    params = sum(p.numel() for p in model.parameters())
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(tuple(input_size), device=device, dtype=dtype))
    finally:
        model.train(was_training)
    return {"params": int(params), "gmacs": counter.get_total_flops() / 2 / 1e9}
