"""The kernels' tanh and sigmoid: exact in float64, within a few ulp in float32, NaN kept."""

import numpy as np
import pytest

from numba_a3c.jit import njit
from numba_a3c.nn.activations import sigmoid, tanh


@njit(cache=False)
def apply(x, out_tanh, out_sigmoid):
    for i in range(x.shape[0]):
        out_tanh[i] = tanh(x[i])
        out_sigmoid[i] = sigmoid(x[i])


def evaluate(x):
    t, s = np.empty_like(x), np.empty_like(x)
    apply(x, t, s)
    return t, s


def exact(x):
    x = x.astype(np.float64)
    return np.tanh(x), 1.0 / (1.0 + np.exp(-x))


def test_float32_is_within_a_few_ulp_of_the_exact_functions():
    lo, hi = np.array([1e-6, 30.0], np.float32).view(np.int32)
    x = np.arange(lo, hi, 97, dtype=np.int32).view(np.float32)      # every 97th float32 in [1e-6, 30]
    x = np.concatenate([x, -x, np.float32([0.0, -0.0, 7.9053111, -7.9053111])])
    t, s = evaluate(x)
    assert t.dtype == s.dtype == np.float32
    t_ref, s_ref = exact(x)
    nonzero = t_ref != 0
    assert np.max(np.abs(t - t_ref)[nonzero] / np.abs(t_ref[nonzero])) < 5e-7
    assert np.max(np.abs(s - s_ref)) < 3e-7
    assert np.all(np.abs(t) <= 1.0) and np.all((s >= 0.0) & (s <= 1.0))
    assert np.array_equal(np.sign(t), np.sign(x)) and np.all(t[x == 0] == 0)


def test_float32_is_odd_increasing_and_saturates():
    x = np.linspace(-12, 12, 200_001).astype(np.float32)
    t, s = evaluate(x)
    np.testing.assert_array_equal(t, -t[::-1])
    # increasing up to its rounding: near ±1 it wobbles by a few ulp, within the error bound above
    assert np.all(np.diff(t) > -5e-7) and np.all(np.diff(s) > -3e-7)
    assert np.all(np.diff(t[np.abs(x) < 2]) > 0)
    t, s = evaluate(np.float32([np.inf, -np.inf, 1e30, -1e30]))
    np.testing.assert_allclose(t, [1, -1, 1, -1], atol=4e-7)
    np.testing.assert_allclose(s, [1, 0, 1, 0], atol=3e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_stays_nan(dtype):
    t, s = evaluate(np.array([np.nan, 0.5], dtype))
    assert np.isnan(t[0]) and np.isnan(s[0]) and np.isfinite(t[1])


def test_float64_is_the_exact_function():
    x = np.linspace(-40, 40, 10_001)
    t, s = evaluate(x)
    np.testing.assert_allclose(t, np.tanh(x), rtol=5e-16, atol=0)      # the C library's tanh: NumPy's to an ulp
    np.testing.assert_allclose(s, 1.0 / (1.0 + np.exp(-x)), rtol=5e-16, atol=0)


def test_python_callers_get_numpy():
    x = np.float32(0.3)
    assert tanh(x) == np.tanh(x)
    assert sigmoid(0.3) == 1.0 / (1.0 + np.exp(-0.3))
