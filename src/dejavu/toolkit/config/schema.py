"""The config schema: one dataclass per section, every field typed and documented.

The YAML keys mirror these fields (see :mod:`dejavu.toolkit.config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DDP_STRATEGIES",
    "OPTIMIZERS",
    "DataConfig",
    "DejaVuConfig",
    "ExperimentConfig",
    "ModelConfig",
    "OptimConfig",
    "TaskConfig",
    "TrainerConfig",
]

OPTIMIZERS = ("adamw", "sgd")

#: ``trainer.strategy`` names that ``trainer.ddp_timeout_s`` applies to, and the
#: ``DDPStrategy`` options each name stands for.
DDP_STRATEGIES: dict[str, dict[str, Any]] = {
    "ddp": {},
    "ddp_spawn": {"start_method": "spawn"},
    "ddp_fork": {"start_method": "fork"},
    "ddp_notebook": {"start_method": "fork"},
    "ddp_find_unused_parameters_true": {"find_unused_parameters": True},
    "ddp_spawn_find_unused_parameters_true": {
        "start_method": "spawn",
        "find_unused_parameters": True,
    },
}


@dataclass
class TaskConfig:
    """What the network predicts and how the task loss is weighted."""

    name: str = "segmentation"
    """A registered task (``dejavu.toolkit.tasks.list_tasks()``): ``segmentation``, ``depth``,
    ``normals``, ``multitask`` (seg + depth + normals) or ``panoptic`` (a ``mask2former_*``
    model on a dataset with a thing/stuff split)."""
    loss_weights: dict[str, float] = field(default_factory=dict)
    """Per-head weights of the summed task loss, e.g. ``{seg: 1.0, depth: 0.5}`` (default 1)."""
    ignore_index: int = 255
    """Segmentation label that is ignored by the loss and the metrics."""
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per head, another evaluation metric than the head's default, and its options:
    ``{depth: {name: kitti, crop: garg, min_depth: 1.0e-3, max_depth: 80.0}}`` (the KITTI
    protocol: per image, then averaged; see docs/metrics.md); ``{}``: the defaults."""
    postprocess: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per head, options of the post-processing that turns the network's outputs into what
    the metric, panels and ``predict`` read: ``{panoptic: {threshold: 0.8,
    overlap_threshold: 0.8, min_area: 0, mask_threshold: 0.5}}`` (Mask2Former's panoptic
    inference, ``dejavu.panoptic_inference``; those are the defaults); ``{}``: the defaults."""
    mask_loss: dict[str, float] = field(default_factory=dict)
    """Overrides of Mask2Former's loss settings for a head trained by mask classification
    (a ``mask2former_*`` model): ``class_weight`` 2, ``mask_weight`` 5, ``dice_weight`` 5,
    ``no_object_weight`` 0.1, ``num_points`` 12544, ``oversample_ratio`` 3,
    ``importance_sample_ratio`` 0.75 (``MASK2FORMER_LOSS`` in
    ``dejavu.toolkit.tasks.mask_classification``); e.g. ``{num_points: 512}`` for small
    images, whose mask grid has fewer pixels than that."""


@dataclass
class DataConfig:
    """Dataset, splits, loaders and augmentation."""

    name: str = "scenes"
    """Dataset name for ``dejavu.toolkit.data.create_dataset`` (``scenes`` needs no files)."""
    root: str | None = None
    """Dataset folder (relative paths are relative to the working directory)."""
    train_split: str = "train"
    """Split used for training."""
    val_split: str = "val"
    """Split used for validation during training (and ``validate``)."""
    test_split: str = "test"
    """Split used by ``test``."""
    batch_size: int = 8
    """Training batch size per process (the global batch is this x devices x nodes)."""
    val_batch_size: int | None = None
    """Evaluation batch size per process; ``None``: same as ``batch_size``."""
    num_workers: int = 2
    """DataLoader worker processes per training process (0: load in the main process)."""
    crop_size: list[int] | None = None
    """Training crop ``[H, W]`` (padded with ignore/invalid where the image is smaller);
    ``None``: no crop (then ``scale_range`` must be ``[1, 1]`` so samples collate)."""
    scale_range: list[float] = field(default_factory=lambda: [1.0, 1.0])
    """Random rescale factor range ``[lo, hi]`` applied before the crop."""
    flip: bool = True
    """Random horizontal flip (p = 0.5) during training; normals' x component is mirrored."""
    color_jitter: float = 0.0
    """Brightness/contrast/saturation jitter strength during training (0: off)."""
    pad_to_multiple: int | None = None
    """Pad every batch (bottom/right; image with the mean, targets with ignore/invalid) to
    a multiple of this; ``None``: to the largest image of the batch (images of different
    sizes are always padded to batch). The models pad internally, so this is optional."""
    num_train: int | None = None
    """Use only the first N training samples (``scenes``: render N images); ``None``: all."""
    num_val: int | None = None
    """Use only the first N samples of the validation and test splits; ``None``: all."""
    tasks: list[str] | None = None
    """Targets to load (``seg``, ``depth``, ``normals``, ``instance``); ``None``: those the
    task needs."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra ``create_dataset`` arguments (e.g. ``size: [96, 128]`` for ``scenes``)."""
    labeled_fraction: float = 1.0
    """Semi-supervised training: the fraction in (0, 1] of the training split that keeps
    its labels, a fixed subset of ``round(fraction * N)`` images (at least 1) drawn from
    ``seed`` (the same seed gives the same subset; a smaller fraction's subset is contained
    in a larger one's). With DejaVu the other images join the unlabelled pool; without,
    they are not used. An epoch keeps the full split's number of steps (see the docs)."""
    unlabeled_root: str | None = None
    """A folder of extra unlabelled training images (any size; searched recursively for
    png, jpg, jpeg, bmp, tif, tiff, webp), e.g. your own video frames; used only with
    DejaVu (the regeneration loss needs no labels). ``None``: none."""
    unlabeled_batch_size: int | None = None
    """Unlabelled images per training batch and process, after the ``batch_size`` labelled
    ones, when there is an unlabelled pool; ``None``: equal to ``batch_size``."""
    max_image_pixels: int | None = 100_000_000
    """Largest image (width x height) any reader decodes; a larger one is refused from its
    header, before it is decoded (a 20000 x 20000 PNG is a few KB on disk and 1.2 GB in
    memory). ``None``: no limit (PIL's own decompression-bomb guard is off either way)."""


