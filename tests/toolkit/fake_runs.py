"""Training replaced by looked-up results, for the statistics of ``compare`` and ``sweep``.

No network is trained: each run's final val metrics come from a callable of the
run's group (the name of its output folder, ``<out>/runs/<group>``: a compare
variant or a sweep cell) and its seed, so a test fixes every per-seed value and
checks the statistics computed from them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch


def fake_training(
    monkeypatch,
    metrics: Callable[[str, int], dict[str, float]],
    *,
    calls: list | None = None,
    class_names: list[str] | None = None,
) -> None:
    """Patch ``run_fit`` (and the model loading and GMACs that follow it) for one test.

    Args:
        monkeypatch: the test's pytest fixture.
        metrics: ``(group, seed) -> {"seg/miou": ..., ...}``, the run's final val
            metrics without the ``val/`` prefix; ``seg/miou`` is also its history.
        calls: where each trained ``(group, seed)`` is appended, if given.
        class_names: the checkpoint's class names (none if not given).
    """
    import dejavu.toolkit.training as training
    from dejavu.toolkit import complexity
    from dejavu.toolkit.training import FitResult

    def fake_fit(cfg, **_kw):
        group = Path(cfg.output_dir).name
        if calls is not None:
            calls.append((group, cfg.seed))
        final = metrics(group, cfg.seed)
        run_dir = Path(cfg.output_dir) / cfg.name
        return FitResult(
            run_dir=run_dir,
            last_checkpoint=run_dir / "last.ckpt",
            best_checkpoint=None,
            metrics={f"val/{key}": value for key, value in final.items()},
            history=[{"epoch": 0, "step": 2, "seg/miou": final["seg/miou"]}],
            train_time_s=1.0,
        )

    meta = {"class_names": class_names} if class_names is not None else {}
    monkeypatch.setattr(training, "run_fit", fake_fit)
    monkeypatch.setattr(training, "load_eval_model", lambda _ckpt: (torch.nn.Identity(), meta))
    monkeypatch.setattr(complexity, "model_complexity", lambda *_a: {"params": 7, "gmacs": 0.25})
