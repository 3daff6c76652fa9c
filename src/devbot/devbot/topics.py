"""Topic names and QoS profiles of the devbot graph, in one place.

Names are relative, so every robot's graph lives in its namespace (``/toroidal_dot``,
``/jetbot``). See the README's topic table for types and meaning.
"""

from __future__ import annotations

# robot -> everyone: a camera frame (sensor_msgs/Image, rgb8; header.stamp = capture time)
CAMERA_IMAGE = 'camera/image_raw'
# selector -> robot: one discrete action (sensor_msgs/JointState, name = channels)
MOTOR_COMMAND = 'motor_command'
# robot -> world model, recorder: the action actually executed (JointState, stamp = completion)
MOTOR_EXECUTED = 'motor_command/executed'
# toroidal_sim -> tests, probes, recorder: ground-truth dot centre (geometry_msgs/PointStamped)
DOT_POSITION = 'ground_truth/dot_position'
# world model -> selectors: per-candidate uncertainty for the latest frame (JointState:
# name = candidate labels, position = scores, header.stamp = stamp of the scored frame)
ACTION_SCORES = 'world_model/action_scores'
# world model -> viewers: panels (sensor_msgs/Image)
WM_VISUALIZATION = 'world_model/visualization'
# world model -> viewers, recorder: losses, gate state, counters (diagnostic_msgs/DiagnosticArray)
WM_METRICS = 'world_model/metrics'
# world model -> lockstep bag player: stamp of each frame learned from or dropped (std_msgs/Header)
WM_PROCESSED = 'world_model/processed'
# toroidal_sim reset service (std_srvs/Trigger)
RESET_SERVICE = 'reset'
# recorder -> its own bag only (never published): where DDS reported messages lost on a recorded
# topic (diagnostic_msgs/DiagnosticArray, see devbot.cdr.messages_lost_cdr)
RECORDER_MESSAGES_LOST = 'recorder/messages_lost'
# recorder -> selectors (std_msgs/Bool, latched): true while the recorder has matched a publisher
# of every loop topic it records (camera/image_raw, motor_command, motor_command/executed)
RECORDER_READY = 'recorder/ready'
# the loop's topics: a recorder receiving all three records a run from its first transition
LOOP_TOPICS = (CAMERA_IMAGE, MOTOR_COMMAND, MOTOR_EXECUTED)


def subscribers(node, topic: str) -> set[tuple[str, str]]:
    """(namespace, name) of the nodes subscribed to ``topic`` (relative names resolve in the
    node's namespace), as the graph shows them now."""
    return {
        (i.node_namespace, i.node_name)
        for i in node.get_subscriptions_info_by_topic(node.resolve_topic_name(topic))
    }


def robot_subscribed(node, command_publisher) -> bool:
    """True when a robot -- a node that publishes camera frames -- subscribes to the topic of
    ``command_publisher`` and the publisher has matched at least one reader.

    Commands are volatile: one published before the robot's reader matched never arrives, and a
    closed loop then waits forever for its outcome. Another reader (the recorder, a viewer)
    matching first does not make a command safe, hence the check for the robot itself."""
    cameras = {
        (i.node_namespace, i.node_name)
        for i in node.get_publishers_info_by_topic(node.resolve_topic_name(CAMERA_IMAGE))
    }
    return command_publisher.get_subscription_count() > 0 and bool(
        cameras & subscribers(node, command_publisher.topic_name)
    )


class ResendingPublisher:
    """A publisher that re-sends its last message, unchanged (same stamp), to every new
    subscriber: consumers de-duplicate by stamp, and a node that joins late does not wait for a
    message published before its reader matched (volatile QoS would never deliver it).

    ``resend_when`` (optional) is asked at each new match; the message is re-sent only when it
    returns True (e.g. only while it is still the current one)."""

    def __init__(self, node, msg_type, topic: str, qos, resend_when=None) -> None:
        from rclpy.event_handler import PublisherEventCallbacks

        self.last = None
        self._resend_when = resend_when
        self._publisher = node.create_publisher(
            msg_type,
            topic,
            qos,
            event_callbacks=PublisherEventCallbacks(matched=self._on_matched),
        )

    def publish(self, msg) -> None:
        self.last = msg
        self._publisher.publish(msg)

    def _on_matched(self, info) -> None:
        if (
            info.current_count_change > 0
            and self.last is not None
            and (self._resend_when is None or self._resend_when())
        ):
            self._publisher.publish(self.last)


def loop_qos():
    """The learning loop: reliable, keep-last 10 (a lost frame is a lost transition)."""
    return _volatile_keep_last(10, reliable=True)


def viewer_qos():
    """Viewers: best-effort, keep-last 1 (a slow viewer must never slow the loop)."""
    return _volatile_keep_last(1, reliable=False)


def state_qos():
    """A state that late joiners need: reliable, transient-local (latched), keep-last 1."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def _volatile_keep_last(depth: int, reliable: bool):
    """A volatile keep-last ``depth`` QoSProfile, reliable or best-effort."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )
