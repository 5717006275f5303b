"""The ``DejaVu`` module: a base network plus its training-only regeneration parts.

``DejaVu`` wraps everything that trains into ONE ``nn.Module`` so that DDP
sees a single forward: the base network ``h``, the conditioning ``phi``, the
conditional regeneration module (CRM) ``g`` and, optionally, DejaVu-TS's
frozen CLIP. Its forward takes a batch dict and returns a dict of named
losses plus the tensors worth looking at; :meth:`DejaVu.eval_model` hands
back the base network alone, which is all that runs at inference.

:class:`TaskOnly` is the baseline with the same output contract (the task
loss alone; every DejaVu loss 0, no images), so a training loop never
branches on the variant: both build their output with :func:`objective_output`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dejavu._validation import check_image, check_in_range
from dejavu.batchnorm import frozen_bn_stats
from dejavu.conditioning import Conditioning, resize_conditioning
from dejavu.crm import CRMBase, create_crm, crm_class, list_crms
from dejavu.losses import RegenerationLoss
from dejavu.losses.regeneration import RegenLossKind
from dejavu.redaction import Redaction, create_redaction

__all__ = [
    "LOSS_KEYS",
    "DejaVu",
    "TaskLoss",
    "TaskOnly",
    "batch_image",
    "labeled_rows",
    "labeled_task_loss",
    "objective_output",
    "prediction_dict",
    "select_rows",
    "split_task_loss",
]

#: A task loss maps (predictions, batch) to a scalar, or to a dict of named
#: scalars whose ``"loss"`` entry is the total.
TaskLoss = Callable[[Mapping[str, Tensor], Mapping[str, Tensor]], Tensor | Mapping[str, Tensor]]

#: The loss entries every ``DejaVu.forward`` output holds (0 when switched off).
LOSS_KEYS = ("loss", "task", "regen", "regen_truth", "cyclic", "text", "sa")


class DejaVu(nn.Module):
    """Train a dense-prediction network with the DejaVu objective.

    ``L = L_task(h(I), Y) + w_regen(step) * L_regen + w_cl * L_cl + w_ts * L_ts + w_sa * L_sa``

    with ``L_regen = mean(w * l(g(R(I), phi(h(I))) - I))`` computed at the CRM's
    working resolution, ``L_cl = L_task(h(I_hat), Y)`` (DejaVu-CL),
    ``L_ts = 1 - cos(CLIP(I_hat), CLIP(prompt(Y)))`` (DejaVu-TS) and ``L_sa``
    the regeneration loss of a shared-attention base network's own
    regeneration branch (DejaVu-SA).

    Args:
        base: the base network; ``base(image)`` returns a dict of task outputs
            (or a tensor, stored under ``output_key``). A base network with
            ``supports_shared_attention = True`` is called as
            ``base(image, redacted=I_r)`` and may return a ``"regenerated"``
            entry (DejaVu-SA).
        task_loss: ``task_loss(pred, batch)`` -> scalar or dict with ``"loss"``.
        conditioning: a :class:`~dejavu.conditioning.Conditioning` or its spec,
            e.g. ``{"seg": "segmentation"}``.
        crm: a registered CRM name (:func:`dejavu.crm.list_crms`: ``"forward"``
            (CRM-F), ``"recursive"`` (CRM-R), ``"zero"`` (CRM-0, parameter-free)),
            a CRM module, or ``None`` for no CRM (DejaVu-SA alone).
        cond_channels: channels of ``phi(C)``; needed when ``crm`` is a string,
            unless ``base.heads`` (name -> channels) lets it be derived.
        crm_kwargs: extra arguments for the CRM built from a string (``width``,
            ``depth``, ``scale``, ``num_groups``, ...).
        redaction: a :class:`~dejavu.redaction.Redaction` or a name for
            :func:`~dejavu.redaction.create_redaction`.
        redaction_kwargs: arguments for a redaction given by name.
        regen_loss: a :class:`~dejavu.losses.RegenerationLoss` or its kind
            (``"l1"``, ``"l2"``, ``"charbonnier"``, ``"l1+ssim"``).
        regen_weight: weight of ``L_regen`` after warm-up.
        regen_warmup_steps: linear warm-up of the regeneration weight from 0.
        cyclic_weight: weight of DejaVu-CL (0 switches it off and skips its
            extra forward pass). That pass normalises with the regenerated
            images' batch statistics but leaves BatchNorm running statistics
            alone (:func:`~dejavu.batchnorm.frozen_bn_stats`).
        text_supervision: a :class:`~dejavu.text_supervision.TextSupervision`
            (DejaVu-TS) or ``None``.
        text_weight: weight of ``L_ts``.
        text_target_key: batch key of the segmentation target the prompts are
            built from.
        sa_weight: weight of the shared-attention regeneration loss.
        crm_truth_weight: anchors a learned CRM to the truth (ours): on labelled
            rows the CRM also regenerates from the ground-truth conditioning
            (:func:`~dejavu.truth_conditioning.truth_conditioning`), and this
            weight times that loss is added. Only the CRM learns from it (the
            truth carries no gradient to the base network), so the CRM learns to
            rely on the conditioning instead of working around early, poor
            predictions. 0 (default) switches it off.
        ignore_index: ignored segmentation label (for the truth conditioning).
        stop_gradient: ablation: detach ``phi(C)`` so that no regeneration
            gradient reaches the base network (only the CRM learns).
        output_key: key for a base network that returns a bare tensor.
        image_key: batch key of the input image.
        seed: seed of the generator that draws the redactions (``None``: a
            non-deterministic seed). The generator's state is saved with the
            module's state dict, so a resumed run redacts as an uninterrupted
            one would.

    Example:
        >>> import torch.nn as nn, torch.nn.functional as F
        >>> base = nn.Conv2d(3, 4, 3, padding=1)
        >>> loss = lambda pred, batch: F.cross_entropy(pred["seg"], batch["seg"])
        >>> model = DejaVu(base, loss, crm="forward", cond_channels=4, seed=0)
        >>> batch = {"image": torch.randn(2, 3, 32, 48), "seg": torch.randint(0, 4, (2, 32, 48))}
        >>> out = model(batch)
        >>> out["loss"].backward()
        >>> sorted(k for k in out if k in LOSS_KEYS)
        ['cyclic', 'loss', 'regen', 'regen_truth', 'sa', 'task', 'text']
        >>> model.eval_model() is base
        True
    """

    num_steps: Tensor
    crm: CRMBase | None
    conditioning: Conditioning
    text_supervision: nn.Module | None

    def __init__(
        self,
        base: nn.Module,
        task_loss: TaskLoss,
        *,
        conditioning: Conditioning | Mapping[str, str] | None = None,
        crm: nn.Module | str | None = "forward",
        cond_channels: int | None = None,
        crm_kwargs: Mapping[str, Any] | None = None,
        redaction: Redaction | str = "random",
        redaction_kwargs: Mapping[str, Any] | None = None,
        regen_loss: RegenerationLoss | str = "l1",
        regen_weight: float = 1.0,
        regen_warmup_steps: int = 0,
        cyclic_weight: float = 0.0,
        text_supervision: nn.Module | None = None,
        text_weight: float = 0.0,
        text_target_key: str = "seg",
        sa_weight: float = 1.0,
        crm_truth_weight: float = 0.0,
        ignore_index: int = 255,
        stop_gradient: bool = False,
        output_key: str = "seg",
        image_key: str = "image",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("regen_weight", regen_weight),
            ("cyclic_weight", cyclic_weight),
            ("text_weight", text_weight),
            ("sa_weight", sa_weight),
            ("crm_truth_weight", crm_truth_weight),
        ):
            check_in_range(value, name, 0.0, float("inf"))
        if int(regen_warmup_steps) != regen_warmup_steps or regen_warmup_steps < 0:
            raise ValueError(
                f"regen_warmup_steps must be a non-negative integer, got {regen_warmup_steps!r}"
            )
        if text_weight > 0 and text_supervision is None:
            raise ValueError("text_weight > 0 needs text_supervision (a TextSupervision module)")

        self.base = base
        self.task_loss = task_loss
        heads = getattr(base, "heads", None)
        # Channels of each conditioned prediction, for the truth conditioning.
        self._pred_channels = dict(heads) if isinstance(heads, Mapping) else None
        if conditioning is None:
            conditioning = {output_key: "segmentation"}
        self.conditioning = (
            conditioning if isinstance(conditioning, nn.Module) else Conditioning(conditioning)
        )
        if isinstance(redaction, str):
            redaction = create_redaction(redaction, **dict(redaction_kwargs or {}))
        elif redaction_kwargs:
            raise ValueError("redaction_kwargs is only used when redaction is given by name")
        self.redaction = redaction
        self.crm = self._build_crm(crm, cond_channels, crm_kwargs)
        self.regen_loss = (
            RegenerationLoss(cast(RegenLossKind, regen_loss))
            if isinstance(regen_loss, str)
            else regen_loss
        )
        self.text_supervision = text_supervision

        self.regen_weight = float(regen_weight)
        self.regen_warmup_steps = int(regen_warmup_steps)
        self.cyclic_weight = float(cyclic_weight)
        self.text_weight = float(text_weight)
        self.text_target_key = text_target_key
        self.sa_weight = float(sa_weight)
        self.crm_truth_weight = float(crm_truth_weight)
        self.ignore_index = int(ignore_index)
        if self.crm_truth_weight > 0 and (
            self.crm is None or not any(True for _ in self.crm.parameters())
        ):
            raise ValueError(
                "crm_truth_weight > 0 needs a learned CRM; this one has no parameters "
                f"({type(self.crm).__name__})"
            )
        self.stop_gradient = bool(stop_gradient)
        self.output_key = output_key
        self.image_key = image_key

        # Counts training forwards, for the warm-up; saved so resume continues it.
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    # ------------------------------------------------------------------ build
    def _build_crm(
        self,
        crm: nn.Module | str | None,
        cond_channels: int | None,
        crm_kwargs: Mapping[str, Any] | None,
    ) -> CRMBase | None:
        if crm is None or isinstance(crm, nn.Module):
            if crm_kwargs:
                raise ValueError("crm_kwargs is only used when crm is given by name")
            # A module given directly needs CRMBase's interface (working_size,
            # resize_to_working, cond_channels), not its class.
            return cast(CRMBase | None, crm)
        if crm not in list_crms():
            allowed = ", ".join(repr(k) for k in list_crms())
            raise ValueError(f"unknown crm {crm!r}; allowed: {allowed}, a module, None")
        kwargs = dict(crm_kwargs or {})
        heads = getattr(self.base, "heads", None)
        if cond_channels is None:
            if not isinstance(heads, Mapping):
                raise ValueError(
                    "cond_channels is required when crm is given by name and the base network "
                    "has no `heads` mapping (head name -> channels) to derive it from"
                )
            cond_channels = self.conditioning.out_channels(heads)
        # A CRM that treats the class probabilities apart (CRM-R groups classes, CRM-0
        # averages colours per class) takes their channels as `group_channels` or
        # `class_channels`: tell it which ones they are (the rest, e.g. depth, ride along).
        params = inspect.signature(crm_class(crm).__init__).parameters
        arg = next((a for a in ("group_channels", "class_channels") if a in params), None)
        if arg is not None and isinstance(heads, Mapping) and arg not in kwargs:
            spec = self.conditioning.spec
            seg_keys = [k for k, kind in spec.items() if kind == "segmentation"]
            mask_keys = [k for k, kind in spec.items() if kind == "mask_classification"]
            if len(seg_keys) == 1 and len(spec) > 1:
                kwargs[arg] = self.conditioning.slices(heads)[seg_keys[0]]
            elif len(mask_keys) == 1 and not seg_keys:
                # mask classification: K class probabilities, then the boundary channel
                start = self.conditioning.slices(heads)[mask_keys[0]].start
                kwargs[arg] = slice(start, start + heads[mask_keys[0]])
        return create_crm(crm, cond_channels, **kwargs)

    # ----------------------------------------------------------------- public
    def eval_model(self) -> nn.Module:
        """Return the base network alone: all that runs at inference.

        The returned module shares its weights with this one (it *is*
        ``self.base``), so export it, or copy it, after training.
        """
        return self.base

    def base_state_dict(self) -> dict[str, Tensor]:
        """The base network's weights (what an exported model needs)."""
        return self.base.state_dict()

    def regeneration_state_dict(self) -> dict[str, Tensor]:
        """Everything else that trains or must be restored: CRM, step, generator."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("base.")}

    def current_regen_weight(self, step: int | None = None) -> float:
        """The regeneration weight at ``step`` (linear warm-up from 0)."""
        step = int(self.num_steps) if step is None else int(step)
        if self.regen_warmup_steps == 0:
            return self.regen_weight
        return self.regen_weight * min(1.0, step / self.regen_warmup_steps)

    def predict(self, image: Tensor, redacted: Tensor | None = None) -> dict[str, Tensor]:
        """Run the base network and return its outputs as a dict."""
        if getattr(self.base, "supports_shared_attention", False):
            return prediction_dict(self.base(image, redacted=redacted), self.output_key)
        return prediction_dict(self.base(image), self.output_key)

    def forward(self, batch: Mapping[str, Tensor], step: int | None = None) -> dict[str, Any]:
        """Compute every loss for one batch.

        Semi-supervised batches carry ``labeled``, a ``(B,)`` bool tensor
        (True: the row has targets). The task loss, DejaVu-CL and DejaVu-TS
        then see the labelled rows only: the predictions and every batch entry
        with ``B`` rows are sliced along dim 0 (:func:`select_rows`) before
        ``task_loss`` is called, and DejaVu-CL runs the base network again on
        the labelled rows' regenerated images only. With no labelled row the
        task loss is a zero that keeps the graph connected (and CL/TS are 0).
        The regeneration loss and the shared-attention loss use every row:
        they need no labels. Without ``labeled``, every row is labelled.

        Args:
            batch: ``{"image": B x 3 x H x W, <targets>..., ["labeled": (B,) bool]}``.
            step: global step for the warm-up; ``None`` uses (and, in training
                mode, advances) the module's own counter.

        Returns:
            A dict with the scalar losses ``loss`` (the total to backpropagate),
            ``task``, ``regen``, ``cyclic``, ``text``, ``sa`` (0 when switched
            off), the task loss's own parts as ``task/<name>``, the weight used
            as ``regen_weight``, and the tensors ``pred`` (dict of base outputs),
            ``redacted`` (B x 3 x H x W), ``keep`` (B x 1 x H x W or None),
            ``regenerated`` and ``target`` (B x 3 x h x w at the CRM's working
            resolution; ``regenerated`` is None without a CRM).
        """
        image = batch_image(batch, self.image_key)
        if step is None:
            step = int(self.num_steps)
            if self.training:
                self.num_steps += 1

        mask = labeled_rows(batch, image.shape[0])
        redacted = self.redaction(image, generator=self.generator)
        pred = self.predict(image, redacted=redacted.image)
        sa_regenerated = pred.pop("regenerated", None)

        # Rows with targets: the task loss, CL and TS never see an unlabelled row.
        labeled = labeled_task_loss(self.task_loss, pred, batch, mask)
        task_total, task_parts = labeled.total, labeled.parts
        task_batch, mask, any_labeled = labeled.batch, labeled.mask, labeled.any_labeled
        zero = task_total.new_zeros(())

        regen = regen_truth = cyclic = text = sa = zero
        regenerated = target = None
        if self.crm is not None:
            h, w = image.shape[-2:]
            working = self.crm.working_size(h, w)
            cond_src = {k: v.detach() for k, v in pred.items()} if self.stop_gradient else pred
            cond = self.conditioning(cond_src, size=working)
            regenerated = self.crm(redacted.image, cond, redacted.keep)
            target = self.crm.resize_to_working(image)
            regen = self.regen_loss(regenerated, target, keep=redacted.keep)

            if self.crm_truth_weight > 0 and any_labeled:
                regen_truth = self.truth_regeneration_loss(redacted, cond, target, task_batch, mask)
            labeled_regen = regenerated if mask is None else regenerated[mask]
            if self.cyclic_weight > 0 and any_labeled:
                # DejaVu-CL: the regenerated image goes back through the same network,
                # without moving its BatchNorm statistics towards regenerated images'
                # (inference normalises clean images with them).
                full = F.interpolate(
                    labeled_regen, size=(h, w), mode="bilinear", align_corners=False
                )
                with frozen_bn_stats(self.base):
                    cyclic, _ = self._task_loss(self.predict(full), task_batch)
            if self.text_weight > 0 and any_labeled:
                assert self.text_supervision is not None  # checked in __init__
                text = self.text_supervision(labeled_regen, task_batch[self.text_target_key])

        if sa_regenerated is not None:
            sa_h, sa_w = sa_regenerated.shape[-2:]
            sa_target = resize_conditioning(image, (int(sa_h), int(sa_w)))
            sa = self.regen_loss(sa_regenerated, sa_target, keep=redacted.keep)

        w_regen = self.current_regen_weight(step)
        loss = (
            task_total
            + w_regen * regen
            + self.crm_truth_weight * regen_truth
            + self.cyclic_weight * cyclic
            + self.text_weight * text
            + self.sa_weight * sa
        )
        return objective_output(
            task_total,
            task_parts,
            pred,
            loss=loss,
            regen=regen,
            regen_truth=regen_truth,
            cyclic=cyclic,
            text=text,
            sa=sa,
            regen_weight=w_regen,
            redacted=redacted.image,
            keep=redacted.keep,
            regenerated=regenerated,
            target=target,
        )

    # ---------------------------------------------------------------- helpers
    def truth_regeneration_loss(
        self,
        redacted: Any,
        cond: Tensor,
        target: Tensor,
        batch: Mapping[str, Tensor],
        mask: Tensor | None,
    ) -> Tensor:
        """The CRM's regeneration loss on the ``mask`` rows, conditioned on the ground truth.

        Args:
            redacted: the batch's :class:`~dejavu.redaction.Redacted`.
            cond: the network's conditioning at the working size (fills ignored pixels).
            target: the clean image at the working size.
            batch: targets of the selected rows (the keys of the conditioning spec).
            mask: ``(B,)`` bool rows to use, or None for all.
        """
        from dejavu.truth_conditioning import truth_conditioning

        assert self.crm is not None
        channels = self._pred_channels
        if channels is None:
            (key,) = self.conditioning.spec  # one key: its channels are the CRM's
            channels = {key: self.crm.cond_channels}
        rows = slice(None) if mask is None else mask
        keep = None if redacted.keep is None else redacted.keep[rows]
        truth = truth_conditioning(
            self.conditioning,
            batch,
            channels,
            (int(cond.shape[-2]), int(cond.shape[-1])),
            self.ignore_index,
            fill=cond[rows],
        ).to(cond.dtype)
        out = self.crm(redacted.image[rows], truth, keep)
        return self.regen_loss(out, target[rows], keep=keep)

    def _task_loss(
        self, pred: Mapping[str, Tensor], batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return split_task_loss(self.task_loss(pred, batch))

    def get_extra_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class TaskOnly(nn.Module):
    """The baseline objective: the task loss alone, with :class:`DejaVu`'s output contract.

    ``forward`` returns the keys of :meth:`DejaVu.forward` (the DejaVu losses
    are 0; ``redacted``, ``keep``, ``regenerated`` and ``target`` are None),
    so a training loop does not branch on the variant; a batch with a
    ``labeled`` ``(B,)`` bool entry has its task loss computed on the
    labelled rows only, as ``DejaVu`` does. Its only submodule is ``base``.

    Args:
        base: the base network (``image -> dict`` or a tensor, stored under
            ``output_key``).
        task_loss: ``task_loss(pred, batch)`` -> scalar or dict with ``"loss"``.
        output_key: key for a base network that returns a bare tensor.
        image_key: batch key of the input image.

    Example:
        >>> base = nn.Conv2d(3, 2, 1)
        >>> obj = TaskOnly(base, lambda p, b: p["seg"].mean())
        >>> out = obj({"image": torch.zeros(1, 3, 4, 4)})
        >>> float(out["regen"]), out["regenerated"] is None, obj.eval_model() is base
        (0.0, True, True)
        >>> all(k in out for k in LOSS_KEYS)
        True
    """

    def __init__(
        self,
        base: nn.Module,
        task_loss: TaskLoss,
        output_key: str = "seg",
        image_key: str = "image",
    ) -> None:
        super().__init__()
        self.base = base
        self.task_loss = task_loss
        self.output_key = output_key
        self.image_key = image_key

    def eval_model(self) -> nn.Module:
        """The base network (shares its weights with this module)."""
        return self.base

    def predict(self, image: Tensor) -> dict[str, Tensor]:
        """Run the base network and return its outputs as a dict."""
        return prediction_dict(self.base(image), self.output_key)

    def forward(self, batch: Mapping[str, Tensor], step: int | None = None) -> dict[str, Any]:
        """The task loss of one batch, in :meth:`DejaVu.forward`'s output contract."""
        image = batch_image(batch, self.image_key)
        pred = self.predict(image)
        labeled = labeled_task_loss(
            self.task_loss, pred, batch, labeled_rows(batch, image.shape[0])
        )
        return objective_output(labeled.total, labeled.parts, pred)


