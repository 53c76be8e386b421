"""Files shipped with numba_a3c: presets, the paper's reference tables and small trained checkpoints."""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent


def data_path(*parts):
    """Absolute path of a shipped data file, e.g. ``data_path("presets", "a3c.json")``."""
    return DATA_DIR.joinpath(*parts)
