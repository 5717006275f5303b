"""The runs of a comparison: their directory, reuse or resumption, inference cost.

Run ``s`` of variant ``v`` lives in ``<out>/runs/<v>/seed<s>``
(:func:`run_overrides`). A directory that holds the same resolved config is
reused when its training finished and resumed when not
(:func:`existing_run`, :func:`fit_or_reuse`).

Example:
    >>> run_overrides([], ["dejavu.enabled=true"], 0, "out", "dejavu")[-2:]
    ['output_dir=out/runs/dejavu', 'name=seed0']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dejavu.toolkit.errors import RunExistsError

__all__ = ["existing_run", "fit_or_reuse", "inference_cost", "run_overrides"]


def run_overrides(
    overrides: Sequence[str],
    variant_overrides: Sequence[str],
    seed: int,
    out_dir: str | Path,
    variant: str,
) -> list[str]:
    """The overrides of run ``seed`` of ``variant``, in ``<out_dir>/runs/<variant>/seed<s>``.

    The common overrides come first, then the variant's, then the seed and the
    run directory (``output_dir`` and ``name``), which nothing else may set.

    Example:
        >>> run_overrides(["optim.lr=0.1"], ["dejavu.enabled=false"], 3, "out", "baseline")
        ['optim.lr=0.1', 'dejavu.enabled=false', 'seed=3', 'output_dir=out/runs/baseline',
         'name=seed3']
    """
    return [
        *overrides,
        *variant_overrides,
        f"seed={int(seed)}",
        f"output_dir={Path(out_dir) / 'runs' / variant}",
        f"name=seed{int(seed)}",
    ]


def existing_run(cfg: Any) -> tuple[str, Any]:
    """What the run directory of ``cfg`` holds: ``(state, result)``.

    ``state`` is ``"new"`` (no directory, or an empty one), ``"started"`` (files
    but no ``last.ckpt`` yet: a launch killed before its first save, which
    starts again from step 0), ``"unfinished"`` (a ``last.ckpt`` short of the
    configured last epoch or step: to resume) or ``"finished"`` (its last
    validation reached the end). ``result`` is a
    :class:`~dejavu.toolkit.training.FitResult` for a finished run (its
    ``train_time_s`` is the wall time from the config snapshot, written at the
    start of the last launch, to the last save), None otherwise.

    Raises:
        RunExistsError: the directory holds a run of another config.
    """
    from dejavu.toolkit.config import load_yaml
    from dejavu.toolkit.training import FitResult
    from dejavu.toolkit.training.callbacks import read_metrics

    run_dir = Path(cfg.output_dir) / cfg.name
    last = run_dir / "last.ckpt"
    if not last.exists():
        started = run_dir.is_dir() and any(run_dir.iterdir())
        return ("started" if started else "new"), None
    if not _same_run_config(load_yaml(run_dir / "config.yaml"), cfg):
        raise RunExistsError(
            f"{run_dir} holds a run with a different config; remove it or choose another --out"
        )
    final, history = read_metrics(run_dir / "metrics.json")
    t = cfg.trainer
    done = bool(history) and (
        history[-1]["step"] >= t.max_steps
        if t.max_steps > 0
        else history[-1]["epoch"] >= t.max_epochs - 1
    )
    if not done:
        return "unfinished", None
    best = run_dir / "best.ckpt"
    return "finished", FitResult(
        run_dir=run_dir,
        last_checkpoint=last,
        best_checkpoint=best if best.exists() else None,
        metrics=final,
        history=history,
        # Wall time from the config snapshot (written at the start) to the last save.
        train_time_s=last.stat().st_mtime - (run_dir / "config.yaml").stat().st_mtime,
    )


def fit_or_reuse(cfg: Any, run_fit: Callable[..., Any], say: Callable[[str], None], bar: Any):
    """Train one run of the comparison, or pick up what an earlier launch left.

    A run directory that already holds this exact resolved config is reused
    when its training finished (the last validation reached the configured
    last epoch or step) and resumed from ``last.ckpt`` otherwise, so an
    interrupted ``compare`` continues where it stopped, and runs trained
    separately (e.g. in parallel, with the same overrides) are collected
    instead of trained again (see :func:`existing_run`).
    """
    state, result = existing_run(cfg)
    run_dir = Path(cfg.output_dir) / cfg.name
    if state == "finished":
        say(f"reusing the finished run in {run_dir}")
        return result
    if state == "unfinished":
        say(f"resuming the unfinished run in {run_dir}")
    # resume=True: a run that saved nothing yet ("started") starts from step 0.
    return run_fit(cfg, resume=state != "new", enable_progress_bar=bar)


def _same_run_config(saved: Mapping[str, Any], cfg: Any) -> bool:
    """Whether a run directory's ``config.yaml`` describes the run ``cfg`` would train.

    The saved mapping is read back through the current schema, so keys added to
    the config since (with their defaults) do not make an old run look different.
    A baseline (``dejavu.enabled: false``) does not depend on the other ``dejavu``
    settings, so they are left out of its comparison: changing the DejaVu design
    does not invalidate the finished baselines.
    """
    from dejavu.toolkit.config import config_from_dict, config_to_dict

    try:
        old = config_to_dict(config_from_dict(dict(saved)))
    except ValueError:
        return False
    new = config_to_dict(cfg)
    if not new["dejavu"]["enabled"] and not old["dejavu"]["enabled"]:
        old.pop("dejavu")
        new.pop("dejavu")
    return old == new


def inference_cost(cfg: Any, checkpoint: str | Path) -> dict[str, Any]:
    """Parameters and GMACs of a run's inference network, at the run's input size.

    Returns:
        ``params`` (int), ``gmacs`` (float, one image), ``shared_attention``
        (whether the network has a DejaVu-SA block, which is inference compute)
        and ``class_names`` (None when the checkpoint has none).
    """
    from dejavu.toolkit import complexity
    from dejavu.toolkit.config import config_to_dict
    from dejavu.toolkit.training import load_eval_model

    model, meta = load_eval_model(checkpoint)
    cost = complexity.model_complexity(model, (1, 3, *_input_size(config_to_dict(cfg), meta)))
    names = meta.get("class_names")
    return {
        "params": int(cost["params"]),
        "gmacs": float(cost["gmacs"]),
        "shared_attention": bool(getattr(model, "supports_shared_attention", False)),
        "class_names": [str(c) for c in names] if names else None,
    }


def _input_size(cfg: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[int, int]:
    for source in (meta, cfg.get("data", {}) if isinstance(cfg.get("data"), Mapping) else {}):
        for key in ("input_size", "image_size", "crop_size", "size"):
            value = source.get(key)
            if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
                return int(value[0]), int(value[1])
    return 96, 128
