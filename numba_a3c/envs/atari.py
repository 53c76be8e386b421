"""Atari 2600 games through ale-py, with the DeepMind preprocessing done in C++ off the GIL.

``ALE/<Game>-v5`` names a game whose ROM ships inside the ale-py wheel (``ALE/Pong-v5``,
``ALE/Breakout-v5``, ``ALE/SpaceInvaders-v5`` …). Every worker thread owns one
:class:`AtariEnv`: an ``ale_py.vector_env.AtariVectorEnv`` with ONE emulator and ONE C++ worker
thread. That class does the whole preprocessing in C++ and releases the GIL while it steps,
so N Python worker threads emulate in parallel (the plain ``ALEInterface`` bindings hold the GIL
and would serialise them; see ``asyncrl bench atari``, which measures both).

The preprocessing (Mnih et al. 2015, used unchanged by Mnih et al. 2016):

* action repeat 4: one agent step = 4 emulator frames with the chosen action; the frame
  observed is the pixel-wise max of the last two of them (flicker removal);
* 84×84 greyscale (the C++ side converts to luminance and resizes with area averaging);
* the observation is the stack of the last 4 such frames, shape ``(4, 84, 84)``, dtype uint8,
  OLDEST FIRST: ``obs[3]`` is the newest frame, and after a step ``obs[0:3]`` is the previous
  ``obs[1:4]``. The network scales by 1/255 (:func:`numba_a3c.envs.base.flat_observation`);
* at the start of each episode a random number (up to 30) of no-op emulator frames (ale-py
  counts them in frames, as OpenAI baselines' NoopResetEnv does), then FIRE for the
  games that need it to start (Breakout …); the minimal action set (6 actions for Pong, 4 for
  Breakout, 6 for Space Invaders);
* no sticky actions (``repeat_action_probability`` 0, the papers' setting; gymnasium's own
  ``ALE/*-v5`` uses 0.25); an episode is truncated after 108,000 frames (27,000 agent steps).

Settings (``--env-kwargs``, :data:`SETTINGS`): ``repeat_action_probability`` (sticky actions: each
frame, the emulator repeats the previous action with this probability instead of the agent's, the
protocol of Machado et al. 2018 with 0.25), ``full_action_space`` (all 18 joystick actions instead
of the game's minimal set), ``noop_max`` (the no-op start's bound, in frames) and
``max_num_frames_per_episode`` (the truncation, in frames). They have gymnasium's names and are
saved with the run, so evaluation and ``--resume`` play the same game.

Rewards and lives:

* :meth:`AtariEnv.step` returns the RAW game reward (the score change), and also puts it in
  ``info["raw_reward"]``. The learner clips it to [−1, 1] itself (``reward_clip`` = 1 in the
  Atari preset), so episode returns logged during training and evaluation scores are game scores.
* a lost life is reported as ``info["life_lost"] = True`` with ``terminated`` False: the worker
  treats it as terminal for learning (no bootstrap across it) while the game, the episode
  statistics and evaluation carry on.

Auto-reset. The vector environment runs in gymnasium's ``SameStep`` auto-reset mode: the step
that ends an episode already returns the first observation of the next one and puts the last
observation of the finished one in ``info["final_obs"]``. :class:`AtariEnv` turns that back into
the single-environment contract: the ending step returns the FINAL observation s_{t+1} (what an
n-step target bootstraps from when the episode was truncated), and the next :meth:`reset` without
a seed returns the already-prepared first observation of the new episode (no emulator work).
``reset(seed=...)`` always starts a fresh, seeded episode.
"""

import difflib
import functools
import re

import numpy as np

from numba_a3c.envs.base import EnvError, EnvInfo

OBS_SHAPE = (4, 84, 84)
FRAME_SKIP = 4
NOOP_MAX = 30
MAX_FRAMES_PER_EPISODE = 108_000
FRAME_RATE = 60            # the 2600's frames per second: an agent step (FRAME_SKIP frames) lasts 1/15 s
SCREEN = (210, 160)        # the full screen (height, width)
_ID = re.compile(r"^ALE/([A-Za-z0-9]+)-v5$")