def objective_output(
    task: Tensor,
    task_parts: Mapping[str, Tensor],
    pred: dict[str, Tensor],
    *,
    loss: Tensor | None = None,
    regen: Tensor | None = None,
    regen_truth: Tensor | None = None,
    cyclic: Tensor | None = None,
    text: Tensor | None = None,
    sa: Tensor | None = None,
    regen_weight: float = 0.0,
    redacted: Tensor | None = None,
    keep: Tensor | None = None,
    regenerated: Tensor | None = None,
    target: Tensor | None = None,
) -> dict[str, Any]:
    """The output contract of :class:`DejaVu` and :class:`TaskOnly`, in one place.

    Every :data:`LOSS_KEYS` entry is a scalar tensor (0 when not given;
    ``loss`` defaults to ``task``), the task loss's own parts come as
    ``task/<name>``, plus ``regen_weight``, ``pred`` and the images
    (None when not given).

    Example:
        >>> out = objective_output(torch.tensor(2.0), {"seg": torch.tensor(2.0)}, {})
        >>> float(out["loss"]), float(out["cyclic"]), out["task/seg"].item(), out["keep"]
        (2.0, 0.0, 2.0, None)
    """
    zero = task.new_zeros(())
    out: dict[str, Any] = {f"task/{k}": v for k, v in task_parts.items()}
    out.update(
        loss=task if loss is None else loss,
        task=task,
        regen=zero if regen is None else regen,
        regen_truth=zero if regen_truth is None else regen_truth,
        cyclic=zero if cyclic is None else cyclic,
        text=zero if text is None else text,
        sa=zero if sa is None else sa,
        regen_weight=regen_weight,
        pred=pred,
        redacted=redacted,
        keep=keep,
        regenerated=regenerated,
        target=target,
    )
    return out


