"""Dense-prediction tasks and heads: the task registry and the head specifications.

- :mod:`~dejavu.toolkit.tasks.heads`: one :class:`HeadSpec` per kind of head
  (``seg``, ``depth``, ``normals``): channels, activation, loss, metric,
  conditioning, target layout, colouriser, checkpoint monitor.
- :mod:`~dejavu.toolkit.tasks.task`: the task registry (:class:`TaskSpec`:
  which heads, which default redaction) and the :class:`Task` a run uses.
"""

from dejavu.toolkit.tasks.heads import (
    AUX_SUFFIX,
    IGNORE_INDEX,
    HeadSpec,
    TargetSpec,
    aux_key,
    head_spec,
    list_heads,
    list_targets,
    logged_metric_names,
    metric_direction,
    output_spec,
    register_head,
    register_target,
    target_spec,
)
from dejavu.toolkit.tasks.losses import depth_l1_loss, normals_cosine_loss, segmentation_ce_loss
from dejavu.toolkit.tasks.task import (
    Task,
    TaskMetrics,
    TaskSpec,
    create_task,
    list_tasks,
    register_task,
    task_heads,
    task_spec,
)

__all__ = [
    "AUX_SUFFIX",
    "IGNORE_INDEX",
    "HeadSpec",
    "TargetSpec",
    "Task",
    "TaskMetrics",
    "TaskSpec",
    "aux_key",
    "create_task",
    "depth_l1_loss",
    "head_spec",
    "list_heads",
    "list_targets",
    "list_tasks",
    "logged_metric_names",
    "metric_direction",
    "normals_cosine_loss",
    "output_spec",
    "register_head",
    "register_target",
    "register_task",
    "segmentation_ce_loss",
    "target_spec",
    "task_heads",
    "task_spec",
]
