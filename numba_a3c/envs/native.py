"""Native environments: CartPole-v1, CartPoleNoVel-v1, Acrobot-v1, Catch-v0 and Pendulum-v1 as Numba nopython functions.

A worker thread on a native environment runs its whole actor-learner loop (environment step,
forward, backward, update) in nopython code with the GIL released. Each environment is a pair of
pure functions over a small float64 *state* array and the thread's own RNG state:

    ``<env>_reset(state, rng, obs)``                      → writes s_0 into ``obs``
    ``<env>_step(state, action, rng, obs)``               → writes s_{t+1} into ``obs``,
                                                            returns (reward, terminated, truncated)

:func:`env_reset` / :func:`env_step` dispatch on an integer id (``ENV_CARTPOLE`` …), so one compiled
learner loop serves every native environment with discrete actions. Pendulum-v1 has a continuous
(Box) action: ``pendulum_step(state, action, rng, obs)`` takes a float torque, and
:func:`env_step_box` dispatches the environments whose action is a float vector.

CartPole-v1, Acrobot-v1 and Pendulum-v1 reproduce gymnasium's dynamics, termination, truncation (500 steps)
and observations exactly, in float64 like gymnasium, with the observation cast to float32 as
gymnasium does (the tests step both with the same actions from the same state). Only the random
generator differs: ours is the thread's xoroshiro128+ (:mod:`numba_a3c.rng`), so the same seed
gives other (equally distributed) initial states than gymnasium's.

CartPoleNoVel-v1 is CartPole-v1 with the velocities hidden: the observation is (x, θ) only, the
dynamics, rewards, termination and truncation are CartPole-v1's. One observation does not say
where the pole is going, so a feed-forward policy cannot balance it for long; a recurrent one
can, by remembering the previous positions (the partially observed CartPole of RL-Zoo and
sb3-contrib's RecurrentPPO).

Catch-v0 is a small pixel game (as in DeepMind's bsuite): a ball starts in a random column of
the top row of a 10×5 board and falls one row per step; a paddle on the bottom row moves left,
stays or moves right. When the ball reaches the bottom row the episode ends with +1 if the
paddle is under it, −1 otherwise (9 steps). The observation is a (1, 10, 5) float32 image with
1 at the ball and at the paddle: small enough to test the conv path in seconds.
"""

import math
from dataclasses import dataclass

import numpy as np

from numba_a3c.jit import njit
from numba_a3c.rng import new_rng, rng_integer, rng_uniform_range

ENV_CARTPOLE = 0
ENV_ACROBOT = 1
ENV_CATCH = 2
ENV_PENDULUM = 3
ENV_CARTPOLE_NOVEL = 4

#: Length of a native environment's float64 state array (the largest of the three, with room).
ENV_STATE_SIZE = 16

_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)

# --------------------------------------------------------------------------- CartPole-v1
# state: [x, ẋ, θ, θ̇, steps]
CARTPOLE_MAX_STEPS = 500
_GRAVITY = 9.8
_MASSCART = 1.0
_MASSPOLE = 0.1
_TOTAL_MASS = _MASSPOLE + _MASSCART
_HALF_LENGTH = 0.5
_POLEMASS_LENGTH = _MASSPOLE * _HALF_LENGTH
_FORCE_MAG = 10.0
_TAU = 0.02
_THETA_THRESHOLD = 12 * 2 * math.pi / 360
_X_THRESHOLD = 2.4


@njit(nogil=True, cache=True)
def cartpole_reset(state, rng, obs):
    """s_0 ~ U(−0.05, 0.05)⁴, as gymnasium's CartPole-v1."""
    for i in range(4):
        state[i] = rng_uniform_range(rng, -0.05, 0.05)
        obs[i] = np.float32(state[i])
    state[4] = 0.0


