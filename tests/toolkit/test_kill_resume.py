"""SIGKILL at any moment (issue 10, section 2): `dejavu fit --resume` continues from the last
complete checkpoint and ends bit for bit where an uninterrupted run does.

A tiny scenes run (``python -m dejavu.toolkit.cli fit`` in a subprocess) is killed
with SIGKILL four times: once while ``last.ckpt`` is being written (a test-only
pause, ``DEJAVU_TEST_PAUSE``, holds the writer after the data went to the
temporary file and before the rename), then three times at seeded random moments after
a resumed launch has trained its first step (mid-step, mid-validation or
mid-save: wherever they land). A last ``--resume`` finishes the run; its
``last.ckpt`` (weights, optimiser, schedule), ``base.safetensors`` and metrics
history equal those of an uninterrupted run, and the half-written temporary file
was never read.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_runs import tiny_config

from dejavu.toolkit.config import ExperimentConfig, save_config
from dejavu.toolkit.training import run_fit

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")

SEED = int(os.environ.get("DEJAVU_KILL_SEED", "20260512"))  # the random kill moments


def tiny(out: Path, cache: Path, name: str) -> ExperimentConfig:
    """6 scenes of 32 x 48 with augmentation, 3 steps per epoch, 4 epochs, CPU."""
    return tiny_config(
        out,
        cache,
        name,
        "data.crop_size=[24, 40]",
        "data.scale_range=[0.8, 1.25]",
        "data.color_jitter=0.2",
        "optim.warmup_steps=2",
        "trainer.max_epochs=4",
    )


def _launch(config: Path, cwd: Path, pause: str | None, resume: bool) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("DEJAVU_TEST_PAUSE", None)
    if pause is not None:
        env["DEJAVU_TEST_PAUSE"] = pause
    command = [sys.executable, "-m", "dejavu.toolkit.cli", "fit", str(config), "--no-progress"]
    return subprocess.Popen(
        [*command, *(["--resume"] if resume else [])],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(marker: Path, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    """Wait until ``marker`` exists (True) or the process has ended (False)."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the run never reached the pause point")
        time.sleep(0.02)
    return True


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume_ends_bit_identical(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        straight = run_fit(tiny(tmp_path / "a", cache, "run"), enable_progress_bar=False)
    finally:
        torch.set_num_threads(threads)

    cfg = tiny(tmp_path / "b", cache, "run")
    config = save_config(cfg, tmp_path / "run.yaml")
    run = cfg.run_dir
    last = run / "last.ckpt"

    # 1. SIGKILL while last.ckpt is being written for the second time (end of epoch 1).
    marker = tmp_path / "in_write"
    proc = _launch(config, tmp_path, f"last.ckpt:2:{marker}", resume=False)
    assert _wait_for(marker, proc), proc.communicate()[1][-3000:]
    _kill(proc)
    (temporary,) = run.glob(".last.ckpt.*.tmp")  # the interrupted write
    assert temporary.stat().st_size > 0
    survived = torch.load(last, weights_only=True)  # the previous one, whole
    assert survived["global_step"] == 3

    # 2.-4. SIGKILL at seeded random moments of resumed launches, after their first step.
    rng = random.Random(SEED)
    moments = []
    for k in range(3):
        started = tmp_path / f"started{k}"
        proc = _launch(config, tmp_path, f"step:1:{started}:0", resume=True)
        if _wait_for(started, proc):
            delay = rng.uniform(0.0, 0.6)
            time.sleep(delay)
            running = proc.poll() is None
            _kill(proc)
            step = torch.load(last, weights_only=True)["global_step"] if last.exists() else None
            moments.append((round(delay, 3), running, step))  # (when, still running, saved)
        else:  # it finished (or failed) before its first step: it must not have failed
            assert proc.wait() == 0, proc.communicate()[1][-3000:]
        assert not temporary.exists()  # removed by the resumed launch, never read
        if last.exists():
            torch.load(last, weights_only=True)  # always whole

    print(f"random kills (seconds after the first step, still running, last.ckpt step): {moments}")
    assert sum(running for _, running, _ in moments) >= 2, moments  # they landed mid-run

    # 5. The last resume finishes the run.
    proc = _launch(config, tmp_path, None, resume=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]

    a = torch.load(straight.last_checkpoint, weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["global_step"] == b["global_step"] == 12, moments
    for key, value in a["state_dict"].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b["state_dict"][key]), (key, moments)
    for i, s in a["optimizer_states"][0]["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(s[name], b["optimizer_states"][0]["state"][i][name])
    assert a["lr_schedulers"][0] == b["lr_schedulers"][0]
    base = "base.safetensors"
    assert (straight.run_dir / base).read_bytes() == (run / base).read_bytes(), moments
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert history == json.loads((straight.run_dir / "metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == [3, 6, 9, 12]
    assert not list(run.glob(".*.tmp"))
