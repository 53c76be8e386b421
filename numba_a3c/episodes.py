"""The run's finished episodes in memory: collected from the workers' ring buffers by the monitor.

Workers write each finished episode (global step, return, length) into their row of
``SharedState.episode_log``, a ring buffer per thread. The monitor thread drains those buffers
about 50 times a second into :class:`Episodes`: the rows of the log (:class:`EpisodeRows`), the
last 100 returns for progress reports, and a count of episodes a buffer overwrote before they were
drained. What reaches the disk, and when, is :mod:`numba_a3c.run_files`'s job.

Threads: the monitor thread (the one that calls ``Trainer.run``) is the only writer of everything
here; the evaluation thread only reads a consistent copy of the rows (``EpisodeRows.snapshot``,
under its lock) when it saves best.h5.
"""

import math
import threading
from collections import deque

import numpy as np

from numba_a3c.algorithms.state import TI_EPISODES

RECENT = 100      # returns averaged in a progress report


class EpisodeRows:
    """The finished episodes of a run still in memory, as rows (global step, thread, return,
    length, wall time).

    Reads like a list of tuples (``len``, indexing, slicing, iteration) but keeps the rows in
    one float64 array (40 bytes an episode; a list of tuples takes about 200). ``first`` is the
    index in the run's whole log of the first row held: a run with a run directory writes its
    rows to episodes.csv and then keeps only the last ones (:meth:`discard_head`), so its memory
    does not grow with the run. Written by the monitor thread only; a reader in another thread
    (the evaluation thread's save of best.h5) takes the lock and gets a consistent copy.
    """

    COLUMNS = 5

    def __init__(self, rows=(), first=0):
        self._a = np.zeros((1024, self.COLUMNS), np.float64)
        self._n = 0
        self.first = first
        self._lock = threading.Lock()
        self.extend(rows)

    @staticmethod
    def _row(r):
        return (int(r[0]), int(r[1]), float(r[2]), int(r[3]), float(r[4]))

    def __len__(self):
        return self._n

    @property
    def total(self):
        """Rows in the run's whole log so far (those discarded included)."""
        return self.first + self._n

    def __getitem__(self, i):
        rows = self.array()
        if isinstance(i, slice):
            return [self._row(r) for r in rows[i].tolist()]
        return self._row(rows[i].tolist())

    def __iter__(self):
        for r in self.array().tolist():
            yield self._row(r)

    def _reserve(self, extra):
        need = self._n + extra
        if need > self._a.shape[0]:
            grown = np.zeros((max(need, 2 * self._a.shape[0]), self.COLUMNS), np.float64)
            grown[:self._n] = self._a[:self._n]
            self._a = grown

    def append(self, row):
        with self._lock:
            self._reserve(1)
            self._a[self._n] = row
            self._n += 1

    def extend(self, rows):
        data = np.asarray(rows, np.float64).reshape(-1, self.COLUMNS)
        with self._lock:
            self._reserve(len(data))
            self._a[self._n:self._n + len(data)] = data
            self._n += len(data)

    def array(self):
        """A copy of the rows held as an (n, 5) float64 array."""
        with self._lock:
            return self._a[:self._n].copy()

    def snapshot(self):
        """(``first``, a copy of the rows held), consistent with each other."""
        with self._lock:
            return self.first, self._a[:self._n].copy()

    def since(self, index):
        """A copy of the rows from whole-log index ``index`` on."""
        with self._lock:
            return self._a[max(0, index - self.first):self._n].copy()

    def discard_head(self, keep, written):
        """Forget the rows before the last ``keep``, but none at or after whole-log index
        ``written`` (rows not yet in episodes.csv). The buffer shrinks back when it can."""
        with self._lock:
            drop = min(self._n - keep, written - self.first)
            if drop <= 0:
                return
            rest = self._n - drop
            size = max(1024, 2 * rest)
            a = np.zeros((size, self.COLUMNS), np.float64) if size < self._a.shape[0] else self._a
            a[:rest] = self._a[drop:self._n]
            self._a, self._n = a, rest
            self.first += drop

    def __array__(self, dtype=None, copy=None):
        a = self.array()
        return a if dtype is None else a.astype(dtype)


class Episodes:
    """What the monitor has collected of the finished episodes: ``rows`` (the log, or its tail),
    ``recent`` (the last :data:`RECENT` returns) and ``dropped`` (episodes a ring buffer overwrote
    before the monitor drained it). Monitor thread only."""

    def __init__(self, n_threads):
        self.rows = EpisodeRows()         # (global step, thread, return, length, wall time)
        self.recent = deque(maxlen=RECENT)
        self.dropped = 0
        self.max_abs_return = 0.0         # the largest |return| of the episodes seen (the returns' scale)
        self.seen = 0                     # episodes drained in this session or restored
        self._seen = np.zeros(n_threads, np.int64)   # episodes of each thread drained so far

    def restore(self, rows, first, counts):
        """Continue a resumed run: its log's tail ``rows`` (whole-log index ``first`` on), with
        ``counts`` episodes of each thread already finished."""
        self.rows = EpisodeRows(rows, first=first)
        self.recent.extend(r[2] for r in self.rows[-RECENT:])
        self._seen = np.array(counts, np.int64)
        returns = [abs(r[2]) for r in self.rows if math.isfinite(r[2])]
        self.max_abs_return = max(returns, default=0.0)
        self.seen = len(returns)

    def drain(self, shared, wall):
        """Move newly finished episodes from the workers' ring buffers into ``rows``, each stamped
        with ``wall``. Returns what was not finite (the first episode whose return is NaN or Inf,
        described) or ""."""
        log = shared.episode_log
        cap = log.shape[1]
        counts = shared.thread_i[:, TI_EPISODES].copy()
        non_finite = ""
        for k in range(len(counts)):
            first = max(int(self._seen[k]), int(counts[k]) - cap)
            # A thread that finished more than `cap` episodes since the last drain (the monitor was
            # held up, e.g. by a slow disk) has overwritten the oldest ones: count them.
            self.dropped += first - int(self._seen[k])
            for idx in range(first, int(counts[k])):
                T, ret, length = log[k, idx % cap]
                if not math.isfinite(ret) and not non_finite:
                    non_finite = (f"thread {k}'s episode ending at step {int(T):,} returned {ret} "
                                  f"(the environment's rewards, or values learned from them, are not finite)")
                self.rows.append((int(T), k, float(ret), int(length), wall))
                self.recent.append(float(ret))
                if math.isfinite(ret):
                    self.max_abs_return = max(self.max_abs_return, abs(float(ret)))
                    self.seen += 1
            self._seen[k] = counts[k]
        return non_finite
