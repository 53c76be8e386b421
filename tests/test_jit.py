"""The package's kernel cache (numba_a3c/jit.py): an edit anywhere in the package recompiles every
kernel, where numba alone would keep a caller's cached copy of an edited callee."""

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numba_a3c
import numba_a3c.jit as jit

PACKAGE = Path(numba_a3c.__file__).resolve().parent

CALLER = """
    from numba_a3c.jit import njit
    from callee import g

    @njit(cache=True)
    def f(x):
        return g(x)
"""
CALLEE = """
    from numba_a3c.jit import njit

    @njit(cache=True)
    def g(x):
        return x + {add}
"""
RUN = """
import sys
from pathlib import Path
import numba_a3c.jit as jit
jit.PACKAGE = Path(sys.argv[1]).resolve()     # the temporary directory plays the package
sys.path.insert(0, sys.argv[1])
import caller
print(caller.f(1), caller.f._cache._impl.locator.__class__.__name__)
"""


def test_editing_a_callee_recompiles_its_callers(tmp_path):
    (tmp_path / "caller.py").write_text(textwrap.dedent(CALLER))
    (tmp_path / "run.py").write_text(RUN)
    outputs = []
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}   # the cache in tmp_path/__pycache__
    for add in (1, 2):       # compile and cache with g = x + 1, then edit only callee.py
        (tmp_path / "callee.py").write_text(textwrap.dedent(CALLEE.format(add=add)))
        done = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(tmp_path)], capture_output=True,
                              text=True, cwd=tmp_path, timeout=300, env=env)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.split())
    assert list((tmp_path / "__pycache__").glob("caller.f-*.nbi")), "the caller was cached"
    # numba's own locator would print 2 again here: caller.py did not change, so its cache entry,
    # which holds g's old machine code, would be loaded
    assert outputs == [["2", "PackageInTreeCacheLocator"], ["3", "PackageInTreeCacheLocator"]]


def test_the_stamp_covers_every_source_file(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("y = 1\n")
    monkeypatch.setattr(jit, "PACKAGE", tmp_path)
    before = jit.package_stamp()
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    jit._tree_stamp.cache_clear()
    assert jit.package_stamp() != before
    (tmp_path / "sub" / "b.py").write_text("y = 1\n")
    jit._tree_stamp.cache_clear()
    assert jit.package_stamp() == before


def test_every_kernel_module_takes_njit_from_numba_a3c_jit():
    """A module that imported numba's njit directly could be imported before numba_a3c.jit, and its
    kernels would then be cached per file, the stale way."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "jit.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "numba" and \
                    any(alias.name in ("njit", "jit") for alias in node.names):
                offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_the_package_kernels_use_the_package_locator():
    from numba_a3c.algorithms import a3c
    from numba_a3c.nn import lstm

    for kernel in (lstm.lstm_backward, a3c.segment_gradient):
        assert isinstance(kernel._cache._impl.locator, jit._PackageStamp)
        assert kernel._cache._impl.locator.get_source_stamp() == jit.package_stamp()
