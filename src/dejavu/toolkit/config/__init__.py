"""Experiment configuration: nested dataclasses, YAML files with ``_base_`` inheritance.

Three modules: :mod:`~dejavu.toolkit.config.schema` (the sections and their
fields), :mod:`~dejavu.toolkit.config.loading` (YAML, ``_base_``, overrides,
mapping <-> dataclass) and :mod:`~dejavu.toolkit.config.validation`
(:func:`validate_config`).

A run is described by one :class:`ExperimentConfig`. It is plain data (every
field typed and documented below), so it can be built in Python, loaded from
YAML, changed from the command line and written back next to the run's
checkpoints, which makes a run reproducible from its run directory alone.

YAML files
    Keys mirror the dataclasses (``optim: {lr: 0.01}``). A file may start
    from others with ``_base_: ../base.yaml`` (a path relative to the file,
    or a list of them, merged in order); bases are resolved recursively and
    the file's own keys are deep-merged on top, so a "with DejaVu" and a
    "without DejaVu" config share everything but ``dejavu.enabled``. Free-form
    mappings (``dejavu.redaction``, ``model.kwargs``, ...) merge too (starting
    from their defaults, whose keys every variant accepts); put
    ``_replace_: true`` in a mapping to replace the inherited one instead
    (e.g. to switch the redaction kind without keeping the old kind's options).
    ``name`` defaults to the file's stem when no file in the chain sets it.

Overrides
    ``a.b.c=value`` with ``value`` parsed by YAML (``dejavu.enabled=false``,
    ``optim.lr=1e-3``, ``data.crop_size=[96,128]``). A mapping value assigned
    to a free-form mapping field replaces it (``dejavu.redaction={name:
    blocks}``); assigned to a section, it is merged into it.

Errors
    Every problem with a config is a :class:`~dejavu.toolkit.errors.ConfigError`
    (a ``ValueError``; a missing file is a ``UserPathError``, also a
    ``FileNotFoundError``), raised before any training starts, which the
    command line reports in one line with exit status 2: an unknown key (in a
    file or an override) names its dotted path and lists the valid keys at
    that level; a value of the wrong type names the key, the expected type and
    what was given; unknown names (task, dataset, model, redaction, CRM) list
    the registered ones; out-of-range values (negative learning rate, unknown
    optimiser) say what is allowed.

Example:
    >>> cfg = load_config(None, ["task.name=depth", "optim.lr=1e-3"])
    >>> cfg.task.name, cfg.optim.lr
    ('depth', 0.001)
    >>> config_from_dict(config_to_dict(cfg)) == cfg
    True
"""

from __future__ import annotations

from dejavu.toolkit.config.loading import (
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    load_yaml,
    save_config,
)
from dejavu.toolkit.config.schema import (
    OPTIMIZERS,
    DataConfig,
    DejaVuConfig,
    ExperimentConfig,
    ModelConfig,
    OptimConfig,
    TaskConfig,
    TrainerConfig,
)
from dejavu.toolkit.config.validation import validate_config
from dejavu.toolkit.errors import ConfigError

__all__ = [
    "OPTIMIZERS",
    "ConfigError",
    "DataConfig",
    "DejaVuConfig",
    "ExperimentConfig",
    "ModelConfig",
    "OptimConfig",
    "TaskConfig",
    "TrainerConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "load_yaml",
    "save_config",
    "validate_config",
]
