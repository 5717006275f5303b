"""Base networks for dense prediction and the ``create_model`` factory.

Every network maps ``image (B x 3 x H x W) -> dict[str, Tensor]`` at the input
resolution (``"seg"`` logits, ``"depth"`` positive metres, ``"normals"`` unit
vectors; see :mod:`dejavu.toolkit.models.base`) and exposes ``.heads``.

Example:
    >>> from dejavu.toolkit.models import create_model
    >>> net = create_model("mtl_hrnet18", num_classes=40).eval()
    >>> sorted(net(torch.zeros(1, 3, 45, 61)))
    ['depth', 'normals', 'seg']
"""

from __future__ import annotations

from dejavu.toolkit.models.base import (
    DenseNet,
    activate_outputs,
    check_heads,
    decode_outputs,
    pad_to_multiple,
)
from dejavu.toolkit.models.factory import TASKS, create_model, heads_for_task, list_models
from dejavu.toolkit.models.heads import ConvHead, TaskHeads, split_channels
from dejavu.toolkit.models.hrnet import HRNet
from dejavu.toolkit.models.pretrained import PretrainedReport, load_pretrained, read_state_dict

__all__ = [
    "TASKS",
    "ConvHead",
    "DenseNet",
    "HRNet",
    "PretrainedReport",
    "TaskHeads",
    "activate_outputs",
    "check_heads",
    "create_model",
    "decode_outputs",
    "heads_for_task",
    "list_models",
    "load_pretrained",
    "pad_to_multiple",
    "read_state_dict",
    "split_channels",
]
