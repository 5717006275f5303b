"""Joint transforms: apply one random draw to the image and every dense target.

A sample is a dict (see :mod:`dejavu.toolkit.data`) with an ``image``
(``3 x H x W`` float) and any of ``seg`` (``H x W`` int64, 255 = ignore),
``instance`` (``H x W`` int64, 0 = none), ``depth`` (``1 x H x W`` metres,
0 = invalid) and ``normals`` (``3 x H x W`` unit vectors, all-zero =
invalid). Other keys whose values are not tensors (``name``) pass through.

Each geometric operation draws its parameters once and applies them to every
key with the key's own rule, which the target's spec gives
(:class:`~dejavu.toolkit.tasks.heads.TargetSpec`: its resampling, padding value
and mirrored channel):

======== ================================= =============================
key      resampling                        padding value
======== ================================= =============================
image    bilinear (antialiased)            ``image_fill`` (0 by default)
seg      nearest                           255 (ignore)
instance nearest                           0 (none)
depth    nearest                           0 (invalid)
normals  nearest                           0 (invalid)
======== ================================= =============================

Depth and normals are resampled with nearest neighbour so that no value is
invented across an object boundary (bilinear depth would put points in
mid-air between a chair and the wall behind it); nearest also keeps normals
unit length, so no renormalisation is needed. Depth values stay in metres
under scaling (the usual simplification: scaling is treated as a change of
image resolution, not of viewing distance).

The resampling itself is torchvision's ``transforms.v2.functional`` (resize
with ``NEAREST_EXACT`` for targets, which is aligned with bilinear image
resampling, unlike the legacy ``NEAREST``). What v2 cannot do is the normal
flip: mirroring an image mirrors the scene, so the normals' x component
(camera x axis, pointing right in the image) changes sign;
:func:`hflip_sample` does that.

Pipelines normalise inside the transform: a dataset hands its transform an
image in ``[0, 1]`` and the transform returns the normalised sample
(:func:`default_train_transform` and :func:`default_eval_transform` end with
or include :class:`Normalize`). Padding placed after :class:`Normalize` with
``image_fill=0`` pads with the dataset mean.

Randomness: every random transform takes an optional ``torch.Generator``.
``None`` uses torch's global RNG, which a ``DataLoader`` seeds differently
in each worker; a generator object passed here is copied into each worker
with the same state, so workers would repeat each other's draws. Pass a
generator for single-process reproducibility only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from dejavu._validation import as_range, check_in_range
from dejavu.toolkit.data.io import IMAGENET_MEAN, IMAGENET_STD
from dejavu.toolkit.tasks.heads import list_targets, target_spec

__all__ = [
    "ColorJitter",
    "Compose",
    "Normalize",
    "PadToMultiple",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomScale",
    "Resize",
    "Sample",
    "crop_sample",
    "default_eval_transform",
    "default_train_transform",
    "hflip_sample",
    "normalize_sample",
    "pad_sample",
    "resize_sample",
    "sample_size",
]

Sample = dict[str, Any]

_TARGET_MODES = {"nearest": InterpolationMode.NEAREST_EXACT, "bilinear": InterpolationMode.BILINEAR}


def _spatial_items(sample: Sample) -> list[tuple[str, Tensor]]:
    items = []
    for key, value in sample.items():
        if not isinstance(value, Tensor):
            continue
        if key != "image" and key not in list_targets():
            # A tensor this module does not know how to resample would silently
            # fall out of alignment with the image; refuse instead.
            raise ValueError(
                f"sample key {key!r} holds a tensor but joint transforms only know "
                f"{sorted(['image', *list_targets()])}"
            )
        ndim = 3 if key == "image" else target_spec(key).ndim
        if value.ndim != ndim:
            raise ValueError(f"sample[{key!r}] must be {ndim}-D, got shape {tuple(value.shape)}")
        items.append((key, value))
    if not items:
        raise ValueError("sample has no image or dense target tensors")
    return items


def sample_size(sample: Sample) -> tuple[int, int]:
    """Return the common ``(H, W)`` of the sample's tensors.

    Raises:
        ValueError: if the tensors disagree on their size, naming every size.

    Example:
        >>> sample_size({"image": torch.zeros(3, 4, 5), "seg": torch.zeros(4, 5)})
        (4, 5)
    """
    sizes = {k: tuple(v.shape[-2:]) for k, v in _spatial_items(sample)}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"sample tensors differ in size (H, W): {sizes}")
    h, w = next(iter(sizes.values()))
    return int(h), int(w)


def _map(sample: Sample, fn: Callable[[str, Tensor], Tensor]) -> Sample:
    sample_size(sample)
    out = dict(sample)
    for key, value in _spatial_items(sample):
        x = value.unsqueeze(0) if value.ndim == 2 else value
        y = fn(key, x)
        out[key] = y.squeeze(0) if value.ndim == 2 else y
    return out


def resize_sample(sample: Sample, size: tuple[int, int]) -> Sample:
    """Resize every tensor of a sample to ``size = (H, W)``.

    The image is resampled bilinearly with antialiasing, every target as its
    spec says (nearest neighbour for all built-in targets: no new label
    values, no depth across edges).

    Example:
        >>> s = {"image": torch.rand(3, 4, 6), "seg": torch.randint(0, 3, (4, 6))}
        >>> resize_sample(s, (8, 12))["seg"].shape
        torch.Size([8, 12])
    """
    h, w = (int(size[0]), int(size[1]))
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive (H, W), got {size!r}")

    def fn(key: str, x: Tensor) -> Tensor:
        if key == "image":
            return F.resize(x, [h, w], interpolation=InterpolationMode.BILINEAR, antialias=True)
        return F.resize(x, [h, w], interpolation=_TARGET_MODES[target_spec(key).resample])

    return _map(sample, fn)


def crop_sample(sample: Sample, top: int, left: int, height: int, width: int) -> Sample:
    """Crop the window ``[top:top+height, left:left+width]`` from every tensor.

    Example:
        >>> s = {"image": torch.rand(3, 4, 6), "depth": torch.rand(1, 4, 6)}
        >>> crop_sample(s, 1, 2, 2, 3)["depth"].shape
        torch.Size([1, 2, 3])
    """
    h, w = sample_size(sample)
    if top < 0 or left < 0 or top + height > h or left + width > w:
        raise ValueError(
            f"crop window (top={top}, left={left}, height={height}, width={width}) "
            f"does not fit in the sample of size {h}x{w}"
        )
    return _map(sample, lambda _k, x: F.crop(x, top, left, height, width))


def pad_sample(
    sample: Sample, padding: Sequence[int], image_fill: float | Sequence[float] = 0.0
) -> Sample:
    """Pad every tensor by ``padding = (left, top, right, bottom)`` pixels.

    The image is padded with ``image_fill`` (a number or one value per
    channel), ``seg`` with 255, ``instance``, ``depth`` and ``normals`` with 0.

    Example:
        >>> s = {"image": torch.ones(3, 2, 2), "seg": torch.zeros(2, 2, dtype=torch.long)}
        >>> pad_sample(s, (0, 0, 1, 1))["seg"][-1, -1].item()
        255
    """
    pad = [int(p) for p in padding]
    if len(pad) != 4 or min(pad) < 0:
        raise ValueError(
            f"padding must be 4 non-negative ints (left, top, right, bottom), got {padding!r}"
        )

    def fn(key: str, x: Tensor) -> Tensor:
        if key == "image" and isinstance(image_fill, Sequence):
            fill = torch.as_tensor(list(image_fill), dtype=x.dtype).view(-1, 1, 1)
            if fill.shape[0] != x.shape[0]:
                raise ValueError(
                    f"image_fill has {fill.shape[0]} values but the image has {x.shape[0]} channels"
                )
            y = F.pad(x, pad, fill=0.0)
            mask = F.pad(torch.zeros_like(x[:1], dtype=torch.bool), pad, fill=1)
            return torch.where(mask, fill, y)
        fill_value = float(image_fill) if key == "image" else target_spec(key).fill_value()  # type: ignore[arg-type]
        return F.pad(x, pad, fill=fill_value)

    return _map(sample, fn)


def hflip_sample(sample: Sample) -> Sample:
    """Mirror every tensor left-right; negate the x component of the normals (any
    target whose spec names a ``flip_x_channel``).

    Example:
        >>> n = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 2, 2)
        >>> hflip_sample({"normals": n})["normals"][0, 0, 0].item()
        -1.0
    """

    def fn(key: str, x: Tensor) -> Tensor:
        y = F.horizontal_flip(x)
        channel = None if key == "image" else target_spec(key).flip_x_channel
        if channel is not None:
            y = y.clone()
            y[channel] = -y[channel]
        return y

    return _map(sample, fn)


def normalize_sample(sample: Sample, mean: Sequence[float], std: Sequence[float]) -> Sample:
    """Return a copy of the sample with ``image = (image - mean) / std`` per channel.

    Example:
        >>> s = normalize_sample({"image": torch.full((3, 1, 1), 0.5)}, [0.5] * 3, [0.25] * 3)
        >>> s["image"].flatten().tolist()
        [0.0, 0.0, 0.0]
    """
    image = sample.get("image")
    if not isinstance(image, Tensor) or image.ndim != 3 or not image.is_floating_point():
        raise ValueError("sample['image'] must be a float tensor of shape 3 x H x W")
    if len(mean) != image.shape[0] or len(std) != image.shape[0]:
        raise ValueError(
            f"mean and std need {image.shape[0]} values, got mean={list(mean)}, std={list(std)}"
        )
    if min(std) <= 0:
        raise ValueError(f"std must be positive, got {list(std)}")
    out = dict(sample)
    out["image"] = F.normalize(image, mean=list(mean), std=list(std))
    return out


def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


class Compose(nn.Module):
    """Apply transforms in order.

    Example:
        >>> t = Compose([Resize((4, 4)), Normalize()])
        >>> t({"image": torch.rand(3, 8, 8)})["image"].shape
        torch.Size([3, 4, 4])
    """

    def __init__(self, transforms: Sequence[Callable[[Sample], Sample]]) -> None:
        super().__init__()
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise ValueError(f"transforms must be callables, got {t!r}")

    def forward(self, sample: Sample) -> Sample:
        for t in self.transforms:
            sample = t(sample)
        return sample

    def extra_repr(self) -> str:
        return "\n".join(repr(t) for t in self.transforms)


class Resize(nn.Module):
    """Resize to a fixed ``(H, W)``, or the shorter side to ``size`` keeping the aspect ratio.

    Example:
        >>> Resize(4)({"image": torch.rand(3, 8, 16)})["image"].shape
        torch.Size([3, 4, 8])
    """

    def __init__(self, size: int | tuple[int, int]) -> None:
        super().__init__()
        if isinstance(size, int):
            check_in_range(size, "size", 1, float("inf"))
        elif len(size) != 2 or min(size) < 1:
            raise ValueError(f"size must be an int or a positive (H, W) pair, got {size!r}")
        self.size = size

    def forward(self, sample: Sample) -> Sample:
        h, w = sample_size(sample)
        if isinstance(self.size, int):
            s = self.size / min(h, w)
            size = (max(1, round(h * s)), max(1, round(w * s)))
        else:
            size = (int(self.size[0]), int(self.size[1]))
        return resize_sample(sample, size)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class RandomScale(nn.Module):
    """Resize by a factor drawn uniformly from ``scale_range``.

    Example:
        >>> RandomScale((2.0, 2.0))({"image": torch.rand(3, 4, 5)})["image"].shape
        torch.Size([3, 8, 10])
    """

    def __init__(
        self,
        scale_range: float | tuple[float, float] = (0.5, 2.0),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.scale_range = as_range(scale_range, "scale_range", 0.0, 100.0, low_inclusive=False)
        self.generator = generator

    def forward(self, sample: Sample) -> Sample:
        h, w = sample_size(sample)
        s = _uniform(*self.scale_range, self.generator)
        return resize_sample(sample, (max(1, round(h * s)), max(1, round(w * s))))

    def extra_repr(self) -> str:
        return f"scale_range={self.scale_range}"


class RandomCrop(nn.Module):
    """Crop a random ``size = (H, W)`` window; pad (bottom/right) first if the sample is smaller.

    Padding uses ``image_fill`` for the image (0 = the mean once normalised),
    255 for ``seg`` and 0 for the other targets.

    Example:
        >>> s = {"image": torch.rand(3, 4, 8), "seg": torch.zeros(4, 8).long()}
        >>> out = RandomCrop((6, 6))(s)
        >>> out["image"].shape, int((out["seg"] == 255).sum())
        (torch.Size([3, 6, 6]), 12)
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        image_fill: float | Sequence[float] = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        pair = (size, size) if isinstance(size, int) else tuple(size)
        if len(pair) != 2 or min(pair) < 1:
            raise ValueError(f"size must be a positive int or (H, W) pair, got {size!r}")
        self.size = (int(pair[0]), int(pair[1]))
        self.image_fill = image_fill
        self.generator = generator

    def forward(self, sample: Sample) -> Sample:
        ch, cw = self.size
        h, w = sample_size(sample)
        if h < ch or w < cw:
            sample = pad_sample(sample, (0, 0, max(0, cw - w), max(0, ch - h)), self.image_fill)
            h, w = max(h, ch), max(w, cw)
        top = int(torch.randint(0, h - ch + 1, (), generator=self.generator))
        left = int(torch.randint(0, w - cw + 1, (), generator=self.generator))
        return crop_sample(sample, top, left, ch, cw)

    def extra_repr(self) -> str:
        return f"size={self.size}, image_fill={self.image_fill}"


