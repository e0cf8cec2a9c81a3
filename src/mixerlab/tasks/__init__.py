"""Tasks of the testbed: synthetic probes and small real data, each with its metric.

Importing this package imports every module in it, which registers the tasks they define in
:data:`mixerlab.registry.TASKS`: adding a task is adding a file, with no list to edit here. Task
modules import only torch at import time; real-data loaders import their data source lazily.
"""

import importlib
import pkgutil

from mixerlab.tasks.base import TASK_KINDS, Metrics, Task, TaskData, create_task

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["TASK_KINDS", "Metrics", "Task", "TaskData", "create_task"]