def batch_image(batch: Mapping[str, Any], image_key: str = "image") -> Tensor:
    """The batch's image, checked (``B x C x H x W`` floating point).

    Raises:
        ValueError: naming the missing key and the keys present, or a bad image.
    """
    if image_key not in batch:
        raise ValueError(f"batch has no {image_key!r} entry; keys present: {sorted(batch)}")
    return check_image(batch[image_key], f"batch[{image_key!r}]")


class LabeledTaskLoss(NamedTuple):
    """What :func:`labeled_task_loss` returns."""

    total: Tensor
    """The task loss (a graph-connected 0 when no row is labelled)."""
    parts: dict[str, Tensor]
    """The task loss's named parts (empty when no row is labelled)."""
    batch: Mapping[str, Any]
    """The batch the loss saw: the labelled rows only when some are not."""
    mask: Tensor | None
    """The labelled rows when only some are; None when all (or none) are."""
    any_labeled: bool
    """Whether any row has targets."""


def labeled_task_loss(
    task_loss: TaskLoss,
    pred: Mapping[str, Tensor],
    batch: Mapping[str, Any],
    mask: Tensor | None,
) -> LabeledTaskLoss:
    """The task loss on the labelled rows (``mask``; None: every row is labelled).

    With some rows labelled, the predictions and every batch entry with ``B``
    rows are sliced along dim 0 (:func:`select_rows`) before ``task_loss`` is
    called; with none, the loss is a zero that keeps the graph connected.

    Example:
        >>> pred = {"seg": torch.tensor([1.0, 3.0])}
        >>> mean = lambda p, b: p["seg"].mean()
        >>> float(labeled_task_loss(mean, pred, {}, torch.tensor([False, True])).total)
        3.0
    """
    any_labeled = mask is None or bool(mask.any())
    task_pred, task_batch = pred, batch
    if mask is not None and any_labeled and not bool(mask.all()):
        task_pred = select_rows(pred, mask)
        task_batch = select_rows(batch, mask)
    else:
        mask = None  # every row (or none) is labelled: nothing to slice
    if any_labeled:
        total, parts = split_task_loss(task_loss(task_pred, task_batch))
    else:
        total, parts = _graph_zero(pred), {}
    return LabeledTaskLoss(total, parts, task_batch, mask, any_labeled)


