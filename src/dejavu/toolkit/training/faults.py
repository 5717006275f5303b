"""Faults during training: non-finite losses and gradients.

:class:`NonFiniteGuard` checks, at every optimiser step and before the
optimiser touches a weight, that every loss term of the step (``loss``,
``task``, ``regen``, ``regen_truth``, ``cyclic``, ``text``, ``sa`` and the
task's ``task/<head>`` parts) and the gradients are finite. When one is not:

- ``trainer.skip_nonfinite_steps: 0`` (the default): the run stops with
  :class:`~dejavu.toolkit.errors.NonFiniteLossError`, whose message names the
  step and the term(s). No weight has changed, and no checkpoint is written,
  so ``last.ckpt`` / ``best.ckpt`` keep the last good state;
- ``trainer.skip_nonfinite_steps: N``: up to ``N`` such steps over the whole
  run are skipped: their gradients are dropped, so the optimiser updates no
  weight and keeps its moments, and the buffers (BatchNorm statistics, which
  the step's forward pass already updated) are put back as they were before
  the step (the step still counts: the global step and the learning-rate
  schedule move on). Each skip is logged (a warning, and the
  running count as ``train/skipped_nonfinite``); the ``N + 1``-th stops the
  run as above. The count is part of the checkpoint, so a resumed run keeps it.

Under DDP the decision is all-reduced, so every process skips or stops at the
same step. With a gradient scaler (``precision: 16-mixed``) the gradients are
left to the scaler, which skips steps with non-finite gradients by itself;
the loss terms are still checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from dejavu.toolkit.errors import NonFiniteLossError

__all__ = ["NonFiniteGuard", "nonfinite_terms"]

GRADIENTS = "gradients"


def nonfinite_terms(terms: Mapping[str, Tensor]) -> list[str]:
    """The names of the terms that are not finite (NaN or +-inf anywhere).

    Example:
        >>> nonfinite_terms({"task": torch.tensor(1.0), "regen": torch.tensor(float("nan"))})
        ['regen']
    """
    return [k for k, v in terms.items() if not bool(torch.isfinite(v.detach()).all())]


def _describe(value: Tensor) -> str:
    v = value.detach().float()
    if v.numel() == 1:
        return f"{v.item()}"
    return f"{int((~torch.isfinite(v)).sum())} non-finite values"


class NonFiniteGuard(pl.Callback):
    """Stop (or skip) an optimiser step whose loss terms or gradients are not finite.

    The module provides the step's terms as ``pl_module.loss_terms`` (a mapping
    of name to tensor, set in ``training_step``); the total loss handed to
    ``backward`` is checked as ``loss`` too. See the module docs.

    Args:
        max_skips: how many such steps to skip over the whole run before stopping
            (``trainer.skip_nonfinite_steps``).
    """

    def __init__(self, max_skips: int = 0) -> None:
        if isinstance(max_skips, bool) or int(max_skips) < 0:
            raise ValueError(f"max_skips must be an int >= 0, got {max_skips!r}")
        self.max_skips = int(max_skips)
        self.skipped = 0
        self._names: list[str] | None = None
        self._flags: Tensor | None = None  # per term: non-finite in a micro-batch of this step
        self._values: dict[str, Tensor] = {}
        self._buffers: dict[str, Tensor] | None = None  # before the step, to undo a skipped one
        self._new_step = True

    # ------------------------------------------------------------ per batch
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # A skipped step must leave the network as it was: the forward pass has already
        # updated the BatchNorm statistics (with NaN, if the activations were), so keep a
        # copy of the buffers when the step starts (only while skips remain; they are small).
        if self._new_step:
            self._new_step = False
            self._buffers = None
            if self.skipped < self.max_skips:
                self._buffers = {n: b.detach().clone() for n, b in pl_module.named_buffers()}

    # ------------------------------------------------------------ per micro-batch
    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor
    ) -> None:
        terms: dict[str, Tensor] = {"loss": loss.detach()}
        given = getattr(pl_module, "loss_terms", None)
        if isinstance(given, Mapping):
            terms.update({k: v for k, v in given.items() if isinstance(v, Tensor)})
        names = sorted(terms)
        flags = torch.stack([~torch.isfinite(terms[k]).all() for k in names]).to(torch.float32)
        if self._flags is None or self._names != names:
            self._names, self._flags = names, flags
        else:
            self._flags = torch.maximum(self._flags, flags)  # accumulated micro-batches
        self._values = terms

    # ------------------------------------------------------------ per optimiser step
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        grads = [p.grad for p in params if p.grad is not None]
        check_grads = getattr(trainer.precision_plugin, "scaler", None) is None
        device = grads[0].device if grads else pl_module.device
        grad_flag = torch.zeros((), device=device)
        if check_grads and grads:
            norms = torch._foreach_norm(grads)
            grad_flag = (~torch.isfinite(torch.stack(norms)).all()).to(torch.float32)
        names = [*(self._names or []), GRADIENTS]
        flags = torch.cat(
            [
                self._flags.to(device) if self._flags is not None else grad_flag.new_zeros(0),
                grad_flag.reshape(1),
            ]
        )
        if trainer.world_size > 1:  # every process decides the same
            flags = trainer.strategy.reduce(flags, reduce_op="max")
        bad = [n for n, f in zip(names, flags.tolist(), strict=True) if f > 0]
        self._flags, self._names, self._new_step = None, None, True
        if not bad:
            return
        message = self._message(trainer, pl_module, bad, params)
        if self.skipped < self.max_skips:
            self.skipped += 1
            for p in params:  # no gradient: the optimiser leaves the weight and its state alone
                p.grad = None
            if self._buffers is not None:  # and the BatchNorm statistics as they were
                with torch.no_grad():
                    for n, b in pl_module.named_buffers():
                        if n in self._buffers:
                            b.copy_(self._buffers[n])
            rank_zero_warn(
                f"{message}; skipped it (no weight updated): {self.skipped} of "
                f"trainer.skip_nonfinite_steps = {self.max_skips} skipped so far"
            )
            return
        advice = (
            f"all {self.max_skips} steps that trainer.skip_nonfinite_steps allows were "
            "already skipped"
            if self.max_skips
            else "set trainer.skip_nonfinite_steps: N to skip up to N such steps"
        )
        raise NonFiniteLossError(
            f"{message}; the run stopped before the optimiser step, so no weight is "
            "non-finite and the last checkpoint written (last.ckpt) is kept as it was. "
            f"Lower optim.lr, check the data, or {advice}"
        )

    def _message(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, bad: list[str], params: list
    ) -> str:
        parts = []
        for name in bad:
            if name == GRADIENTS:
                first = next(
                    (
                        n
                        for n, p in pl_module.named_parameters()
                        if p.grad is not None and not bool(torch.isfinite(p.grad).all())
                    ),
                    None,
                )
                where = f", first in {first}" if first else " (on another process)"
                parts.append(f"gradients{where}")
            elif name in self._values:
                parts.append(f"{name} = {_describe(self._values[name])}")
            else:
                parts.append(f"{name} (on another process)")
        # The total follows from its terms, and the gradients from the loss: name the first
        # link of the chain.
        if len(bad) > 1 and GRADIENTS in bad:
            parts = [p for p in parts if not p.startswith(GRADIENTS)]
        if len(parts) > 1:
            parts = [p for p in parts if not p.startswith("loss =")] or parts
        step = trainer.global_step
        return (
            f"non-finite training loss at step {step} (epoch {trainer.current_epoch}): "
            + ", ".join(parts)
        )

    # ------------------------------------------------------------ logging and state
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.max_skips > 0:
            pl_module.log("train/skipped_nonfinite", float(self.skipped), on_step=True,
                          on_epoch=False, batch_size=1)  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))
