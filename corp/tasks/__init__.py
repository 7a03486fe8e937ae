"""Built-in tasks; importing this package registers them."""

from corp.tasks import arithmetic, countdown, gym  # noqa: F401  (registration side effect)
from corp.tasks.base import TASKS, Example, Task, TaskConfig, build_task, register_task

__all__ = ["TASKS", "Example", "Task", "TaskConfig", "build_task", "register_task"]
