"""The output directory (issue 10, section 2): an existing run is never overwritten unless
asked (--resume, --overwrite); an unwritable or full output directory is refused before
training; a write that fails during training keeps the previous checkpoint whole.
"""

from __future__ import annotations

import errno
import os
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from tiny_runs import tiny_config

from dejavu.toolkit.cli import main
from dejavu.toolkit.config import load_config, save_config
from dejavu.toolkit.errors import RunDirWriteError
from dejavu.toolkit.training import checkpoint as checkpoint_mod
from dejavu.toolkit.training import run_fit, rundir


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scenes_cache")


@pytest.fixture
def config(tmp_path: Path, cache: Path) -> Path:
    """4 scenes, 2 steps per epoch, 2 epochs; the run directory is tmp_path/runs/run."""
    cfg = tiny_config(tmp_path / "runs", cache, "run", "data.num_train=4", "trainer.max_epochs=2")
    return save_config(cfg, tmp_path / "run.yaml")


def _one_line(capsys: pytest.CaptureFixture, rc: int, code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert rc == code, err
    lines = [ln for ln in err.splitlines() if ln.startswith("dejavu: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _listing(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def test_a_fresh_fit_refuses_a_run_directory_that_holds_anything(config, tmp_path, capsys):
    run = tmp_path / "runs" / "run"
    run.mkdir(parents=True)
    (run / "notes.txt").write_text("my notes")
    before = _listing(run)
    rc = main(["fit", str(config), "--no-progress"])
    _one_line(capsys, rc, 2, "already holds a run (notes.txt)", "--resume", "--overwrite")
    assert _listing(run) == before
    # an empty directory holds no run
    (run / "notes.txt").unlink()
    assert rundir.start_point(run, False) == (None, False)


def test_overwrite_moves_the_old_run_aside_only_when_everything_else_is_fine(
    config, tmp_path, capsys
):
    assert main(["fit", str(config), "--no-progress", "--set", "trainer.max_epochs=1"]) == 0
    run = tmp_path / "runs" / "run"
    old = _listing(run)
    capsys.readouterr()
    # a config error, a missing file: refused before the old run is touched
    args = ["fit", str(config), "--no-progress", "--overwrite"]
    bad = [*args, "--set", f"model.pretrained={tmp_path / 'missing.pth'}"]
    _one_line(capsys, main(bad), 2, "missing.pth")
    _one_line(capsys, main([*args, "--resume"]), 2, "resume and overwrite exclude each other")
    assert _listing(run) == old and not list(run.parent.glob("run.old-*"))

    assert main(args) == 0
    err = capsys.readouterr().err
    (aside,) = run.parent.glob("run.old-*")
    assert f"dejavu: moved the previous run to {aside}" in err
    assert _listing(aside) == old  # kept as it was, nothing deleted
    assert torch.load(run / "last.ckpt", weights_only=True)["global_step"] == 4


def test_resume_of_a_run_that_saved_nothing_starts_from_step_zero(config, tmp_path):
    run = tmp_path / "runs" / "run"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(config.read_text())  # killed before its first save
    with pytest.warns(UserWarning, match="saved no checkpoint yet: starting it from step 0"):
        result = run_fit(load_config(config), resume=True, enable_progress_bar=False)
    assert torch.load(result.last_checkpoint, weights_only=True)["global_step"] == 4
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        run_fit(load_config(config, ["name=other"]), resume=True, enable_progress_bar=False)


def test_an_output_dir_under_a_file_is_refused_before_training(config, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    rc = main(["fit", str(config), "--output-dir", str(blocker / "runs"), "--no-progress"])
    _one_line(capsys, rc, 2, f"cannot create the run directory {blocker / 'runs' / 'run'}",
              "is a file, not a folder")  # fmt: skip
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root: permission bits do not stop root's writes (the folder-under-a-"
    "file, full-disk and failed-save tests cover the other ways a directory refuses)",
)
def test_a_read_only_output_dir_is_refused_before_training(config, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        rc = main(["fit", str(config), "--output-dir", str(locked), "--no-progress"])
        _one_line(capsys, rc, 2, f"cannot write the run directory {locked / 'run'}")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_a_read_only_file_system_is_refused_before_training(tmp_path, monkeypatch):
    # What the probe sees on a read-only mount, for root too (EROFS).
    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(rundir.tempfile, "TemporaryFile", refuse)
    with pytest.raises(ValueError, match=r"is not writable \(Read-only file system\)"):
        rundir.check_writable(tmp_path / "runs" / "x")


def test_a_full_disk_is_refused_before_training(config, tmp_path, capsys, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda path: usage(10**9, 10**9, 1000))
    rc = main(["fit", str(config), "--no-progress"])
    _one_line(capsys, rc, 2, "not enough free space for the run directory", "0.0 MB free")
    assert not (tmp_path / "runs").exists()


def test_a_failed_save_keeps_the_previous_checkpoint(config, tmp_path, capsys, monkeypatch):
    # The disk fills up during training: the save at the end of the second epoch fails
    # half-way through writing; the first epoch's last.ckpt stays whole.
    real_save = torch.save

    def save(obj, f, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(obj, dict) and obj.get("global_step") == 4:
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_mod.torch, "save", save)
    run = tmp_path / "runs" / "run"
    rc = main(["fit", str(config), "--no-progress"])
    _one_line(capsys, rc, 1, f"could not write in {run}", "No space left on device",
              f"{run / 'last.ckpt'} is the last complete checkpoint", "--resume")  # fmt: skip
    monkeypatch.undo()
    assert torch.load(run / "last.ckpt", weights_only=True)["global_step"] == 2
    assert not list(run.glob(".*.tmp"))
    with pytest.raises(RunDirWriteError):  # the Python API raises the same error
        monkeypatch.setattr(checkpoint_mod.torch, "save", save)
        run_fit(load_config(config), resume=True, enable_progress_bar=False)
    monkeypatch.undo()
    assert main(["fit", str(config), "--no-progress", "--resume"]) == 0
    assert torch.load(run / "last.ckpt", weights_only=True)["global_step"] == 4


def test_stale_temporaries_are_removed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / ".last.ckpt.abc123.tmp").write_bytes(b"half")
    (run / ".base.safetensors.x.tmp").write_bytes(b"half")
    (run / "last.ckpt").write_bytes(b"whole")
    (run / "notes.tmp").write_bytes(b"not ours")
    removed = rundir.remove_stale_temporaries(run)
    assert sorted(p.name for p in removed) == [".base.safetensors.x.tmp", ".last.ckpt.abc123.tmp"]
    assert sorted(p.name for p in run.iterdir()) == ["last.ckpt", "notes.tmp"]
