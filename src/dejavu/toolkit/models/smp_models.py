"""segmentation_models_pytorch models as base networks (``smp_<arch>_<encoder>``).

``smp.create_model(arch, encoder_name=encoder, encoder_weights=None,
classes=sum(heads.values()))`` builds the model offline; its output (at the
input resolution) is split along the channels into one output per head (the
heads share encoder and decoder; smp's final conv is in effect per task).
Inputs are zero-padded to a multiple of the encoder's output stride (32),
which most smp decoders require, and the outputs cropped back.

``segmentation_models_pytorch`` is an optional dependency
(``pip install dejavu-dense[smp]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from dejavu._validation import check_choice
from dejavu.toolkit.models.base import DenseNet
from dejavu.toolkit.models.factory import register_model_family
from dejavu.toolkit.models.heads import split_channels

__all__ = ["SMPModel", "smp_architectures", "smp_encoders"]


def _smp() -> Any:
    try:
        import segmentation_models_pytorch as smp
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "smp_* models need the optional dependency segmentation_models_pytorch: "
            "pip install 'dejavu-dense[smp]'"
        ) from err
    return smp


def smp_architectures() -> list[str]:
    """smp's architecture names (``"unet"``, ``"fpn"``, ``"deeplabv3plus"``, ...)."""
    return list(_smp().MODEL_ARCHITECTURES_MAPPING)


def smp_encoders() -> list[str]:
    """smp's own encoder names; any timm model also works as ``"tu-<timm name>"``."""
    return list(_smp().encoders.get_encoder_names())


class SMPModel(DenseNet):
    """An smp model with one output per head.

    Args:
        heads: head name -> output channels.
        arch: an smp architecture (see :func:`smp_architectures`).
        encoder: an smp encoder (see :func:`smp_encoders`) or ``"tu-<timm name>"``.
        depth_activation: ``"softplus"`` or ``"exp"``.
        **kwargs: passed to ``smp.create_model`` (e.g. ``decoder_channels``).

    Shape:
        - Input: ``B x 3 x H x W``, any ``H x W``.
        - Output: dict head name -> ``B x heads[name] x H x W``.

    Example:
        >>> net = SMPModel({"seg": 19}, "unet", "resnet18").eval()
        >>> net(torch.zeros(1, 3, 45, 61))["seg"].shape
        torch.Size([1, 19, 45, 61])
    """

    def __init__(
        self,
        heads: Mapping[str, int],
        arch: str = "unet",
        encoder: str = "resnet18",
        depth_activation: str = "softplus",
        **kwargs: Any,
    ) -> None:
        super().__init__(heads, depth_activation)
        smp = _smp()
        check_choice(arch, "arch", smp_architectures())
        if encoder.startswith("tu-"):
            import timm

            if not timm.is_model(encoder[3:].split(".")[0]):
                raise ValueError(f"encoder {encoder!r}: {encoder[3:]!r} is not a timm model name")
        else:
            check_choice(encoder, "encoder", [*smp_encoders(), "tu-<timm model name>"])
        self.arch = arch
        self.encoder_name = encoder
        self.model = smp.create_model(
            arch,
            encoder_name=encoder,
            encoder_weights=None,
            classes=sum(self.heads.values()),
            **kwargs,
        )
        self.pad_multiple = int(getattr(self.model.encoder, "output_stride", 32))

    def get_backbone(self) -> nn.Module:
        return self.model.encoder

    def pretrained_targets(self) -> list[tuple[str, nn.Module]]:
        return [
            ("whole network", self),
            (f"smp {self.arch}", self.model),
            ("backbone (encoder)", self.model.encoder),
        ]

    def forward_heads(self, image: Tensor) -> dict[str, Tensor]:
        return split_channels(self.model(image), self.heads)


# ----------------------------------------------------------------------- registry
def _check_name(suffix: str) -> str | None:
    arch, sep, encoder = suffix.partition("_")
    if not arch or not sep or not encoder:
        return "smp names are smp_<arch>_<encoder>, e.g. smp_unet_resnet18"
    return None


@register_model_family(
    "smp_",
    pattern="smp_<arch>_<encoder>",
    check=_check_name,
    examples=("smp_unet_resnet18", "smp_fpn_resnet34", "smp_deeplabv3plus_resnet50"),
)
def smp(suffix: str, heads: Mapping[str, int], **kwargs: Any) -> SMPModel:
    """``smp_<arch>_<encoder>``: a segmentation_models_pytorch network."""
    arch, _, encoder = suffix.partition("_")
    return SMPModel(heads, arch, encoder, **kwargs)
