"""Lightning callbacks that cnnzoo's configs name in ``configs/callbacks/``."""

from cnnzoo.callbacks.dashboard import Dashboard, tracker_links
from cnnzoo.callbacks.model_stats import ModelStats
from cnnzoo.callbacks.optuna_trial import OptunaTrial
from cnnzoo.callbacks.test_report import TestReport
from cnnzoo.callbacks.throughput import Throughput
from cnnzoo.utils.resume import InterruptCheckpoint, RngState

__all__ = [
    "Dashboard",
    "InterruptCheckpoint",
    "ModelStats",
    "OptunaTrial",
    "RngState",
    "TestReport",
    "Throughput",
    "tracker_links",
]
