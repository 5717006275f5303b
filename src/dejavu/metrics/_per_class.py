"""A torchmetrics ``Metric`` whose per-class outputs keep their class dimension."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torchmetrics import Metric

__all__ = ["PerClassMetric"]


class PerClassMetric(Metric):
    """Base class: every ``*_per_class`` entry of ``compute()`` stays 1-D.

    torchmetrics squeezes each one-element tensor that ``compute`` returns, so
    with a single class the per-class vectors would come back 0-d, unlike the
    functional forms (``segmentation_scores``, ``panoptic_scores``) and their
    documented shape ``K``.
    """

    def _wrap_compute(self, compute: Callable) -> Callable:
        wrapped = super()._wrap_compute(compute)

        @functools.wraps(compute)
        def keep_class_dim(*args: Any, **kwargs: Any) -> Any:
            out = wrapped(*args, **kwargs)
            return {k: v.reshape(-1) if k.endswith("_per_class") else v for k, v in out.items()}

        return keep_class_dim
