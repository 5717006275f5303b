"""The runs of a comparison: their directory, reuse or resumption, inference cost.

Run ``s`` of variant ``v`` lives in ``<out>/runs/<v>/seed<s>``
(:func:`run_overrides`). A directory that holds the same resolved config is
reused when its training finished and resumed when not
(:func:`existing_run`, :func:`fit_or_reuse`). A finished run keeps its result
when its checkpoints are deleted to save disk (:func:`prune_run`: the 64 MB
of a run of the studies' network go; the few KB that collect its result and
the logs stay), so a sweep of hundreds of runs can be archived, moved to
another machine and collected again.

Example:
    >>> run_overrides([], ["dejavu.enabled=true"], 0, "out", "dejavu")[-2:]
    ['output_dir=out/runs/dejavu', 'name=seed0']
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dejavu.toolkit.errors import ConfigError, RunExistsError

__all__ = [
    "RUN_RECORD",
    "existing_run",
    "find_run_dirs",
    "fit_or_reuse",
    "inference_cost",
    "prunable",
    "prune_run",
    "run_overrides",
]

#: What a pruned run keeps of its checkpoints: ``{"format", "train_time_s", "removed"}``.
RUN_RECORD = "result.json"
#: What :func:`prune_run` removes: the checkpoints (and, unless kept, the base weights).
_CHECKPOINTS = ("last.ckpt", "best.ckpt")


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
    configured last epoch or step, or not yet validated: to resume) or
    ``"finished"`` (its last validation reached the end; also a pruned run,
    :func:`prune_run`).
    ``result`` is a :class:`~dejavu.toolkit.training.FitResult` for a finished
    run (its ``train_time_s`` is the wall time from the config snapshot,
    written at the start of the last launch, to the last save, or what
    :data:`RUN_RECORD` kept of it; ``last_checkpoint`` is None once pruned),
    None otherwise.

    Raises:
        RunExistsError: the directory holds a run of another config.
    """
    from dejavu.toolkit.config import load_yaml
    from dejavu.toolkit.training import FitResult
    from dejavu.toolkit.training.callbacks import read_metrics

    run_dir = Path(cfg.output_dir) / cfg.name
    last = run_dir / "last.ckpt"
    pruned = not last.exists() and (run_dir / RUN_RECORD).is_file()
    if not last.exists() and not pruned:
        started = run_dir.is_dir() and any(run_dir.iterdir())
        return ("started" if started else "new"), None
    if not _same_run_config(load_yaml(run_dir / "config.yaml"), cfg):
        raise RunExistsError(
            f"{run_dir} holds a run with a different config; remove it or choose another --out"
        )
    # Unpruned, a missing metrics.json is a launch killed before its first validation.
    final, history = read_metrics(run_dir / "metrics.json", missing_ok=not pruned)
    if not _reached_end(history, cfg.trainer):
        if pruned:  # prune_run refuses these; a record written by hand or for another schedule
            raise RunExistsError(
                f"{run_dir} holds a pruned run that did not reach the end of its schedule "
                "(no last.ckpt to resume from); remove it to train the run again"
            )
        return "unfinished", None
    best = run_dir / "best.ckpt"
    return "finished", FitResult(
        run_dir=run_dir,
        last_checkpoint=None if pruned else last,
        best_checkpoint=best if best.exists() else None,
        metrics=final,
        history=history,
        train_time_s=_read_record(run_dir)["train_time_s"] if pruned else _train_time(run_dir),
    )


def prune_run(run_dir: str | Path, *, keep_base: bool = False) -> list[Path]:
    """Delete a finished run's checkpoints, keeping what collects its result.

    Writes :data:`RUN_RECORD` (the training time, which :func:`existing_run`
    otherwise reads from the checkpoint's date) and removes ``last.ckpt``,
    ``best.ckpt`` and, unless ``keep_base``, ``base.safetensors``. What stays
    (``config.yaml``, ``metrics.json``, ``base.json``, the logs) is what a
    ``compare`` or ``sweep`` reads to reuse the run, and its inference cost is
    measured on a network rebuilt from ``base.json``. The run can no longer be
    resumed, evaluated or exported. Pruning a pruned run changes nothing.

    Args:
        run_dir: a run directory of ``dejavu fit``.
        keep_base: keep ``base.safetensors`` (the trained network, a quarter of
            the checkpoint's size for the studies' network) to evaluate or export.

    Returns:
        The files removed.

    Raises:
        FileNotFoundError: ``run_dir`` is not a run directory (no ``config.yaml``).
        ValueError: the run is not finished (it still needs ``last.ckpt`` to be
            resumed) or never saved.

    Example:
        >>> prune_run("no/such/run")
        Traceback (most recent call last):
        ...
        dejavu.toolkit.errors.UserPathError: no/such/run: no config.yaml: not a run directory ...
    """
    from dejavu.toolkit.artifact import atomic_write
    from dejavu.toolkit.errors import UserPathError

    run_dir = Path(run_dir)
    files, why_not = prunable(run_dir, keep_base=keep_base)
    if why_not is not None:
        error = UserPathError if not (run_dir / "config.yaml").is_file() else ConfigError
        raise error(f"{run_dir}: {why_not}")
    record = run_dir / RUN_RECORD
    if not record.is_file():  # written before anything goes: a kill loses no result
        with atomic_write(record, "w") as f:
            json.dump({"format": "dejavu-run-result", "train_time_s": _train_time(run_dir)}, f)
    for path in files:
        path.unlink()
    if files:
        info = _read_record(run_dir)
        info["removed"] = sorted({*info.get("removed", []), *(p.name for p in files)})
        with atomic_write(record, "w") as f:
            json.dump(info, f)
    return files


