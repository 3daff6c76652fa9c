import math
from pathlib import Path

import numpy as np
import pytest
from sensor_msgs.msg import JointState

from devbot.action_space import (
    ActionError,
    ActionSpace,
    ConfigError,
    candidate_label,
    parse_candidate_label,
)
from devbot.messages import action_to_joint_state, joint_state_to_action

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def jetbot():
    return ActionSpace.from_yaml(REPO / 'config' / 'jetbot.yaml')


def test_load_robot_files(jetbot):
    dot = ActionSpace.from_yaml(REPO / 'config' / 'toroidal_dot.yaml')
    assert (
        dot.robot_type == 'toroidal_dot'
        and dot.channel_names == ('action',)
        and dot.num_actions == 2
    )
    assert jetbot.robot_type == 'jetbot'
    assert jetbot.channel_names == ('motor_left', 'motor_right', 'duration')
    assert jetbot.values(1) == {'motor_left': 0.0, 'motor_right': 0.12, 'duration': 0.2}
    assert ActionSpace.from_dict(jetbot.to_dict()) == jetbot


def test_normalisation_maps_ranges_to_unit_interval_and_constant_channels_to_zero(jetbot):
    np.testing.assert_allclose(jetbot.normalized(), [[0, -1, 0], [0, 1, 0]])
    dot = ActionSpace.from_yaml(REPO / 'config' / 'toroidal_dot.yaml')
    np.testing.assert_allclose(dot.normalized(), [[-1], [1]])


@pytest.mark.parametrize(
    'doc, match',
    [
        ({'channels': [], 'actions': [{}]}, 'empty'),
        ({'channels': [{'name': 'a', 'min': 1, 'max': 0}], 'actions': [{'a': 0}]}, 'min <= max'),
        ({'channels': [{'name': 'a', 'min': 0, 'max': 1}], 'actions': [{'a': 2}]}, 'outside'),
        ({'channels': [{'name': 'a', 'min': 0, 'max': 1}], 'actions': [{'b': 0}]}, 'expected'),
        (
            {'channels': [{'name': 'a', 'min': 0, 'max': 1}], 'actions': [{'a': 0}, {'a': 0}]},
            'identical',
        ),
        ({'channels': [{'name': 'a', 'min': 0}], 'actions': [{'a': 0}]}, 'exactly name, min, max'),
        ({'channels': [{'name': 'a', 'min': 0, 'max': 'x'}], 'actions': [{'a': 0}]}, 'number'),
        ({'channels': [{'name': 'a', 'min': 0, 'max': 1}], 'actions': []}, 'empty'),
    ],
)
def test_invalid_spaces_are_rejected(doc, match):
    with pytest.raises(ConfigError, match=match):
        ActionSpace.from_dict(doc)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match='not found'):
        ActionSpace.from_yaml(tmp_path / 'nope.yaml')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('action_space: [unclosed')
    with pytest.raises(ConfigError, match='invalid YAML'):
        ActionSpace.from_yaml(bad)
    bad.write_text('robot: {type: x}\n')
    with pytest.raises(ConfigError, match='no action_space'):
        ActionSpace.from_yaml(bad)


def test_joint_state_round_trip_in_any_channel_order(jetbot):
    for i in range(jetbot.num_actions):
        msg = action_to_joint_state(jetbot, i)
        assert len(msg.velocity) == len(msg.effort) == len(msg.position) == 3
        assert joint_state_to_action(jetbot, msg) == i
    shuffled = JointState(name=['duration', 'motor_right', 'motor_left'], position=[0.2, 0.12, 0.0])
    assert joint_state_to_action(jetbot, shuffled) == 1


@pytest.mark.parametrize(
    'names, values, match',
    [
        (['motor_left', 'motor_right', 'duration', 'turbo'], [0, 0, 0.2, 1], 'unknown channel'),
        (['motor_left', 'motor_right'], [0, 0], 'missing channel'),
        (['motor_left', 'motor_left', 'duration'], [0, 0, 0.2], 'repeated'),
        (['motor_left', 'motor_right', 'duration'], [0, math.nan, 0.2], 'non-finite'),
        (['motor_left', 'motor_right', 'duration'], [0, math.inf, 0.2], 'non-finite'),
        (['motor_left', 'motor_right', 'duration'], [0, 0.5, 0.2], 'outside'),
        (['motor_left', 'motor_right', 'duration'], [0, 0.06, 0.2], 'not one of'),
        (['motor_left', 'motor_right', 'duration'], [0, 0.12], 'names but'),
    ],
)
def test_bad_actions_are_rejected_with_a_clear_message(jetbot, names, values, match):
    with pytest.raises(ActionError, match=match):
        jetbot.index_of(names, values)


def test_bad_index(jetbot):
    for bad in (-1, 2, 1.0, True):
        with pytest.raises(ActionError):
            action_to_joint_state(jetbot, bad)


def test_action_labels_show_the_values_of_an_action():
    space = ActionSpace.from_dict(
        {
            'channels': [
                {'name': 'motor_left', 'min': -1.0, 'max': 1.0},
                {'name': 'motor_right', 'min': -1.0, 'max': 1.0},
                {'name': 'duration', 'min': 0.0, 'max': 1.0},
            ],
            'actions': [
                {'motor_left': 0.0, 'motor_right': 0.0, 'duration': 0.2},
                {'motor_left': 0.0, 'motor_right': 0.12, 'duration': 0.2},
            ],
        },
        robot_type='jetbot',
    )
    assert space.label(1) == 'motor_left=0, motor_right=0.12, duration=0.2'
    assert space.label(1, varying_only=True) == 'motor_right=0.12'
    assert space.label(0, varying_only=True, indexed=True) == '0: motor_right=0'
    single = ActionSpace.from_dict(
        {'channels': [{'name': 'action', 'min': 0, 'max': 1}], 'actions': [{'action': 1}]}
    )
    assert single.label(0, varying_only=True) == 'action=1'  # nothing varies: every channel
    with pytest.raises(ActionError):
        space.label(2)


def test_candidate_labels_round_trip():
    assert candidate_label(0, [1]) == 'L0:1' and candidate_label(1, (1, 0)) == 'L1:1-0'
    for level, primitives in ((0, (1,)), (1, (1, 0)), (2, (0, 0, 1, 1))):
        assert parse_candidate_label(candidate_label(level, primitives), 2) == (level, primitives)
    assert parse_candidate_label('1', 2) == (0, (1,))
    for bad in ('L0:2', 'L1:1+1', 'Lx:1', 'L0:', 'x', '', '-1', 'L0:1--0'):
        assert parse_candidate_label(bad, 2) is None, bad
