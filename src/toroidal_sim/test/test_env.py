from pathlib import Path

import numpy as np
import pytest

from devbot.action_space import ActionSpace
from toroidal_sim.env import (
    DOT_ACTION_SPACE,
    MOVE_RIGHT,
    STAY,
    ToroidalDotConfig,
    ToroidalDotEnv,
    random_run,
)

REPO = Path(__file__).resolve().parents[3]


def white_pixels(frame):
    return np.argwhere(frame.all(axis=2))


def test_frame_is_black_with_81_white_pixels_for_radius_5():
    env = ToroidalDotEnv(ToroidalDotConfig(seed=1))
    frame = env.frame()
    assert frame.shape == (224, 224, 3) and frame.dtype == np.uint8
    assert len(white_pixels(frame)) == 81
    assert set(np.unique(frame)) == {0, 255}
    # every channel is either all 0 or all 255: pure white on pure black
    assert (frame.min(axis=2) == frame.max(axis=2)).all()


def test_disc_is_centred_on_position():
    env = ToroidalDotEnv(ToroidalDotConfig(seed=2))
    env.x, env.y = 100, 50
    ys, xs = white_pixels(env.frame()).T
    assert (xs.mean(), ys.mean()) == (100.0, 50.0)
    assert xs.min() == 95 and xs.max() == 105 and ys.min() == 45 and ys.max() == 55


def test_move_right_by_27_and_stay():
    env = ToroidalDotEnv(ToroidalDotConfig(seed=3))
    env.x, env.y = 10, 20
    env.step(MOVE_RIGHT)
    assert env.position == (37, 20)
    env.step(STAY)
    assert env.position == (37, 20)


def test_motion_and_drawing_wrap_at_the_edge():
    env = ToroidalDotEnv(ToroidalDotConfig(seed=4))
    env.x, env.y = 210, 222
    frame = env.step(MOVE_RIGHT)
    assert env.position == ((210 + 27) % 224, 222)
    pixels = white_pixels(frame)
    assert len(pixels) == 81
    # the disc around x=13 is whole; around y=222 it wraps to the top rows
    assert set(pixels[:, 0]) == set(range(217, 224)) | set(range(0, 4))
    env.x = 220
    pixels = white_pixels(env.frame())
    assert len(pixels) == 81 and pixels[:, 1].min() == 0 and pixels[:, 1].max() == 223


def test_seeded_resets_are_reproducible_and_uniform():
    a = ToroidalDotEnv(ToroidalDotConfig(seed=7))
    b = ToroidalDotEnv(ToroidalDotConfig(seed=7))
    pos_a = [a.position] + [(a.reset(), a.position)[1] for _ in range(200)]
    pos_b = [b.position] + [(b.reset(), b.position)[1] for _ in range(200)]
    assert pos_a == pos_b
    xs = np.array([p[0] for p in pos_a])
    assert xs.min() >= 0 and xs.max() < 224 and len(set(pos_a)) > 150
    c = ToroidalDotEnv(ToroidalDotConfig(seed=8))
    pos_c = [c.position] + [(c.reset(), c.position)[1] for _ in range(200)]
    assert pos_c != pos_a


@pytest.mark.parametrize('bad', [2, -1, 1.0, '1', None, True])
def test_unknown_actions_are_rejected(bad):
    env = ToroidalDotEnv(ToroidalDotConfig(seed=5))
    before = env.position
    with pytest.raises(ValueError):
        env.step(bad)
    assert env.position == before


def test_invalid_config():
    with pytest.raises(ValueError):
        ToroidalDotConfig(size=8, dot_radius=5)
    with pytest.raises(ValueError):
        ToroidalDotConfig(dot_radius=-1)


def test_builtin_action_space_matches_config_file():
    assert ActionSpace.from_yaml(REPO / 'config' / 'toroidal_dot.yaml') == DOT_ACTION_SPACE


def test_random_run_is_the_env_stepped_by_its_seeded_stay_and_move_actions():
    config = ToroidalDotConfig(size=32, dot_radius=2, move_pixels=5, seed=4)
    frames, actions = random_run(config, 12)
    assert frames.shape == (12, 32, 32, 3) and frames.dtype == np.uint8
    assert actions.shape == (11,) and actions.dtype == np.int64
    assert set(actions.tolist()) == {STAY, MOVE_RIGHT}
    env = ToroidalDotEnv(config)
    replayed = [env.frame()] + [env.step(int(a)) for a in actions]
    assert np.array_equal(frames, np.stack(replayed))
    again, again_actions = random_run(config, 12)
    assert np.array_equal(again, frames) and np.array_equal(again_actions, actions)