def prunable(run_dir: str | Path, *, keep_base: bool = False) -> tuple[list[Path], str | None]:
    """What :func:`prune_run` would remove, and why it would refuse (None: it would not).

    Example:
        >>> prunable("no/such/run")
        ([], 'no config.yaml: not a run directory of dejavu fit')
    """
    from dejavu.toolkit.artifact import BASE_WEIGHTS
    from dejavu.toolkit.config import config_from_dict, load_yaml
    from dejavu.toolkit.training.callbacks import read_metrics

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        return [], "no config.yaml: not a run directory of dejavu fit"
    names = _CHECKPOINTS if keep_base else (*_CHECKPOINTS, BASE_WEIGHTS)
    files = [run_dir / n for n in names if (run_dir / n).is_file()]
    if (run_dir / RUN_RECORD).is_file():
        return files, None
    if not (run_dir / "last.ckpt").is_file():
        return [], "no last.ckpt: a run that never saved, so no result to keep"
    # A launch killed between its first save and its first validation has no history.
    _, history = read_metrics(run_dir / "metrics.json", missing_ok=True)
    trainer = config_from_dict(dict(load_yaml(run_dir / "config.yaml"))).trainer
    if not _reached_end(history, trainer):
        return [], "not finished (short of the schedule's end): it resumes from last.ckpt"
    return files, None


def find_run_dirs(path: str | Path) -> list[Path]:
    """The run directories of ``dejavu fit`` at or under ``path``, sorted.

    A run directory holds a ``config.yaml`` and a ``metrics.json``, a
    ``last.ckpt`` or a :data:`RUN_RECORD` (a ``config.yaml`` alone is a config).

    Example:
        >>> find_run_dirs("no/such/folder")
        []
    """
    found = []
    for config in sorted(Path(path).rglob("config.yaml")):
        run_dir = config.parent
        if any((run_dir / n).is_file() for n in ("metrics.json", "last.ckpt", RUN_RECORD)):
            found.append(run_dir)
    return found


def _reached_end(history: Sequence[Mapping[str, float]], trainer: Any) -> bool:
    """Whether the last validation is at the configured last step (or epoch)."""
    if not history:
        return False
    if trainer.max_steps > 0:
        return bool(history[-1]["step"] >= trainer.max_steps)
    return bool(history[-1]["epoch"] >= trainer.max_epochs - 1)


def _train_time(run_dir: Path) -> float:
    # Wall time from the config snapshot (written at the start) to the last save.
    last = run_dir / "last.ckpt"
    return last.stat().st_mtime - (run_dir / "config.yaml").stat().st_mtime


def _read_record(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_RECORD
    try:
        info = json.loads(path.read_text())
        float(info["train_time_s"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ConfigError(
            f"{path} is not a pruned run's record (a JSON object with train_time_s); "
            "remove the run directory to train it again"
        ) from None
    return dict(info)


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


def inference_cost(cfg: Any, checkpoint: str | Path | None) -> dict[str, Any]:
    """Parameters and GMACs of a run's inference network, at the run's input size.

    Args:
        cfg: the run's config.
        checkpoint: its ``last.ckpt``; None for a pruned run (:func:`prune_run`),
            whose network is rebuilt, untrained, from the run's ``base.json``
            (neither figure depends on the weights).

    Returns:
        ``params`` (int), ``gmacs`` (float, one image), ``shared_attention``
        (whether the network has a DejaVu-SA block, which is inference compute)
        and ``class_names`` (None when the checkpoint has none).
    """
    from dejavu.toolkit import complexity
    from dejavu.toolkit.config import config_to_dict
    from dejavu.toolkit.training import load_eval_model

    if checkpoint is None:
        from dejavu.toolkit.artifact import (
            BASE_JSON,
            BASE_WEIGHTS,
            base_network,
            read_base_metadata,
        )

        run_dir = Path(cfg.output_dir) / cfg.name
        # Only the JSON is read: the weights beside it may be pruned too.
        meta = read_base_metadata(run_dir / BASE_WEIGHTS)
        model = base_network(meta, run_dir / BASE_JSON).eval()
    else:
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
