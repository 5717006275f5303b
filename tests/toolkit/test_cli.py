"""``dejavu`` command line: parsing, ``--set`` overrides, errors and the listing commands."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import dejavu
from dejavu.redaction import REDACTION_NAMES
from dejavu.toolkit.cli import build_parser, main
from dejavu.toolkit.models import list_models

COMMANDS = ("fit", "validate", "test", "predict", "compare", "redact", "export", "demo")


def test_version(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"dejavu {dejavu.__version__}"


def test_help_lists_every_command(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys) -> None:
    assert main([command, "--help"]) == 0
    assert f"usage: dejavu {command}" in capsys.readouterr().out


def test_missing_command_is_a_usage_error(capsys) -> None:
    assert main([]) == 2
    assert "usage: dejavu" in capsys.readouterr().err


def test_listing_verbs_read_the_registries(capsys) -> None:
    from dejavu.crm import list_crms
    from dejavu.toolkit.data import list_datasets
    from dejavu.toolkit.models import family_patterns
    from dejavu.toolkit.tasks import list_tasks

    assert main(["models"]) == 0
    assert capsys.readouterr().out.splitlines() == [*list_models(), *family_patterns()]
    assert main(["redactions"]) == 0
    assert tuple(capsys.readouterr().out.split()) == REDACTION_NAMES
    for verb, names in (
        ("crms", list_crms()),
        ("datasets", list_datasets()),
        ("tasks", list_tasks()),
    ):
        assert main([verb]) == 0
        assert capsys.readouterr().out.split() == names


def test_readme_names_every_registered_dataset_and_model_family() -> None:
    from dejavu.toolkit.data import list_datasets
    from dejavu.toolkit.models import family_patterns

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for name in list_datasets():
        assert f"| `{name}` |" in readme, name
    for pattern in family_patterns():
        assert f"`{pattern}`" in readme, pattern


def test_set_is_repeatable_and_kept_in_order() -> None:
    args = build_parser().parse_args(
        ["fit", "c.yaml", "--set", "optim.lr=0.1", "--set", "seed=3", "--resume"]
    )
    assert args.overrides == ["optim.lr=0.1", "seed=3"]
    assert args.resume is True
    args = build_parser().parse_args(["fit", "c.yaml", "--resume", "x.ckpt"])
    assert args.resume == "x.ckpt"
    assert build_parser().parse_args(["fit", "c.yaml"]).resume is False


def test_unknown_key_lists_valid_keys(tmp_path: Path, capsys, write_config) -> None:
    config = write_config(tmp_path)
    assert main(["fit", str(config), "--set", "trainer.max_step=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dejavu: error:")
    assert "trainer.max_step" in err
    for valid in ("'max_steps'", "'max_epochs'", "'precision'"):
        assert valid in err
    assert "Traceback" not in err
    # Nothing was trained.
    assert not (tmp_path / "runs").exists()


def test_unknown_top_level_key(tmp_path: Path, capsys, write_config) -> None:
    config = write_config(tmp_path)
    assert main(["validate", str(config), "--ckpt", str(config), "--set", "optimizer.lr=1"]) == 2
    err = capsys.readouterr().err
    assert "'optim'" in err and "'trainer'" in err and "'dejavu'" in err


def test_bad_value_and_malformed_override(tmp_path: Path, capsys, write_config) -> None:
    config = write_config(tmp_path)
    assert main(["fit", str(config), "--set", "optim.lr=-1"]) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert main(["fit", str(config), "--set", "optim.lr"]) == 2
    assert "a.b.c=value" in capsys.readouterr().err


def test_missing_config_is_named(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "none.yaml"
    assert main(["fit", str(missing)]) == 2
    assert "none.yaml" in capsys.readouterr().err


def test_missing_checkpoint_is_named(tmp_path: Path, capsys, write_config) -> None:
    config = write_config(tmp_path)
    ckpt = tmp_path / "nope.ckpt"
    for command in (["validate"], ["test"]):
        assert main([*command, str(config), "--ckpt", str(ckpt)]) == 2
        assert str(ckpt) in capsys.readouterr().err
    assert main(["export", str(ckpt), "--format", "onnx"]) == 2
    assert str(ckpt) in capsys.readouterr().err


def test_export_format_is_checked(tmp_path: Path, capsys) -> None:
    assert main(["export", str(tmp_path / "x.ckpt"), "--format", "tflite"]) == 2
    err = capsys.readouterr().err
    assert "onnx" in err and "torchscript" in err and "safetensors" in err


def test_set_overrides_reach_the_run(tmp_path: Path, capsys, write_config) -> None:
    config = write_config(tmp_path)
    rc = main(
        [
            "fit",
            str(config),
            "--set",
            "name=overridden",
            "--set",
            "optim.lr=0.005",
            "--set",
            "trainer.max_steps=1",
            "--output-dir",
            str(tmp_path / "elsewhere"),
            "--no-progress",
        ]
    )
    assert rc == 0
    run = tmp_path / "elsewhere" / "overridden"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 0.005
    assert saved["trainer"]["max_steps"] == 1
    assert (run / "last.ckpt").is_file()
    assert str(run / "last.ckpt") in capsys.readouterr().out
    # A second fit into the same run is refused with a hint, not a traceback.
    args = [
        "fit",
        str(config),
        "--set",
        "name=overridden",
        "--output-dir",
        str(tmp_path / "elsewhere"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "Traceback" not in err


def test_config_errors_exit_2_in_one_line_and_bugs_exit_1_with_a_traceback(
    tmp_path: Path, capsys, write_config, monkeypatch
) -> None:
    from dejavu.toolkit import training
    from dejavu.toolkit.errors import ConfigError, UserPathError

    config = write_config(tmp_path)
    assert main(["fit", str(config), "--set", "model.name=no_such_net"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no_such_net" in err and "Traceback" not in err
    assert main(["fit", str(tmp_path / "none.yaml")]) == 2
    assert issubclass(UserPathError, FileNotFoundError) and issubclass(ConfigError, ValueError)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the middle of a training")

    monkeypatch.setattr(training, "run_fit", broken)
    assert main(["fit", str(config)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "a bug in the middle of a training" in err

    def value_bug(*args, **kwargs):
        raise ValueError("not the user's fault")

    monkeypatch.setattr(training, "run_fit", value_bug)
    assert main(["fit", str(config)]) == 1  # a ValueError that is not a ConfigError is a bug
    assert "Traceback" in capsys.readouterr().err
