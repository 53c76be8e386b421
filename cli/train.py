"""``asyncrl train``: train an agent with one of the four asynchronous methods."""

import dataclasses
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import click

from numba_a3c.cli.errors import BadInput
from numba_a3c.config import TrainConfig, resolve


class _Choice(click.Choice):
    """click.Choice that suggests the closest choice for a typo (``--algo a3d``: did you mean a3c?)."""

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            from numba_a3c.validation import suggest

            self.fail(f"{value!r} is not one of {', '.join(self.choices)}.{suggest(value, self.choices)}", param, ctx)


def _config_options(func):
    """Add one click option per TrainConfig field (defaults None: presets fill what is not given)."""
    for f in reversed(dataclasses.fields(TrainConfig)):
        name = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        default = f.default
        if f.type is bool or isinstance(default, bool):
            opt = click.option(f"{name}/--no-{f.name.replace('_', '-')}", f.name, default=None,
                               help=f"{help_text} [default: preset or {f.metadata.get('default_text', default)}]")
        elif f.name == "hidden":
            opt = click.option(name, f.name, default=None, metavar="N[,N...]",
                               help=f"{help_text} [default: preset or {','.join(map(str, default))}]",
                               callback=_parse_hidden)
        elif f.name == "env_kwargs":
            opt = click.option(name, f.name, default=None, multiple=True, metavar="KEY=VALUE",
                               help=f"{help_text}; repeat it or separate items with commas [default: none]",
                               callback=split_env_kwargs)
        elif "choices" in f.metadata:
            opt = click.option(name, f.name, type=_Choice(f.metadata["choices"]), default=None,
                               help=f"{help_text} [default: preset or {default}]")
        else:
            typ = type(default)
            opt = click.option(name, f.name, type=typ, default=None, help=f"{help_text} [default: preset or {default}]")
        func = opt(func)
    return func


def split_env_kwargs(ctx, param, value):
    """The KEY=VALUE items of a repeatable --env-kwargs option, each value split at its commas."""
    items = tuple(item for v in value or () for item in v.split(",") if item)
    return items or None


def _parse_hidden(ctx, param, value):
    if value is None:
        return None
    try:
        sizes = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers, e.g. 64,64") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter("hidden sizes must be positive integers, e.g. 64,64")
    return sizes


def _fmt_num(x):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def print_config(config):
    d = config.to_dict()
    click.echo("configuration: " + " ".join(f"{k}={v}" for k, v in d.items()))


def progress_line(p):
    pct = 100.0 * p.steps / p.budget if p.budget else 0.0
    parts = [f"step {p.steps:>10,} ({pct:5.1f}%)", f"{p.steps_per_s:>9,.0f} steps/s", f"episodes {p.episodes:>7,}",
             f"return(100) {_fmt_num(p.recent_return):>7}"]
    if not math.isnan(p.epsilon):
        parts.append(f"eps {p.epsilon:.3f}")
    if not math.isnan(p.entropy):
        parts.append(f"entropy {p.entropy:.2f}")
    parts.append(f"lr {p.lr:.2e}")
    return "  ".join(parts)


def _exit_now(run_dir):
    """A deliberate second Ctrl-C: leave at once. A checkpoint being written at this moment is
    abandoned (its temporary file removed); the file it would have replaced is untouched, because
    a save only ever renames a complete temporary file over it."""
    if run_dir is not None:
        from numba_a3c.rundir import remove_stale_temporaries

        remove_stale_temporaries(run_dir)
        last = Path(run_dir) / "latest.h5"
        kept = f"the last checkpoint {last} is intact" if last.exists() else "no checkpoint was saved"
    else:
        kept = "nothing was created"
    os.write(2, f"interrupted again: exiting now; {kept}\n".encode())
    os._exit(130)


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP for ``asyncrl train``; installed by, and run in, the main thread.

    * Before a trainer is attached (while the inputs are checked): the first signal raises
      KeyboardInterrupt, so nothing is created.
    * The first signal once a trainer is attached asks it to stop; the run saves ``latest.h5``.
    * Any signal within ``GRACE`` seconds of the first is the same request, not a second one:
      GNU ``timeout`` sends its signal to the process and then to its process group, terminals and
      schedulers signal whole groups, so one request often arrives twice within microseconds.
    * A signal later than that is a deliberate second Ctrl-C: exit at once (``_exit_now``); every
      save is atomic, so the last complete ``latest.h5`` stays loadable.

    The second signal exits from inside the handler (``os._exit``) rather than by raising: an
    exception raised by a signal handler is lost when it fires inside a ``__del__`` or weakref
    callback, and worker threads may still be inside nopython code.
    """

    GRACE = 1.0   # seconds

    def __init__(self):
        self.received = []          # signal numbers, in order
        self.trainer = None
        self.run_dir = None
        self._first = None          # time.monotonic() of the first signal
        self._previous = {}

    def install(self):
        # SIGHUP (the terminal went away) saves like SIGTERM.
        sigs = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
        try:
            for sig in sigs:
                self._previous[sig] = signal.signal(sig, self.handler)
        except ValueError:  # not the main thread (e.g. inside a test runner's thread)
            pass
        return self

    def restore(self):
        """Give an in-process caller (a test) its handlers back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def attach(self, trainer, run_dir):
        """From now on a signal stops ``trainer`` (which saves into ``run_dir``)."""
        self.trainer, self.run_dir = trainer, run_dir
        if self.received:                     # a request that came while the run was being set up
            trainer.request_stop()

    def handler(self, signum, frame):
        now = time.monotonic()
        self.received.append(signum)
        if self._first is None:
            self._first = now
            if self.trainer is None:
                raise KeyboardInterrupt
            self.trainer.request_stop()
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            os.write(2, f"\n{name}: stopping every thread and saving latest.h5 (press Ctrl-C again, a second "
                        f"or more later, to exit at once without saving)\n".encode())
        elif now - self._first < self.GRACE:
            return                            # the same request, delivered twice (process and group)
        elif self.trainer is not None:
            _exit_now(self.run_dir)


