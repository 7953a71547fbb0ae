"""Hydra's basic sweeper (``python train.py -m seed=1,2,3``), with a record of what never ran.

Before the first job starts, the sweep's jobs are written to ``<sweep dir>/jobs.json``; a sweep
stopped by Ctrl-C or SIGTERM (or by its launcher failing) still writes its ``summary.md`` and
report, listing the jobs that never ran as ``not started``. Rerunning the same command with
``hydra.sweep.dir=<that dir>`` skips the completed jobs and resumes the interrupted ones from
their own checkpoints (``cnnzoo.train``).

Built on ``hydra._internal.core_plugins.basic_sweeper.BasicSweeper`` (Hydra has no public base
class with its job splitting): measured on hydra-core 1.3.8; ``tests/test_upstream.py::
test_hydras_private_basic_sweeper_still_fits_cnnzoos`` fails the day its ``overrides`` /
``batch_index`` / ``get_job_batch`` contract changes.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# no `from __future__ import annotations`: Hydra loads plugins outside sys.modules, where
# dataclasses cannot resolve string annotations; OmegaConf also needs Optional/Dict here
from typing import Any, Dict, Optional  # noqa: UP035

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper as HydraBasicSweeper
from hydra.core.config_store import ConfigStore

__all__ = ["BasicSweeper", "BasicSweeperConf"]

log = logging.getLogger(__name__)


@dataclass
class BasicSweeperConf:
    _target_: str = "hydra_plugins.cnnzoo_basic_sweeper.sweeper.BasicSweeper"
    max_batch_size: Optional[int] = None  # noqa: UP045
    params: Optional[Dict[str, str]] = None  # noqa: UP006, UP045


ConfigStore.instance().store(group="hydra/sweeper", name="cnnzoo_basic", node=BasicSweeperConf)


class BasicSweeper(HydraBasicSweeper):
    def get_job_batch(self) -> Sequence[Sequence[str]]:
        if self.batch_index == 0 and self.overrides is not None and self.config is not None:
            from cnnzoo.records import write_sweep_plan

            jobs = [job for batch in self.overrides for job in batch]
            write_sweep_plan(self.config.hydra.sweep.dir, jobs)
        return super().get_job_batch()

    # Workaround: a failed job's error ends Hydra's sweep before on_multirun_end, and Ctrl-C
    # too (measured on hydra-core 1.3.8; tests/test_upstream.py::
    # test_hydras_basic_sweeper_never_ends_a_multirun_whose_job_failed)
    def sweep(self, arguments: list[str]) -> Any:
        try:
            return super().sweep(arguments)
        except BaseException:
            if self.config is not None:
                self._record_stop(Path(self.config.hydra.sweep.dir))
            raise

    @staticmethod
    def _record_stop(sweep_dir: Path) -> None:
        """The sweep's table and report as far as it got (a failure here never hides the
        sweep's own error)."""
        from cnnzoo.records import Status, write_sweep_summary
        from cnnzoo.report import write_report

        try:
            rows = write_sweep_summary(sweep_dir)
            write_report(sweep_dir)
        except Exception as error:
            log.warning("Could not write the sweep's report: %s: %s", type(error).__name__, error)
            return
        waiting = [row["job"] for row in rows if row["status"] == Status.NOT_STARTED]
        if waiting:
            log.warning(
                "The sweep stopped before job(s) %s started; rerun it with "
                "hydra.sweep.dir=%s to run them (completed jobs are skipped)",
                ", ".join(waiting),
                sweep_dir,
            )
