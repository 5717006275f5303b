"""Dense-prediction tasks: segmentation, depth, normals and multi-task."""

from dejavu.toolkit.tasks.losses import depth_l1_loss, normals_cosine_loss, segmentation_ce_loss
from dejavu.toolkit.tasks.task import TASK_NAMES, Task, TaskMetrics, create_task

__all__ = [
    "TASK_NAMES",
    "Task",
    "TaskMetrics",
    "create_task",
    "depth_l1_loss",
    "normals_cosine_loss",
    "segmentation_ce_loss",
]
