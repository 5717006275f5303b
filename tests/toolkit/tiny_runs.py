"""The tiny training run that the toolkit's training tests share (imported by them).

A few 32 x 48 procedural scenes, batches of 2, the cheapest timm FPN with a small
CRM-F, one epoch on the CPU: seconds per run. Each test module states what it
changes (more epochs, augmentation, image logging) as overrides after these.
"""

from __future__ import annotations

from pathlib import Path

from dejavu.toolkit.config import ExperimentConfig, load_config


def tiny_overrides(out: Path, cache: Path, name: str) -> list[str]:
    """The shared settings as ``--set`` overrides (a later override of a key wins)."""
    return [
        f"output_dir={out}",
        f"name={name}",
        f"data.root={cache}",
        "data.num_train=6",
        "data.num_val=2",
        "data.test_split=val",  # the scenes have train and val only
        "data.batch_size=2",
        "data.num_workers=0",
        "data.kwargs={size: [32, 48]}",
        "model.name=fpn_test_resnet",
        "dejavu.crm={kind: forward, width: 8, depth: 2}",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.log_every_n_steps=1",
        "trainer.image_log_every_n_steps=0",
    ]


def tiny_config(out: Path, cache: Path, name: str, *extra: str) -> ExperimentConfig:
    """The tiny run writing to ``out/name`` and rendering scenes into ``cache``,
    with ``extra`` overrides applied last."""
    return load_config(None, [*tiny_overrides(out, cache, name), *extra])
