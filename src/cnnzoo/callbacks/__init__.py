"""Lightning callbacks that cnnzoo's configs name in ``configs/callbacks/``."""

from cnnzoo.callbacks.model_stats import ModelStats
from cnnzoo.callbacks.optuna_trial import OptunaTrial
from cnnzoo.callbacks.test_report import TestReport

__all__ = ["ModelStats", "OptunaTrial", "TestReport"]
