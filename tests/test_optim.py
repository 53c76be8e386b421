"""Optimiser kernels (numba_a3c.optim) against NumPy references of the equations in their docstrings.

Shared RMSProp, per-thread RMSProp, momentum SGD, clipping by global norm, the learning-rate
argument, and the flush of tiny g to zero. Runs under ``NUMBA_DISABLE_JIT=1`` too.
"""

import numpy as np
import pytest

from numba_a3c.optim import clip_scale, global_norm, momentum_update, rmsprop_update

F32 = np.float32


def rmsprop_reference(theta, grads, g, lr, alpha, eps, scale=1.0):
    """g ← α g + (1 − α) Δθ²;  θ ← θ − η Δθ / √(g + ε), Δθ = scale · grads; in float32 like the kernel."""
    d = F32(scale) * grads
    g = F32(alpha) * g + (F32(1) - F32(alpha)) * d * d
    g = np.where(g > F32(1e-30), g, F32(0))
    return theta - F32(lr) * d / np.sqrt(g + F32(eps)), g


def momentum_reference(theta, grads, m, lr, alpha, scale=1.0):
    """m ← α m + (1 − α) Δθ;  θ ← θ − η m."""
    m = F32(alpha) * m + (F32(1) - F32(alpha)) * F32(scale) * grads
    return theta - F32(lr) * m, m


def arrays(seed, n=257):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n).astype(F32), rng.standard_normal(n).astype(F32),
            (rng.random(n) * 0.1).astype(F32))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rmsprop_step_matches_numpy(seed):
    theta, grads, g = arrays(seed)
    t_ref, g_ref = theta.copy(), g.copy()
    for step in range(3):  # a few steps, so g's running average is exercised
        rmsprop_update(theta, grads, g, 7e-4, 0.99, 0.1, 1.0)
        t_ref, g_ref = rmsprop_reference(t_ref, grads, g_ref, 7e-4, 0.99, 0.1)
        np.testing.assert_allclose(g, g_ref, rtol=2e-6, atol=1e-12, err_msg=f"g after step {step + 1}")
        np.testing.assert_allclose(theta, t_ref, rtol=2e-6, atol=1e-7, err_msg=f"θ after step {step + 1}")
    assert theta.dtype == F32 and g.dtype == F32


def test_rmsprop_epsilon_is_inside_the_square_root():
    # One step from g = 0 with Δθ = 1, α = 0: g = 1 and θ moves by η / √(1 + ε), not η / (1 + ε).
    theta, g = np.zeros(1, F32), np.zeros(1, F32)
    rmsprop_update(theta, np.ones(1, F32), g, 0.1, 0.0, 0.44, 1.0)
    assert g[0] == 1.0
    assert theta[0] == pytest.approx(-0.1 / np.sqrt(1.44), rel=1e-6)