@click.command()
@_config_options
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="run directory: configuration, checkpoints (latest.h5, best.h5) and logs (episodes.csv, "
                   "evaluations.csv) [default: runs/<env>-<algo>-<time>]")
@click.option("--resume", "resume", type=click.Path(dir_okay=True), default=None,
              help="continue the run saved in this checkpoint (or run directory) with its configuration")
@click.option("--force", is_flag=True, help="allow --out to name a run directory that already exists")
@click.option("--stop-at", "stop_at", type=click.IntRange(min=1), default=None,
              help="pause at this global step (at a segment boundary) and save; resume later with --resume")
@click.option("--quiet", is_flag=True, help="no progress lines, only the summary")
@click.option("--show-config", "show_config", is_flag=True,
              help="print the resolved configuration (preset and options, or the resumed checkpoint's) as JSON "
                   "and exit without creating anything")
@click.option("--tensorboard", "tensorboard", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="also write the progress scalars and evaluations as TensorBoard event files to DIR, with the "
                   "global step as x (needs the 'tensorboard' extra: tensorboardX)")
@click.option("--save-seconds", "save_seconds", type=click.FloatRange(min=0), default=None, metavar="S",
              help="also save latest.h5 every S seconds of wall time, so a killed run (SIGKILL, out of memory) "
                   "loses at most about S seconds of training; 0 turns it off [default: 60]")
@click.option("--ray-address", "ray_address", default=None, metavar="HOST:PORT",
              help="with --nodes: join the Ray cluster whose head is there ('ray start --head' prints it) "
                   "[default: start Ray on this machine]; docs/distributed.md")
def train(out, resume, force, stop_at, quiet, show_config, tensorboard, save_seconds, ray_address, **options):
    """Train an agent. With no options: A3C on CartPole-v1 with the shipped preset.

    Every option not given comes from the preset for the environment and algorithm
    (data/presets); the resolved configuration is printed and saved in the run directory.
    Every option is checked before anything is created. latest.h5 is saved every 60 s
    (--save-seconds) and every --save-every steps. Ctrl-C (or SIGTERM) stops every thread,
    saves latest.h5 and prints how to resume; the same signal repeated within a second is the
    same request; a second Ctrl-C later than that exits at once.

    Exit status: 0 finished (or paused by --stop-at), 1 failed or diverged, 2 bad input (or a
    run directory in use), 130 stopped by Ctrl-C, 143 by SIGTERM. See docs/robustness.md.
    """
    if show_config:
        _show_config(resume, options)
        return
    signals = StopSignals().install()
    try:
        _train(signals, out, resume, force, stop_at, quiet, tensorboard, save_seconds, options, ray_address)
    finally:
        signals.restore()


def _show_config(resume, options):
    """``--show-config``: the configuration a run with these options would use, checked; nothing is created."""
    from numba_a3c.checkpoint import CheckpointError, load
    from numba_a3c.envs.base import EnvError
    from numba_a3c.validation import check_config, check_environment, check_resume

    try:
        if resume:
            config = load(check_resume(resume), whole_log=False).config
            config = config.replace(**{k: v for k, v in options.items() if v is not None})
        else:
            config = resolve(options)
            check_config(config)
            check_environment(config)
    except (EnvError, ValueError, CheckpointError) as exc:
        raise BadInput(str(exc)) from None
    click.echo(json.dumps(config.to_dict(), indent=2))


