"""What both selector nodes (``selector_node`` and ``interactive_selector``) set up alike: the
policy parameters and the trigger -> motor_command wiring.

ROS-free at import (message types are imported when a node is wired), like the top half of
:mod:`action_selectors.interactive`.
"""

from __future__ import annotations

from dataclasses import dataclass

from action_selectors.policies import SEQUENCES
from devbot import topics
from devbot.action_space import ActionSpace
from devbot.params import declare


@dataclass
class PolicyParams:
    """The shared parameters, read: the robot's action space and the policy's options."""

    action_space: ActionSpace
    policy: str
    action: int
    sequence: str
    seed: int | None  # None: a random seed


def declare_policy_params(node, policy_help: str, seed_help: str) -> PolicyParams:
    """Declare robot_config, policy, action, sequence and seed on ``node`` and read the robot
    file. ``policy_help`` lists the policies this node offers, ``seed_help`` says what the seed
    seeds (both become the parameters' descriptions).

    Raises:
        ValueError: robot_config is not given.
    """
    robot_config = declare(node, 'robot_config', '', 'robot file with the action space (required)')
    policy = declare(node, 'policy', 'sequence', policy_help)
    action = declare(node, 'action', 0, 'action index of the constant policy', int_range=(0, 1024))
    sequence = str(
        declare(
            node,
            'sequence',
            'ALWAYS_MOVE',
            f'one of {sorted(SEQUENCES)} or a comma-separated list of action indices',
            dynamic_typing=True,
        )
    )
    seed = declare(node, 'seed', -1, f'{seed_help}; -1 = random', int_range=(-1, 2**31 - 1))
    if not robot_config:
        raise ValueError(
            'parameter robot_config is required (e.g. -p robot_config:=config/toroidal_dot.yaml)'
        )
    return PolicyParams(
        ActionSpace.from_yaml(robot_config),
        policy,
        action,
        sequence,
        None if seed < 0 else seed,
    )


def wire_trigger(node, trigger: str, on_frame, on_scores):
    """The motor_command publisher, and the subscription that triggers each action: camera
    frames (``trigger == 'frame'``; read raw, ``on_frame`` gets the serialized message) or
    world_model/action_scores (``'scores'``). Returns the publisher and the resolved name of
    the trigger topic.

    Raises:
        ValueError: ``trigger`` is neither frame nor scores.
    """
    from sensor_msgs.msg import Image, JointState

    if trigger not in ('frame', 'scores'):
        raise ValueError(f'trigger must be frame or scores, got {trigger!r}')
    qos = topics.loop_qos()
    publisher = node.create_publisher(JointState, topics.MOTOR_COMMAND, qos)
    if trigger == 'frame':
        # raw: a selector needs only the stamp, so the 150 KB pixel array is never turned into
        # a Python message (the largest per-step cost of a selector)
        node.create_subscription(Image, topics.CAMERA_IMAGE, on_frame, qos, raw=True)
        source = topics.CAMERA_IMAGE
    else:
        node.create_subscription(JointState, topics.ACTION_SCORES, on_scores, qos)
        source = topics.ACTION_SCORES
    return publisher, node.resolve_topic_name(source)