@njit(nogil=True, cache=True)
def cartpole_step(state, action, rng, obs):
    """One Euler step of the cart-pole (Barto, Sutton & Anderson 1983), exactly gymnasium's.

        θ̈ = (g sin θ − cos θ · temp) / (l (4/3 − m_p cos²θ / M)),   temp = (F + m_p l θ̇² sin θ) / M
        ẍ = temp − m_p l θ̈ cos θ / M

    Reward +1 every step (also the terminating one); terminated when |x| > 2.4 or |θ| > 12°;
    truncated at 500 steps.
    """
    x, x_dot, theta, theta_dot = state[0], state[1], state[2], state[3]
    force = _FORCE_MAG if action == 1 else -_FORCE_MAG
    costheta = math.cos(theta)
    sintheta = math.sin(theta)
    temp = (force + _POLEMASS_LENGTH * theta_dot * theta_dot * sintheta) / _TOTAL_MASS
    thetaacc = (_GRAVITY * sintheta - costheta * temp) / (
        _HALF_LENGTH * (4.0 / 3.0 - _MASSPOLE * costheta * costheta / _TOTAL_MASS))
    xacc = temp - _POLEMASS_LENGTH * thetaacc * costheta / _TOTAL_MASS
    x = x + _TAU * x_dot
    x_dot = x_dot + _TAU * xacc
    theta = theta + _TAU * theta_dot
    theta_dot = theta_dot + _TAU * thetaacc
    state[0] = x
    state[1] = x_dot
    state[2] = theta
    state[3] = theta_dot
    state[4] += 1.0
    for i in range(4):
        obs[i] = np.float32(state[i])
    terminated = x < -_X_THRESHOLD or x > _X_THRESHOLD or theta < -_THETA_THRESHOLD or theta > _THETA_THRESHOLD
    truncated = state[4] >= CARTPOLE_MAX_STEPS  # gymnasium's TimeLimit: may coincide with terminated
    return 1.0, terminated, truncated


# --------------------------------------------------------------------------- CartPoleNoVel-v1
@njit(nogil=True, cache=True)
def cartpole_novel_reset(state, rng, obs):
    """CartPole-v1's s_0; observed: (x, θ)."""
    full = np.empty(4, np.float32)
    cartpole_reset(state, rng, full)
    obs[0] = full[0]
    obs[1] = full[2]


@njit(nogil=True, cache=True)
def cartpole_novel_step(state, action, rng, obs):
    """CartPole-v1's step; observed: (x, θ), the velocities ẋ and θ̇ hidden."""
    full = np.empty(4, np.float32)
    r, terminated, truncated = cartpole_step(state, action, rng, full)
    obs[0] = full[0]
    obs[1] = full[2]
    return r, terminated, truncated


# --------------------------------------------------------------------------- Acrobot-v1
# state: [θ1, θ2, θ̇1, θ̇2, steps]
ACROBOT_MAX_STEPS = 500
_AC_DT = 0.2
_AC_MAX_VEL_1 = 4 * math.pi
_AC_MAX_VEL_2 = 9 * math.pi


@njit(nogil=True, cache=True)
def _acrobot_dsdt(t1, t2, dt1, dt2, torque):
    """Equations of motion of the two-link acrobot ("book" variant, Sutton & Barto), as gymnasium's."""
    m1 = 1.0
    m2 = 1.0
    l1 = 1.0
    lc1 = 0.5
    lc2 = 0.5
    i1 = 1.0
    i2 = 1.0
    g = 9.8
    d1 = m1 * lc1 ** 2 + m2 * (l1 ** 2 + lc2 ** 2 + 2 * l1 * lc2 * math.cos(t2)) + i1 + i2
    d2 = m2 * (lc2 ** 2 + l1 * lc2 * math.cos(t2)) + i2
    phi2 = m2 * lc2 * g * math.cos(t1 + t2 - math.pi / 2.0)
    phi1 = (-m2 * l1 * lc2 * dt2 ** 2 * math.sin(t2)
            - 2 * m2 * l1 * lc2 * dt2 * dt1 * math.sin(t2)
            + (m1 * lc1 + m2 * l1) * g * math.cos(t1 - math.pi / 2)
            + phi2)
    ddt2 = (torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dt1 ** 2 * math.sin(t2) - phi2) / (
        m2 * lc2 ** 2 + i2 - d2 ** 2 / d1)
    ddt1 = -(d2 * ddt2 + phi1) / d1
    return dt1, dt2, ddt1, ddt2