class RandomHorizontalFlip(nn.Module):
    """Mirror the sample with probability ``p`` (normals' x is negated).

    Example:
        >>> s = {"image": torch.arange(2.0).view(1, 1, 2).expand(3, 1, 2)}
        >>> RandomHorizontalFlip(p=1.0)(s)["image"][0, 0].tolist()
        [1.0, 0.0]
    """

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.p = check_in_range(p, "p", 0.0, 1.0)
        self.generator = generator

    def forward(self, sample: Sample) -> Sample:
        if float(torch.rand((), generator=self.generator)) < self.p:
            return hflip_sample(sample)
        return sample

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ColorJitter(nn.Module):
    """Random brightness, contrast, saturation and hue, in random order; image only.

    Expects the image in ``[0, 1]`` (place it before :class:`Normalize`). A
    strength ``b`` draws the factor from ``[max(0, 1 - b), 1 + b]``; ``hue``
    draws a shift from ``[-hue, hue]`` (at most 0.5). Targets are returned
    untouched.

    Example:
        >>> s = {"image": torch.rand(3, 4, 4), "seg": torch.zeros(4, 4).long()}
        >>> ColorJitter(0.5, 0.5, 0.5, 0.1)(s)["seg"].equal(s["seg"])
        True
    """

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.brightness = check_in_range(brightness, "brightness", 0.0, float("inf"))
        self.contrast = check_in_range(contrast, "contrast", 0.0, float("inf"))
        self.saturation = check_in_range(saturation, "saturation", 0.0, float("inf"))
        self.hue = check_in_range(hue, "hue", 0.0, 0.5)
        self.generator = generator

    def forward(self, sample: Sample) -> Sample:
        image = sample.get("image")
        if not isinstance(image, Tensor) or image.ndim != 3 or not image.is_floating_point():
            raise ValueError("sample['image'] must be a float tensor of shape 3 x H x W in [0, 1]")
        g = self.generator
        ops: list[Callable[[Tensor], Tensor]] = []
        if self.brightness > 0:
            f_b = _uniform(max(0.0, 1 - self.brightness), 1 + self.brightness, g)
            ops.append(lambda x: F.adjust_brightness(x, f_b))
        if self.contrast > 0:
            f_c = _uniform(max(0.0, 1 - self.contrast), 1 + self.contrast, g)
            ops.append(lambda x: F.adjust_contrast(x, f_c))
        if self.saturation > 0:
            f_s = _uniform(max(0.0, 1 - self.saturation), 1 + self.saturation, g)
            ops.append(lambda x: F.adjust_saturation(x, f_s))
        if self.hue > 0:
            f_h = _uniform(-self.hue, self.hue, g)
            ops.append(lambda x: F.adjust_hue(x, f_h))
        for i in torch.randperm(len(ops), generator=g).tolist():
            image = ops[i](image)
        out = dict(sample)
        out["image"] = image
        return out

    def extra_repr(self) -> str:
        return (
            f"brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue}"
        )


