"""Nothing the program reads can run code: checkpoints and YAML (issue 10, section 5).

A checkpoint that carries a pickled object whose ``__reduce__`` would write a
marker file is refused by every loader the command line uses, the marker is
never written, and the error says that the file is not a safe checkpoint. A
YAML config with a ``python/object`` tag is refused with a clear error. The
loaders and how each reads its input are listed in docs/robustness.md ("What
can run code").
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
import yaml

from dejavu.toolkit.cli import main
from dejavu.toolkit.config import load_config
from dejavu.toolkit.training import load_eval_model, load_run, run_fit

UNSAFE = "not a safe checkpoint"


class Payload:
    """Unpickling this writes ``marker``: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = Path(marker)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.write_text, (self.marker, "code ran while loading a checkpoint"))


def _hostile_checkpoint(directory: Path, name: str = "hostile.ckpt") -> tuple[Path, Path]:
    """A Lightning-shaped checkpoint with a payload in it, and the marker it would write."""
    marker = directory / f"{name}.marker"
    ckpt = {
        "epoch": 0,
        "global_step": 2,
        "state_dict": {"model.base.weight": torch.zeros(1)},
        "hyper_parameters": {"config": {"name": "tiny"}},
        "callbacks": {"payload": Payload(marker)},
    }
    path = directory / name
    torch.save(ckpt, path)
    assert not marker.exists()
    return path, marker


def _assert_refused(capsys: pytest.CaptureFixture, rc: int, marker: Path) -> None:
    assert rc == 2
    assert UNSAFE in capsys.readouterr().err
    assert not marker.exists()


def test_the_payload_runs_when_unpickled_unsafely(tmp_path: Path) -> None:
    # The fixture is real: a plain unpickler runs it (so the tests below mean something).
    path, marker = _hostile_checkpoint(tmp_path)
    torch.load(path, weights_only=False)
    assert marker.is_file()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


@pytest.mark.parametrize("command", ["validate", "test"])
def test_validate_and_test_refuse_it(command, tmp_path, write_config, capsys) -> None:  # type: ignore[no-untyped-def]
    config = write_config(tmp_path)
    path, marker = _hostile_checkpoint(tmp_path)
    _assert_refused(capsys, main([command, str(config), "--ckpt", str(path)]), marker)


def test_predict_refuses_it(tmp_path, write_config, capsys) -> None:  # type: ignore[no-untyped-def]
    config = write_config(tmp_path)
    path, marker = _hostile_checkpoint(tmp_path)
    args = ["predict", str(config), "--ckpt", str(path), "--out", str(tmp_path / "pred")]
    _assert_refused(capsys, main(args), marker)


def test_fit_resume_refuses_it(tmp_path, write_config, capsys) -> None:  # type: ignore[no-untyped-def]
    config = write_config(tmp_path)
    path, marker = _hostile_checkpoint(tmp_path)
    args = ["fit", str(config), "--resume", str(path), "--no-progress"]
    _assert_refused(capsys, main(args), marker)


def test_fit_resume_refuses_it_even_when_torch_is_told_to_unpickle_freely(
    tmp_path, write_config, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    # TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns torch.load's default back to a full
    # unpickler; Lightning's resume relies on that default unless told otherwise.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    cfg = load_config(write_config(tmp_path))
    path, marker = _hostile_checkpoint(tmp_path)
    with pytest.raises(ValueError, match=UNSAFE):
        run_fit(cfg, resume=path, enable_progress_bar=False)
    assert not marker.exists()


def test_lightning_itself_resumes_with_weights_only(tmp_path, write_config, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Defence in depth: with run_fit's own check taken out, Lightning's read of the
    # checkpoint (trainer.fit(ckpt_path=...)) still refuses it, even with the
    # environment variable that makes torch.load unpickle freely by default.
    from dejavu.toolkit.training import runner

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.setattr(runner, "_load_ckpt", lambda path: {})
    cfg = load_config(write_config(tmp_path))
    path, marker = _hostile_checkpoint(tmp_path)
    with pytest.raises(pickle.UnpicklingError):
        run_fit(cfg, resume=path, enable_progress_bar=False)
    assert not marker.exists()


def test_fit_resume_of_the_run_directory_refuses_it(tmp_path, write_config, capsys) -> None:  # type: ignore[no-untyped-def]
    # `--resume` without a path continues from runs/<name>/last.ckpt.
    config = write_config(tmp_path)
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    _, marker = _hostile_checkpoint(run_dir, "last.ckpt")
    _assert_refused(capsys, main(["fit", str(config), "--resume", "--no-progress"]), marker)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "safetensors"])