@njit(nogil=True, cache=True)
def _wrap(x, m, M):
    diff = M - m
    while x > M:
        x = x - diff
    while x < m:
        x = x + diff
    return x


@njit(nogil=True, cache=True)
def _acrobot_obs(state, obs):
    obs[0] = np.float32(math.cos(state[0]))
    obs[1] = np.float32(math.sin(state[0]))
    obs[2] = np.float32(math.cos(state[1]))
    obs[3] = np.float32(math.sin(state[1]))
    obs[4] = np.float32(state[2])
    obs[5] = np.float32(state[3])


@njit(nogil=True, cache=True)
def acrobot_reset(state, rng, obs):
    """s_0 ~ U(−0.1, 0.1)⁴, rounded to float32 as gymnasium does."""
    for i in range(4):
        state[i] = np.float64(np.float32(rng_uniform_range(rng, -0.1, 0.1)))
    state[4] = 0.0
    _acrobot_obs(state, obs)


@njit(nogil=True, cache=True)
def acrobot_step(state, action, rng, obs):
    """One RK4 step of dt = 0.2 s with torque −1, 0 or +1; reward −1 per step until the tip
    rises one link length above the pivot (−cos θ1 − cos(θ1 + θ2) > 1), which terminates with 0;
    truncated at 500 steps. Angles wrap to [−π, π], velocities are bounded, as in gymnasium."""
    torque = float(action) - 1.0
    y0, y1, y2, y3 = state[0], state[1], state[2], state[3]
    h = _AC_DT / 2.0
    a0, a1, a2, a3 = _acrobot_dsdt(y0, y1, y2, y3, torque)
    b0, b1, b2, b3 = _acrobot_dsdt(y0 + h * a0, y1 + h * a1, y2 + h * a2, y3 + h * a3, torque)
    c0, c1, c2, c3 = _acrobot_dsdt(y0 + h * b0, y1 + h * b1, y2 + h * b2, y3 + h * b3, torque)
    d0, d1, d2, d3 = _acrobot_dsdt(y0 + _AC_DT * c0, y1 + _AC_DT * c1, y2 + _AC_DT * c2, y3 + _AC_DT * c3, torque)
    k = _AC_DT / 6.0
    n0 = y0 + k * (a0 + 2 * b0 + 2 * c0 + d0)
    n1 = y1 + k * (a1 + 2 * b1 + 2 * c1 + d1)
    n2 = y2 + k * (a2 + 2 * b2 + 2 * c2 + d2)
    n3 = y3 + k * (a3 + 2 * b3 + 2 * c3 + d3)
    state[0] = _wrap(n0, -math.pi, math.pi)
    state[1] = _wrap(n1, -math.pi, math.pi)
    state[2] = min(max(n2, -_AC_MAX_VEL_1), _AC_MAX_VEL_1)
    state[3] = min(max(n3, -_AC_MAX_VEL_2), _AC_MAX_VEL_2)
    state[4] += 1.0
    _acrobot_obs(state, obs)
    terminated = -math.cos(state[0]) - math.cos(state[1] + state[0]) > 1.0
    truncated = state[4] >= ACROBOT_MAX_STEPS
    return (0.0 if terminated else -1.0), terminated, truncated


# --------------------------------------------------------------------------- Catch-v0
# state: [ball_row, ball_col, paddle_col, steps]
CATCH_ROWS = 10
CATCH_COLS = 5


@njit(nogil=True, cache=True)
def _catch_obs(state, obs):
    for i in range(CATCH_ROWS * CATCH_COLS):
        obs[i] = _ZERO
    obs[int(state[0]) * CATCH_COLS + int(state[1])] = _ONE
    obs[(CATCH_ROWS - 1) * CATCH_COLS + int(state[2])] = _ONE


