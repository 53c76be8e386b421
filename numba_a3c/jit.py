"""``njit``, numba's own, with the package's on-disk kernel cache kept consistent as a whole.

Every kernel of the package is ``@njit(nogil=True, cache=True)`` (but one, which keeps the GIL on
purpose and says why: ``workers.python_env_step_holding_gil``) and imports ``njit`` from here
rather than from numba: importing this module first is what makes the caches safe to keep.

Why: numba keys a cached kernel on the content of *its own* source file only. A kernel compiled
together with the kernels it calls (``a3c.segment_gradient`` calls ``network.backward_rows``,
which calls ``lstm.lstm_backward``) keeps their machine code in its cache entry, so after an edit
of ``nn/lstm.py`` alone, ``segment_gradient`` would go on running the old LSTM code from its cache:
a test or a benchmark of an edited checkout would exercise code that is no longer there. (It
happened: a rewritten BPTT loop measured no faster until the caches were deleted.)

What this module does: it puts, ahead of numba's own cache locators, three that behave like them
(the ``NUMBA_CACHE_DIR`` one, the ``__pycache__`` one, the user-wide one) for files inside this
package, except that their source stamp is a hash of *every* ``.py`` file of the package
(:func:`package_stamp`). Any edit anywhere in the package then recompiles every kernel once, which
is numba's cost of a cold start (``asyncrl bench kernels`` measures it); an installed package, whose
files do not change, loads its kernels from the cache as before. Functions outside the package
(a user's own cached functions) keep numba's locators untouched.

The hooks are numba internals (``numba.core.caching``: the ``CacheImpl._locator_classes`` list and
the locator classes, whose names had a leading underscore in older numba). Where they are not
found, nothing is installed and numba's per-file behaviour stays.
"""

import functools
import hashlib
from pathlib import Path

from numba import njit
from numba.core import caching

__all__ = ["njit", "package_stamp"]

PACKAGE = Path(__file__).resolve().parent


def package_stamp():
    """SHA-256 of the package's ``.py`` files (their paths and contents), as a hex string: the
    source stamp of every cached kernel of the package. Computed once per process."""
    return _tree_stamp(PACKAGE)


@functools.cache
def _tree_stamp(root):
    digest = hashlib.sha256()
    for path in sorted(Path(root).rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _in_package(py_file):
    try:
        return Path(py_file).resolve().is_relative_to(PACKAGE)
    except (OSError, ValueError):
        return False


def _numba(*names):
    """The first of ``names`` that numba.core.caching defines (older numba: a leading underscore)."""
    for name in names:
        if hasattr(caching, name):
            return getattr(caching, name)
    return None


class _PackageStamp:
    """Mixin for a numba cache locator: only for files of this package, stamped by the whole package."""

    @classmethod
    def from_function(cls, py_func, py_file):
        if not _in_package(py_file):
            return None
        return super().from_function(py_func, py_file)

    def get_source_stamp(self):
        return package_stamp()


def _install():
    impl = _numba("CacheImpl", "_CacheImpl")
    bases = [_numba("UserProvidedCacheLocator", "_UserProvidedCacheLocator"),
             _numba("InTreeCacheLocator", "_InTreeCacheLocator"),
             _numba("UserWideCacheLocator", "_UserWideCacheLocator")]
    classes = getattr(impl, "_locator_classes", None)
    if not isinstance(classes, list) or None in bases:
        return []
    ours = [type(f"Package{base.__name__.lstrip('_')}", (_PackageStamp, base), {"__module__": __name__})
            for base in bases]
    if not any(issubclass(c, _PackageStamp) for c in classes):
        classes[:0] = ours
    return [c for c in classes if issubclass(c, _PackageStamp)]


LOCATORS = _install()
