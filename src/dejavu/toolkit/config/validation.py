"""Config validation: value ranges, names against the registries, option names and values."""

from __future__ import annotations

from dejavu._validation import check_choice, check_in_range
from dejavu.crm import check_crm_options, list_crms
from dejavu.toolkit.config.schema import DDP_STRATEGIES, OPTIMIZERS, ExperimentConfig
from dejavu.toolkit.errors import ConfigError

__all__ = ["validate_config"]


def _conditioning_spec(cfg: ExperimentConfig) -> dict[str, str]:
    from dejavu.toolkit.tasks import head_spec, task_spec

    return {key: head_spec(key).conditioning for key in task_spec(cfg.task.name).heads}


def _positive_int(value: int, name: str) -> None:
    if value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _validate_metrics(cfg: ExperimentConfig) -> None:
    """``task.metrics``: heads of the task, variant names and options (by building them)."""
    from dejavu.toolkit.tasks import head_spec, task_spec

    heads = task_spec(cfg.task.name).heads
    for key, options in cfg.task.metrics.items():
        if key not in heads:
            raise ConfigError(
                f"task.metrics: {key!r} is not a head of task {cfg.task.name!r}; heads: "
                f"{', '.join(map(repr, heads))}"
            )
        if not isinstance(options, dict):
            raise ConfigError(
                f"task.metrics.{key} must be a mapping such as {{name: kitti, crop: garg}}, "
                f"got {options!r}"
            )
        if head_spec(key).channels is None and options.get("name", "default") == "default":
            continue  # a class head's default metric needs num_classes, known from the data
        try:
            head_spec(key).make_metric(None, cfg.task.ignore_index, options)
        except ValueError as exc:
            raise ConfigError(f"task.metrics.{key}: {exc}") from None


def _validate_postprocess(cfg: ExperimentConfig) -> None:
    """``task.postprocess``: heads of the task that have a post-processing, and its options."""
    from dejavu.toolkit.tasks import head_spec, task_spec

    heads = task_spec(cfg.task.name).heads
    takes = [k for k in heads if head_spec(k).check_postprocess is not None]
    for key, options in cfg.task.postprocess.items():
        check = head_spec(key).check_postprocess if key in heads else None
        if check is None:
            raise ConfigError(
                f"task.postprocess: {key!r} is not a head of task {cfg.task.name!r} with a "
                f"post-processing; heads that have one: {takes}"
            )
        if not isinstance(options, dict):
            raise ConfigError(
                f"task.postprocess.{key} must be a mapping such as {{threshold: 0.5}}, "
                f"got {options!r}"
            )
        try:
            check(options)
        except ValueError as exc:
            raise ConfigError(f"task.postprocess.{key}: {exc}") from None


def _validate_mask_loss(cfg: ExperimentConfig) -> None:
    """``task.mask_loss``: known Mask2Former loss settings with values in range."""
    from dejavu.toolkit.tasks.mask_classification import check_mask_loss

    try:
        check_mask_loss(cfg.task.mask_loss)
    except ValueError as exc:
        raise ConfigError(f"task.mask_loss: {exc}") from None


def validate_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """Check value ranges, names and options that the types alone do not capture.

    Names are checked against the registries (tasks, datasets, models,
    redactions, CRMs and their option names), ``trainer.monitor`` against the
    names the task logs, and the redaction, conditioning and regeneration-loss
    options by building those (cheap, parameter-free) objects; the CRM's and
    the network's option values are checked when the run is built.

    Returns:
        ``cfg`` unchanged.

    Raises:
        ConfigError: naming the key, the value and what is allowed.
    """
    try:
        _validate(cfg)
    except ConfigError:
        raise
    except ValueError as exc:  # from a registry or a constructor: the config's fault
        raise ConfigError(str(exc)) from None
    return cfg


