"""The run directory's files, and when latest.h5 is due.

A run with a run directory keeps there (see docs/robustness.md):

* ``episodes.csv``: appended by :meth:`RunFiles.flush` (every ``FLUSH_SECONDS`` and before every
  checkpoint); ``csv_mark`` is how many rows and bytes it holds, recorded in every checkpoint so
  that a resume cuts off what a killed session appended after it (:mod:`numba_a3c.episode_log`);
* ``evaluations.csv``: rewritten atomically with every checkpoint;
* ``latest.h5``: due every ``save_every`` global steps and every ``save_seconds`` of wall time
  (:meth:`RunFiles.save_due`), and written at the end; ``best.h5`` and ``diverged.h5`` are named
  here too. The checkpoints themselves are written by ``Trainer.save`` (it knows the state).

A trainer without a run directory has a ``RunFiles(None, ...)`` that writes nothing.

Threads: the monitor thread owns all of it. The evaluation thread only reads ``csv_mark`` (a tuple,
replaced whole) when it saves best.h5.
"""

import math
import time
from pathlib import Path

from numba_a3c.episode_log import TAIL, EpisodeCsv


def next_multiple(T, every):
    """The first multiple of ``every`` above ``T`` (0: never)."""
    if not every:
        return 0
    return (T // every + 1) * every


class RunFiles:
    """episodes.csv, evaluations.csv and the schedule of latest.h5 in ``run_dir`` (None: no files)."""

    def __init__(self, run_dir, save_every, save_seconds):
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.save_every = save_every
        self.save_seconds = float(save_seconds or 0.0)   # 0: no saves by wall time
        self.last_good_save = None   # (path, global step) of the last latest.h5 written
        self.log_warning = ""        # a problem with the episode log of a resumed run
        self.csv_mark = (0, 0)       # (whole-log rows, bytes) in episodes.csv: both read in one go
        self.resume_log = None       # (episodes.csv beside the checkpoint resumed, rows, bytes)
        self._csv = None             # the open episodes.csv (EpisodeCsv) while a session runs
        self._next_save = 0          # global step of the next save (0: none by steps)
        self._next_save_time = math.inf

    def path(self, name):
        return self.run_dir / name

    # ------------------------------------------------------------------ when latest.h5 is due
    def schedule(self, steps):
        """Plan the next save after one at (or a session starting at) ``steps`` global steps."""
        self._next_save = next_multiple(steps, self.save_every)
        self._next_save_time = time.monotonic() + self.save_seconds if self.save_seconds else math.inf

    def save_due(self, steps):
        return self.run_dir is not None and ((self._next_save and steps >= self._next_save)
                                             or time.monotonic() >= self._next_save_time)

    def saved_latest(self, steps):
        self.last_good_save = (self.path("latest.h5"), steps)

    # ------------------------------------------------------------------ the logs
    def flush(self, rows):
        """Append the episodes of ``rows`` (:class:`~numba_a3c.episodes.EpisodeRows`) not yet in
        episodes.csv, then forget all but the last ``TAIL``, so memory does not grow with the run."""
        if self.run_dir is None:
            return
        self._open(rows)
        written = self.csv_mark[0]
        new = rows.since(written)
        size = self._csv.append(new)
        self.csv_mark = (written + len(new), size)
        rows.discard_head(TAIL, written + len(new))

    def write_evaluations(self, eval_rows):
        """Rewrite evaluations.csv (a few rows) atomically."""
        from numba_a3c.checkpoint import EVALUATION_COLUMNS, write_csv

        write_csv(self.path("evaluations.csv"), EVALUATION_COLUMNS, eval_rows)

    def _open(self, rows):
        """Start episodes.csv for this session: a new one, or a resumed run's log cut to its checkpoint."""
        if self._csv is not None:
            return
        if self.csv_mark[1]:     # a later run() of this trainer (after stop_at): go on appending
            self._csv = EpisodeCsv(self.path("episodes.csv"), self.csv_mark[1])
            return
        source, resumed_rows, size = self.resume_log or (None, 0, 0)
        if size:
            self._csv, self.log_warning = EpisodeCsv.start(self.path("episodes.csv"), source=source,
                                                           source_bytes=size, rows=rows.array())
            written = resumed_rows if not self.log_warning else rows.total
        else:   # a new run, or a checkpoint that holds its whole log (format 1 before episodes.csv was appended)
            self._csv, _ = EpisodeCsv.start(self.path("episodes.csv"), rows=rows.array())
            written = rows.total
        self.csv_mark = (written, self._csv.size)

    def close(self):
        """Close episodes.csv at the end of a session."""
        if self._csv is not None:
            self._csv.close()
            self._csv = None
