"""Class groups for the recursive CRM: which classes are regenerated together.

CRM-R regenerates one group of classes per step. With many classes (150 in
ADE20K) one step per class would be too slow, so classes are split into at
most ``num_groups`` contiguous groups and a group's soft mask is the sum of
its classes' probabilities.

Example:
    >>> class_groups(5, 2)
    [[0, 1, 2], [3, 4]]
    >>> probs = torch.softmax(torch.randn(1, 5, 4, 4), dim=1)
    >>> group_masks(probs, class_groups(5, 2)).sum(1).allclose(torch.ones(1, 4, 4))
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dejavu._validation import check_image

__all__ = ["GroupMasks", "class_groups", "group_masks"]


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def class_groups(num_classes: int, num_groups: int) -> list[list[int]]:
    """Split ``range(num_classes)`` into contiguous groups whose sizes differ by at most one.

    ``num_groups`` is clipped to ``num_classes`` (no empty group); the first
    ``num_classes % num_groups`` groups hold one class more.

    Args:
        num_classes: number of classes ``K`` (>= 1).
        num_groups: requested number of groups (>= 1).

    Returns:
        ``min(num_groups, num_classes)`` lists of class indices, in order.

    Example:
        >>> class_groups(7, 3)
        [[0, 1, 2], [3, 4], [5, 6]]
        >>> class_groups(2, 5)
        [[0], [1]]
    """
    k = _check_positive_int(num_classes, "num_classes")
    g = min(_check_positive_int(num_groups, "num_groups"), k)
    size, extra = divmod(k, g)
    groups: list[list[int]] = []
    start = 0
    for i in range(g):
        n = size + (1 if i < extra else 0)
        groups.append(list(range(start, start + n)))
        start += n
    return groups


def _assignment(groups: Sequence[Sequence[int]], num_classes: int, like: Tensor) -> Tensor:
    if not isinstance(groups, Sequence) or len(groups) == 0:
        raise ValueError(f"groups must be a non-empty list of class-index lists, got {groups!r}")
    a = torch.zeros(len(groups), num_classes, dtype=like.dtype, device=like.device)
    for gi, group in enumerate(groups):
        if not isinstance(group, Sequence) or len(group) == 0:
            raise ValueError(
                f"groups[{gi}] must be a non-empty list of class indices, got {group!r}"
            )
        for c in group:
            if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < num_classes:
                raise ValueError(
                    f"groups[{gi}] holds class index {c!r}; allowed: ints in [0, {num_classes})"
                )
            a[gi, c] = 1
    return a


def group_masks(probs: Tensor, groups: Sequence[Sequence[int]]) -> Tensor:
    """Soft mask of each group: the sum of its classes' probabilities.

    Args:
        probs: ``B x K x H x W`` class probabilities.
        groups: ``G`` lists of class indices in ``[0, K)`` (e.g. from :func:`class_groups`).

    Returns:
        ``B x G x H x W`` masks (differentiable w.r.t. ``probs``).

    Example:
        >>> p = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 4, 1, 1)
        >>> group_masks(p, [[0, 1], [2, 3]]).flatten()
        tensor([0.3000, 0.7000])
    """
    check_image(probs, "probs")
    a = _assignment(groups, probs.shape[1], probs)
    return torch.einsum("gk,bkhw->bghw", a, probs)


class GroupMasks(nn.Module):
    """Module form of :func:`group_masks` for fixed groups.

    Example:
        >>> GroupMasks(class_groups(6, 2))(torch.rand(2, 6, 4, 4)).shape
        torch.Size([2, 2, 4, 4])
    """

    def __init__(self, groups: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.groups = [list(g) for g in groups]

    def forward(self, probs: Tensor) -> Tensor:
        return group_masks(probs, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