def test_export_refuses_it(fmt, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path, marker = _hostile_checkpoint(tmp_path)
    args = ["export", str(path), "--format", fmt, "--out", str(tmp_path / f"model.{fmt}")]
    _assert_refused(capsys, main(args), marker)


@pytest.mark.parametrize("loader", [load_eval_model, load_run])
def test_the_python_loaders_refuse_it(loader, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, marker = _hostile_checkpoint(tmp_path)
    with pytest.raises(ValueError, match=UNSAFE):
        loader(path)
    assert not marker.exists()


def test_panel_refuses_it(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path, marker = _hostile_checkpoint(tmp_path)
    args = ["panel", f"A={path}", "--index", "0", "--out", str(tmp_path / "panel.png")]
    _assert_refused(capsys, main(args), marker)


def test_the_error_names_the_file_and_what_to_do(tmp_path) -> None:
    path, _ = _hostile_checkpoint(tmp_path)
    with pytest.raises(ValueError) as info:
        load_eval_model(path)
    message = str(info.value)
    assert str(path) in message and "weights_only=True" in message


def test_pretrained_weights_refuse_it(tmp_path, write_config, capsys) -> None:  # type: ignore[no-untyped-def]
    # model.pretrained: a local weights file read when the network is built.
    path, marker = _hostile_checkpoint(tmp_path, "backbone.pth")
    config = write_config(tmp_path)
    args = ["fit", str(config), "--set", f"model.pretrained={path}", "--no-progress"]
    assert main(args) == 2
    assert "weights_only=True" in capsys.readouterr().err
    assert not marker.exists()


def test_clip_weights_refuse_it(tmp_path) -> None:
    # DejaVu-TS: open_clip reads the local CLIP weights with torch.load(weights_only=True).
    pytest.importorskip("open_clip")
    from dejavu.text_supervision import TextSupervision
    from dejavu.toolkit.models.denseclip import DENSECLIP_TINY_CLIP

    path, marker = _hostile_checkpoint(tmp_path, "clip.bin")
    with pytest.raises(ValueError, match=UNSAFE):
        TextSupervision(["road", "sky"], model_name="ViT-M-32", pretrained=path)
    assert not marker.exists()
    # The same file as the weights of an open_clip local-dir: folder.
    folder = tmp_path / "clip_folder"
    folder.mkdir()
    config = {"model_cfg": DENSECLIP_TINY_CLIP, "preprocess_cfg": {}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    path, marker = _hostile_checkpoint(folder, "open_clip_pytorch_model.bin")
    with pytest.raises(ValueError, match=UNSAFE):
        TextSupervision(["road", "sky"], model_name=f"local-dir:{folder}")
    assert not marker.exists()


# ------------------------------------------------------------------ YAML
def _tag(marker: Path) -> str:
    """A YAML value that an unsafe loader turns into ``os.mkdir(marker)``."""
    return f"!!python/object/apply:os.mkdir ['{marker}']"


def test_the_yaml_payload_runs_when_loaded_unsafely(tmp_path: Path) -> None:
    marker = tmp_path / "unsafe.marker"
    yaml.unsafe_load(f"evil: {_tag(marker)}")
    assert marker.is_dir()


def test_a_python_tag_in_a_config_is_refused(tmp_path, write_config, capsys) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "yaml.marker"
    path = write_config(tmp_path)
    path.write_text(path.read_text() + f"evil: {_tag(marker)}\n")
    with pytest.raises(ValueError, match=r"invalid YAML.*python/object"):
        load_config(path)
    assert main(["validate", str(path), "--ckpt", str(path)]) == 2
    err = capsys.readouterr().err
    assert "invalid YAML" in err and "python/object" in err
    assert not marker.exists()


def test_a_python_tag_in_an_override_is_refused(tmp_path, write_config, capsys) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "override.marker"
    config = write_config(tmp_path)
    args = ["fit", str(config), "--set", f"name={_tag(marker)}", "--no-progress"]
    assert main(args) == 2
    assert "python/object" in capsys.readouterr().err
    assert not marker.exists()


def test_a_python_tag_in_a_redaction_parameter_is_refused(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    # `dejavu redact --set-param KEY=VALUE` reads VALUE as YAML too (yaml.safe_load).
    import numpy as np
    from PIL import Image

    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(image)
    marker = tmp_path / "param.marker"
    args = ["redact", str(image), "--mode", "random", "--set-param", f"p={_tag(marker)}"]
    assert main([*args, "--out", str(tmp_path / "out.png")]) == 2
    assert "python/object" in capsys.readouterr().err
    assert not marker.exists()
