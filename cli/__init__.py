"""The ``asyncrl`` command-line application (installed as ``numba_a3c.cli``)."""
