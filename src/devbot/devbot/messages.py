"""Actions as ``sensor_msgs/JointState``: ``name`` = channels, ``position`` = values.

``velocity`` and ``effort`` are filled with zeros of the same length: rclpy serialises an empty
trailing array in a way that the ``rosbags`` reader rejects, and bags must stay readable.
"""

from __future__ import annotations

from devbot.action_space import ActionError, ActionSpace


def action_to_joint_state(space: ActionSpace, index: int, stamp=None, msg=None):
    """A JointState carrying discrete action ``index`` of ``space``.

    Args:
        space: the robot's action space.
        index: which discrete action.
        stamp: a ``builtin_interfaces/Time`` for the header (left zero when None).
        msg: an existing JointState to fill, else a new one.
    """
    values = space.values(index)
    if msg is None:
        from sensor_msgs.msg import JointState

        msg = JointState()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.name = list(values)
    msg.position = [float(v) for v in values.values()]
    msg.velocity = [0.0] * len(values)
    msg.effort = [0.0] * len(values)
    return msg


def joint_state_to_action(space: ActionSpace, msg) -> int:
    """The discrete action index a JointState names.

    Raises:
        ActionError: unknown/missing/repeated channels, names and positions of different
            lengths, NaN/inf, values outside a channel's range, or not a discrete action.
    """
    return space.index_of(list(msg.name), list(msg.position))


__all__ = ['ActionError', 'action_to_joint_state', 'joint_state_to_action']