@dataclass
class ModelConfig:
    """The base network (all that runs at inference)."""

    name: str = "hrnet18"
    """Name for ``dejavu.toolkit.models.create_model``."""
    pretrained: str | None = None
    """A local weights file (``.pth``/``.safetensors``) for the network or its backbone;
    ``None``: random initialisation. Nothing is ever downloaded."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra ``create_model`` arguments."""


@dataclass
class DejaVuConfig:
    """The DejaVu objective (see ``dejavu.dejavu.DejaVu``); off gives the plain baseline."""

    enabled: bool = True
    """``false`` trains with the task loss only (same model, data and schedule)."""
    redaction: dict[str, Any] = field(default_factory=lambda: {"name": "random"})
    """``create_redaction`` arguments: ``name`` plus that redaction's options."""
    crm: dict[str, Any] = field(default_factory=lambda: {"kind": "forward"})
    """CRM: ``kind`` (a name of ``dejavu.crm.list_crms()``: ``forward``, ``recursive``,
    ``zero``, ...) plus its constructor options (their defaults are the class's)."""
    conditioning: dict[str, Any] = field(
        default_factory=lambda: {"temperature": 1.0, "hard": False}
    )
    """``Conditioning`` options: softmax ``temperature``; ``hard`` straight-through masks."""
    regen_loss: dict[str, Any] = field(
        default_factory=lambda: {"kind": "l1", "redacted_weight": 1.0, "kept_weight": 1.0}
    )
    """``RegenerationLoss`` options: ``kind`` (l1, l2, charbonnier, l1+ssim) and weights."""
    regen_weight: float = 1.0
    """Weight of the regeneration loss after warm-up."""
    regen_warmup_steps: int = 0
    """Steps of linear warm-up of the regeneration weight from 0."""
    cyclic_weight: float = 0.0
    """Weight of DejaVu-CL (the regenerated image through the base network again); 0: off."""
    text: dict[str, Any] = field(
        default_factory=lambda: {"weight": 0.0, "model_name": "ViT-B-32", "pretrained": None}
    )
    """DejaVu-TS: ``weight`` (0: off) plus ``TextSupervision`` options."""
    sa_weight: float = 1.0
    """Weight of the shared-attention regeneration loss (only for ``*_sa`` base networks)."""
    stop_gradient: bool = False
    """Ablation: detach the conditioning so only the CRM learns from regeneration."""
    crm_truth_weight: float = 0.0
    """Anchor a learned CRM to the truth: it also regenerates labelled images from their
    ground-truth conditioning, with this weight (only the CRM learns from it); 0: off."""


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule."""

    name: str = "adamw"
    """``adamw`` or ``sgd`` (with momentum)."""
    lr: float = 1e-3
    """Peak learning rate of the base network."""
    weight_decay: float = 1e-4
    """Weight decay (not applied to normalisation weights and biases)."""
    momentum: float = 0.9
    """SGD momentum (and AdamW's beta1)."""
    poly_power: float = 0.9
    """Poly schedule ``lr * (1 - step / total_steps) ** poly_power`` per step; 0: constant."""
    warmup_steps: int = 0
    """Linear warm-up steps from ``lr / 100`` before the poly decay."""
    crm_lr_mult: float = 1.0
    """Learning-rate multiplier of the regeneration parts (CRM, ...) relative to ``lr``."""


@dataclass
class TrainerConfig:
    """Lightning ``Trainer`` settings and checkpoint/logging cadence."""

    max_epochs: int = 10
    """Training epochs (used when ``max_steps`` is -1)."""
    max_steps: int = -1
    """Train for this many optimiser steps instead of ``max_epochs`` (-1: off)."""
    accelerator: str = "auto"
    """``auto``, ``cpu``, ``gpu``, ..."""
    devices: int | str | list[int] = 1
    """Devices per node (an int, ``auto`` or a list of indices)."""
    strategy: str = "auto"
    """``auto``, ``ddp``, ``ddp_spawn``, ... (``ddp`` for several devices; see the docs)."""
    num_nodes: int = 1
    """Machines; with ``torchrun`` / SLURM, Lightning reads the rank from the environment."""
    sync_batchnorm: bool = False
    """Synchronise BatchNorm statistics across processes (CUDA only)."""
    precision: str = "32-true"
    """``32-true``, ``16-mixed``, ``bf16-mixed``, ..."""
    gradient_clip_val: float | None = None
    """Clip the gradient norm to this value (``None``: no clipping)."""
    accumulate_grad_batches: int = 1
    """Batches per optimiser step."""
    val_every_n_epochs: int = 1
    """Validate (and save ``last``/``best`` checkpoints) every this many epochs."""
    log_every_n_steps: int = 10
    """Scalar logging cadence."""
    image_log_every_n_steps: int = 200
    """Cadence of the input/target/prediction/redacted/regenerated image panels (0: off)."""
    deterministic: bool = False
    """Ask PyTorch for deterministic kernels (slower on GPU)."""
    limit_train_batches: int | float = 1.0
    """Training batches per epoch: a fraction (float) or a count (int)."""
    limit_val_batches: int | float = 1.0
    """Validation batches per validation: a fraction (float) or a count (int)."""
    monitor: str | None = None
    """Validation metric that picks ``best.ckpt``: any metric that is logged (without
    ``val/``), e.g. ``seg/miou``, ``seg/iou_per_class/3``, ``depth/abs_rel`` or ``loss``;
    ``None``: the task's main metric (``seg/miou`` for segmentation and multi-task,
    ``depth/rmse``, ``normals/mean``)."""
    skip_nonfinite_steps: int = 0
    """Optimiser steps with a NaN or infinite loss term or gradient to skip (no weight
    updated; each logged as ``train/skipped_nonfinite``) before the run stops; 0: stop at
    the first one, naming the step and the term (``last.ckpt`` keeps the last good state)."""
    ddp_timeout_s: float | None = None
    """Under DDP (``strategy: ddp``, ``ddp_spawn``, ...), seconds a process waits for the
    others in a collective operation before it stops with an error (the process group's
    timeout), so that a process that hangs does not hang the run; ``None``: torch's
    default, 30 minutes. A process that dies is noticed at once with gloo."""


@dataclass
class ExperimentConfig:
    """Everything that defines a run.

    The run directory is ``output_dir / name``: it holds ``config.yaml``,
    ``last.ckpt``, ``best.ckpt``, ``base.safetensors`` + ``base.json``,
    ``metrics.json``, the TensorBoard and CSV logs and the image panels.
    """

    name: str = "experiment"
    """Run name (the run directory's name)."""
    seed: int = 0
    """Seed of every random choice: weights, data order, augmentation, redaction."""
    output_dir: str = "runs"
    """Parent folder of run directories."""
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    dejavu: DejaVuConfig = field(default_factory=DejaVuConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    @property
    def run_dir(self) -> Path:
        """``output_dir / name``."""
        return Path(self.output_dir) / self.name
