"""``CSVLogger`` that appends to the metrics file of the run it resumes.

Lightning's writer starts with no known columns, so the first save into an existing
``metrics.csv`` rewrites it under a header of the new columns only, and warns that earlier logs
"will be deleted". Starting from the file's own header keeps every earlier row.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from sr_experiments.outputs import write_text


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        # A folder with logs is a resumed run (train() refuses any other): append, no warning.
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = list(next(csv.reader(f), []))


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` grows across resumes instead of starting over."""

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    def rewind(self, step: int) -> None:
        """Drop the rows of ``metrics.csv`` logged at ``step`` or later: a run resumed from the
        checkpoint of ``step`` logs them again (a row's step is the count of optimizer steps before
        it, so that checkpoint has seen the rows up to ``step - 1``). Rewritten atomically."""
        path = Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE
        if not path.is_file():
            return
        with open(path, newline="") as f:
            header, *rows = list(csv.reader(f)) or [[]]
        if "step" not in header:
            return
        col = header.index("step")
        kept = [r for r in rows if not (len(r) > col and r[col].strip() and int(float(r[col])) >= step)]
        if len(kept) == len(rows):
            return
        text = io.StringIO()
        csv.writer(text).writerows([header, *kept])
        write_text(path, text.getvalue())
