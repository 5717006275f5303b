"""DDP (issue 10, section 2): when one process dies or hangs, the other stops with an error
in bounded time instead of waiting forever.

Two `dejavu fit` processes are started the way ``torchrun`` starts them (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` in the environment, ``strategy:
ddp``, gloo on CPU). Rank 1 is held at the end of its second step by the
test-only pause (``DEJAVU_TEST_PAUSE``); then it is killed (SIGKILL), or left
hanging while ``trainer.ddp_timeout_s`` runs out on rank 0.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dejavu.toolkit.config import load_config, save_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path: Path, *extra: str) -> Path:
    cfg = load_config(
        None,
        [
            f"output_dir={tmp_path / 'runs'}",
            "name=ddp",
            f"data.root={tmp_path / 'cache'}",
            "data.num_train=16",  # 4 steps per epoch and rank
            "data.num_val=4",
            "data.batch_size=2",
            "data.num_workers=0",
            "data.kwargs={size: [32, 48]}",
            "model.name=fpn_test_resnet",
            "dejavu.crm={kind: forward, width: 8, depth: 2}",
            "trainer.max_epochs=2",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.strategy=ddp",
            "trainer.image_log_every_n_steps=0",
            *extra,
        ],
    )
    return save_config(cfg, tmp_path / "ddp.yaml")


def _start_ranks(config: Path, tmp_path: Path, marker: Path) -> list[subprocess.Popen]:
    port = _free_port()
    procs = []
    for rank in (0, 1):
        env = dict(
            os.environ,
            OMP_NUM_THREADS="1",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            WORLD_SIZE="2",
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            NODE_RANK="0",
        )
        env.pop("DEJAVU_TEST_PAUSE", None)
        if rank == 1:  # held at the end of its second step (for up to 10 minutes)
            env["DEJAVU_TEST_PAUSE"] = f"step:2:{marker}:600"
        command = [sys.executable, "-m", "dejavu.toolkit.cli", "fit", str(config), "--no-progress"]
        procs.append(
            subprocess.Popen(
                command,
                env=env,
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def _wait_for(marker: Path, procs: list[subprocess.Popen], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        ended = [p for p in procs if p.poll() is not None]
        if ended or time.monotonic() > deadline:
            for p in procs:
                p.kill()
            errs = [p.communicate()[1][-2000:] for p in procs]
            pytest.fail(f"rank 1 never reached the pause:\n{errs}")
        time.sleep(0.05)


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("dejavu: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def test_when_one_process_dies_the_other_stops_at_once(tmp_path: Path) -> None:
    marker = tmp_path / "paused"
    rank0, rank1 = _start_ranks(_config(tmp_path), tmp_path, marker)
    try:
        _wait_for(marker, [rank0, rank1])
        rank1.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        _, err = rank0.communicate(timeout=60)  # bounded: it must not wait for rank 1
        waited = time.monotonic() - killed
    finally:
        for p in (rank0, rank1):
            p.kill()
            p.wait()
    assert rank1.returncode == -signal.SIGKILL
    assert rank0.returncode == 1, err[-3000:]
    assert waited < 30, waited
    line = _error_line(err)
    assert "another process of the distributed run died or stopped answering" in line
    assert "no checkpoint was saved yet" in line  # it died in the first epoch


def test_a_hung_process_times_out_after_ddp_timeout_s(tmp_path: Path) -> None:
    marker = tmp_path / "paused"
    config = _config(tmp_path, "trainer.ddp_timeout_s=5")
    rank0, rank1 = _start_ranks(config, tmp_path, marker)
    try:
        _wait_for(marker, [rank0, rank1])
        paused = time.monotonic()
        _, err = rank0.communicate(timeout=60)  # rank 1 is alive but does not answer
        waited = time.monotonic() - paused
    finally:
        for p in (rank0, rank1):
            p.kill()
            p.wait()
    assert rank0.returncode == 1, err[-3000:]
    assert 3 < waited < 40, waited  # the 5 s timeout, not torch's 30 minutes
    line = _error_line(err)
    assert "another process of the distributed run died or stopped answering" in line
    assert "timed out" in line.lower() or "timeout" in line.lower(), line


def test_ddp_timeout_needs_a_ddp_strategy() -> None:
    with pytest.raises(ValueError, match=r"trainer\.ddp_timeout_s needs a DDP trainer\.strategy"):
        load_config(None, ["trainer.ddp_timeout_s=5"])
    with pytest.raises(ValueError, match=r"trainer\.ddp_timeout_s"):
        load_config(None, ["trainer.strategy=ddp", "trainer.ddp_timeout_s=0"])
    from dejavu.toolkit.training.runner import trainer_kwargs

    cfg = load_config(None, ["trainer.strategy=ddp_spawn", "trainer.ddp_timeout_s=7"])
    strategy = trainer_kwargs(cfg.trainer)["strategy"]
    assert strategy._timeout.total_seconds() == 7 and strategy._start_method == "spawn"
    assert trainer_kwargs(load_config(None, ["trainer.strategy=ddp"]).trainer)["strategy"] == "ddp"


def _nan_worker(rank: int, port: int, config: str, out_dir: str) -> None:
    """One DDP process; rank 1 alone sees a NaN regeneration loss at step 2."""
    import json

    import torch

    from dejavu.dejavu import DejaVu
    from dejavu.toolkit.training import run_fit

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
                      RANK=str(rank), LOCAL_RANK=str(rank), NODE_RANK="0")  # fmt: skip
    original = DejaVu.forward

    def forward(self, batch, step=None):  # type: ignore[no-untyped-def]
        out = original(self, batch, step)
        if rank == 1 and step == 2:
            out["regen"] = out["regen"] * float("nan")
            out["loss"] = out["loss"] + out["regen"]
        return out

    DejaVu.forward = forward  # type: ignore[method-assign]
    try:
        run_fit(load_config(config), enable_progress_bar=False)
        outcome = {"error": None}
    except Exception as exc:
        outcome = {"error": type(exc).__name__, "message": str(exc)}
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(outcome))


def test_a_nan_on_one_process_stops_every_process_at_the_same_step(tmp_path: Path) -> None:
    import json

    import torch.multiprocessing as mp

    config = _config(tmp_path)
    mp.spawn(_nan_worker, args=(_free_port(), str(config), str(tmp_path)), nprocs=2, join=True)
    outcomes = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [o["error"] for o in outcomes] == ["NonFiniteLossError"] * 2, outcomes
    assert "at step 2 (epoch 0): regen (on another process)" in outcomes[0]["message"]
    assert "at step 2 (epoch 0): regen = nan" in outcomes[1]["message"]
