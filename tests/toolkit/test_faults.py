"""Faults during training (issue 10, section 2): non-finite losses and gradients.

A NaN is injected into one term of the objective's output (or into the
gradients) at a chosen step; the run stops before the optimiser step with a
message naming the step and the term, and the last checkpoint is left as it
was, or, with ``trainer.skip_nonfinite_steps``, the step is skipped without
updating any weight.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from tiny_runs import tiny_config

from dejavu.dejavu import DejaVu
from dejavu.toolkit.cli import main
from dejavu.toolkit.config import ExperimentConfig, load_config
from dejavu.toolkit.errors import NonFiniteLossError
from dejavu.toolkit.training import run_fit
from dejavu.toolkit.training.faults import NonFiniteGuard

TERMS = ("task", "regen", "regen_truth", "cyclic", "text", "sa")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scenes_cache")


def tiny(out: Path, cache: Path, *extra: str) -> ExperimentConfig:
    """4 scenes of 32 x 48, batches of 2: 2 steps per epoch, 2 epochs, CPU."""
    return tiny_config(out, cache, "faults", "data.num_train=4", "trainer.max_epochs=2", *extra)


def inject(monkeypatch: pytest.MonkeyPatch, term: str, steps: set[int]) -> None:
    """Make ``term`` of the objective's output NaN at the given global steps.

    ``term == "gradients"`` keeps every loss finite and makes the gradient of
    the first base-network parameter NaN instead (d sqrt(0 * p) / dp = inf * 0).
    """
    original = DejaVu.forward

    def forward(self, batch, step=None):  # type: ignore[no-untyped-def]
        out = original(self, batch, step)
        if step in steps:
            if term == "gradients":
                p = next(self.base.parameters())
                out["loss"] = out["loss"] + torch.sqrt(p.sum() * 0.0)
            else:
                out[term] = out[term] * float("nan")
                out["loss"] = out["loss"] + out[term]
        return out

    monkeypatch.setattr(DejaVu, "forward", forward)


class Snapshot(pl.Callback):
    """Keep last.ckpt's bytes when the second epoch starts (what a fault must not touch)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved: bytes | None = None

    def on_train_epoch_start(self, trainer, pl_module):  # type: ignore[no-untyped-def]
        if trainer.current_epoch == 1:
            self.saved = self.path.read_bytes()


@pytest.mark.parametrize("term", TERMS)
def test_a_nonfinite_term_stops_the_run_naming_step_and_term(
    term: str, tmp_path: Path, cache: Path, monkeypatch
) -> None:
    inject(monkeypatch, term, {1})
    cfg = tiny(tmp_path, cache, "trainer.max_epochs=1")
    with pytest.raises(NonFiniteLossError) as info:
        run_fit(cfg, enable_progress_bar=False)
    message = str(info.value)
    assert f"non-finite training loss at step 1 (epoch 0): {term} = nan" in message
    assert "no weight is non-finite" in message and "skip_nonfinite_steps" in message
    assert not (cfg.run_dir / "last.ckpt").exists()  # stopped before the first save


def test_the_last_good_checkpoint_is_kept(tmp_path: Path, cache: Path, monkeypatch) -> None:
    inject(monkeypatch, "regen", {2})  # the first step of the second epoch
    cfg = tiny(tmp_path, cache)
    last = cfg.run_dir / "last.ckpt"
    snapshot = Snapshot(last)
    with pytest.raises(NonFiniteLossError, match=r"at step 2 \(epoch 1\): regen = nan"):
        run_fit(cfg, enable_progress_bar=False, callbacks=[snapshot])
    assert snapshot.saved is not None and last.read_bytes() == snapshot.saved
    state = torch.load(last, weights_only=True)
    assert state["global_step"] == 2
    assert _finite(state["state_dict"])
    assert not list(cfg.run_dir.glob(".*.tmp"))


