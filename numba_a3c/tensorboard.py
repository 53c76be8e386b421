"""TensorBoard logging (the optional ``tensorboard`` extra: tensorboardX).

``asyncrl train --tensorboard DIR`` and ``numba_a3c.train(..., tensorboard=DIR)`` write, with the
global step T as x, at every progress report:

=====================  =======================================================================
``train/return``       mean return of the last 100 finished episodes (the progress line's)
``train/episode_length`` mean length of the last 100 finished episodes
``train/entropy``      A3C: mean policy entropy H(π) of the threads' last segments
``train/epsilon``      Q methods: mean current ε over the threads
``train/value``        mean V(s) (A3C) or Q(s, a) of the actions taken, over the threads' last segments
``train/loss``         mean loss of the threads' last updates
``train/grad_norm``    mean global gradient norm of the threads' last updates (before clipping)
``train/lr``           learning rate η
``train/steps_per_s``  global steps per second of this session
=====================  =======================================================================

and at every evaluation, the final one included, ``eval/mean_return``, ``eval/std_return``, ``eval/min_return`` and
``eval/max_return``. ``tensorboard --logdir DIR`` shows them.
"""

import math
from pathlib import Path

import numpy as np


class TensorBoardError(ValueError):
    """The extra is missing or the directory cannot be written; one line that says what to do."""


def _summary_writer():
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise TensorBoardError("--tensorboard needs tensorboardX, which is not installed; run: "
                               "pip install 'numba_a3c[tensorboard]'") from None
    return SummaryWriter


def check_logdir(logdir):
    """Raise :class:`TensorBoardError` now, before any work, when the extra is missing or
    ``logdir`` cannot be a writable directory."""
    import tempfile

    from numba_a3c.validation import _existing_ancestor

    _summary_writer()
    path = Path(logdir)
    if path.exists() and not path.is_dir():
        raise TensorBoardError(f"--tensorboard {path} is a file, not a directory")
    base = _existing_ancestor(path)
    try:
        if not base.is_dir():
            raise NotADirectoryError(f"{base} is a file")
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise TensorBoardError(f"--tensorboard {path}: cannot write there ({exc.strerror or exc})") from None


class TensorBoardWriter:
    """Writes a run's scalars to event files in ``logdir`` (created if needed).

    Called from the monitor thread (:meth:`progress`) and the evaluation thread
    (:meth:`evaluation`); tensorboardX's writer queues events and writes them from its own
    thread, so both calls are cheap and safe to make concurrently.
    """

    def __init__(self, logdir):
        SummaryWriter = _summary_writer()
        try:
            self.writer = SummaryWriter(logdir=str(logdir), flush_secs=10)
        except OSError as exc:
            raise TensorBoardError(f"--tensorboard {logdir}: cannot write there ({exc.strerror or exc})") from None

    def _scalar(self, tag, value, step):
        if value is not None and math.isfinite(value):
            self.writer.add_scalar(tag, float(value), global_step=int(step))

    def progress(self, p, trainer):
        """The scalars of one :class:`~numba_a3c.trainer.Progress`, plus the threads' last loss,
        gradient norm and value and the recent episode length read from ``trainer``."""
        from numba_a3c.algorithms.state import TF_GRAD_NORM, TF_LOSS, TF_VALUE

        T = p.steps
        self._scalar("train/return", p.recent_return, T)
        self._scalar("train/episode_length", recent_length(trainer.episode_rows), T)
        self._scalar("train/entropy", p.entropy, T)
        self._scalar("train/epsilon", p.epsilon, T)
        tf = trainer.shared.thread_f
        self._scalar("train/value", float(np.mean(tf[:, TF_VALUE])), T)
        self._scalar("train/loss", float(np.mean(tf[:, TF_LOSS])), T)
        self._scalar("train/grad_norm", float(np.mean(tf[:, TF_GRAD_NORM])), T)
        self._scalar("train/lr", p.lr, T)
        self._scalar("train/steps_per_s", p.steps_per_s, T)

    def evaluation(self, ev):
        r = np.asarray(ev.returns, np.float64)
        for name, value in (("mean", r.mean()), ("std", r.std()), ("min", r.min()), ("max", r.max())):
            self._scalar(f"eval/{name}_return", value, ev.steps)

    def close(self):
        self.writer.close()


def recent_length(episode_rows, n=100):
    """Mean length of the last ``n`` episodes in the trainer's rows (global step, thread, return,
    length, wall time); nan before any."""
    rows = episode_rows[-n:]
    return float(np.mean([r[3] for r in rows])) if len(rows) else math.nan
