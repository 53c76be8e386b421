"""Install numba_a3c: the library, its click application (as numba_a3c.cli) and its data (numba_a3c.data)."""

import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "numba_a3c" / "__init__.py").read_text()).group(1)

setup(
    name="numba_a3c",
    version=VERSION,
    description="Asynchronous deep RL (A3C, n-step Q, one-step Q and Sarsa) on CPU threads, in Numba",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    # cli/ and data/ live at the top of the repository but install inside the package, so
    # site-packages gets numba_a3c.cli and numba_a3c.data, never a top-level module named "cli".
    packages=[
        "numba_a3c",
        "numba_a3c.nn",
        "numba_a3c.envs",
        "numba_a3c.algorithms",
        "numba_a3c.benchmarks",
        "numba_a3c.cli",
        "numba_a3c.data",
    ],
    package_dir={"numba_a3c.cli": "cli", "numba_a3c.data": "data"},
    package_data={"numba_a3c.data": ["presets/*.json", "reference/*.json", "checkpoints/*.h5"]},
    install_requires=[
        "numpy>=1.26",
        "numba>=0.60",
        # Numba calls BLAS (sgemm) for np.dot in nopython code through SciPy's bindings.
        "scipy>=1.11",
        "gymnasium>=1.0",
        "ale-py>=0.10",
        "click>=8.2",
        "h5py>=3.10",
    ],
    extras_require={
        # ruff is here so that the README's test command installs everything .ci/run runs.
        # tensorboardX (pure Python, with protobuf) is here so that CI runs the TensorBoard test.
        "test": ["pytest>=7", "pytest-timeout>=2", "ruff>=0.5", "tensorboardX>=2.6"],
        "plot": ["matplotlib>=3.7"],
        "record": ["pillow>=10"],
        # MuJoCo tasks (HalfCheetah-v5, Hopper-v5 …) through gymnasium, for A3C's Gaussian policy.
        "mujoco": ["gymnasium[mujoco]>=1.0"],
        # Box2D tasks (LunarLander-v3, BipedalWalker-v3, CarRacing-v3) through gymnasium: the
        # wheels of box2d and pygame that gymnasium[box2d] names, without its swig build step.
        "box2d": ["box2d>=2.3.10", "pygame>=2.1.3"],
        "tensorboard": ["tensorboardX>=2.6"],
        # --nodes N: asynchronous training across machines (docs/distributed.md); .ci/run installs it.
        "ray": ["ray>=2.9"],
        "dev": ["ruff>=0.5", "tox>=4"],
    },
    entry_points={"console_scripts": ["asyncrl = numba_a3c.cli.main:main"]},
)
