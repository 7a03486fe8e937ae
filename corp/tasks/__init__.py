"""Built-in tasks; importing this package registers them in ``TASKS``."""

from corp.tasks import arithmetic, code, countdown, custom, gsm8k, gym, math500, ordering  # noqa: F401  (registration)
from corp.tasks.base import TASKS, Example, Task, TaskConfig, build_task

__all__ = ["TASKS", "Example", "Task", "TaskConfig", "build_task"]
