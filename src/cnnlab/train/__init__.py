"""Training: config, the loop, checkpoints, evaluation."""
from cnnlab.train.config import TrainConfig, resolve_config
from cnnlab.train.loop import NonFiniteLoss, TrainingInterrupted, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "NonFiniteLoss", "TrainingInterrupted", "resolve_config", "train"]
