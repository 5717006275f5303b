"""Evaluation metrics for dense prediction (core: plain torch + torchmetrics).

Each metric is a function over one batch plus a :class:`torchmetrics.Metric`
that accumulates dataset-level statistics (sum-reduced, so ``compute()`` is
DDP-synced). All of them but one pool over the whole dataset rather than
averaging per image: segmentation and panoptic through one confusion matrix /
one set of TP/FP/FN counts, depth and normals over all valid pixels. The
exception is :class:`KittiDepthMetrics`, the KITTI (Eigen split) protocol,
which averages per-image scores as the KITTI literature does. Scores are
fractions 0..1 (errors in metres or degrees).
"""

from __future__ import annotations

from dejavu.metrics.depth import DEPTH_METRIC_NAMES, DepthMetrics, depth_errors
from dejavu.metrics.kitti import (
    KITTI_CROPS,
    KITTI_METRIC_NAMES,
    KittiDepthMetrics,
    kitti_crop_mask,
    kitti_depth_errors,
)
from dejavu.metrics.multitask import HIGHER_IS_BETTER, multitask_delta
from dejavu.metrics.normals import (
    NORMALS_METRIC_NAMES,
    NormalsMetrics,
    normal_angles,
    normal_errors,
)
from dejavu.metrics.panoptic import (
    PanopticQuality,
    PanopticStats,
    panoptic_from_labels,
    panoptic_from_segments,
    panoptic_quality,
    panoptic_scores,
    panoptic_stats,
)
from dejavu.metrics.segmentation import (
    SegmentationMetrics,
    confusion_matrix,
    segmentation_scores,
)

__all__ = [
    "DEPTH_METRIC_NAMES",
    "HIGHER_IS_BETTER",
    "KITTI_CROPS",
    "KITTI_METRIC_NAMES",
    "NORMALS_METRIC_NAMES",
    "DepthMetrics",
    "KittiDepthMetrics",
    "NormalsMetrics",
    "PanopticQuality",
    "PanopticStats",
    "SegmentationMetrics",
    "confusion_matrix",
    "depth_errors",
    "kitti_crop_mask",
    "kitti_depth_errors",
    "multitask_delta",
    "normal_angles",
    "normal_errors",
    "panoptic_from_labels",
    "panoptic_from_segments",
    "panoptic_quality",
    "panoptic_scores",
    "panoptic_stats",
    "segmentation_scores",
]
