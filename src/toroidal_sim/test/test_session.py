"""Generated dot sessions read back: frames, actions, ground truth, timing and custom_data."""

from __future__ import annotations

import numpy as np
import pytest

from devbot.action_space import ActionError
from devbot.bag.session import Session
from toroidal_sim.env import DOT_ACTION_SPACE, ToroidalDotConfig, ToroidalDotEnv
from toroidal_sim.session import START_NS, STEP_NS, write_dot_session


def test_a_generated_session_is_the_worlds_run(tmp_path):
    path = tmp_path / 'toroidal_dot' / 's0'
    actions = [1, 0, 1, 1, 0]
    config = ToroidalDotConfig(size=48, dot_radius=3, move_pixels=7, seed=4)
    frames = write_dot_session(path, actions, config=config, drop_frames={2})
    env = ToroidalDotEnv(config)
    expected = [env.frame()] + [env.step(a) for a in actions]
    assert all(np.array_equal(a, b) for a, b in zip(frames, expected))
    with Session(path) as s:
        assert s.robot_type == 'toroidal_dot' and s.action_space == DOT_ACTION_SPACE
        assert s.info.custom_data['devbot.robot'] == 'toroidal_dot'
        assert s.info.start_ns == START_NS
        assert s.num_frames == len(actions)  # frame 2 was dropped
        assert [a.index for a in s.actions()] == actions
        assert s.info.topics['/toroidal_dot/ground_truth/dot_position'].count == len(frames)
        stamps = sorted(t.action_stamp_ns for t in s.transitions())
        assert all((st - START_NS) % STEP_NS == 0 for st in stamps)


def test_bad_actions_and_an_existing_session_are_refused(tmp_path):
    with pytest.raises(ActionError, match=r'integer in \[0, 2\)'):
        write_dot_session(tmp_path / 'a', [0, 2])
    with pytest.raises(ActionError):
        write_dot_session(tmp_path / 'b', [True])
    write_dot_session(tmp_path / 'c', [1], ground_truth=False)
    with Session(tmp_path / 'c') as s:
        assert set(s.info.topics) == {
            '/toroidal_dot/camera/image_raw',
            '/toroidal_dot/motor_command/executed',
        }
    from devbot.bag import BagWriteError

    with pytest.raises(BagWriteError, match='exists'):
        write_dot_session(tmp_path / 'c', [1])
