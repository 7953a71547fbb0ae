"""Lightning callbacks that cnnzoo's configs name in ``configs/callbacks/``."""

from cnnzoo.callbacks.dashboard import Dashboard
from cnnzoo.callbacks.finite_loss import FiniteLoss, NonFiniteLossError
from cnnzoo.callbacks.interrupt_checkpoint import InterruptCheckpoint
from cnnzoo.callbacks.model_checkpoint import ModelCheckpoint
from cnnzoo.callbacks.model_stats import ModelStats
from cnnzoo.callbacks.optuna_trial import OptunaTrial
from cnnzoo.callbacks.progress_bar import ProgressBar
from cnnzoo.callbacks.rng_state import RngState
from cnnzoo.callbacks.test_report import TestReport
from cnnzoo.callbacks.throughput import Throughput

__all__ = [
    "Dashboard",
    "FiniteLoss",
    "InterruptCheckpoint",
    "ModelCheckpoint",
    "ModelStats",
    "NonFiniteLossError",
    "OptunaTrial",
    "ProgressBar",
    "RngState",
    "TestReport",
    "Throughput",
]
