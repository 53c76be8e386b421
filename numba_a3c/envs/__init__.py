"""Environments: native Numba ones, gymnasium, and Atari."""
