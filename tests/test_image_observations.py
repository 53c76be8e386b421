"""Box observations of any layout (issue 14 part 2): images HWC or CHW, uint8, float or bool, reach the
conv net transposed and scaled; the checkpoint records the encoding; eval, the Python API and the
documented NumPy reader apply it."""

import re
from pathlib import Path

import gymnasium
import numpy as np
import pytest

from numba_a3c.envs.base import EnvError, box_input, channels_last
from numba_a3c.envs.registry import describe_env, make_python_env

DOC = Path(__file__).resolve().parent.parent / "docs" / "checkpoint-format.md"

LIGHT = '''
import gymnasium
import numpy as np


class Light(gymnasium.Env):
    """A (H, W, C) or (C, H, W) image with one lit pixel on the left or the right half; reward 1 for the
    action naming the side. Episodes of 10 steps."""

    def __init__(self, layout="hwc", dtype="uint8", h=6, w=8, c=3):
        self.layout, self.dtype, self.h, self.w, self.c = layout, np.dtype(dtype), h, w, c
        shape = (h, w, c) if layout == "hwc" else (c, h, w)
        high = 255 if self.dtype == np.uint8 else 1
        self.observation_space = gymnasium.spaces.Box(0, high, shape, self.dtype)
        self.action_space = gymnasium.spaces.Discrete(2)

    def _frame(self):
        img = np.zeros((self.h, self.w, self.c), self.dtype)
        self.side = int(self.np_random.integers(2))
        col = int(self.np_random.integers(self.w // 2)) + self.side * (self.w // 2)
        img[int(self.np_random.integers(self.h)), col, :] = 255 if self.dtype == np.uint8 else 1
        return img if self.layout == "hwc" else np.ascontiguousarray(np.transpose(img, (2, 0, 1)))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._frame(), {}

    def step(self, action):
        reward = float(int(action) == self.side)
        self.t += 1
        return self._frame(), reward, False, self.t >= 10, {}


gymnasium.register("Light-v0", entry_point=Light)
'''


@pytest.fixture
def light(tmp_path, monkeypatch):
    (tmp_path / "light_env.py").write_text(LIGHT)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "light_env:Light-v0"


def test_layout_rule():
    assert channels_last((84, 84, 4)) and channels_last((64, 64, 3)) and channels_last((7, 7, 3))
    assert not channels_last((4, 84, 84)) and not channels_last((1, 10, 5)) and not channels_last((3, 64, 64))
    assert not channels_last((1, 4, 4))                    # a leading single channel
    assert channels_last((3, 3, 3)) and channels_last((2, 8, 3))   # ambiguous: gymnasium's convention
    assert box_input((6, 8, 3), np.uint8, np.full((6, 8, 3), 255)) == ((3, 6, 8), "hwc", 1.0 / 255.0)
    assert box_input((3, 6, 8), np.float32, np.ones((3, 6, 8))) == ((3, 6, 8), "", 1.0)
    assert box_input((6, 8), np.uint8, np.full((6, 8), 255)) == ((1, 6, 8), "", 1.0 / 255.0)
    assert box_input((5,), np.uint8, np.full(5, 3)) == ((5,), "", 1.0)   # small integers are not pixels
    assert box_input((2, 3, 4, 5), np.float32, np.ones((2, 3, 4, 5))) == ((2, 3, 4, 5), "", 1.0)


@pytest.mark.parametrize("layout,dtype", [("hwc", "uint8"), ("chw", "uint8"), ("hwc", "float32"), ("hwc", "bool")])
def test_every_layout_reaches_the_network_as_chw(light, layout, dtype):
    info = describe_env(light, env_kwargs=(f"layout={layout}", f"dtype={dtype}"))
    assert info.obs_shape == (3, 6, 8)
    assert info.obs_encoding == ("hwc" if layout == "hwc" else "")
    assert info.input_scale == (1.0 / 255.0 if dtype == "uint8" else 1.0)
    raw = gymnasium.make("Light-v0", layout=layout, dtype=dtype)
    env = make_python_env(info, seed=0)
    a, _ = raw.reset(seed=3)
    b, _ = env.reset(seed=3)
    chw = np.transpose(a, (2, 0, 1)) if layout == "hwc" else a
    assert b.shape == (3, 6, 8) and b.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(b, chw)
    assert env.observation_space.shape == (3, 6, 8)


def test_spaces_without_a_fixed_size_are_refused_in_one_line():
    from numba_a3c.envs.registry import describe_callable

    class Sequences(gymnasium.Env):
        observation_space = gymnasium.spaces.Sequence(gymnasium.spaces.Discrete(3))
        action_space = gymnasium.spaces.Discrete(2)

    with pytest.raises(EnvError, match=r"Sequence observation space with a Sequence part \(the whole observation\): "
                                       r"these methods read Box, Discrete, MultiDiscrete and MultiBinary parts") as err:
        describe_callable(Sequences)
    assert "\n" not in str(err.value)


def _doc_reader():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    namespace = {"__name__": "numpy_policy"}
    exec(compile([b for b in blocks if "numpy_policy.py" in b][0], "numpy_policy.py", "exec"), namespace)
    return namespace


