"""Conditional regeneration modules (CRMs): regenerate the image from ``I_r`` and ``phi(C)``.

- :class:`ForwardCRM` (CRM-F): ``I_hat = g([I_r, phi(C), keep])``.
- :class:`RecursiveCRM` (CRM-R): group-by-group (or T-step) regeneration with one shared ``g``.
- :class:`ZeroCRM` (CRM-0): parameter-free; redacted pixels get the class colours of the
  visible pixels, weighted by the predicted class probabilities.
- :class:`SpadeCRM` (``"spade"``): a bottlenecked image encoder and a decoder whose
  every level is modulated by ``phi(C)`` through :class:`SPADE` (ours).
- :class:`UNet`: the small U-Net both use.
- :func:`class_groups`, :func:`group_masks`: the class grouping of CRM-R.

Every CRM runs at ``scale`` times the input resolution and return a tensor at
that working resolution; ``crm.resize_to_working(image)`` gives the matching
regeneration target.

Example:
    >>> crm = create_crm("forward", cond_channels=5, width=8, depth=2)
    >>> image = torch.randn(2, 3, 16, 24)
    >>> crm(image, torch.rand(2, 5, 16, 24)).shape == crm.resize_to_working(image).shape
    True
"""

from __future__ import annotations

from dejavu.crm.base import CRMBase
from dejavu.crm.factory import check_crm_options, create_crm, crm_class, list_crms, register_crm
from dejavu.crm.forward import ForwardCRM
from dejavu.crm.groups import GroupMasks, class_groups, group_masks
from dejavu.crm.recursive import RecursiveCRM
from dejavu.crm.spade import SPADE, SpadeCRM
from dejavu.crm.unet import NORMS, UNet
from dejavu.crm.zero import ZeroCRM, class_colour_fill

__all__ = [
    "NORMS",
    "SPADE",
    "CRMBase",
    "ForwardCRM",
    "GroupMasks",
    "RecursiveCRM",
    "SpadeCRM",
    "UNet",
    "ZeroCRM",
    "check_crm_options",
    "class_colour_fill",
    "class_groups",
    "create_crm",
    "crm_class",
    "group_masks",
    "list_crms",
    "register_crm",
]