@njit(nogil=True, cache=True)
def catch_reset(state, rng, obs):
    """The ball in a uniformly random column of the top row; the paddle in the middle column."""
    state[0] = 0.0
    state[1] = float(rng_integer(rng, CATCH_COLS))
    state[2] = float(CATCH_COLS // 2)
    state[3] = 0.0
    _catch_obs(state, obs)


@njit(nogil=True, cache=True)
def catch_step(state, action, rng, obs):
    """Paddle moves by action − 1 (left, stay, right; clamped to the board), the ball falls one row;
    when it reaches the bottom row: reward +1 if caught else −1, terminated."""
    paddle = state[2] + float(action) - 1.0
    state[2] = min(max(paddle, 0.0), float(CATCH_COLS - 1))
    state[0] += 1.0
    state[3] += 1.0
    _catch_obs(state, obs)
    if state[0] >= CATCH_ROWS - 1:
        return (1.0 if state[1] == state[2] else -1.0), True, False
    return 0.0, False, False


# --------------------------------------------------------------------------- Pendulum-v1
# state: [θ, θ̇, steps]
PENDULUM_MAX_STEPS = 200
PENDULUM_MAX_TORQUE = 2.0
_PD_MAX_SPEED = 8.0
_PD_DT = 0.05
_PD_G = 10.0
_PD_COST_U = np.float32(0.001)
_PD_THREE = np.float32(3.0)


@njit(nogil=True, cache=True)
def _pendulum_obs(state, obs):
    obs[0] = np.float32(math.cos(state[0]))
    obs[1] = np.float32(math.sin(state[0]))
    obs[2] = np.float32(state[1])


@njit(nogil=True, cache=True)
def pendulum_reset(state, rng, obs):
    """θ_0 ~ U(−π, π), θ̇_0 ~ U(−1, 1), as gymnasium's Pendulum-v1; the observation is
    (cos θ, sin θ, θ̇)."""
    state[0] = rng_uniform_range(rng, -math.pi, math.pi)
    state[1] = rng_uniform_range(rng, -1.0, 1.0)
    state[2] = 0.0
    _pendulum_obs(state, obs)


@njit(nogil=True, cache=True)
def pendulum_step(state, action, rng, obs):
    """One explicit-Euler step of the torque-driven pendulum (dt = 0.05 s, g = 10, m = l = 1),
    exactly gymnasium's Pendulum-v1, float32 roundings of the torque terms included::

        u = clip(a, −2, 2) (float32);   cost = norm(θ)² + 0.1 θ̇² + 0.001 u²
        θ̇′ = clip(θ̇ + (15 sin θ + 3u) · dt, −8, 8);   θ′ = θ + θ̇′ · dt

    with norm(θ) the angle wrapped to [−π, π). Reward −cost (in [−16.27, 0]); never terminates;
    truncated at 200 steps (gymnasium's TimeLimit). The state and observation are bit-identical to
    gymnasium's; the reward can differ by ~1e-10 in the 0.001 u² term, which numpy computes with
    libm's ``powf`` (not correctly rounded) and this code with a correctly rounded float32 u · u.
    """
    u = np.float32(min(max(np.float32(action), np.float32(-PENDULUM_MAX_TORQUE)), np.float32(PENDULUM_MAX_TORQUE)))
    th, thdot = state[0], state[1]
    norm = ((th + math.pi) % (2.0 * math.pi)) - math.pi
    cost = math.pow(norm, 2.0) + 0.1 * math.pow(thdot, 2.0) + np.float64(_PD_COST_U * (u * u))
    newthdot = thdot + (3.0 * _PD_G / 2.0 * math.sin(th) + np.float64(_PD_THREE * u)) * _PD_DT
    newthdot = min(max(newthdot, -_PD_MAX_SPEED), _PD_MAX_SPEED)
    state[0] = th + newthdot * _PD_DT
    state[1] = newthdot
    state[2] += 1.0
    _pendulum_obs(state, obs)
    return -cost, False, state[2] >= PENDULUM_MAX_STEPS


# --------------------------------------------------------------------------- dispatch
@njit(nogil=True, cache=True)
def env_reset(env_id, state, rng, obs):
    """Reset native environment ``env_id`` into ``state``; writes the first observation into ``obs``."""
    if env_id == ENV_CARTPOLE:
        cartpole_reset(state, rng, obs)
    elif env_id == ENV_CARTPOLE_NOVEL:
        cartpole_novel_reset(state, rng, obs)
    elif env_id == ENV_ACROBOT:
        acrobot_reset(state, rng, obs)
    elif env_id == ENV_PENDULUM:
        pendulum_reset(state, rng, obs)
    else:
        catch_reset(state, rng, obs)


@njit(nogil=True, cache=True)
def env_step(env_id, state, action, rng, obs):
    """Step native environment ``env_id``; returns (reward, terminated, truncated)."""
    if env_id == ENV_CARTPOLE:
        return cartpole_step(state, action, rng, obs)
    if env_id == ENV_CARTPOLE_NOVEL:
        return cartpole_novel_step(state, action, rng, obs)
    if env_id == ENV_ACROBOT:
        return acrobot_step(state, action, rng, obs)
    return catch_step(state, action, rng, obs)


@njit(nogil=True, cache=True)
def env_step_box(env_id, state, action, rng, obs):
    """Step a native environment with a continuous action: ``action`` is the float vector sent
    to it (already clipped and scaled to its bounds by the caller); returns (reward, terminated,
    truncated). Pendulum-v1 is the only one so far."""
    return pendulum_step(state, action[0], rng, obs)


@dataclass(frozen=True)
class NativeEnvSpec:
    """What a native environment is: its id for the kernels, observation shape and action count."""

    env_id: int
    name: str
    obs_shape: tuple
    n_actions: int
    max_episode_steps: int
    reward_threshold: float
    description: str
    action_low: tuple = ()     # a Box action space's bounds (one per dimension); () for discrete actions
    action_high: tuple = ()


NATIVE_ENVS = {
    "CartPole-v1": NativeEnvSpec(ENV_CARTPOLE, "CartPole-v1", (4,), 2, CARTPOLE_MAX_STEPS, 475.0,
                                 "balance a pole on a cart; +1 per step, 500 steps at most"),
    "CartPoleNoVel-v1": NativeEnvSpec(ENV_CARTPOLE_NOVEL, "CartPoleNoVel-v1", (2,), 2, CARTPOLE_MAX_STEPS, 475.0,
                                      "CartPole-v1 observing only the cart position and the pole angle "
                                      "(velocities hidden): needs memory"),
    "Acrobot-v1": NativeEnvSpec(ENV_ACROBOT, "Acrobot-v1", (6,), 3, ACROBOT_MAX_STEPS, -100.0,
                                "swing a two-link arm up; −1 per step until the tip is high enough"),
    "Catch-v0": NativeEnvSpec(ENV_CATCH, "Catch-v0", (1, CATCH_ROWS, CATCH_COLS), 3, CATCH_ROWS, 1.0,
                              "catch a falling ball with a paddle on a 10x5 board; +1 or −1 at the end"),
    "Pendulum-v1": NativeEnvSpec(ENV_PENDULUM, "Pendulum-v1", (3,), 1, PENDULUM_MAX_STEPS, -200.0,
                                 "swing a pendulum up and hold it with a torque in [−2, 2]; −cost per step",
                                 (-PENDULUM_MAX_TORQUE,), (PENDULUM_MAX_TORQUE,)),
}


# --------------------------------------------------------------------------- Python wrapper
class NativeEnv:
    """A native environment behind gymnasium's interface (``reset``/``step``/``render``/``close``).

    For code that steps environments from Python (evaluation with recording, tests); training
    calls the kernels directly. ``render()`` returns an RGB uint8 frame drawn with NumPy.
    """

    def __init__(self, name, seed=0):
        import gymnasium

        self.spec_native = NATIVE_ENVS[name]
        self.name = name
        self.state = np.zeros(ENV_STATE_SIZE, np.float64)
        self.rng = new_rng(seed)
        self._obs = np.zeros(int(np.prod(self.spec_native.obs_shape)), np.float32)
        if self.spec_native.action_low:
            self.action_space = gymnasium.spaces.Box(np.float32(self.spec_native.action_low[0]),
                                                     np.float32(self.spec_native.action_high[0]),
                                                     (self.spec_native.n_actions,), np.float32)
        else:
            self.action_space = gymnasium.spaces.Discrete(self.spec_native.n_actions)
        low = 0.0 if name == "Catch-v0" else -np.inf
        high = 1.0 if name == "Catch-v0" else np.inf
        self.observation_space = gymnasium.spaces.Box(low, high, self.spec_native.obs_shape, np.float32)

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = new_rng(seed)
        env_reset(self.spec_native.env_id, self.state, self.rng, self._obs)
        return self._obs.reshape(self.spec_native.obs_shape).copy(), {}

    def step(self, action):
        if self.spec_native.action_low:
            a = np.asarray(action, np.float32).reshape(-1)
            r, term, trunc = env_step_box(self.spec_native.env_id, self.state, a, self.rng, self._obs)
        else:
            r, term, trunc = env_step(self.spec_native.env_id, self.state, int(action), self.rng, self._obs)
        return self._obs.reshape(self.spec_native.obs_shape).copy(), float(r), bool(term), bool(trunc), {}

    def render(self):
        if self.spec_native.env_id == ENV_CATCH:
            return _render_catch(self.state)
        if self.spec_native.env_id in (ENV_CARTPOLE, ENV_CARTPOLE_NOVEL):
            return _render_cartpole(self.state)
        if self.spec_native.env_id == ENV_PENDULUM:
            return _render_pendulum(self.state)
        return _render_acrobot(self.state)

    def close(self):
        pass


def _draw_line(img, x0, y0, x1, y1, color, width=3):
    """Draw a thick segment from (x0, y0) to (x1, y1) (pixel coordinates) into an RGB image."""
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.linspace(x0, x1, n)
    ys = np.linspace(y0, y1, n)
    r = width // 2
    h, w = img.shape[:2]
    for x, y in zip(xs, ys):
        xi, yi = int(round(x)), int(round(y))
        img[max(yi - r, 0):min(yi + r + 1, h), max(xi - r, 0):min(xi + r + 1, w)] = color


def _render_catch(state, cell=24):
    img = np.full((CATCH_ROWS * cell, CATCH_COLS * cell, 3), 255, np.uint8)
    br, bc, pc = int(state[0]), int(state[1]), int(state[2])
    img[br * cell:(br + 1) * cell, bc * cell:(bc + 1) * cell] = (200, 40, 40)
    img[(CATCH_ROWS - 1) * cell + cell // 2:CATCH_ROWS * cell, pc * cell:(pc + 1) * cell] = (40, 40, 40)
    return img


def _render_cartpole(state, width=600, height=400):
    img = np.full((height, width, 3), 255, np.uint8)
    scale = width / (2 * _X_THRESHOLD * 1.0)
    cart_y = int(height * 0.7)
    cx = width / 2 + state[0] * scale
    img[cart_y:cart_y + 1, :] = (0, 0, 0)
    x0, x1 = int(cx - 25), int(cx + 25)
    img[cart_y - 15:cart_y + 15, max(x0, 0):max(min(x1, width), 0)] = (30, 30, 30)
    pole = scale * 2 * _HALF_LENGTH
    _draw_line(img, cx, cart_y - 15, cx + pole * math.sin(state[2]), cart_y - 15 - pole * math.cos(state[2]),
               (202, 152, 101), width=9)
    return img


def _render_acrobot(state, size=500):
    img = np.full((size, size, 3), 255, np.uint8)
    scale = size / 5.0
    ox, oy = size / 2, size / 2
    x1 = ox + scale * math.sin(state[0])
    y1 = oy + scale * math.cos(state[0])
    x2 = x1 + scale * math.sin(state[0] + state[1])
    y2 = y1 + scale * math.cos(state[0] + state[1])
    _draw_line(img, 0, oy - scale, size - 1, oy - scale, (0, 0, 0), width=1)
    _draw_line(img, ox, oy, x1, y1, (0, 204, 204), width=9)
    _draw_line(img, x1, y1, x2, y2, (0, 204, 204), width=9)
    return img


def _render_pendulum(state, size=500):
    img = np.full((size, size, 3), 255, np.uint8)
    scale = size / 2.6
    ox, oy = size / 2, size / 2
    _draw_line(img, ox, oy, ox + scale * math.sin(state[0]), oy - scale * math.cos(state[0]), (204, 77, 77), width=15)
    img[int(oy) - 5:int(oy) + 6, int(ox) - 5:int(ox) + 6] = (0, 0, 0)
    return img
