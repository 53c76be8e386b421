"""episodes.csv, appended: a run's whole episode log on disk, never whole in memory.

The trainer's monitor thread (the only writer) appends the finished episodes to ``episodes.csv``
every ``FLUSH_SECONDS`` and before every checkpoint, then keeps only the last ``TAIL`` rows in
memory (for the checkpoint's ``/log/episodes`` and the recent returns). Each checkpoint records
how many rows and bytes the CSV held when it was written (``csv_rows``, ``csv_bytes``), so a
resume cuts off the rows a killed session appended after its last checkpoint and the log stays
exactly in step with the resumed state. Memory and save time therefore do not grow with the
number of episodes.
"""

import contextlib
import os
from pathlib import Path

import numpy as np

TAIL = 10_000            # rows kept in memory and in each checkpoint's /log/episodes
FLUSH_SECONDS = 5.0      # the monitor appends to episodes.csv at least this often
# The columns of episodes.csv and of a checkpoint's /log/episodes.
EPISODE_COLUMNS = ("global_step", "thread", "return", "length", "wall_time")
HEADER = (",".join(EPISODE_COLUMNS) + "\n").encode()


def format_rows(rows):
    """CSV lines (bytes) for (n, 5) rows: integers as integers, floats with 10 significant digits."""
    out = []
    for step, thread, ret, length, wall in np.asarray(rows, np.float64).reshape(-1, 5).tolist():
        out.append(f"{int(step)},{int(thread)},{ret:.10g},{int(length)},{wall:.10g}\n")
    return "".join(out).encode()


class EpisodeCsv:
    """An open, append-only episodes.csv; ``size`` is its length in bytes."""

    def __init__(self, path, size):
        self.path = Path(path)
        self.size = size
        self._fh = open(self.path, "ab")  # noqa: SIM115 - held open for the run, closed by close()

    @classmethod
    def start(cls, path, rows=None, source=None, source_bytes=0):
        """Open ``path`` for appending, beginning as a resumed run's log must:

        * ``source`` (the CSV beside the checkpoint resumed, possibly ``path`` itself) holding at
          least ``source_bytes`` bytes: its first ``source_bytes`` bytes are kept, anything after
          them (appended by a session killed after its last checkpoint) is cut off.
        * otherwise: a new file with the header and ``rows`` (a new run: none).
        Returns (EpisodeCsv, a warning or "")."""
        path = Path(path)
        warning = ""
        if source is not None and source_bytes and Path(source).is_file() \
                and Path(source).stat().st_size >= source_bytes:
            if Path(source).resolve() != path.resolve():
                with open(source, "rb") as src, open(path, "wb") as dst:
                    _copy_bytes(src, dst, source_bytes)
            else:
                os.truncate(path, source_bytes)
            return cls(path, source_bytes), warning
        if source_bytes:
            warning = (f"{source} is missing or shorter than the checkpoint says; episodes.csv starts again from "
                       f"the {0 if rows is None else len(rows):,} episodes the checkpoint holds")
        data = HEADER + (format_rows(rows) if rows is not None and len(rows) else b"")
        with open(path, "wb") as fh:
            fh.write(data)
        return cls(path, len(data)), warning

    def append(self, rows):
        """Append rows and flush them to disk; returns the file's new length in bytes."""
        data = format_rows(rows)
        if data:
            self._fh.write(data)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self.size += len(data)
        return self.size

    def close(self):
        with contextlib.suppress(OSError):
            self._fh.close()


def _copy_bytes(src, dst, n):
    left = n
    while left > 0:
        chunk = src.read(min(left, 1 << 20))
        if not chunk:
            break
        dst.write(chunk)
        left -= len(chunk)


def read_rows(path, n_bytes=None):
    """The rows of an episodes.csv (its first ``n_bytes`` bytes), as an (n, 5) float64 array."""
    with open(path, "rb") as fh:
        data = fh.read() if n_bytes is None else fh.read(n_bytes)
    lines = data.split(b"\n")[1:]
    rows = [line.split(b",") for line in lines if line]
    if not rows:
        return np.zeros((0, 5), np.float64)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)

