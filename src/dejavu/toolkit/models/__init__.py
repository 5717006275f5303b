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
    resize_outputs,
)
from dejavu.toolkit.models.denseclip import DenseCLIP
from dejavu.toolkit.models.factory import (
    ModelFamily,
    check_model_name,
    create_model,
    family_patterns,
    heads_for_task,
    list_models,
    register_model,
    register_model_family,
)
from dejavu.toolkit.models.heads import ConvHead, TaskHeads, split_channels
from dejavu.toolkit.models.hms import HierarchicalMultiScale
from dejavu.toolkit.models.hrnet import HRNet
from dejavu.toolkit.models.mask2former import Mask2Former
from dejavu.toolkit.models.multitask import build_multitask
from dejavu.toolkit.models.ocr import OCRHRNet
from dejavu.toolkit.models.pretrained import PretrainedReport, load_pretrained, read_state_dict
from dejavu.toolkit.models.segformer import SegFormer
from dejavu.toolkit.models.shared_attention_net import SharedAttentionHRNet
from dejavu.toolkit.models.smp_models import SMPModel
from dejavu.toolkit.models.timm_fpn import TimmFPN
from dejavu.toolkit.models.torchvision_models import TorchvisionSegmentation

__all__ = [
    "ConvHead",
    "DenseCLIP",
    "DenseNet",
    "HRNet",
    "HierarchicalMultiScale",
    "Mask2Former",
    "ModelFamily",
    "OCRHRNet",
    "PretrainedReport",
    "SMPModel",
    "SegFormer",
    "SharedAttentionHRNet",
    "TaskHeads",
    "TimmFPN",
    "TorchvisionSegmentation",
    "activate_outputs",
    "build_multitask",
    "check_heads",
    "check_model_name",
    "create_model",
    "decode_outputs",
    "family_patterns",
    "heads_for_task",
    "list_models",
    "load_pretrained",
    "pad_to_multiple",
    "read_state_dict",
    "register_model",
    "register_model_family",
    "resize_outputs",
    "split_channels",
]
