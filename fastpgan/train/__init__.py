"""Progressive GAN training: schedule, losses, EMA, checkpoints and the loop behind
``fastpgan-train``."""

from fastpgan.train.config import TrainConfig
from fastpgan.train.loop import Trainer, TrainingDivergedError

__all__ = ["TrainConfig", "Trainer", "TrainingDivergedError"]
