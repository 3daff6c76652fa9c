"""The recorded policy replays a session's actions exactly, filters whole transitions, and ends."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from action_selectors.recorded import RecordedPolicy, RecordingFinished
from devbot.action_space import ActionSpace
from devbot.bag import BagError, BagWriter, FilterError, Session, TopicSpec
from devbot.bag.metadata import KEY_ACTION_SPACE, KEY_ROBOT_TYPE
from toroidal_sim.env import DOT_ACTION_SPACE, ToroidalDotConfig, ToroidalDotEnv

TS = get_typestore(Stores.ROS2_KILTED)
T = TS.types


def _header(ns: int):
    return T['std_msgs/msg/Header'](T['builtin_interfaces/msg/Time'](ns // 10**9, ns % 10**9), '')


def record_dot_session(path, actions, seed=4):
    """A session as the recorder writes it from the dot robot.

    It holds frames, executed actions and positions.
    """
    env = ToroidalDotEnv(ToroidalDotConfig(seed=seed))
    custom = {
        KEY_ROBOT_TYPE: 'toroidal_dot',
        KEY_ACTION_SPACE: json.dumps(DOT_ACTION_SPACE.to_dict()),
    }
    t = 1_750_000_000_000_000_000
    with BagWriter(path, custom) as bag:
        img = bag.add_topic(TopicSpec('/toroidal_dot/camera/image_raw', 'sensor_msgs/msg/Image'))
        exe = bag.add_topic(
            TopicSpec('/toroidal_dot/motor_command/executed', 'sensor_msgs/msg/JointState')
        )

        def frame(ns):
            f = env.frame()
            msg = T['sensor_msgs/msg/Image'](_header(ns), 224, 224, 'rgb8', 0, 672, f.reshape(-1))
            bag.write(img, ns + 500, TS.serialize_cdr(msg, 'sensor_msgs/msg/Image'))

        frame(t)
        for k, a in enumerate(actions, start=1):
            ns = t + k * 5_000_000
            env.step(a)
            js = T['sensor_msgs/msg/JointState'](
                _header(ns), ['action'], np.array([float(a)]), np.zeros(1), np.zeros(1)
            )
            bag.write(exe, ns, TS.serialize_cdr(js, 'sensor_msgs/msg/JointState'))
            frame(ns)
    return path


SEQUENCE = [1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 1] * 4


def test_replays_the_recorded_actions_exactly_then_finishes(tmp_path):
    bag = record_dot_session(tmp_path / 's', SEQUENCE)
    policy = RecordedPolicy(bag, DOT_ACTION_SPACE)
    chosen = []
    while not policy.finished:
        chosen.append(policy.choose(None))
    assert chosen == SEQUENCE and policy.remaining == 0
    with pytest.raises(RecordingFinished, match=f'all {len(SEQUENCE)} recorded actions'):
        policy.choose({'0': 1.0})


def test_filter_skips_whole_transitions(tmp_path):
    bag = record_dot_session(tmp_path / 's', SEQUENCE)
    policy = RecordedPolicy(bag, DOT_ACTION_SPACE, filter='actions=0')
    assert policy.actions == [0] * SEQUENCE.count(0) and policy.total_recorded == len(SEQUENCE)
    # every kept transition keeps its own frames: for a stay the frame does not change
    with Session(bag) as s:
        for t in policy.transitions:
            assert np.array_equal(s.frame(t.frame_index).image, s.frame(t.next_frame_index).image)
            assert t.next_frame_index == t.frame_index + 1 and SEQUENCE[t.index] == 0
    for _ in range(SEQUENCE.count(0)):
        assert policy.choose() == 0
        assert policy.current.action == 0
    with pytest.raises(RecordingFinished):
        policy.choose()


def test_bad_sessions_filters_and_action_spaces_are_clear_errors(tmp_path):
    bag = record_dot_session(tmp_path / 's', [1, 0])
    with pytest.raises(FilterError, match='unknown channel'):
        RecordedPolicy(bag, DOT_ACTION_SPACE, filter='motor_left=0')
    jetbot = ActionSpace.from_dict(
        {
            'channels': [
                {'name': 'motor_left', 'min': 0, 'max': 0},
                {'name': 'motor_right', 'min': 0, 'max': 0.12},
            ],
            'actions': [
                {'motor_left': 0, 'motor_right': 0},
                {'motor_left': 0, 'motor_right': 0.12},
            ],
        },
        robot_type='jetbot',
    )
    with pytest.raises(ValueError, match='differs'):
        RecordedPolicy(bag, jetbot)
    with pytest.raises(BagError, match='no such session'):
        RecordedPolicy(tmp_path / 'missing', DOT_ACTION_SPACE)
    empty = record_dot_session(tmp_path / 'e', [])
    policy = RecordedPolicy(empty, DOT_ACTION_SPACE)
    assert policy.finished
    with pytest.raises(RecordingFinished):
        policy.choose()
