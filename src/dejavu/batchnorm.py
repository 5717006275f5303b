"""BatchNorm running statistics that only clean images shape.

DejaVu runs its base network on images that are not data: the redacted image
(DejaVu-SA's regeneration branch) and the regenerated image (DejaVu-CL). In
training mode each such pass would move every BatchNorm layer's running mean
and variance towards the statistics of those images, and inference, which
normalises with the running statistics, would then see clean images through
statistics of blurry, half-erased ones. :func:`frozen_bn_stats` lets those passes
normalise with their own batch statistics (and pass gradients, as in any training
step) while the running statistics stay those of clean images.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn

__all__ = ["frozen_bn_stats"]


@contextmanager
def frozen_bn_stats(module: nn.Module) -> Iterator[None]:
    """Within the block, BatchNorm layers of ``module`` do not update their running stats.

    In training mode they still normalise with the batch statistics (and pass
    gradients); only the running mean/var (and ``num_batches_tracked``) are kept.
    Layers without running statistics (``track_running_stats=False``) and other
    normalisations (GroupNorm, LayerNorm) are unaffected either way.

    Example:
        >>> import torch
        >>> bn = nn.BatchNorm2d(3).train()
        >>> with frozen_bn_stats(bn):
        ...     _ = bn(torch.randn(4, 3, 2, 2) + 5)
        >>> bn.running_mean.abs().max().item(), int(bn.num_batches_tracked)
        (0.0, 0)
    """
    saved: list[tuple[nn.modules.batchnorm._BatchNorm, float | None, Tensor | None]] = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            tracked = None if m.num_batches_tracked is None else m.num_batches_tracked.clone()
            saved.append((m, m.momentum, tracked))
            # momentum 0: running = 1 * running + 0 * batch (also when momentum is None,
            # the cumulative average, which would otherwise use 1 / num_batches_tracked)
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None and m.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(tracked)