def _roms():
    from ale_py import roms

    return roms.get_all_rom_ids()


#: The --env-kwargs an Atari id takes: name → (type, default, what a valid value is, its check).
SETTINGS = {
    "repeat_action_probability": (float, 0.0, "a probability in [0, 1]", lambda v: 0.0 <= v <= 1.0),
    "full_action_space": (bool, False, "true or false", lambda v: True),
    "noop_max": (int, NOOP_MAX, "a whole number of frames >= 0", lambda v: v >= 0),
    "max_num_frames_per_episode": (int, MAX_FRAMES_PER_EPISODE, "a whole number of frames >= 4",
                                   lambda v: v >= FRAME_SKIP),
}


def atari_settings(env_id, make_kwargs=()):
    """The emulator settings of ``env_id`` with ``make_kwargs`` (``((key, value), …)``, from
    --env-kwargs) applied over :data:`SETTINGS`' defaults: a dict of all four. Raises
    :class:`EnvError` in one line for an unknown key or a value of the wrong kind."""
    settings = {key: default for key, (_, default, _, _) in SETTINGS.items()}
    for key, value in make_kwargs:
        if key not in SETTINGS:
            raise EnvError(f"--env-kwargs {key}={value!r}: {env_id} takes {', '.join(SETTINGS)} (the frames, "
                           f"frame skip and observation are fixed: the DeepMind preprocessing)")
        kind, _, valid, check = SETTINGS[key]
        ok = isinstance(value, bool) if kind is bool else (
            not isinstance(value, bool) and isinstance(value, (int, float)) and (kind is float or value == int(value)))
        if not ok or not check(kind(value)):
            raise EnvError(f"--env-kwargs {key}={value!r}: {key} must be {valid}")
        settings[key] = kind(value)
    return settings


def _rom_to_name(rom):
    return rom.title().replace("_", "")


@functools.cache
def _game_names():
    """``{PascalCase name: rom id}`` for every ROM in the ale-py wheel."""
    return {_rom_to_name(rom): rom for rom in _roms()}


def rom_for(env_id):
    """The ale-py ROM id (``pong``) for ``ALE/Pong-v5``; :class:`EnvError` with suggestions otherwise."""
    names = _game_names()
    m = _ID.match(env_id)
    if m is None:
        game = env_id.split("/", 1)[-1].split("-", 1)[0]
        if game in names:
            raise EnvError(f"unsupported Atari id {env_id!r}: use ALE/{game}-v5")
        raise EnvError(f"unsupported Atari id {env_id!r}: use ALE/<Game>-v5, e.g. ALE/Pong-v5")
    game = m.group(1)
    if game in names:
        return names[game]
    lowered = {n.lower(): n for n in names}
    if game.lower() in lowered:
        raise EnvError(f"unknown Atari game {game!r}: did you mean ALE/{lowered[game.lower()]}-v5?")
    close = difflib.get_close_matches(game, list(names), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(f'ALE/{c}-v5' for c in close)}?" if close else ""
    raise EnvError(f"unknown Atari game {game!r}.{hint} The {len(names)} games that ship with ale-py are "
                   f"listed by `python -c \"import ale_py.roms as r; print(r.get_all_rom_ids())\"` "
                   f"(write them in PascalCase: space_invaders -> ALE/SpaceInvaders-v5)")


_LEGACY_ID = re.compile(r"^([A-Za-z0-9]+?)(NoFrameskip|Deterministic)?-v[0-9]+$")


def legacy_atari_hint(env_id):
    """For a gym Atari id without ALE/ (``PongNoFrameskip-v4``, ``Breakout-v0``, ``Pong-v5``):
    a one-line pointer to its ``ALE/<Game>-v5`` id, else None."""
    m = _LEGACY_ID.match(env_id)
    if m is None or m.group(1) not in _game_names():
        return None
    return (f"{env_id!r} is a gym Atari id without the ALE/ namespace; did you mean ALE/{m.group(1)}-v5? Every "
            f"Atari game is played here as ALE/<Game>-v5 with the DeepMind preprocessing (4 frames per step, no "
            f"sticky actions, up to 30 no-op starts)")


