"""Training: typed run configs, the trainer, schedules and checkpoints."""

from mixerlab.train.config import ModelConfig, RunConfig, TaskConfig, TrainConfig, from_dict, to_dict
from mixerlab.train.trainer import Trainer, TrainResult, build_model, build_task, train

__all__ = [
    "ModelConfig",
    "RunConfig",
    "TaskConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_model",
    "build_task",
    "from_dict",
    "to_dict",
    "train",
]