def evaluation_lines(ev, run_dir):
    """What a periodic evaluation prints: its returns, then any alarm of the network's health."""
    yield (f"evaluation at step {ev.steps:,}: mean return {ev.mean:.2f} over {len(ev.returns)} episodes "
           f"(min {ev.returns.min():.1f}, max {ev.returns.max():.1f})")
    for alarm in ev.health_alarms:
        yield f"  health: {alarm} (asyncrl inspect {run_dir} --health)"


def _train(signals, out, resume, force, stop_at, quiet, tensorboard, save_seconds, options, ray_address=None):
    from numba_a3c import rundir
    from numba_a3c.algorithms.state import C_T
    from numba_a3c.checkpoint import CheckpointError
    from numba_a3c.distributed import check_nodes
    from numba_a3c.envs.base import EnvError
    from numba_a3c.launch import resumed_nodes, trainer_for
    from numba_a3c.trainer import SAVE_SECONDS
    from numba_a3c.validation import check_config, check_environment, check_resume, check_run_dir, check_stop_at

    printing = [True]

    def say(line):
        # A closed stdout (`asyncrl train | head`, a lost terminal) must not end a long run.
        if printing[0]:
            try:
                click.echo(line)
            except OSError:
                printing[0] = False

    board = []     # the TensorBoard writer, once everything is checked

    def on_progress(p):
        if board:
            board[0].progress(p, trainer)
        if not quiet:
            say(progress_line(p))

    def on_eval(ev):
        if board:
            board[0].evaluation(ev)
        if not quiet:
            for line in evaluation_lines(ev, signals.run_dir):
                say(line)

    callbacks = dict(on_progress=None if quiet and not tensorboard else on_progress, on_eval=on_eval,
                     save_seconds=SAVE_SECONDS if save_seconds is None else save_seconds)
    # Everything is checked before anything is created: a refused run leaves no file behind.
    try:
        if resume:
            ckpt_path = check_resume(resume)
            run_dir = Path(out) if out else ckpt_path.parent
            _check_not_in_use(run_dir)
            check_run_dir(run_dir, force=force, resuming_from=ckpt_path)
            given = {k: v for k, v in options.items() if v is not None}
            cls, extra = trainer_for(resumed_nodes(ckpt_path, given), ray_address)
            trainer = cls.from_checkpoint(ckpt_path, given, run_dir=run_dir, **callbacks, **extra)
            config = trainer.config
        else:
            config = resolve(options)
            check_config(config)
            check_nodes(config)
            cls, extra = trainer_for(config.nodes, ray_address)
            parts = check_environment(config)
            run_dir = Path(out) if out else _default_run_dir(config)
            if out:
                _check_not_in_use(run_dir)
                check_run_dir(run_dir, force=force)
            # else: a candidate name only; the directory is made later with a free name (rundir.create_unique),
            # so another run that took this name meanwhile (runs started in the same second) is no error.
            trainer = cls(config, run_dir=run_dir, parts=parts, **callbacks, **extra)
        done = int(trainer.shared.counters[C_T])
        check_stop_at(stop_at, done)
        if resume and done >= config.steps:
            raise BadInput(f"--resume {resume}: the run already reached its budget ({done:,} of --steps "
                           f"{config.steps:,}); give a larger --steps to train on, e.g. --steps {2 * config.steps}")
        if tensorboard:
            from numba_a3c.tensorboard import check_logdir

            check_logdir(tensorboard)
        if config.nodes:
            trainer.connect()          # a bad --ray-address is refused before anything is created
        signals.attach(trainer, run_dir)   # from here on a signal stops the run, which saves
    except (EnvError, ValueError, CheckpointError) as exc:
        raise BadInput(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("interrupted before training started; nothing was created", err=True)
        sys.exit(130)
    try:
        if out or resume:
            run_dir.mkdir(parents=True, exist_ok=True)
        else:   # a new name, created atomically: parallel runs never share a directory
            run_dir = trainer.run_dir = signals.run_dir = rundir.create_unique(run_dir.parent, run_dir.name)
        lock = rundir.acquire(run_dir)
    except rundir.RunDirInUse as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"cannot write the run directory {run_dir}: {exc}") from None
    try:
        if tensorboard:
            from numba_a3c.tensorboard import TensorBoardWriter

            board.append(TensorBoardWriter(tensorboard))
        _run(trainer, config, run_dir, resume, done, stop_at, lock, signals.received, quiet, board)
    finally:
        if lock is not None:
            lock.release()
        if board:
            board[0].close()