def test_hwc_uint8_images_train_on_the_conv_net_and_every_reader_applies_the_encoding(light, tmp_path):
    from numba_a3c import checkpoint, load
    from numba_a3c.config import resolve
    from numba_a3c.inspection import evaluate_checkpoint
    from numba_a3c.nn.network import Network
    from numba_a3c.trainer import Trainer
    from numba_a3c.workers import Workers

    config = resolve({"env": light, "network": "conv", "hidden": (32,), "steps": 1500, "threads": 2,
                      "eval_episodes": 3, "seed": 5})
    # What the learners read: thread k's first state is its environment's reset (seed·1000 + k),
    # transposed to (C, H, W) and scaled by 1/255, whether the environment steps here or in a process.
    for processes in (False, True):
        trainer = Trainer(config.replace(env_processes=processes), final_eval=False)
        workers = Workers(trainer.shared, trainer.network, trainer.env_info, trainer.config)
        try:
            workers.reset_environments()
        finally:
            workers.close()
        for k in range(2):
            raw, _ = gymnasium.make("Light-v0").reset(seed=5 * 1000 + k)
            expected = np.transpose(raw, (2, 0, 1)).reshape(-1).astype(np.float32) / np.float32(255)
            np.testing.assert_allclose(trainer.shared.obs[k, 0], expected, rtol=1e-6)
    result = Trainer(config, run_dir=tmp_path / "run").run()
    assert result.status == "finished", result.error
    path = tmp_path / "run" / "latest.h5"
    ck = checkpoint.load(path)
    assert ck.spec.input_shape == (3, 6, 8) and ck.spec.input_encoding == "hwc"
    assert ck.spec.input_scale == pytest.approx(1.0 / 255.0)
    returns, lengths, _ = evaluate_checkpoint(ck, episodes=3)    # eval rebuilds and encodes the environment
    assert list(lengths) == [10, 10, 10]

    reader = _doc_reader()
    layers, shape, scale = reader["load_layers"](path)
    encoding = reader["load_encoding"](path)
    assert (shape, encoding) == ((3, 6, 8), "hwc")
    net, agent = Network(ck.spec), load(path)
    env = gymnasium.make("Light-v0")
    obs, _ = env.reset(seed=1)
    for _ in range(10):
        outputs = reader["forward"](layers, shape, scale, reader["network_input"](obs, shape, encoding))
        logits, value = net.forward(ck.theta, np.transpose(obs, (2, 0, 1))[None])
        np.testing.assert_allclose(outputs["pi"], logits[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(outputs["v"], value, rtol=1e-4, atol=1e-5)
        action = reader["act"](outputs)[0]
        assert agent.act(obs) == action == int(np.argmax(logits[0]))   # the Python API takes the raw (H, W, C)
        obs, *_ = env.step(action)


def test_documented_reader_one_hot_input():
    reader = _doc_reader()
    np.testing.assert_array_equal(reader["network_input"](2, (4,), "one-hot"), [0, 0, 1, 0])
    x = np.arange(24).reshape(2, 3, 4)
    np.testing.assert_array_equal(reader["network_input"](x, (4, 2, 3), "hwc"), np.transpose(x, (2, 0, 1)))
    np.testing.assert_array_equal(reader["network_input"](x, (2, 3, 4), ""), x)
    # a composite observation, part by part, as the package flattens it
    from numba_a3c.envs.base import flatten_encoding, flatten_observation

    space = gymnasium.spaces.Tuple((gymnasium.spaces.Discrete(3, start=-1), gymnasium.spaces.Dict(
        {"a": gymnasium.spaces.MultiDiscrete([2, 4]), "b": gymnasium.spaces.Box(0.0, 1.0, (2, 2))})))
    encoding, size = flatten_encoding(space)
    for seed in range(5):
        space.seed(seed)
        obs = space.sample()
        flat = reader["network_input"](obs, (size,), encoding)
        assert flat.shape == (size,) == (3 + 2 + 4 + 4,)
        np.testing.assert_array_equal(flat, flatten_observation(obs, encoding))
        np.testing.assert_array_equal(flat, gymnasium.spaces.flatten(space, obs))   # gymnasium's own order agrees


def test_generic_preset_gives_images_the_conv_net(light):
    """The generic defaults (network auto): the conv net for (C, H, W) observations, the MLP otherwise."""
    from numba_a3c.build import build_run
    from numba_a3c.config import resolve

    image = build_run(resolve({"env": light})).network.spec
    vector = build_run(resolve({"env": "MountainCar-v0"})).network.spec
    assert resolve({"env": light}).network == "auto" and image.body[0].kind == "conv"
    assert image.input_encoding == "hwc" and image.input_scale == pytest.approx(1 / 255)
    assert [layer.kind for layer in vector.body] == ["dense", "dense"]
    assert build_run(resolve({"env": light, "network": "mlp"})).network.spec.body[0].kind == "dense"
    thin = build_run(resolve({"env": light, "env_kwargs": ("h=2",)})).network.spec   # 2 rows: no 3×3 window
    assert thin.input_encoding == "hwc" and thin.input_shape == (48,) and thin.body[0].kind == "dense"
