"""A task with a new head: edge maps (1-channel logits, binary cross-entropy)."""

import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics

from dejavu.toolkit.tasks import HeadSpec, TargetSpec, TaskSpec, register_head, register_task


class EdgeAccuracy(torchmetrics.Metric):
    """Pixel accuracy of sigmoid(logits) > 0.5 against the edge map (DDP-synced sums)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.correct += ((pred > 0) == (target > 0.5)).sum()
        self.total += target.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        return {"accuracy": self.correct / self.total.clamp(min=1)}


def _colorize(value, num_classes, value_range) -> np.ndarray:
    grey = torch.as_tensor(value).float().squeeze(0).sigmoid().mul(255).byte().numpy()
    return np.repeat(grey[..., None], 3, axis=2)


register_head(
    HeadSpec(
        key="edges",  # prediction and batch key
        target=TargetSpec("edges", channels=1, dtype=torch.float32, fill=0.0),
        channels=1,
        activations={"logits": lambda x: x},
        loss=lambda pred, target, ignore_index: F.binary_cross_entropy_with_logits(pred, target),
        metric=lambda num_classes, ignore_index: EdgeAccuracy(),
        metric_names=("accuracy",),
        higher_is_better={"accuracy": True},
        conditioning="boundary",  # the CRM sees sigmoid(logits)
        colorize=_colorize,
        monitor=("accuracy", "max"),  # picks best.ckpt
    )
)
register_task(TaskSpec("edges", heads=("edges",), default_redaction="stripes"))
