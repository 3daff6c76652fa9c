"""ROS 2 node serving the toroidal dot world (a thin wrapper over :mod:`toroidal_sim.env`).

Subscribed topics:
    motor_command (sensor_msgs/JointState): one discrete action, channel ``action`` = 0 (stay)
        or 1 (move right). Anything else is rejected with a logged error; the node keeps serving.

Published topics:
    camera/image_raw (sensor_msgs/Image, rgb8): the frame at start, after every executed action
        and after a reset. Re-sent unchanged (same stamp) when a new subscriber matches, so a
        late-starting selector never waits for a frame that was sent before it existed.
    motor_command/executed (sensor_msgs/JointState): the executed action; header.stamp =
        completion time = the stamp of the frame that shows its outcome.
    ground_truth/dot_position (geometry_msgs/PointStamped): the disc centre (x, y), same stamp
        as the frame.

Services:
    reset (std_srvs/Trigger): move the disc to a new random position and publish the frame.

Parameters:
    robot_config (string): robot file with the action space; empty = the built-in dot space.
    size (int, 16..1024): image width and height [224].
    dot_radius (int, 0..64): disc radius [5].
    move_pixels (int, 0..1024): x displacement of action 1 [27].
    seed (int, -1..2^31-1): RNG seed for start/reset positions; -1 = random [-1].
    action_delay (float, 0..10 s): wait between executing an action and publishing the frame [0].
    frame_id (string): header.frame_id of frames [camera].

A bad parameter or robot file is one line on stderr and exit status 2.
"""

from __future__ import annotations

import sys

from builtin_interfaces.msg import Time
from geometry_msgs.msg import PointStamped
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger

from devbot import topics
from devbot.action_space import ActionError, ActionSpace
from devbot.image import numpy_to_image
from devbot.messages import action_to_joint_state, joint_state_to_action
from devbot.params import declare
from devbot.spin import create_node, ros_process, spin_until
from toroidal_sim.env import DOT_ACTION_SPACE, ToroidalDotConfig, ToroidalDotEnv


class ToroidalSimNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('toroidal_sim', **kwargs)
        robot_config = declare(
            self, 'robot_config', '', 'robot file with the action space; empty = built-in dot space'
        )
        size = declare(self, 'size', 224, 'image width and height (pixels)', int_range=(16, 1024))
        radius = declare(self, 'dot_radius', 5, 'disc radius (pixels)', int_range=(0, 64))
        move = declare(
            self, 'move_pixels', 27, 'x displacement of action 1 (pixels)', int_range=(0, 1024)
        )
        seed = declare(
            self,
            'seed',
            -1,
            'RNG seed for start/reset positions; -1 = random',
            int_range=(-1, 2**31 - 1),
        )
        self._action_delay = declare(
            self,
            'action_delay',
            0.0,
            'seconds between executing an action and publishing its frame',
            float_range=(0.0, 10.0),
        )
        self._frame_id = declare(self, 'frame_id', 'camera', 'header.frame_id of published frames')

        self.action_space = (
            ActionSpace.from_yaml(robot_config) if robot_config else DOT_ACTION_SPACE
        )
        if (
            self.action_space.channel_names != DOT_ACTION_SPACE.channel_names
            or self.action_space.actions != DOT_ACTION_SPACE.actions
        ):
            raise ValueError(
                f'{robot_config}: the toroidal sim executes only {DOT_ACTION_SPACE.to_dict()}'
            )
        self.env = ToroidalDotEnv(
            ToroidalDotConfig(
                size=size, dot_radius=radius, move_pixels=move, seed=None if seed < 0 else seed
            )
        )

        qos = topics.loop_qos()
        # a new subscriber gets the current frame again, so nobody waits for a frame published
        # before it joined
        self._image_pub = topics.ResendingPublisher(self, Image, topics.CAMERA_IMAGE, qos)
        self._executed_pub = self.create_publisher(JointState, topics.MOTOR_EXECUTED, qos)
        self._position_pub = self.create_publisher(PointStamped, topics.DOT_POSITION, qos)
        self.create_subscription(JointState, topics.MOTOR_COMMAND, self._on_command, qos)
        self.create_service(Trigger, topics.RESET_SERVICE, self._on_reset)

        self._image = Image()
        self._image.header.frame_id = self._frame_id
        self._position = PointStamped()
        self._position.header.frame_id = self._frame_id
        self._executed = JointState()
        self._pending_timer = None
        self.steps = 0
        self.rejected = 0
        self._publish_frame(self.env.frame())
        self.get_logger().info(
            f'dot at {self.env.position}, {size}x{size}, radius {radius}, move {move}px'
        )

    # ------------------------------------------------------------------ callbacks

    def _on_command(self, msg: JointState) -> None:
        try:
            action = joint_state_to_action(self.action_space, msg)
        except ActionError as exc:
            self.rejected += 1
            self.get_logger().error(
                f'rejected motor_command {list(msg.name)}={list(msg.position)}: {exc}'
            )
            return
        if self._pending_timer is not None:
            self.rejected += 1
            self.get_logger().error(
                'rejected motor_command: the previous action is still being executed'
            )
            return
        frame = self.env.step(action)
        self.steps += 1
        # completion time = capture time of the resulting frame: executed, position and frame
        # share one stamp, so consumers pair an action with its outcome exactly
        stamp = self.get_clock().now().to_msg()
        self._executed_pub.publish(
            action_to_joint_state(self.action_space, action, stamp, self._executed)
        )
        if self._action_delay > 0.0:
            self._pending_timer = self.create_timer(
                self._action_delay, lambda: self._publish_delayed(frame, stamp)
            )
        else:
            self._publish_frame(frame, stamp)

    def _publish_delayed(self, frame, stamp: Time) -> None:
        self.destroy_timer(self._pending_timer)
        self._pending_timer = None
        self._publish_frame(frame, stamp)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._publish_frame(self.env.reset())
        response.success = True
        response.message = f'dot at {self.env.position}'
        return response

    # ------------------------------------------------------------------ publishing

    def _publish_frame(self, frame, stamp: Time | None = None) -> None:
        if stamp is None:
            stamp = self.get_clock().now().to_msg()
        self._position.header.stamp = stamp
        self._position.point.x, self._position.point.y = float(self.env.x), float(self.env.y)
        self._position_pub.publish(self._position)
        self._image.header.stamp = stamp
        numpy_to_image(frame, 'rgb8', self._image)
        self._image_pub.publish(self._image)


def main(args: list[str] | None = None) -> int:
    with ros_process(args) as stop:
        node = create_node(
            ToroidalSimNode, 'toroidal_sim_node', (ValueError,)
        )  # a bad parameter or robot file
        if node is None:
            return 2
        try:
            spin_until(node, stop)
        finally:
            print(f'executed {node.steps} actions, rejected {node.rejected} commands', flush=True)
            node.destroy_node()
    return 0


if __name__ == '__main__':
    sys.exit(main())
