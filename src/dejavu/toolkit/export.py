"""Export the inference network (the base network alone) and check the export.

DejaVu adds nothing at inference: only the base network runs. This module
writes that network as ONNX, TorchScript or safetensors and then *verifies*
the written file: it runs the exported artefact (onnxruntime, ``torch.jit.load``
or a freshly built model loaded from the safetensors file) on a random input
and compares every output with the PyTorch model's.

A network that cannot be written in a format says so in its
``unsupported_exports`` (format -> why; Mask2Former: ONNX), and
:func:`export_checkpoint` refuses that format with the reason.

Dense networks return a dict (``{"seg": ..., "depth": ...}``). ONNX has no
dict outputs, so :class:`FlattenOutputs` turns the dict into a tuple in a
fixed order and the ONNX graph names its outputs after the keys; TorchScript
keeps the dict. The safetensors format is the base-network artefact of
:mod:`dejavu.toolkit.artifact` (its one writer and reader).

Example:
    >>> import tempfile, pathlib
    >>> import torch.nn as nn
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv = nn.Conv2d(3, 2, 3, padding=1)
    ...     def forward(self, x):
    ...         return {"seg": self.conv(x)}
    >>> net = Net().eval()
    >>> example = torch.randn(1, 3, 16, 24)
    >>> path = export_torchscript(net, example, pathlib.Path(tempfile.mkdtemp()) / "net.pt")
    >>> verify_torchscript(net, path, example)["seg"] < 1e-5
    True
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dejavu._validation import check_choice, check_image
from dejavu.dejavu import prediction_dict
from dejavu.toolkit.artifact import load_base, strip_training_only, write_base
from dejavu.toolkit.errors import ConfigError, UserPathError
from dejavu.toolkit.training import load_eval_model

__all__ = [
    "EXPORT_FORMATS",
    "ExportResult",
    "FlattenOutputs",
    "export_checkpoint",
    "export_onnx",
    "export_safetensors",
    "export_torchscript",
    "max_abs_diff",
    "strip_training_only",
    "verify_onnx",
    "verify_safetensors",
    "verify_torchscript",
]

#: Formats :func:`export_checkpoint` writes.
EXPORT_FORMATS: tuple[str, ...] = ("onnx", "torchscript", "safetensors")

_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}


class FlattenOutputs(nn.Module):
    """Wrap a dict-output network so that it returns a tuple in a fixed key order.

    Args:
        model: ``image -> dict[str, Tensor]`` (or a bare tensor, for one key).
        keys: the output names, in the order of the returned tuple.

    Example:
        >>> net = nn.Conv2d(3, 2, 1)
        >>> FlattenOutputs(net, ["seg"])(torch.zeros(1, 3, 4, 4))[0].shape
        torch.Size([1, 2, 4, 4])
    """

    def __init__(self, model: nn.Module, keys: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.keys = list(keys)

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        out = prediction_dict(self.model(image), self.keys[0])
        return tuple(out[k] for k in self.keys)


def _has_training_only(model: nn.Module) -> bool:
    return any(callable(getattr(m, "remove_regeneration", None)) for m in model.modules())


def max_abs_diff(
    reference: Mapping[str, Tensor], other: Mapping[str, Tensor | Any]
) -> dict[str, float]:
    """Per-output maximum absolute difference between two output dicts.

    Raises:
        ValueError: if the two dicts have different keys or an output has a
            different shape.

    Example:
        >>> max_abs_diff({"a": torch.zeros(2)}, {"a": torch.tensor([0.0, 0.5])})
        {'a': 0.5}
    """
    if set(reference) != set(other):
        raise ValueError(
            f"exported outputs {sorted(other)} differ from the model's {sorted(reference)}"
        )
    diffs: dict[str, float] = {}
    for key, ref in reference.items():
        value = torch.as_tensor(other[key]).to(ref.device, torch.float32)
        if tuple(value.shape) != tuple(ref.shape):
            raise ValueError(
                f"exported output {key!r} has shape {tuple(value.shape)}, "
                f"the model's has {tuple(ref.shape)}"
            )
        diffs[key] = float((value - ref.float()).abs().max()) if ref.numel() else 0.0
    return diffs


@torch.no_grad()
def _reference(model: nn.Module, example: Tensor) -> dict[str, Tensor]:
    return prediction_dict(model(example))


# ---------------------------------------------------------------------- onnx
def export_onnx(
    model: nn.Module,
    example: Tensor,
    path: str | Path,
    *,
    dynamo: bool | None = None,
    opset_version: int | None = None,
) -> str:
    """Write ``model`` as an ONNX graph with one named output per dict key.

    Args:
        model: ``image -> dict[str, Tensor]`` in eval mode.
        example: ``B x 3 x H x W`` input that fixes the exported shape.
        path: output file.
        dynamo: ``True`` uses the ``torch.export``-based exporter, ``False``
            the TorchScript-based one; ``None`` tries the former and falls
            back to the latter if it fails (some models do not trace with
            ``torch.export``).
        opset_version: ONNX opset (``None``: the exporter's default).

    Returns:
        Which exporter wrote the file: ``"dynamo"`` or ``"torchscript"``. The
        weights are inside the one ``.onnx`` file (no external data), which
        limits the model to 2 GB.
    """
    check_image(example, "example", channels=3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(_reference(model, example))
    wrapper = FlattenOutputs(model, keys).eval()
    kwargs: dict[str, Any] = {"input_names": ["image"], "output_names": keys}
    if opset_version is not None:
        kwargs["opset_version"] = opset_version
    attempts = [True, False] if dynamo is None else [bool(dynamo)]
    errors: list[str] = []
    for use_dynamo in attempts:
        try:
            # The exporters print progress and deprecation notes; the CLI
            # reports the outcome itself.
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                extra: dict[str, Any] = {"external_data": False} if use_dynamo else {}
                torch.onnx.export(
                    wrapper,
                    (example,),
                    str(path),
                    dynamo=use_dynamo,
                    verbose=False,
                    **kwargs,
                    **extra,
                )
        except Exception as exc:  # the exporters raise many different types
            errors.append(f"{'dynamo' if use_dynamo else 'torchscript'} exporter: {exc}")
            continue
        return "dynamo" if use_dynamo else "torchscript"
    raise RuntimeError("ONNX export failed:\n" + "\n".join(errors))


def verify_onnx(model: nn.Module, path: str | Path, example: Tensor) -> dict[str, float]:
    """Run the ONNX file with onnxruntime and compare with ``model`` on ``example``.

    Returns:
        Output name -> max absolute difference.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    input_name = session.get_inputs()[0].name
    values = session.run(names, {input_name: example.detach().cpu().float().numpy()})
    got = {name: torch.from_numpy(v) for name, v in zip(names, values, strict=True)}
    return max_abs_diff(_reference(model, example), got)


# --------------------------------------------------------------- torchscript
def export_torchscript(model: nn.Module, example: Tensor, path: str | Path) -> Path:
    """Trace ``model`` on ``example`` and save it with ``torch.jit.save``.

    The traced module keeps the dict output (``strict=False``), so
    ``torch.jit.load(path)(image)["seg"]`` works as with the original.
    """
    check_image(example, "example", channels=3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        # torch.jit.trace is deprecated but still the one format C++ and
        # mobile runtimes load without Python.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, strict=False, check_trace=False)
        torch.jit.save(traced, str(path))
    return path


def verify_torchscript(model: nn.Module, path: str | Path, example: Tensor) -> dict[str, float]:
    """Load the TorchScript file and compare with ``model`` on ``example``."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(str(path), map_location="cpu")
        got = prediction_dict(loaded(example))
    return max_abs_diff(_reference(model, example), got)


# --------------------------------------------------------------- safetensors
def export_safetensors(
    model: nn.Module, path: str | Path, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Save ``model``'s weights as safetensors and ``metadata`` as JSON beside them.

    The base-network artefact (:func:`dejavu.toolkit.artifact.write_base`,
    atomic): the JSON goes to ``path`` with the suffix ``.json``
    (``base.safetensors`` -> ``base.json``), the layout
    :func:`dejavu.toolkit.training.load_eval_model` rebuilds a network from.
    Tied weights are stored once.

    Returns:
        The path of the weights.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"a safetensors export must end in .safetensors, got {path}")
    return write_base(model, dict(metadata or {}), path)


def _rebuild(path: Path) -> nn.Module:
    return load_base(path)[0]


def verify_safetensors(
    model: nn.Module,
    path: str | Path,
    example: Tensor,
    load: Callable[[Path], nn.Module] = _rebuild,
) -> dict[str, float]:
    """Reload the safetensors file into a fresh model and compare with ``model``.

    Args:
        model: the reference network.
        path: the file written by :func:`export_safetensors`.
        example: input to compare on.
        load: builds a fresh network from the file (default: the artefact's
            reader, :func:`dejavu.toolkit.artifact.load_base`).
    """
    fresh = load(Path(path)).eval()
    with torch.no_grad():
        got = prediction_dict(fresh(example))
    return max_abs_diff(_reference(model, example), got)


# ---------------------------------------------------------------- checkpoint
@dataclass
class ExportResult:
    """What :func:`export_checkpoint` wrote and how well it matches PyTorch.

    Attributes:
        path: the exported file.
        format: one of :data:`EXPORT_FORMATS`.
        input_size: ``(H, W)`` of the verification (and, for ONNX/TorchScript,
            the traced) input.
        diffs: output name -> max absolute difference to the PyTorch model.
        atol: tolerance the export was checked against.
        exporter: which exporter wrote the file (``"dynamo"``/``"torchscript"``
            for ONNX, ``"jit.trace"``, ``"safetensors"``).
        meta: what the checkpoint said about the model (config, heads, ...).
    """

    path: Path
    format: str
    input_size: tuple[int, int]
    diffs: dict[str, float]
    atol: float
    exporter: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def max_abs_diff(self) -> float:
        """The largest difference over all outputs."""
        return max(self.diffs.values(), default=0.0)

    @property
    def ok(self) -> bool:
        """Whether every output is within ``atol``."""
        return self.max_abs_diff <= self.atol


def _check_input_size(input_size: Sequence[int]) -> tuple[int, int]:
    if len(input_size) != 2 or any(
        isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in input_size
    ):
        raise ConfigError(f"input_size must be two positive ints (H, W), got {input_size!r}")
    return int(input_size[0]), int(input_size[1])


def _default_input_size(meta: Mapping[str, Any]) -> tuple[int, int]:
    # The checkpoint's own config knows the training resolution; fall back to
    # the embedded "scenes" size when it does not say.
    for key in ("input_size", "image_size", "crop_size"):
        value = meta.get(key)
        if isinstance(value, Sequence) and len(value) == 2:
            return int(value[0]), int(value[1])
    return 96, 128


def export_checkpoint(
    checkpoint: str | Path,
    format: str,
    out: str | Path | None = None,
    *,
    input_size: Sequence[int] | None = None,
    atol: float = 1e-4,
    seed: int = 0,
    dynamo: bool | None = None,
) -> ExportResult:
    """Export the base network of a training checkpoint and verify the file.

    Args:
        checkpoint: a training checkpoint (or a base-network safetensors file),
            anything :func:`dejavu.toolkit.training.load_eval_model` reads.
        format: ``"onnx"``, ``"torchscript"`` or ``"safetensors"``.
        out: output path (default: next to the checkpoint, same stem, the
            format's suffix).
        input_size: ``(H, W)`` of the example input (default: the size the
            checkpoint records, else 96 x 128).
        atol: largest allowed absolute difference to the PyTorch outputs.
        seed: seed of the random verification input.
        dynamo: ONNX exporter choice, see :func:`export_onnx`.

    Returns:
        An :class:`ExportResult` (check ``result.ok``; the CLI fails when it
        is False).
    """
    check_choice(format, "format", EXPORT_FORMATS)
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise UserPathError(f"checkpoint not found: {checkpoint}")
    model, meta = load_eval_model(checkpoint)
    meta = dict(meta)
    if _has_training_only(model):
        # DejaVu-SA: only the task branch runs at inference; export that alone.
        model = strip_training_only(model)
        meta["regeneration_removed"] = True
    why = dict(getattr(model, "unsupported_exports", None) or {}).get(format)
    if why:
        works = [f for f in EXPORT_FORMATS if f not in getattr(model, "unsupported_exports", {})]
        raise ConfigError(
            f"{meta.get('model', type(model).__name__)} cannot be exported as {format}: {why} "
            f"(formats that work for it: {', '.join(works)})"
        )
    model = model.eval().float().cpu()
    size = _check_input_size(input_size) if input_size is not None else _default_input_size(meta)
    generator = torch.Generator().manual_seed(int(seed))
    example = torch.randn(1, 3, *size, generator=generator)

    if out is None:
        out = checkpoint.with_name(checkpoint.stem + "_base" + _SUFFIX[format])
    path = Path(out)
    if path.resolve() == checkpoint.resolve():
        raise ConfigError(f"out must differ from the checkpoint it is exported from, got {path}")

    if format == "onnx":
        exporter = export_onnx(model, example, path, dynamo=dynamo)
        diffs = verify_onnx(model, path, example)
    elif format == "torchscript":
        export_torchscript(model, example, path)
        exporter = "jit.trace"
        diffs = verify_torchscript(model, path, example)
    else:
        export_safetensors(model, path, _safetensors_metadata(meta))
        exporter = "safetensors"
        diffs = verify_safetensors(model, path, example)
    return ExportResult(
        path=path,
        format=format,
        input_size=size,
        diffs=diffs,
        atol=float(atol),
        exporter=exporter,
        meta=dict(meta),
    )


def _safetensors_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    # Everything JSON-serialisable that load_eval_model needs to rebuild the network.
    out: dict[str, Any] = {}
    for key, value in meta.items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[key] = value
    return out