def labeled_rows(batch: Mapping[str, Any], batch_size: int) -> Tensor | None:
    """The batch's ``labeled`` entry (a ``(B,)`` bool tensor), checked; None when absent.

    Raises:
        ValueError: when ``labeled`` is not a bool tensor of shape ``(batch_size,)``.

    Example:
        >>> labeled_rows({"labeled": torch.tensor([True, False])}, 2)
        tensor([ True, False])
        >>> labeled_rows({}, 2) is None
        True
    """
    mask = batch.get("labeled")
    if mask is None:
        return None
    if (
        not isinstance(mask, Tensor)
        or mask.dtype != torch.bool
        or tuple(mask.shape) != (batch_size,)
    ):
        got = (
            f"{mask.dtype} tensor of shape {tuple(mask.shape)}"
            if isinstance(mask, Tensor)
            else type(mask).__name__
        )
        raise ValueError(
            f"batch['labeled'] must be a bool tensor of shape ({batch_size},) (one flag per "
            f"row), got a {got}"
        )
    return mask


def select_rows(entries: Mapping[str, Any], mask: Tensor) -> dict[str, Any]:
    """Keep the rows ``mask`` selects of every entry with ``len(mask)`` rows.

    Tensors whose first dimension is ``len(mask)`` are indexed along dim 0,
    lists and tuples of that length are filtered; anything else is kept as is.

    Example:
        >>> b = {"seg": torch.arange(6).view(3, 2), "name": ["a", "b", "c"], "k": 1}
        >>> select_rows(b, torch.tensor([True, False, True]))
        {'seg': tensor([[0, 1],
                [4, 5]]), 'name': ['a', 'c'], 'k': 1}
    """
    n = int(mask.shape[0])
    keep: list[bool] | None = None
    out: dict[str, Any] = {}
    for key, value in entries.items():
        if isinstance(value, Tensor) and value.ndim >= 1 and value.shape[0] == n:
            out[key] = value[mask.to(value.device)]
        elif isinstance(value, list | tuple) and len(value) == n:
            keep = mask.tolist() if keep is None else keep
            out[key] = [v for v, k in zip(value, keep, strict=True) if k]
        else:
            out[key] = value
    return out


