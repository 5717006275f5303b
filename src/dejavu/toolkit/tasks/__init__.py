"""Dense-prediction tasks: segmentation, depth, normals and multi-task."""

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
    "Task",
    "TaskMetrics",
    "TaskSpec",
    "create_task",
    "depth_l1_loss",
    "list_tasks",
    "normals_cosine_loss",
    "register_task",
    "segmentation_ce_loss",
    "task_heads",
    "task_spec",
]
