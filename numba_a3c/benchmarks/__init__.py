"""Benchmarks that measure this machine: kernels (:mod:`.kernels`) and, from other modules, training speed.

Performance targets are checked here, by commands a person runs (``asyncrl bench …``), never by
timed assertions in the test suite.
"""
