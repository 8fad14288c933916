"""Training: the loop, its option groups, batching and seeding, EMA and the ``train`` job."""

from dimsum_core.train.config import CheckpointConfig, LogConfig, TrainConfig
from dimsum_core.train.loop import Trainer, TrainingDiverged, TrainingInterrupted, TrainResult

__all__ = ["CheckpointConfig", "LogConfig", "TrainConfig", "TrainResult", "Trainer", "TrainingDiverged",
           "TrainingInterrupted"]
