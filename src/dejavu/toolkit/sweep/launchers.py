"""How a sweep's runs are trained: in this process, as ``dejavu fit`` subprocesses, or as
submitit jobs (submitit's local executor or SLURM).

Every launcher trains, resumes or reuses a run with
:func:`~dejavu.toolkit.compare.fit_or_reuse` (in a subprocess or job through
``dejavu fit --resume`` or :func:`train_run`), so a sweep that is stopped
continues where it stopped when run again.

Example:
    >>> LAUNCHERS
    ('local', 'submitit-local', 'slurm')
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from dejavu.toolkit import compare
from dejavu.toolkit.compare.report import _final_metrics, _summary
from dejavu.toolkit.errors import ConfigError
from dejavu.toolkit.sweep.plan import SweepPlan, SweepRun

__all__ = ["LAUNCHERS", "TrainJob", "make_executor", "train_run"]


#: How runs are launched: in this process or ``dejavu fit`` subprocesses (``local``), as
#: jobs of submitit's local executor (``submitit-local``) or on a SLURM cluster (``slurm``).
LAUNCHERS: tuple[str, ...] = ("local", "submitit-local", "slurm")


def train_run(
    config: str, overrides: Sequence[str], plugins: Sequence[str] = (), threads: int | None = None
) -> Any:
    """Train, resume or reuse one run (:func:`~dejavu.toolkit.compare.fit_or_reuse`): a job.

    What a submitit job runs; importable, so the job pickles it by reference.

    Args:
        config: the experiment config file.
        overrides: the run's overrides (:attr:`SweepRun.overrides`).
        plugins: ``--plugin`` files or modules to import first.
        threads: torch threads (None: torch's default).

    Returns:
        The run's :class:`~dejavu.toolkit.training.FitResult`.
    """
    import torch

    from dejavu.toolkit.cli import load_plugins
    from dejavu.toolkit.config import load_config
    from dejavu.toolkit.training import run_fit

    if threads is not None:
        torch.set_num_threads(int(threads))
    load_plugins([str(p) for p in plugins])
    cfg = load_config(config, list(overrides))
    return compare.fit_or_reuse(cfg, run_fit, lambda line: print(line, flush=True), False)


class TrainJob:
    """:func:`train_run` as a submitit job that SLURM may stop and submitit requeue.

    When a job reaches its time limit or is preempted, submitit calls
    :meth:`checkpoint` and requeues the job with what it returns: the same
    run, which :func:`~dejavu.toolkit.compare.fit_or_reuse` then resumes from
    its ``last.ckpt`` (what submitit's ``helpers.Checkpointable`` does, without
    importing submitit here).

    Example:
        >>> job = TrainJob()
        >>> callable(job) and hasattr(job, "checkpoint")
        True
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return train_run(*args, **kwargs)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """The submission to requeue: this job with the same arguments."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def make_executor(
    launcher: str,
    folder: str | Path,
    *,
    partition: str | None = None,
    gpus_per_node: int | None = None,
    timeout_min: int | None = None,
    array_parallelism: int | None = None,
    options: Sequence[str] = (),
) -> Any:
    """A submitit executor for ``launcher`` (``"slurm"`` or ``"submitit-local"``), configured.

    ``slurm``: ``submitit.AutoExecutor(folder, cluster="slurm")`` with
    ``timeout_min`` (required: submitit's default is 5 minutes), ``partition``,
    ``gpus_per_node``, ``array_parallelism`` (jobs of the array at a time) and
    ``options``, ``KEY=VALUE`` strings passed as ``slurm_KEY`` (the value
    parsed as YAML; any ``SlurmExecutor`` parameter: ``qos``, ``account``,
    ``cpus_per_task``, ``mem``, ``constraint``, ``additional_parameters``...).
    ``submitit-local``: ``submitit.LocalExecutor(folder)`` with
    ``timeout_min`` (default a week) and ``gpus_per_node``.

    Raises:
        ConfigError: submitit is not installed (the ``slurm`` extra), SLURM is
            not there, an option that the launcher does not take, or one that
            submitit refuses.
    """
    from dejavu.toolkit.config.loading import _parse_yaml

    if launcher not in ("slurm", "submitit-local"):
        raise ConfigError(f"submitit launchers are 'slurm' and 'submitit-local', got {launcher!r}")
    try:
        import submitit
    except ImportError as exc:
        raise ConfigError(
            f"--launcher {launcher} needs submitit: pip install 'dejavu-dense[slurm]' "
            "(or pip install 'submitit>=1.5')"
        ) from exc
    params: dict[str, Any] = {}
    executor: Any
    if gpus_per_node is not None:
        params["gpus_per_node"] = int(gpus_per_node)
    if launcher == "submitit-local":
        for given, flag in (
            (partition, "--partition"),
            (array_parallelism, "--slurm-array-parallelism"),
            (options, "--slurm-option"),
        ):
            if given:
                raise ConfigError(f"{flag} applies to --launcher slurm only")
        executor = submitit.LocalExecutor(folder=str(folder))
        # submitit's local default is 2 minutes: far too short for a training.
        params["timeout_min"] = int(timeout_min) if timeout_min is not None else 7 * 24 * 60
    else:
        if timeout_min is None:
            raise ConfigError(
                "--launcher slurm needs --timeout-min (SLURM stops a job after it; submitit's "
                "default is 5 minutes); a run stopped by it resumes when the same sweep runs again"
            )
        params["timeout_min"] = int(timeout_min)
        params["name"] = "dejavu-sweep"
        if partition is not None:
            params["slurm_partition"] = str(partition)
        if array_parallelism is not None:
            params["slurm_array_parallelism"] = int(array_parallelism)
        for option in options:
            key, sep, text = option.partition("=")
            key = key.strip()
            if not sep or not re.fullmatch(r"[a-z_]+", key):
                raise ConfigError(
                    f"--slurm-option must look like KEY=VALUE with a submitit SlurmExecutor "
                    f"parameter as KEY (qos, account, cpus_per_task, mem, ...), got {option!r}"
                )
            params[f"slurm_{key}"] = _parse_yaml(text, f"--slurm-option {option!r}")
        try:
            executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        except RuntimeError as exc:  # no srun: not a SLURM machine
            raise ConfigError(
                f"--launcher slurm: {exc} (use --launcher submitit-local or --jobs here)"
            ) from None
    try:
        executor.update_parameters(**params)
    except (NameError, ValueError, TypeError, AssertionError) as exc:
        raise ConfigError(f"submitit refused the job options {params}: {exc}") from None
    return executor


def _fit_command(run: SweepRun, config: Path, plugins: Sequence[str], resume: bool) -> list[str]:
    # `dejavu fit CONFIG --set ...` through this interpreter (a venv's `dejavu` may not be on PATH).
    cmd = [sys.executable, "-m", "dejavu.toolkit.cli"]
    for plugin in plugins:
        cmd += ["--plugin", str(plugin)]
    cmd += ["fit", str(config), "--no-progress"]
    for override in run.overrides:
        cmd += ["--set", override]
    return [*cmd, "--resume"] if resume else cmd


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return " | ".join(line.strip() for line in tail if line.strip())


class _Subprocesses:
    """``dejavu fit`` subprocesses, ``jobs`` at a time; terminated together on an error."""

    def __init__(self, plan: SweepPlan, plugins: Sequence[str], jobs: int, threads: int) -> None:
        self.plan, self.plugins, self.jobs = plan, list(plugins), jobs
        self.env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        self.procs: set[subprocess.Popen[bytes]] = set()
        self.lock = threading.Lock()

    def log_path(self, run: SweepRun) -> Path:
        return self.plan.out_dir / "logs" / run.cell.name / f"seed{run.seed}.log"

    def fit(self, run: SweepRun, resume: bool) -> Any:
        cmd = _fit_command(run, self.plan.config, self.plugins, resume)
        log = self.log_path(run)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as sink:  # appended: a resumed run keeps its earlier log
            sink.write(
                f"$ OMP_NUM_THREADS={self.env['OMP_NUM_THREADS']} {shlex.join(cmd)}\n".encode()
            )
            sink.flush()
            proc = subprocess.Popen(cmd, env=self.env, stdout=sink, stderr=subprocess.STDOUT)
            with self.lock:
                self.procs.add(proc)
            try:
                code = proc.wait()
            finally:
                with self.lock:
                    self.procs.discard(proc)
        state, result = compare.existing_run(run.cfg)
        if code != 0 or state != "finished":
            raise RuntimeError(
                f"{run.label}: `dejavu fit` exited with status {code}; its log: {log} "
                f"(last lines: {_log_tail(log)})"
            )
        return result

    def stop(self) -> None:
        # SIGTERM: each run writes a resumable last.ckpt and stops.
        with self.lock:
            for proc in self.procs:
                proc.terminate()


def _done_line(run: SweepRun, result: Any) -> str:
    metrics = _summary(_final_metrics(result.metrics))
    shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
    return f"{run.label}: done in {result.train_time_s:.1f} s: {shown}"


def _run_all(
    plan: SweepPlan,
    todo: Sequence[SweepRun],
    *,
    jobs: int,
    threads: int,
    launcher: str,
    executor: Any,
    plugins: Sequence[str],
    say: Callable[[str], Any],
    advance: Callable[[str], None],
) -> dict[SweepRun, Any]:
    """Train (or resume) ``todo``; the :class:`FitResult` of each. Failed runs are reported
    together once the others are done (what finished is kept and reused next time).

    ``threads`` is each subprocess's ``OMP_NUM_THREADS`` and each submitit-local job's torch
    threads (unused in process and on SLURM)."""
    from dejavu.toolkit.training import run_fit

    results: dict[SweepRun, Any] = {}
    failures: list[str] = []

    def finish(run: SweepRun, result: Any) -> None:
        results[run] = result
        say(_done_line(run, result))
        advance(run.label)

    if launcher == "local" and jobs == 1:
        for run in todo:
            say(f"{run.label}: training ...")
            finish(run, compare.fit_or_reuse(run.cfg, run_fit, say, False))
    elif launcher == "local":
        pool = _Subprocesses(plan, plugins, jobs, threads)
        say(f"training {len(todo)} run(s), {jobs} at a time, {threads} thread(s) each")
        with ThreadPoolExecutor(max_workers=jobs) as waiters:
            futures = {}
            for run in todo:
                state, _ = compare.existing_run(run.cfg)
                futures[waiters.submit(pool.fit, run, state != "new")] = run
                say(f"{run.label}: queued (log {pool.log_path(run)})")
            try:
                for future in as_completed(futures):
                    try:
                        finish(futures[future], future.result())
                    except RuntimeError as exc:
                        failures.append(str(exc))
                        say(str(exc))
            except BaseException:
                waiters.shutdown(wait=False, cancel_futures=True)
                pool.stop()
                raise
    else:
        failures = _run_submitit(
            plan, todo, executor, jobs, threads, launcher, plugins, say, finish
        )
    if failures:
        raise RuntimeError(
            f"{len(failures)} run(s) of the sweep failed (the others are kept; run the same "
            "command again to resume): " + "; ".join(failures)
        )
    return results


def _run_submitit(
    plan: SweepPlan,
    todo: Sequence[SweepRun],
    executor: Any,
    jobs: int,
    threads: int,
    launcher: str,
    plugins: Sequence[str],
    say: Callable[[str], Any],
    finish: Callable[[SweepRun, Any], None],
) -> list[str]:
    # The local executor starts every job it is given at once: give it `jobs` at a time.
    # SLURM gets them all as one array (--slurm-array-parallelism limits it there).
    local = launcher == "submitit-local"
    limit = jobs if local else len(todo)
    job_threads = threads if local else None
    poll_s = 0.5 if local else 15.0
    pending, failures = list(todo), []
    running: list[tuple[Any, SweepRun]] = []
    try:
        while pending or running:
            batch, pending = pending[: limit - len(running)], pending[limit - len(running) :]
            if batch:
                with executor.batch():
                    submitted = [
                        executor.submit(
                            TrainJob(),
                            str(plan.config),
                            list(r.overrides),
                            list(plugins),
                            job_threads,
                        )
                        for r in batch
                    ]
                for job, run in zip(submitted, batch, strict=True):
                    say(f"{run.label}: job {job.job_id} (logs {job.paths.stdout.parent})")
                    running.append((job, run))
            done = [(job, run) for job, run in running if job.done()]
            for job, run in done:
                running.remove((job, run))
                try:
                    result = job.result()
                except Exception as exc:  # the job's traceback is in its message and logs
                    last = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
                    failures.append(
                        f"{run.label}: job {job.job_id} failed: {last[0]} (logs {job.paths.stderr})"
                    )
                    say(failures[-1])
                else:
                    finish(run, result)
            if not done:
                time.sleep(poll_s)
    except BaseException:
        for job, run in running:  # no job is left training a run that a new sweep would resume
            say(f"{run.label}: cancelling job {job.job_id}")
            with contextlib.suppress(Exception):
                job.cancel(check=False)
        raise
    return failures
