"""What every benchmark shares: the record of the machine, medians, tables and plots.

The training benchmarks (:mod:`.throughput`, :mod:`.speedup`, :mod:`.optimizers`) run the real
:class:`~numba_a3c.trainer.Trainer`, so their numbers are the numbers a user's ``asyncrl train``
gets. This module keeps them honest in the same way: every result carries the machine it was
measured on (cores, CPU, versions), statistics are medians, and a row whose thread count
exceeds the machine's cores says so.
"""

import math
import os
import platform
import statistics

import numpy as np

OVERSUBSCRIBED_MARK = "*"


def machine_info():
    """Core count, CPU model and library versions, for the record."""
    import numba
    import scipy

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": cores(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "scipy": scipy.__version__,
            "platform": platform.platform()}


def machine():
    """:func:`machine_info` plus the versions a training run depends on."""
    import gymnasium

    from numba_a3c import __version__

    info = machine_info()
    info.update(gymnasium=gymnasium.__version__, numba_a3c=__version__)
    return info


def cores():
    """The number of cores this process may run on (what threads compete for)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_lines(info):
    """Two lines for the top of a benchmark's output: the machine and the versions."""
    return [
        f"machine: {info['cpu']}, {info['usable_cores']} usable cores ({info['cores']} in all), {info['platform']}",
        (f"versions: numba_a3c {info['numba_a3c']}, python {info['python']}, numpy {info['numpy']}, "
         f"numba {info['numba']}, scipy {info['scipy']}, gymnasium {info['gymnasium']}"),
    ]


def median(values):
    """Median of the finite values (nan when there are none)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def table(headers, rows, align=None):
    """A plain-text table: a header line, a rule and one line per row (cells already strings)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    align = align or ["<"] + [">"] * (len(headers) - 1)

    def line(cells):
        return "  ".join(f"{c!s:{a}{w}}" for c, a, w in zip(cells, align, widths)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def fmt(x, spec=",.0f", missing="-"):
    """``x`` formatted with ``spec``, or ``missing`` for None / nan."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return missing
    return format(x, spec)


def json_ready(obj):
    """``obj`` with every non-finite float (nan, inf) replaced by None, so json.dumps writes valid JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def require_matplotlib():
    """Import matplotlib with the non-interactive Agg backend, or raise ImportError saying how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("--plot needs matplotlib, an optional extra: pip install 'numba_a3c[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def resident_mib():
    """This process's resident set size in MiB (from /proc; the peak, ru_maxrss, where there is no /proc)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
