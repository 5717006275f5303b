"""Faults during training: non-finite losses and gradients, SIGTERM and Ctrl-C.

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

:class:`GracefulInterrupt` turns SIGTERM and the first Ctrl-C (SIGINT) into a
stop at the end of the current training step (or, when a validation is
running or due, at its end): it writes a resumable ``last.ckpt`` there and
:func:`interrupt_errors` turns the stop into
:class:`~dejavu.toolkit.errors.RunInterruptedError` (exit status 143 for
SIGTERM, 130 for SIGINT) saying what was saved. A second Ctrl-C stops at
once (``last.ckpt`` is then the last one saved before). A checkpoint written
in the middle of an epoch resumes exactly: the training samplers skip the
batches of the epoch that were already trained (:func:`batches_done_in_epoch`).
Under DDP the processes agree (all-reduce) on the step to stop at.

Under DDP, when one process dies the others must not wait for it forever:
with gloo a dead peer's closed connection fails their next collective
operation at once, and :func:`ddp_strategy` gives the process group the
timeout ``trainer.ddp_timeout_s`` for a process that hangs (or a backend that
cannot tell). :func:`distributed_errors` reports either as
:class:`~dejavu.toolkit.errors.DistributedFailureError`, one line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import Tensor

from dejavu.toolkit.config.schema import DDP_STRATEGIES
from dejavu.toolkit.errors import (
    DistributedFailureError,
    NonFiniteLossError,
    RunInterruptedError,
)

__all__ = [
    "GracefulInterrupt",
    "NonFiniteGuard",
    "batches_done_in_epoch",
    "ddp_strategy",
    "distributed_errors",
    "fault_point",
    "interrupt_errors",
    "nonfinite_terms",
]

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
        # The total follows from its terms, and the gradients from the loss: name the first
        # link of the chain.
        named = [n for n in bad if n != GRADIENTS] or bad
        named = [n for n in named if n != "loss"] or named
        parts = []
        for name in named:
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
            elif name in self._values and nonfinite_terms({name: self._values[name]}):
                parts.append(f"{name} = {_describe(self._values[name])}")
            else:  # finite here: another process saw it (the decision is all-reduced)
                parts.append(f"{name} (on another process)")
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


# ---------------------------------------------------------------------- SIGTERM and Ctrl-C
_PAUSE_ENV = "DEJAVU_TEST_PAUSE"
_pause_counts: dict[str, int] = {}
_signal_seen = threading.Event()


def fault_point(point: str) -> None:
    """A test-only pause, so that a test can kill or signal the process at a known moment.

    ``DEJAVU_TEST_PAUSE=<point>:<n>:<marker file>[:<seconds>]`` makes the
    ``n``-th call (from 1) with this ``point`` write ``marker file`` and sleep
    (default 60 s; 0: just write the marker; less once a signal has been
    handled). Points: ``step`` (the end of every training step) and a
    checkpoint's file name, ``last.ckpt`` or ``best.ckpt`` (inside every write
    of that file, after the data went to the temporary file and before it is
    renamed over the old one). Without the variable it returns at once (one
    dictionary look-up): nothing changes in production.
    """
    spec = os.environ.get(_PAUSE_ENV)
    if not spec:
        return
    where, n, marker, *rest = spec.split(":")
    if where != point:
        return
    _pause_counts[point] = _pause_counts.get(point, 0) + 1
    if _pause_counts[point] != int(n):
        return
    Path(marker).write_text(f"{point} {n} pid {os.getpid()}\n")
    deadline = time.monotonic() + (float(rest[0]) if rest else 60.0)
    while time.monotonic() < deadline and not _signal_seen.is_set():
        time.sleep(0.02)


_SIGNAL_NAMES: dict[int, str] = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}
_EXIT_CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _set_lightning_stop(trainer: pl.Trainer, value: bool) -> None:
    # Lightning's own graceful stop: SIGTERMException at the end of the training step
    # (after the step is complete, before the next one) when this flag is set.
    trainer._signal_connector.received_sigterm = value


class GracefulInterrupt(pl.Callback):
    """Stop at the end of the current step on SIGTERM or Ctrl-C and write ``last_path``.

    Its handlers replace Lightning's SIGTERM handler (and Python's SIGINT one)
    when training starts; Lightning puts the originals back when ``fit`` ends.

    Args:
        last_path: the checkpoint to write (``run_dir / "last.ckpt"``).
    """

    def __init__(self, last_path: str | Path) -> None:
        self.last_path = Path(last_path)
        self.requested: int | None = None  # the signal received, not yet acted on
        self.stopping: int | None = None  # the signal the processes agreed to stop for
        self.saved_step: int | None = None
        self._saved_by_validation: int | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        _signal_seen.set()
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once
        if self.requested is None:
            self.requested = signum
            print(
                f"dejavu: {_SIGNAL_NAMES.get(signum, signum)} received: stopping after this "
                "step and saving a checkpoint (Ctrl-C again to stop at once)",
                file=sys.stderr,
                flush=True,
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._handle)

    def _agree(self, trainer: pl.Trainer) -> int | None:
        code = self.requested if self.requested is not None else 0
        if trainer.world_size > 1:  # every process stops at the same step
            t = torch.tensor(float(code), device=trainer.strategy.root_device)
            code = int(trainer.strategy.reduce(t, reduce_op="max").item())
        return code or None

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        fault_point("step")
        if self.stopping is None:
            self.stopping = self._agree(trainer)
        if self.stopping is not None:
            _set_lightning_stop(trainer, True)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A validation that is due runs to its end (its checkpoint is written as usual).
        if self.stopping is not None and not trainer.sanity_checking:
            _set_lightning_stop(trainer, False)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self.stopping is None:  # a signal that came during the validation
            self.stopping = self._agree(trainer)
        if self.stopping is not None:
            _set_lightning_stop(trainer, True)
            # The checkpoint callback writes last.ckpt right after this hook, at this step:
            # the run stops there and resumes from it as from any validation's checkpoint.
            self._saved_by_validation = int(trainer.global_step)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self.stopping is None or not isinstance(exception, SIGTERMException):
            return
        if self._saved_by_validation != trainer.global_step:
            trainer.save_checkpoint(self.last_path)
        self.saved_step = int(trainer.global_step)

    def error(self, forced: bool = False) -> RunInterruptedError:
        """The error that reports this interruption (what was saved, how to go on)."""
        signum = self.stopping or self.requested or signal.SIGINT
        what = _SIGNAL_NAMES.get(signum, f"signal {signum}")
        if self.saved_step is not None:
            message = (
                f"interrupted by {what} after step {self.saved_step}: saved {self.last_path}, "
                "a resumable checkpoint"
            )
            resumable = True
        else:
            resumable = self.last_path.is_file()
            kept = (
                f"{self.last_path} (the last checkpoint saved before) is kept"
                if resumable
                else "no checkpoint was saved yet"
            )
            how = "stopped at once" if forced else "before the first training step"
            message = f"interrupted by {what} ({how}): {kept}"
        return RunInterruptedError(message, _EXIT_CODES.get(signum, 130), resumable=resumable)


@contextlib.contextmanager
def interrupt_errors(interrupt: GracefulInterrupt) -> Iterator[None]:
    """Turn the ways ``Trainer.fit`` ends on a signal into :class:`RunInterruptedError`.

    Lightning raises ``SIGTERMException`` (a ``SystemExit``) for a graceful stop
    and calls ``sys.exit(1)`` on a ``KeyboardInterrupt``.
    """
    try:
        yield
    except SIGTERMException:
        raise interrupt.error() from None
    except KeyboardInterrupt:
        raise interrupt.error(forced=True) from None
    except SystemExit as exc:
        if exc.code == 1 and (interrupt.requested is not None or interrupt.stopping is not None):
            raise interrupt.error(forced=True) from None
        if exc.code == 1 and interrupt.requested is None:  # Ctrl-C before our handler was set
            interrupt.requested = signal.SIGINT
            raise interrupt.error(forced=True) from None
        raise


def batches_done_in_epoch(trainer: pl.Trainer | None) -> int:
    """Training batches of the current epoch that a run resumed mid-epoch has already done.

    0 unless ``trainer`` is resuming from a checkpoint written in the middle of
    an epoch (by :class:`GracefulInterrupt`); the training samplers leave out
    that many batches of the epoch so that the run continues with the next one.
    """
    if trainer is None:
        return 0
    loop = trainer.fit_loop
    progress = loop.epoch_loop.batch_progress.current
    epochs: Any = loop.epoch_progress.current  # a _ProcessedTracker (started, processed)
    if epochs.started <= epochs.processed:  # between epochs (or an epoch-end checkpoint)
        return 0
    done = int(progress.completed)
    return max(done, 0)


# ---------------------------------------------------------------------- DDP
def ddp_strategy(name: str, timeout_s: float | None) -> Any:
    """``trainer.strategy`` as Lightning takes it: the name, or a ``DDPStrategy`` with a timeout.

    Args:
        name: the strategy's name (``ddp``, ``ddp_spawn``, ...).
        timeout_s: seconds a process waits for the others in a collective operation
            (the process group's timeout); ``None``: the name unchanged (torch's
            default timeout, 30 minutes).

    Raises:
        ValueError: a timeout for a strategy that is not one of :data:`DDP_STRATEGIES`.

    Example:
        >>> ddp_strategy("ddp", None)
        'ddp'
        >>> ddp_strategy("ddp", 60)._timeout
        datetime.timedelta(seconds=60)
    """
    if timeout_s is None:
        return name
    if name not in DDP_STRATEGIES:
        raise ValueError(
            f"trainer.ddp_timeout_s needs a DDP trainer.strategy ({', '.join(DDP_STRATEGIES)}), "
            f"got {name!r}"
        )
    from datetime import timedelta

    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(timeout=timedelta(seconds=float(timeout_s)), **DDP_STRATEGIES[name])


_PEER_FAILURES = (
    "connection closed by peer",
    "connection reset by peer",
    "broken pipe",
    "timed out",
    "timeout",
    "nccl",
    "gloo",
    "process group",
    "processgroup",
)


def _is_peer_failure(exc: BaseException) -> bool:
    dist_error = getattr(torch.distributed, "DistError", None)
    if dist_error is not None and isinstance(exc, dist_error):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(s in text for s in _PEER_FAILURES)


@contextlib.contextmanager
def distributed_errors(world_size: int, last_path: Path) -> Iterator[None]:
    """Report a collective operation that failed because another process died or hung.

    Only with several processes; the error (exit status 1 on the command line)
    says that this process stopped instead of waiting, and what to resume from.
    """
    try:
        yield
    except Exception as exc:
        if world_size <= 1 or not _is_peer_failure(exc):
            raise
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        reason = lines[0] if lines else type(exc).__name__
        saved = (
            f"{last_path} is the last complete checkpoint: start every process again with --resume"
            if last_path.is_file()
            else "no checkpoint was saved yet"
        )
        raise DistributedFailureError(
            f"another process of the distributed run died or stopped answering, so this one "
            f"stopped too instead of waiting ({type(exc).__name__}: {reason}); {saved}"
        ) from exc