class Normalize(nn.Module):
    """``image = (image - mean) / std`` per channel (ImageNet statistics by default).

    Example:
        >>> Normalize([0.5] * 3, [0.5] * 3)({"image": torch.ones(3, 1, 1)})["image"].flatten()
        tensor([1., 1., 1.])
    """

    def __init__(
        self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        super().__init__()
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    def forward(self, sample: Sample) -> Sample:
        return normalize_sample(sample, self.mean, self.std)

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


class PadToMultiple(nn.Module):
    """Pad (bottom/right) so that H and W are multiples of ``k`` (image 0, seg 255, rest 0).

    Example:
        >>> PadToMultiple(8)({"image": torch.zeros(3, 10, 17)})["image"].shape
        torch.Size([3, 16, 24])
    """

    def __init__(self, k: int, image_fill: float | Sequence[float] = 0.0) -> None:
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        self.k = k
        self.image_fill = image_fill

    def forward(self, sample: Sample) -> Sample:
        h, w = sample_size(sample)
        ph, pw = -h % self.k, -w % self.k
        if ph == 0 and pw == 0:
            return sample
        return pad_sample(sample, (0, 0, pw, ph), self.image_fill)

    def extra_repr(self) -> str:
        return f"k={self.k}"


def default_train_transform(
    crop_size: int | tuple[int, int],
    scale_range: float | tuple[float, float] = (0.5, 2.0),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    *,
    jitter: float = 0.2,
    hflip: float = 0.5,
    generator: torch.Generator | None = None,
) -> Compose:
    """The usual dense-prediction training augmentation.

    ColorJitter (``jitter`` for brightness, contrast and saturation; 0 turns it
    off) -> RandomScale -> Normalize -> RandomCrop (padding the image with 0,
    i.e. the mean) -> RandomHorizontalFlip.

    Example:
        >>> t = default_train_transform(8)
        >>> t({"image": torch.rand(3, 10, 12), "seg": torch.zeros(10, 12).long()})["image"].shape
        torch.Size([3, 8, 8])
    """
    steps: list[Callable[[Sample], Sample]] = []
    if jitter > 0:
        steps.append(ColorJitter(jitter, jitter, jitter, 0.0, generator=generator))
    steps += [
        RandomScale(scale_range, generator=generator),
        Normalize(mean, std),
        RandomCrop(crop_size, image_fill=0.0, generator=generator),
    ]
    if hflip > 0:
        steps.append(RandomHorizontalFlip(hflip, generator=generator))
    return Compose(steps)


def default_eval_transform(
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    *,
    size: int | tuple[int, int] | None = None,
    pad_to_multiple: int | None = None,
) -> Compose:
    """Evaluation transform: optional Resize -> Normalize -> optional PadToMultiple.

    Example:
        >>> default_eval_transform(pad_to_multiple=4)({"image": torch.rand(3, 5, 6)})["image"].shape
        torch.Size([3, 8, 8])
    """
    steps: list[Callable[[Sample], Sample]] = []
    if size is not None:
        steps.append(Resize(size))
    steps.append(Normalize(mean, std))
    if pad_to_multiple is not None:
        steps.append(PadToMultiple(pad_to_multiple))
    return Compose(steps)