@functools.cache
def _actions(rom, full=False):
    """The game's action set, as ALE action numbers: its minimal set, or all 18 (``full``)."""
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    ale = ale_py.ALEInterface()
    ale.loadROM(ale_py.roms.get_rom_path(rom))
    actions = ale.getLegalActionSet() if full else ale.getMinimalActionSet()
    return tuple(int(a.value) for a in actions)


def describe_atari(env_id, make_kwargs=()):
    """The :class:`EnvInfo` of ``ALE/<Game>-v5``: kind "atari", (4, 84, 84) uint8 frames scaled by
    1/255, the minimal action set (all 18 with ``full_action_space``), 27,000 agent steps per
    episode at most (``max_num_frames_per_episode`` / 4); ``make_kwargs`` checked by
    :func:`atari_settings` and kept in the EnvInfo."""
    rom = rom_for(env_id)
    settings = atari_settings(env_id, make_kwargs)
    return EnvInfo(env_id, "atari", OBS_SHAPE, len(_actions(rom, settings["full_action_space"])),
                   input_scale=1.0 / 255.0, make_kwargs=tuple(make_kwargs),
                   max_episode_steps=settings["max_num_frames_per_episode"] // FRAME_SKIP)


def action_meanings(env_id, full_action_space=False):
    """The names of the action set, in action-index order (``NOOP``, ``FIRE`` …): the minimal one,
    or all 18 with ``full_action_space``."""
    import ale_py

    rom = rom_for(env_id)
    return [ale_py.Action(a).name for a in _actions(rom, bool(full_action_space))]


class AtariEnv:
    """One preprocessed Atari game with gymnasium's ``reset``/``step``/``render``/``close``.

    ``step`` releases the GIL while the emulator runs (4 frames, max-pool, resize, stack).
    Observations are uint8 ``(4, 84, 84)`` arrays, oldest frame first, valid until the next call
    (copy them to keep them). ``render()`` returns an RGB uint8 image: with ``colour=True`` the
    game's full 210×160 colour screen after each step, else the agent's view, the newest 84×84
    greyscale frame enlarged ``render_scale`` times.

    The C++ preprocessing keeps no colour screen, so ``colour=True`` runs a twin emulator with the
    same seed and settings that returns the raw screen, and sends it every action: given the seed both
    games are deterministic (the no-op start and any sticky-action repeats are drawn from it), so the
    twin plays the very same game (same rewards and episode ends, checked in tests/test_atari.py). It doubles the
    emulation: for recordings only. ``metadata["render_fps"]`` is the game's pace, 15 agent steps a
    second (60 Hz, 4 frames a step).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": FRAME_RATE // FRAME_SKIP}

    def __init__(self, env_id, seed=None, noop_max=NOOP_MAX, repeat_action_probability=0.0, render_scale=4,
                 max_frames_per_episode=MAX_FRAMES_PER_EPISODE, colour=False, full_action_space=False):
        import ale_py
        from ale_py.vector_env import AtariVectorEnv

        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self.env_id = env_id
        self.rom = rom_for(env_id)
        settings = dict(num_threads=1, autoreset_mode="SameStep", frameskip=FRAME_SKIP, noop_max=noop_max,
                        episodic_life=False, life_loss_info=False, reward_clipping=False, use_fire_reset=True,
                        max_num_frames_per_episode=int(max_frames_per_episode),
                        repeat_action_probability=repeat_action_probability,
                        full_action_space=bool(full_action_space))
        self._vec = AtariVectorEnv(self.rom, 1, img_height=OBS_SHAPE[1], img_width=OBS_SHAPE[2], grayscale=True,
                                   stack_num=OBS_SHAPE[0], maxpool=True, **settings)
        self._screen = None      # the colour twin (colour=True) and its last screen
        self._screen_frame = None
        self._next_screen = None
        if colour:
            self._screen = AtariVectorEnv(self.rom, 1, img_height=SCREEN[0], img_width=SCREEN[1], grayscale=False,
                                          stack_num=1, maxpool=False, **settings)
        self._ale = self._vec.ale
        self.action_space = self._vec.single_action_space
        self.observation_space = self._vec.single_observation_space
        self.n_actions = int(self.action_space.n)
        self.render_scale = int(render_scale)
        self._action = np.zeros(1, np.int32)
        self._paddle = np.ones(1, np.float32)
        self._seed = seed
        self._next_obs = None    # first observation of the episode the vector env already started
        self._next_lives = 0
        self._next_frame = 0
        self._lives = 0
        self._last = None
        self._started = False

    def reset(self, *, seed=None, options=None):
        """Start an episode: a fresh seeded one when ``seed`` is given (or on the first call), else
        the one the emulator already began when the last episode ended. ``info`` holds ``lives``
        and ``episode_frame_number``, the frames the no-op start (and FIRE) already played."""
        if seed is None and not self._started:
            seed = self._seed
        if seed is not None or self._next_obs is None:
            obs, info = self._vec.reset(seed=None if seed is None else int(seed))
            obs, lives, frame = obs[0], int(info["lives"][0]), int(info["episode_frame_number"][0])
            if self._screen is not None:
                self._screen_frame = self._screen.reset(seed=None if seed is None else int(seed))[0][0, -1]
        else:
            obs, lives, frame = self._next_obs, self._next_lives, self._next_frame
            if self._screen is not None:
                self._screen_frame = self._next_screen
        self._started = True
        self._next_obs = None
        self._lives = lives
        self._last = obs
        return obs, {"lives": lives, "episode_frame_number": frame}

    def step(self, action):
        """One agent step (4 frames). Returns ``(obs, raw_reward, terminated, truncated, info)``;
        ``info`` holds ``raw_reward``, ``lives`` and ``life_lost``."""
        self._action[0] = action
        self._ale.send(self._action, self._paddle)
        if self._screen is not None:
            self._step_screen()
        obs, rewards, terms, truncs, info = self._ale.recv()
        terminated, truncated = bool(terms[0]), bool(truncs[0])
        lives = int(info["lives"][0])
        reward = float(rewards[0])
        if terminated or truncated:
            self._next_obs, self._next_lives = obs[0], lives
            self._next_frame = int(info["episode_frame_number"][0])
            obs = info["final_obs"][0]
            life_lost = False
        else:
            obs = obs[0]
            life_lost = lives < self._lives
            self._lives = lives
        self._last = obs
        return obs, reward, terminated, truncated, {"raw_reward": reward, "lives": lives, "life_lost": life_lost}

    def _step_screen(self):
        """The colour twin's step with the same action: keeps its screen (the finished episode's last
        one when the step ends it, and the next episode's first for the following reset)."""
        screens, _, terms, truncs, info = self._screen.step(self._action)
        if terms[0] or truncs[0]:
            self._next_screen = screens[0, -1]
            self._screen_frame = info["final_obs"][0, -1]
        else:
            self._screen_frame = screens[0, -1]

    def render(self):
        """The game's colour screen (210 × 160 × 3) with ``colour=True``, else the newest frame the
        agent sees, enlarged (84·k × 84·k × 3); RGB uint8."""
        if self._last is None:
            raise RuntimeError("call reset() before render()")
        if self._screen is not None:
            return np.array(self._screen_frame, np.uint8)
        k = self.render_scale
        frame = np.repeat(np.repeat(self._last[-1], k, axis=0), k, axis=1)
        return np.repeat(frame[:, :, None], 3, axis=2)

    def close(self):
        if self._vec is not None:
            self._vec.close()
            self._vec = None
        if self._screen is not None:
            self._screen.close()
            self._screen = None


def make_atari_env(env_id, seed=None, colour=False, make_kwargs=()):
    """A preprocessed :class:`AtariEnv` for ``ALE/<Game>-v5`` (first ``reset()`` uses ``seed``;
    ``colour``: ``render()`` gives the colour screen, for recordings; ``make_kwargs``: the
    --env-kwargs settings, :func:`atari_settings`)."""
    s = atari_settings(env_id, make_kwargs)
    return AtariEnv(env_id, seed=seed, colour=colour, noop_max=s["noop_max"],
                    repeat_action_probability=s["repeat_action_probability"],
                    max_frames_per_episode=s["max_num_frames_per_episode"],
                    full_action_space=s["full_action_space"])