def _graph_zero(pred: Mapping[str, Tensor]) -> Tensor:
    """A float32 zero that depends on every prediction (a task loss with no labelled row)."""
    total: Tensor | None = None
    for value in pred.values():
        z = value.float().sum() * 0.0
        total = z if total is None else total + z
    if total is None:
        raise ValueError("the base network returned no prediction")
    return total


def prediction_dict(out: Tensor | Mapping[str, Tensor], key: str = "seg") -> dict[str, Tensor]:
    """A base network's output as a dict: a bare tensor is stored under ``key``.

    Example:
        >>> list(prediction_dict(torch.zeros(1, 2, 4, 4)))
        ['seg']
    """
    if isinstance(out, Tensor):
        return {key: out}
    if not isinstance(out, Mapping):
        raise ValueError(
            f"the base network must return a Tensor or a dict of Tensors, got {type(out)!r}"
        )
    return dict(out)


def split_task_loss(value: Tensor | Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """Split a task loss's result into ``(total, named parts)``.

    A task loss returns a scalar, or a dict whose ``"loss"`` entry is the total.

    Example:
        >>> split_task_loss({"loss": torch.tensor(3.0), "seg": torch.tensor(3.0)})
        (tensor(3.), {'seg': tensor(3.)})
    """
    if isinstance(value, Tensor):
        return value, {}
    if not isinstance(value, Mapping) or "loss" not in value:
        raise ValueError(
            "task_loss must return a scalar Tensor or a dict with a 'loss' entry, "
            f"got {type(value)!r}"
        )
    return value["loss"], {k: v for k, v in value.items() if k != "loss"}
