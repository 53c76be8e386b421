"""Hostile checkpoint files: damage a checkpoint at many random places and run ``asyncrl inspect``,
``asyncrl eval`` and ``asyncrl train --resume`` on each copy, in this one process.

    python tests/fuzz_checkpoints.py CHECKPOINT WORKDIR CASES SEED

Each command must end with exit status 0 (the damage missed anything that matters) or with
exit status 2 and one ``Error:`` line, never a traceback; a command that runs longer than 60 s
dumps every thread's stack and ends the process (a hang), and a crash of the interpreter ends it
by a signal, which the calling test reports. Prints one line per failure and a summary; exit 1
on any failure. tests/test_nothing_lost.py runs it (40 cases by default, 300 with -m slow).
"""

import faulthandler
import random
import sys
from pathlib import Path

from click.testing import CliRunner

from numba_a3c import checkpoint
from numba_a3c.cli.main import cli

HANG_SECONDS = 60


def damage(data, rng):
    """A copy of ``data`` truncated, or with bytes overwritten at a random place."""
    data = bytearray(data)
    kind = rng.choice(["truncate", "random bytes", "zeros", "one bit"])
    at = rng.randrange(len(data))
    if kind == "truncate":
        return bytes(data[:at]), f"truncated to {at} bytes"
    if kind == "one bit":
        data[at] ^= 1 << rng.randrange(8)
        return bytes(data), f"bit flipped at byte {at}"
    n = rng.randint(1, 64)
    data[at:at + n] = bytes(rng.randrange(256) for _ in range(n)) if kind == "random bytes" else bytes(n)
    return bytes(data[:len(data)]), f"{n} {kind} at byte {at}"


def check(args, result):
    """"" if the command ended acceptably, else what was wrong."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return f"raised {type(result.exception).__name__}: {result.exception}"
    if "Traceback" in result.output:
        return "printed a traceback"
    if result.exit_code == 0:
        return ""
    lines = result.stderr.strip().splitlines()
    if result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "):
        return ""
    return f"exit {result.exit_code}, stderr {result.stderr.strip()[-500:]!r}"


def main(argv):
    source, work, cases, seed = Path(argv[0]), Path(argv[1]), int(argv[2]), int(argv[3])
    original = source.read_bytes()
    done = checkpoint.load(source).global_step
    rng = random.Random(seed)
    runner = CliRunner()
    failures = outcomes = 0
    for case in range(cases):
        folder = work / f"case{case}"
        folder.mkdir(parents=True)
        path = folder / "latest.h5"
        data, how = damage(original, rng)
        path.write_bytes(data)
        for args in (["inspect", str(path)], ["eval", str(path), "-n", "1"],
                     ["train", "--resume", str(path), "--steps", str(done + 200), "--eval-episodes", "1",
                      "--save-seconds", "0", "--quiet"]):
            faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
            result = runner.invoke(cli, args)
            faulthandler.cancel_dump_traceback_later()
            problem = check(args, result)
            outcomes += result.exit_code == 0
            if problem:
                failures += 1
                print(f"case {case} ({how}): asyncrl {' '.join(args[:1])}: {problem}", flush=True)
    print(f"fuzz: {cases} cases, {3 * cases} commands, {outcomes} succeeded, {failures} failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