def test_shared_versus_per_thread_rmsprop():
    # Shared RMSProp: both threads' gradients go through ONE g. Per-thread: each thread has its own.
    theta0, g1, _ = arrays(3)
    _, g2, _ = arrays(4)
    g0 = np.zeros_like(theta0)

    shared_theta, shared_g = theta0.copy(), g0.copy()
    rmsprop_update(shared_theta, g1, shared_g, 1e-2, 0.9, 0.1, 1.0)  # thread 1
    rmsprop_update(shared_theta, g2, shared_g, 1e-2, 0.9, 0.1, 1.0)  # thread 2, same g
    t, g = rmsprop_reference(theta0, g1, g0, 1e-2, 0.9, 0.1)
    t, g = rmsprop_reference(t, g2, g, 1e-2, 0.9, 0.1)
    np.testing.assert_allclose(shared_theta, t, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(shared_g, g, rtol=2e-6)

    own_theta, own_g1, own_g2 = theta0.copy(), g0.copy(), g0.copy()
    rmsprop_update(own_theta, g1, own_g1, 1e-2, 0.9, 0.1, 1.0)
    rmsprop_update(own_theta, g2, own_g2, 1e-2, 0.9, 0.1, 1.0)
    t, _ = rmsprop_reference(theta0, g1, g0, 1e-2, 0.9, 0.1)
    t, g_b = rmsprop_reference(t, g2, g0, 1e-2, 0.9, 0.1)
    np.testing.assert_allclose(own_theta, t, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(own_g2, g_b, rtol=2e-6)
    assert not np.allclose(own_theta, shared_theta)  # the variants really differ


@pytest.mark.parametrize("seed", [0, 1])
def test_momentum_step_matches_numpy(seed):
    theta, grads, m = arrays(seed)
    t_ref, m_ref = theta.copy(), m.copy()
    for _ in range(3):
        momentum_update(theta, grads, m, 1e-2, 0.9, 1.0)
        t_ref, m_ref = momentum_reference(t_ref, grads, m_ref, 1e-2, 0.9)
    np.testing.assert_allclose(m, m_ref, rtol=2e-6, atol=1e-8)
    np.testing.assert_allclose(theta, t_ref, rtol=2e-6, atol=1e-7)


def test_global_norm_and_clip_scale():
    _, grads, _ = arrays(5, 10_000)
    norm = global_norm(grads)
    # squares are float32 products, their sum is float64: float32 precision, no drift with size
    assert norm == pytest.approx(np.linalg.norm(grads.astype(np.float64)), rel=1e-6)
    assert clip_scale(norm, 0.0) == 1.0  # max_norm ≤ 0: no clipping
    assert clip_scale(norm, norm * 2) == 1.0  # under the limit: unchanged
    c = clip_scale(norm, 40.0)
    assert c == pytest.approx(40.0 / norm)
    assert global_norm((c * grads).astype(F32)) == pytest.approx(40.0, rel=1e-5)


@pytest.mark.parametrize("kind", ["rmsprop", "momentum"])
def test_clipped_update_equals_update_with_clipped_gradient(kind):
    theta, grads, state = arrays(6)
    grads *= 100  # far over the limit
    c = clip_scale(global_norm(grads), 5.0)
    assert c < 1
    a_theta, a_state = theta.copy(), state.copy()
    b_theta, b_state = theta.copy(), state.copy()
    clipped = (F32(c) * grads).astype(F32)
    if kind == "rmsprop":
        rmsprop_update(a_theta, grads, a_state, 1e-3, 0.99, 0.1, c)
        rmsprop_update(b_theta, clipped, b_state, 1e-3, 0.99, 0.1, 1.0)
    else:
        momentum_update(a_theta, grads, a_state, 1e-3, 0.9, c)
        momentum_update(b_theta, clipped, b_state, 1e-3, 0.9, 1.0)
    # equal up to float32 rounding (c·Δθ is rounded at a different point)
    np.testing.assert_allclose(a_theta, b_theta, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(a_state, b_state, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("kind", ["rmsprop", "momentum"])
def test_learning_rate_scales_the_step(kind):
    # The caller anneals η: with the same statistics, the step is proportional to η (and 0 at η = 0).
    _, grads, state = arrays(7)
    theta = np.zeros_like(grads)  # θ = 0, so that θ_new − θ is the step without rounding
    steps = []
    for lr in (0.0, 1e-3, 2e-3):
        t, s = theta.copy(), state.copy()
        if kind == "rmsprop":
            rmsprop_update(t, grads, s, lr, 0.99, 0.1, 1.0)
        else:
            momentum_update(t, grads, s, lr, 0.9, 1.0)
        steps.append(t.astype(np.float64) - theta)
    assert not steps[0].any()
    np.testing.assert_allclose(steps[2], 2 * steps[1], rtol=1e-6, atol=1e-12)


def test_tiny_g_is_flushed_to_zero_not_denormal():
    # With zero gradients g only decays: below 1e-30 it is set to 0 instead of becoming denormal.
    g = np.array([1e-29, 5e-31, 1e-3, 0.0], F32)
    theta = np.ones(4, F32)
    rmsprop_update(theta, np.zeros(4, F32), g, 1e-3, 0.99, 0.1, 1.0)
    assert g[0] == pytest.approx(0.99e-29, rel=1e-6)  # still above the threshold: kept
    assert g[1] == 0.0  # 0.99 · 5e-31 < 1e-30: flushed
    assert g[2] == pytest.approx(0.99e-3, rel=1e-6)
    assert np.all(theta == 1.0)  # zero gradient: no step
    for _ in range(5000):
        rmsprop_update(theta, np.zeros(4, F32), g, 1e-3, 0.9, 0.1, 1.0)
    tiny = np.finfo(F32).tiny  # the smallest normal float32
    assert np.all((g == 0) | (np.abs(g) >= tiny)), f"denormal g: {g}"


@pytest.mark.parametrize("kind", ["rmsprop", "momentum"])
def test_the_fused_pass_also_writes_the_next_theta_local_and_zeroes_the_gradient(kind):
    """With ``sync`` (θ′), one pass does the step, θ′ ← θ and dθ ← 0: θ and the statistics are
    bit for bit those of the plain step, θ′ equals the new θ, and dθ is zero."""
    theta, grads, state = arrays(7)
    plain = [theta.copy(), grads.copy(), state.copy()]
    fused = [theta.copy(), grads.copy(), state.copy()]
    sync = np.full_like(theta, np.nan)
    if kind == "rmsprop":
        rmsprop_update(*plain, 7e-4, 0.99, 0.1, 0.5)
        rmsprop_update(*fused, 7e-4, 0.99, 0.1, 0.5, sync)
    else:
        momentum_update(*plain, 7e-4, 0.9, 0.5)
        momentum_update(*fused, 7e-4, 0.9, 0.5, sync)
    assert np.array_equal(fused[0], plain[0]) and np.array_equal(fused[2], plain[2])
    assert np.array_equal(sync, fused[0])
    assert not fused[1].any() and np.array_equal(plain[1], grads)   # without sync, dθ is left as it was
