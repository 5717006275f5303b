"""SIGTERM and Ctrl-C (issue 10, section 2): a resumable checkpoint, a one-line message
saying how to resume, a non-zero exit; the resumed run ends where an uninterrupted one does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from tiny_runs import tiny_config

from dejavu.toolkit.cli import main
from dejavu.toolkit.config import ExperimentConfig, save_config
from dejavu.toolkit.errors import RunInterruptedError
from dejavu.toolkit.training import run_fit

EXTRA = (
    # augmentation on and a worker, so that resuming must replay the same crops and flips
    "data.num_workers=1",
    "data.crop_size=[24, 40]",
    "data.scale_range=[0.8, 1.25]",
    "data.color_jitter=0.2",
    "optim.warmup_steps=2",
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scenes_cache")


def tiny(out: Path, cache: Path, name: str, *extra: str) -> ExperimentConfig:
    """6 scenes of 32 x 48, batches of 2: 3 steps per epoch, 2 epochs, CPU."""
    return tiny_config(out, cache, name, "trainer.max_epochs=2", *extra)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, cache):
    """The uninterrupted run every interrupted one is compared with."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("straight")
        return run_fit(tiny(out, cache, "straight", *EXTRA), enable_progress_bar=False)
    finally:
        torch.set_num_threads(threads)


def assert_same_run(a_path: Path, b_path: Path) -> None:
    a = torch.load(a_path, weights_only=True)
    b = torch.load(b_path, weights_only=True)
    assert a["global_step"] == b["global_step"]
    for k, v in a["state_dict"].items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, b["state_dict"][k]), k
    for i, s in a["optimizer_states"][0]["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(s[key], b["optimizer_states"][0]["state"][i][key])
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"]
    base_a = (a_path.parent / "base.safetensors").read_bytes()
    assert base_a == (b_path.parent / "base.safetensors").read_bytes()


class SendSignal(pl.Callback):
    """Send ``signals`` to this process at the start of step ``step`` or of the
    validation that follows it."""

    def __init__(self, signals: list[int], step: int, where: str = "step") -> None:
        self.signals, self.step, self.where, self.sent = signals, step, where, False

    def _send(self) -> None:
        if not self.sent:
            self.sent = True
            for s in self.signals:
                os.kill(os.getpid(), s)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # type: ignore[no-untyped-def]
        if self.where == "step" and trainer.global_step == self.step:
            self._send()

    def on_validation_batch_start(self, trainer, *args):  # type: ignore[no-untyped-def]
        validating = self.where == "validation" and not trainer.sanity_checking
        if validating and trainer.global_step == self.step:
            self._send()


@pytest.mark.parametrize(
    ("signum", "where", "step", "saved_at", "code"),
    [
        (signal.SIGTERM, "step", 1, 2, 143),  # mid-epoch: stops at the end of step 1 (global 2)
        (signal.SIGINT, "validation", 3, 3, 130),  # the epoch-end validation runs to its end
    ],
    ids=["sigterm-mid-epoch", "ctrl-c-in-validation"],
)
def test_a_signal_saves_a_checkpoint_that_resumes_exactly(
    signum, where, step, saved_at, code, straight, tmp_path, cache
) -> None:
    cfg = tiny(tmp_path, cache, "interrupted", *EXTRA)
    # Whatever the handler was (Python's default, or SIG_IGN under nohup or a background job).
    sigint_before = signal.getsignal(signal.SIGINT)
    with pytest.raises(RunInterruptedError) as info:
        run_fit(cfg, enable_progress_bar=False, callbacks=[SendSignal([signum], step, where)])
    err = info.value
    assert err.exit_code == code and err.resumable
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C (SIGINT)"
    last = cfg.run_dir / "last.ckpt"
    assert str(err) == (
        f"interrupted by {name} after step {saved_at}: saved {last}, a resumable checkpoint"
    )
    assert torch.load(last, weights_only=True)["global_step"] == saved_at
    assert signal.getsignal(signal.SIGINT) is sigint_before  # handlers put back

    resumed = run_fit(cfg, resume=True, enable_progress_bar=False)
    assert_same_run(straight.last_checkpoint, resumed.last_checkpoint)
    assert resumed.history == straight.history


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(tmp_path, cache) -> None:
    cfg = tiny(tmp_path, cache, "forced")
    sigint = signal.SIGINT
    with pytest.raises(RunInterruptedError) as info:
        run_fit(cfg, enable_progress_bar=False, callbacks=[SendSignal([sigint, sigint], 4)])
    last = cfg.run_dir / "last.ckpt"
    assert info.value.exit_code == 130
    assert str(info.value) == (
        f"interrupted by Ctrl-C (SIGINT) (stopped at once): {last} (the last checkpoint saved "
        "before) is kept"
    )
    assert torch.load(last, weights_only=True)["global_step"] == 3  # the epoch-0 checkpoint


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the run ended before the pause (rc {proc.returncode}):\n{err[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the run never reached the pause")
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("signum", "code", "name"),
    [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C (SIGINT)")],
    ids=["sigterm", "ctrl-c"],
)
def test_dejavu_fit_in_a_subprocess_exits_with_how_to_resume(
    signum, code, name, tmp_path, cache
) -> None:
    cfg = tiny(tmp_path / "runs", cache, "sub")
    config = save_config(cfg, tmp_path / "sub.yaml")
    marker = tmp_path / "paused"
    env = dict(os.environ, DEJAVU_TEST_PAUSE=f"step:2:{marker}", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "dejavu.toolkit.cli", "fit", str(config), "--no-progress"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)  # fmt: skip
    _wait_for(marker, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    last_line = err.strip().splitlines()[-1]
    last = cfg.run_dir / "last.ckpt"
    assert last_line == (
        f"dejavu: error: interrupted by {name} after step 2: saved {last}, a resumable "
        f"checkpoint; continue with: dejavu fit {config} --resume"
    )
    assert "Traceback" not in err
    assert torch.load(last, weights_only=True)["global_step"] == 2
    assert not list(cfg.run_dir.glob(".*.tmp"))
    assert main(["fit", str(config), "--no-progress", "--resume"]) == 0
    assert torch.load(last, weights_only=True)["global_step"] == 6