def test_nonfinite_gradients_stop_fit_in_one_line(tmp_path: Path, cache: Path, monkeypatch, capsys):
    inject(monkeypatch, "gradients", {2})
    cfg = tiny(tmp_path, cache)
    from dejavu.toolkit.config import save_config

    config = save_config(cfg, tmp_path / "faults.yaml")
    assert main(["fit", str(config), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "non-finite training loss at step 2 (epoch 1): gradients, first in model.base." in err
    state = torch.load(cfg.run_dir / "last.ckpt", weights_only=True)
    assert state["global_step"] == 2


class Weights(pl.Callback):
    """The base network's weights before and after every training batch."""

    def __init__(self) -> None:
        self.before: dict[int, dict] = {}
        self.after: dict[int, dict] = {}

    @staticmethod
    def _copy(module):  # type: ignore[no-untyped-def]
        return {k: v.clone() for k, v in module.eval_model().state_dict().items()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # type: ignore[no-untyped-def]
        self.before[trainer.global_step] = self._copy(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # type: ignore[no-untyped-def]
        self.after[trainer.global_step - 1] = self._copy(pl_module)


def _finite(state: dict) -> bool:
    tensors = [v for v in state.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    return bool(tensors) and all(bool(torch.isfinite(v).all()) for v in tensors)


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a if b[k].is_floating_point())


def test_skip_nonfinite_steps_skips_without_updating(tmp_path: Path, cache: Path, monkeypatch):
    inject(monkeypatch, "regen", {1, 2})
    cfg = tiny(tmp_path, cache, "trainer.skip_nonfinite_steps=2")
    weights = Weights()
    with pytest.warns(UserWarning, match=r"step 2 .*regen = nan; skipped it .*2 of"):
        result = run_fit(cfg, enable_progress_bar=False, callbacks=[weights])
    assert [h["step"] for h in result.history] == [2, 4]
    # skipped steps changed no weight; the others did
    assert _same(weights.before[1], weights.after[1]) and _same(weights.before[2], weights.after[2])
    assert not _same(weights.before[3], weights.after[3])
    state = torch.load(result.last_checkpoint, weights_only=True)
    assert state["global_step"] == 4  # the steps count ...
    adam = state["optimizer_states"][0]["state"]
    assert {float(s["step"]) for s in adam.values()} == {2.0}  # ... the updates do not
    assert state["callbacks"]["NonFiniteGuard"] == {"skipped": 2}
    assert _finite(state["state_dict"])
    (path,) = result.run_dir.glob("csv/version_*/metrics.csv")
    with path.open() as f:
        logged = [r["train/skipped_nonfinite"] for r in csv.DictReader(f)]
    assert [float(v) for v in logged if v] == [0.0, 1.0, 2.0, 2.0]
    assert math.isfinite(result.metrics["loss"])


def test_skipping_stops_once_the_allowance_is_spent(tmp_path: Path, cache: Path, monkeypatch):
    inject(monkeypatch, "task", {1, 2})
    cfg = tiny(tmp_path, cache, "trainer.skip_nonfinite_steps=1")
    with (
        pytest.warns(UserWarning, match="skipped it"),
        pytest.raises(NonFiniteLossError, match=r"at step 2 .*all 1 steps .* already skipped"),
    ):
        run_fit(cfg, enable_progress_bar=False)


def test_guard_unit() -> None:
    from dejavu.toolkit.training.faults import nonfinite_terms

    terms = {k: torch.tensor(1.0) for k in TERMS}
    assert nonfinite_terms(terms) == []
    for k in TERMS:
        for bad in (float("nan"), float("inf"), -float("inf")):
            assert nonfinite_terms({**terms, k: torch.tensor(bad)}) == [k]
    with pytest.raises(ValueError, match="max_skips"):
        NonFiniteGuard(-1)
    with pytest.raises(ValueError, match="skip_nonfinite_steps"):
        load_config(None, ["trainer.skip_nonfinite_steps=-1"])


def test_last_checkpoint_is_written_even_when_the_metric_does_not_improve(
    tmp_path: Path, cache: Path, monkeypatch
) -> None:
    # Lightning 2.6 writes a callback's last.ckpt only when its monitored metric improved:
    # with a validation score that never improves, last.ckpt (and base.safetensors) stayed
    # at the first epoch while training went on.
    from dejavu.toolkit.training.module import DejaVuModule

    def flat(self, metrics, prefix):  # type: ignore[no-untyped-def]
        metrics.reset()
        if not self.trainer.sanity_checking:
            self.log_dict({f"{prefix}/seg/miou": 0.5, f"{prefix}/loss": 1.0})
        return {}

    monkeypatch.setattr(DejaVuModule, "_eval_epoch_end", flat)
    cfg = tiny(tmp_path, cache, "trainer.max_epochs=3")
    result = run_fit(cfg, enable_progress_bar=False)
    assert [h["step"] for h in result.history] == [2, 4, 6]
    assert torch.load(result.last_checkpoint, weights_only=True)["global_step"] == 6
    assert torch.load(result.best_checkpoint, weights_only=True)["global_step"] == 2
    import json

    assert json.loads((result.run_dir / "base.json").read_text())["global_step"] == 6
