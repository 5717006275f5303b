"""DejaVu-SA: an attention block whose query/key projections a regeneration branch shares.

docs/method.md section 8. The block sits in a base network's decoder, on a
``B x C x h x w`` feature map, and attends over the ``h * w`` positions.

- Task branch (always runs): pre-norm multi-head self-attention with a
  residual, ``y = x + proj(softmax(q(n(x)) k(n(x))^T / sqrt(d)) v(n(x)))``,
  with ``n`` a LayerNorm over channels. No positional encoding is added:
  convolutional features carry position already.
- Regeneration branch (training only, when the features ``x_r`` of the
  redacted image are given): the *same attention map*, computed from the
  clean features with the shared ``q``/``k``, gathers values from the
  redacted features through its own value projection,
  ``a = softmax(q(n(x)) k(n(x))^T / sqrt(d)) regen_v(n_r(x_r))``, and a small
  conv decoder maps ``x_r + a`` to an image ``B x regen_channels x h x w``.
  To regenerate a removed position, its query must find the positions of the
  same structure whose redacted features still hold the appearance, so the
  regeneration loss trains the attention map the task branch uses. This is
  the conditioning of DejaVu (regenerate from the network's own
  understanding of the clean image) in attention form; the exact wiring is
  this project's choice, the paper gives no layer-level description.

In eval mode the regeneration branch never runs (its output is ``None`` even
if ``x_r`` is passed), so tracing or exporting the eval module contains none
of its operations; :meth:`SharedAttention.remove_regeneration` drops its
weights altogether. Unlike the rest of DejaVu, the block itself is inference
compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dejavu._validation import check_image

__all__ = ["SharedAttention", "SharedAttentionOutput"]


@dataclass
class SharedAttentionOutput:
    """What :class:`SharedAttention` returns.

    Attributes:
        features: ``B x C x h x w`` task features (same shape as the input).
        regenerated: ``B x regen_channels x h x w`` image from the regeneration
            branch (training mode with ``x_redacted`` only), else ``None``.
    """

    features: Tensor
    regenerated: Tensor | None = None


# Lets torch.export (and other pytree users) flatten the output.
torch.export.register_dataclass(SharedAttentionOutput)


def _check_inputs(x: Tensor, dim: int) -> Tensor:
    return check_image(x, "x", channels=dim)


def _check_redacted(x_redacted: Tensor, x: Tensor) -> Tensor:
    check_image(x_redacted, "x_redacted")
    if x_redacted.shape != x.shape:
        raise ValueError(
            f"x_redacted must have the shape of x {tuple(x.shape)}, got {tuple(x_redacted.shape)}"
        )
    return x_redacted


# Kept as leaves by torch.fx so that symbolic tracing does not run the checks on proxies.
torch.fx.wrap("_check_inputs")
torch.fx.wrap("_check_redacted")


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class SharedAttention(nn.Module):
    """Self-attention block whose q/k projections a training-only regeneration branch shares.

    Args:
        dim: channels ``C`` of the feature map.
        num_heads: attention heads; must divide ``dim`` and ``qk_dim``.
        regen_channels: channels of the regenerated image (3 for RGB).
        regen_hidden: width of the regeneration decoder.
        qk_dim: width of the query/key projections (default ``dim``).

    Attributes:
        regen_module_names: names of the training-only submodules
            (``regen_norm``, ``regen_v``, ``regen_head``).

    Example:
        >>> sa = SharedAttention(32, num_heads=4)
        >>> x, x_r = torch.randn(2, 32, 8, 12), torch.randn(2, 32, 8, 12)
        >>> out = sa(x, x_r)  # training mode: both branches
        >>> out.features.shape, out.regenerated.shape
        (torch.Size([2, 32, 8, 12]), torch.Size([2, 3, 8, 12]))
        >>> sa.eval()(x, x_r).regenerated is None
        True
    """

    regen_module_names: ClassVar[tuple[str, ...]] = ("regen_norm", "regen_v", "regen_head")
    task_module_names: ClassVar[tuple[str, ...]] = ("norm", "q", "k", "v", "proj")

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        regen_channels: int = 3,
        regen_hidden: int = 64,
        qk_dim: int | None = None,
    ) -> None:
        super().__init__()
        _positive_int(dim, "dim")
        _positive_int(num_heads, "num_heads")
        _positive_int(regen_channels, "regen_channels")
        _positive_int(regen_hidden, "regen_hidden")
        qk_dim = dim if qk_dim is None else _positive_int(qk_dim, "qk_dim")
        for value, name in ((dim, "dim"), (qk_dim, "qk_dim")):
            if value % num_heads:
                raise ValueError(
                    f"{name} must be divisible by num_heads={num_heads}, got {name}={value}"
                )
        self.dim = dim
        self.num_heads = num_heads
        self.qk_dim = qk_dim
        self.regen_channels = regen_channels

        # Task branch (kept at inference). q and k are the shared projections.
        self.norm = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, qk_dim)
        self.k = nn.Linear(dim, qk_dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

        # Regeneration branch (training only).
        self.regen_norm: nn.Module | None = nn.LayerNorm(dim)
        self.regen_v: nn.Module | None = nn.Linear(dim, dim)
        self.regen_head: nn.Module | None = nn.Sequential(
            nn.Conv2d(dim, regen_hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(regen_hidden, regen_hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(regen_hidden, regen_channels, 1),
        )

    # ------------------------------------------------------------------ parts

    @property
    def has_regeneration(self) -> bool:
        """Whether the regeneration branch is present (see :meth:`remove_regeneration`)."""
        return all(getattr(self, n) is not None for n in self.regen_module_names)

    def task_modules(self) -> dict[str, nn.Module]:
        """The submodules used at inference, by name."""
        return {n: getattr(self, n) for n in self.task_module_names}

    def regen_modules(self) -> dict[str, nn.Module]:
        """The training-only submodules, by name (empty once removed)."""
        mods = {n: getattr(self, n) for n in self.regen_module_names}
        return {n: m for n, m in mods.items() if m is not None}

    def inference_parameters(self) -> int:
        """Number of parameters used at inference (the task branch)."""
        return sum(p.numel() for m in self.task_modules().values() for p in m.parameters())

    def remove_regeneration(self) -> SharedAttention:
        """Drop the regeneration branch in place (for export); returns ``self``.

        Afterwards the state dict holds the task branch only, and a training
        forward with ``x_redacted`` raises.
        """
        for name in self.regen_module_names:
            setattr(self, name, None)
        return self

    # ---------------------------------------------------------------- forward

    def _split_heads(self, t: Tensor) -> Tensor:
        B, N, D = t.shape
        return t.reshape(B, N, self.num_heads, D // self.num_heads).transpose(1, 2)

    @staticmethod
    def _merge_heads(t: Tensor) -> Tensor:
        B, heads, N, d = t.shape
        return t.transpose(1, 2).reshape(B, N, heads * d)

    def forward(self, x: Tensor, x_redacted: Tensor | None = None) -> SharedAttentionOutput:
        """Run the task branch and, in training mode with ``x_redacted``, the regeneration branch.

        Args:
            x: ``B x C x h x w`` features of the image.
            x_redacted: ``B x C x h x w`` features of the redacted image at the
                same layer (training only; ignored in eval mode).

        Returns:
            :class:`SharedAttentionOutput` with ``features`` (``B x C x h x w``)
            and ``regenerated`` (``B x regen_channels x h x w`` or ``None``).

        Raises:
            ValueError: if ``x`` is not ``B x dim x h x w`` or ``x_redacted``
                (when used) has another shape.
        """
        x = _check_inputs(x, self.dim)
        B, C, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # B x N x C
        t = self.norm(tokens)
        q = self._split_heads(self.q(t))
        k = self._split_heads(self.k(t))
        v = self._split_heads(self.v(t))
        attended = self._merge_heads(F.scaled_dot_product_attention(q, k, v))
        features = (tokens + self.proj(attended)).transpose(1, 2).reshape(B, C, h, w)

        regenerated = None
        # A Python-level branch: tracing/exporting in eval mode never sees the regeneration ops.
        if self.training and x_redacted is not None:
            regenerated = self._regenerate(q, k, _check_redacted(x_redacted, x))
        return SharedAttentionOutput(features=features, regenerated=regenerated)

    def _regenerate(self, q: Tensor, k: Tensor, x_redacted: Tensor) -> Tensor:
        if not self.has_regeneration:
            raise RuntimeError(
                "the regeneration branch was removed (remove_regeneration()); "
                "call the module without x_redacted or in eval mode"
            )
        assert self.regen_v is not None and self.regen_norm is not None
        assert self.regen_head is not None
        B, C, h, w = x_redacted.shape
        tokens_r = x_redacted.flatten(2).transpose(1, 2)
        v_r = self._split_heads(self.regen_v(self.regen_norm(tokens_r)))
        # Same q and k (from the clean features): the shared attention map.
        gathered = self._merge_heads(F.scaled_dot_product_attention(q, k, v_r))
        feats = (tokens_r + gathered).transpose(1, 2).reshape(B, C, h, w)
        return self.regen_head(feats)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, qk_dim={self.qk_dim}, "
            f"regen_channels={self.regen_channels}, regeneration={self.has_regeneration}"
        )