def _validate(cfg: ExperimentConfig) -> None:
    if not cfg.name or "/" in cfg.name or "\\" in cfg.name or cfg.name in (".", ".."):
        raise ConfigError(
            f"name must be a non-empty folder name without '/' (and not '.' or '..': the run "
            f"directory lies inside output_dir), got {cfg.name!r}"
        )
    from dejavu.conditioning import Conditioning
    from dejavu.losses import RegenerationLoss
    from dejavu.redaction import check_redaction_options, create_redaction
    from dejavu.toolkit.data import list_datasets
    from dejavu.toolkit.models import check_model_name
    from dejavu.toolkit.tasks import list_tasks, metric_direction, task_spec

    check_choice(cfg.task.name, "task.name", list_tasks())
    if cfg.trainer.monitor is not None:
        try:
            metric_direction(cfg.trainer.monitor, task_spec(cfg.task.name).heads)
        except ValueError as exc:
            raise ConfigError(f"trainer.monitor: {exc}") from None
    for key, w in cfg.task.loss_weights.items():
        check_in_range(w, f"task.loss_weights.{key}", 0.0, float("inf"))
    _validate_metrics(cfg)
    _validate_postprocess(cfg)
    _validate_mask_loss(cfg)

    d = cfg.data
    check_choice(d.name, "data.name", list_datasets())
    _positive_int(d.batch_size, "data.batch_size")
    if d.val_batch_size is not None:
        _positive_int(d.val_batch_size, "data.val_batch_size")
    if d.num_workers < 0:
        raise ConfigError(f"data.num_workers must be >= 0, got {d.num_workers}")
    if d.crop_size is not None and (len(d.crop_size) != 2 or min(d.crop_size) < 1):
        raise ConfigError(f"data.crop_size must be [H, W] of positive ints, got {d.crop_size}")
    if len(d.scale_range) != 2 or not 0 < d.scale_range[0] <= d.scale_range[1]:
        raise ConfigError(
            f"data.scale_range must be [lo, hi] with 0 < lo <= hi, got {d.scale_range}"
        )
    if d.crop_size is None and d.scale_range != [1.0, 1.0]:
        raise ConfigError(
            f"data.scale_range {d.scale_range} needs data.crop_size (rescaled samples of "
            "different sizes cannot be batched without a crop)"
        )
    check_in_range(d.color_jitter, "data.color_jitter", 0.0, 1.0)
    for name in (
        "pad_to_multiple", "num_train", "num_val", "unlabeled_batch_size", "max_image_pixels"
    ):  # fmt: skip
        if getattr(d, name) is not None:
            _positive_int(getattr(d, name), f"data.{name}")
    check_in_range(d.labeled_fraction, "data.labeled_fraction", 0.0, 1.0, low_inclusive=False)
    if d.unlabeled_root is not None and not d.unlabeled_root.strip():
        raise ConfigError(
            "data.unlabeled_root must be a folder of images or null, got an empty string"
        )

    try:
        check_model_name(cfg.model.name)
    except ValueError as exc:
        raise ConfigError(f"model.name: {exc}") from None

    dj = cfg.dejavu
    if "name" not in dj.redaction:
        raise ConfigError(f"dejavu.redaction needs a 'name' entry, got {dj.redaction}")
    redaction = dict(dj.redaction)
    try:
        check_redaction_options(redaction.pop("name"), redaction)
    except ValueError as exc:
        raise ConfigError(f"dejavu.redaction: {exc}") from None
    crm = dict(dj.crm)
    kind = check_choice(crm.pop("kind", "forward"), "dejavu.crm.kind", list_crms())
    try:
        check_crm_options(kind, crm)
    except ValueError as exc:
        raise ConfigError(f"dejavu.crm: {exc}") from None
    # The option values of the parameter-free parts, by building them.
    for key, build in (
        ("redaction", lambda: create_redaction(**dj.redaction)),
        ("conditioning", lambda: Conditioning(_conditioning_spec(cfg), **dj.conditioning)),
        ("regen_loss", lambda: RegenerationLoss(**dj.regen_loss)),
    ):
        try:
            build()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"dejavu.{key}: {exc}") from None
    for name in ("regen_weight", "cyclic_weight", "sa_weight", "crm_truth_weight"):
        check_in_range(getattr(dj, name), f"dejavu.{name}", 0.0, float("inf"))
    check_in_range(dj.text.get("weight", 0.0), "dejavu.text.weight", 0.0, float("inf"))
    if dj.regen_warmup_steps < 0:
        raise ConfigError(f"dejavu.regen_warmup_steps must be >= 0, got {dj.regen_warmup_steps}")

    o = cfg.optim
    check_choice(o.name, "optim.name", OPTIMIZERS)
    check_in_range(o.lr, "optim.lr", 0.0, float("inf"), low_inclusive=False)
    check_in_range(o.weight_decay, "optim.weight_decay", 0.0, float("inf"))
    check_in_range(o.momentum, "optim.momentum", 0.0, 1.0, high_inclusive=False)
    check_in_range(o.poly_power, "optim.poly_power", 0.0, float("inf"))
    check_in_range(o.crm_lr_mult, "optim.crm_lr_mult", 0.0, float("inf"))
    if o.warmup_steps < 0:
        raise ConfigError(f"optim.warmup_steps must be >= 0, got {o.warmup_steps}")

    t = cfg.trainer
    if t.max_epochs < 1 and t.max_steps < 1:
        raise ConfigError(
            f"trainer.max_epochs ({t.max_epochs}) or trainer.max_steps ({t.max_steps}) "
            "must be positive"
        )
    _positive_int(t.num_nodes, "trainer.num_nodes")
    _positive_int(t.accumulate_grad_batches, "trainer.accumulate_grad_batches")
    _positive_int(t.val_every_n_epochs, "trainer.val_every_n_epochs")
    _positive_int(t.log_every_n_steps, "trainer.log_every_n_steps")
    if t.image_log_every_n_steps < 0:
        raise ConfigError(
            f"trainer.image_log_every_n_steps must be >= 0, got {t.image_log_every_n_steps}"
        )
    for name in ("limit_train_batches", "limit_val_batches"):
        v = getattr(t, name)
        if (isinstance(v, float) and not 0.0 <= v <= 1.0) or (isinstance(v, int) and v < 0):
            raise ConfigError(
                f"trainer.{name} must be a fraction in [0, 1] or a batch count >= 0, got {v!r}"
            )
    if t.gradient_clip_val is not None:
        check_in_range(t.gradient_clip_val, "trainer.gradient_clip_val", 0.0, float("inf"))
    if t.skip_nonfinite_steps < 0:
        raise ConfigError(
            f"trainer.skip_nonfinite_steps must be >= 0, got {t.skip_nonfinite_steps}"
        )
    if t.ddp_timeout_s is not None:
        check_in_range(t.ddp_timeout_s, "trainer.ddp_timeout_s", 0.0, float("inf"),
                       low_inclusive=False)  # fmt: skip
        if t.strategy not in DDP_STRATEGIES:
            raise ConfigError(
                f"trainer.ddp_timeout_s needs a DDP trainer.strategy "
                f"({', '.join(DDP_STRATEGIES)}), got {t.strategy!r}"
            )