def _check_not_in_use(run_dir):
    from numba_a3c import rundir

    holder = rundir.holder_of(run_dir)
    if holder is not None:
        raise BadInput(rundir.in_use_message(run_dir, holder))


def _default_run_dir(config):
    """runs/<env>-<algo>-<time>: a candidate name; the directory made is this or <name>-2, -3, ..."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.env.replace('/', '_')}-{config.algo}-{stamp}"


def summary_line(result, done, elapsed):
    """The run's first summary line. After ``--resume`` (``done`` steps before this invocation) it
    separates this invocation's steps and training time from the run's totals."""
    if not done:
        return (f"{result.status}: {result.steps:,} steps in {result.wall_time:.1f} s of training "
                f"({result.steps_per_s:,.0f} steps/s), {result.episodes:,} episodes, {elapsed:.1f} s in all")
    session = result.steps - done
    session_time = session / result.steps_per_s if result.steps_per_s > 0 else 0.0
    return (f"{result.status}: {session:,} steps in {session_time:.1f} s of training this invocation "
            f"({result.steps_per_s:,.0f} steps/s), {elapsed:.1f} s in all; the run so far: {result.steps:,} "
            f"steps, {result.wall_time:.1f} s of training, {result.episodes:,} episodes")


def final_evaluation_name(config):
    """"final greedy evaluation", or "final ε-greedy evaluation (ε 0.05)" when ``eval_epsilon`` > 0."""
    eps = config.eval_epsilon
    return f"final ε-greedy evaluation (ε {eps:g})" if eps > 0 else "final greedy evaluation"


def _run(trainer, config, run_dir, resume, done, stop_at, lock, received, quiet=False, board=()):
    """Train in ``run_dir`` (locked by this process) and report; exits with the run's status."""
    from numba_a3c import rundir

    try:
        if lock is not None and lock.previous:
            click.echo(f"note: took over the lock of {run_dir} left by {lock.previous}, which is no longer running",
                       err=True)
        rundir.remove_stale_temporaries(run_dir)
        (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    except OSError as exc:
        raise BadInput(f"cannot write the run directory {run_dir}: {exc}") from None
    net = trainer.network
    if not quiet:
        print_config(config)
        click.echo(f"network: {net.spec.heads} heads, {net.n_params:,} parameters; environment: {config.env} "
                   f"({trainer.env_info.kind}); threads: {config.threads} on {os.cpu_count()} cores"
                   + (f" on each of {config.nodes} Ray nodes" if config.nodes else "")
                   + (f"; resuming at step {done:,}" if resume else ""))
    if trainer.optimizer_restarted:
        click.echo("note: this checkpoint was saved without its optimizer statistics; they start from zero",
                   err=True)
    t0 = time.monotonic()
    try:
        result = trainer.run(stop_at=stop_at)
    except KeyboardInterrupt:  # only where the handlers could not be installed
        _exit_now(run_dir)
    click.echo(summary_line(result, done if resume else 0, time.monotonic() - t0))
    if config.nodes:
        click.echo(f"nodes: {config.nodes} × {config.threads} threads, {trainer.exchanges:,} exchanges, "
                   f"{trainer.restarts} node restart(s)")
    if trainer.episodes_dropped:
        click.echo(f"warning: {trainer.episodes_dropped:,} finished episodes are missing from episodes.csv (the "
                   f"monitor fell behind); the step counts and the parameters are not affected", err=True)
    if result.final_eval is not None:
        ev = result.final_eval
        if board:
            board[0].evaluation(ev)
        click.echo(f"{final_evaluation_name(config)}: mean return {ev.mean:.2f} ± "
                   f"{ev.returns.std():.2f} over {len(ev.returns)} episodes")
    files = ", ".join(sorted(p.name for p in run_dir.iterdir() if not p.name.startswith(".")))
    click.echo(f"run directory: {run_dir} ({files})")
    if result.status in ("stopped", "paused", "failed") and (run_dir / "latest.h5").exists():
        # A pause not reached yet is part of what the user asked for: the resume keeps it.
        pause = f" --stop-at {stop_at}" if stop_at and result.steps < stop_at else ""
        click.echo(f"to continue: asyncrl train --resume {run_dir / 'latest.h5'}{pause}")
    if result.error:
        click.echo(f"error: {result.error}", err=True)
        sys.exit(1)
    if result.status == "stopped" and received:
        sys.exit(128 + received[0])  # the shell's convention: 130 after Ctrl-C, 143 after SIGTERM, 129 SIGHUP
