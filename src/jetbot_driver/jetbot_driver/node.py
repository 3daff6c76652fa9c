"""ROS 2 JetBot driver node (a thin wrapper over :mod:`jetbot_driver.worker` and friends).

Connects to a JetBot RPyC service (the real robot's ``jetbot_server``, an existing JetBot
server, or ``jetbot_sim_server``), streams its camera and executes discrete actions.

Threading: all robot I/O (RPyC calls, the 15 ms ramp steps, the hold) runs on one worker
thread that owns the connection (:class:`jetbot_driver.worker.RobotWorker`); this node's
single-threaded executor only validates messages, hands them over and publishes what the
worker reports (woken by a guard condition). A blocking RPyC call or a 0.25 s action therefore
never blocks the executor, and the connection is never used from two threads at once.

Subscribed topics:
    motor_command (sensor_msgs/JointState): one discrete action of the robot file, channels
        motor_left, motor_right, duration. Rejected with a logged error, motors untouched: an
        unknown/missing channel, NaN/inf, a value out of a channel's range, not one of the
        discrete actions, a duration that is negative or above max_duration. Refused with a
        warning while the previous action is still running.
    cmd_vel (geometry_msgs/Twist): teleop (enable_cmd_vel); linear.x (m/s) and angular.z
        (rad/s) -> wheel speeds (differential drive), clamped to max_speed; the watchdog stops
        the motors when no cmd_vel arrives for watchdog_timeout s while moving.

Published topics:
    camera/image_raw (sensor_msgs/Image, rgb8, image_size^2): streamed at camera_rate while
        idle, plus a fresh frame after every executed action; header.stamp = capture time
        (>= the executed stamp for the post-action frame). The last frame is re-sent (same
        stamp) to a subscriber that joins late.
    motor_command/executed (sensor_msgs/JointState): the executed action; header.stamp =
        completion time (right after the ramp-down).

Parameters:
    robot_config (string): robot file with the action space (required).
    jetbot_ip (string): address of the JetBot service [127.0.0.1].
    port (int, 1..65535): its TCP port [18861].
    sync_request_timeout (float, 1..300 s): RPyC request timeout [30].
    connect_timeout (float, 0..300 s): keep retrying the first connection this long [10].
    camera_rate (float, 0..60 Hz): idle stream rate; 0 = frames only after actions [10].
    image_size (int, 16..1024): published frame size; other camera sizes are resized [224].
    max_speed (float, 0..1): every motor value is clamped to [-max_speed, max_speed] [1].
    max_duration (float, 0.01..60 s): longest accepted action [5].
    watchdog_timeout (float, 0.05..10 s): stop a cmd_vel drive after this silence [0.5].
    enable_cmd_vel (bool): subscribe to cmd_vel [true].
    wheel_separation (float, 0.01..2 m): for cmd_vel [0.12].
    max_wheel_speed (float, 0.01..10 m/s): wheel speed at motor value 1, for cmd_vel [0.6].
    post_action_delay (float, 0..2 s): settle time before the post-action frame [0].
    heartbeat_period (float, 0.1..60 s): link check period when nothing else talks to it [1].
    frame_id (string): header.frame_id of frames [camera].
    ssl_keyfile, ssl_certfile, ssl_ca_certs (string): TLS to a server started with its
        --ssl-* options (ca_certs pins the robot's certificate); empty = plain TCP [''].

Exit status: 0 on Ctrl-C/SIGTERM (motors stopped); 1 when the connection is lost or cannot be
made, or on any robot error (motors stopped when still possible, one error logged), so a
launch file ends the whole graph cleanly. A connection lost less than STOP_GRACE_S before a stop
signal is the JetBot server stopping first (a launch file signals all its processes at once): an
info line and exit status 0, no error.
"""

from __future__ import annotations

import sys
import time

from geometry_msgs.msg import Twist
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image, JointState

from devbot import topics
from devbot.action_space import ActionError, ActionSpace
from devbot.image import numpy_to_image
from devbot.messages import action_to_joint_state, joint_state_to_action
from devbot.params import declare
from devbot.spin import ros_process, spin_until
from jetbot_driver import protocol
from jetbot_driver.client import ConnectionLost, JetBotClient
from jetbot_driver.motion import MotionError, MotionLimits, twist_to_wheels
from jetbot_driver.worker import Executed, Fatal, Frame, Notice, RobotWorker, WorkerConfig

CHANNELS = ('motor_left', 'motor_right', 'duration')
CMD_VEL = 'cmd_vel'


def check_action_space(space: ActionSpace, limits: MotionLimits) -> list[str]:
    """Check a robot file against the driver; returns warnings, raises ValueError when unusable."""
    missing = [c for c in CHANNELS if c not in space.channel_names]
    extra = [c for c in space.channel_names if c not in CHANNELS]
    if missing or extra:
        raise ValueError(
            f'the JetBot driver needs exactly the channels {list(CHANNELS)}; '
            f'the action space has {list(space.channel_names)}'
        )
    warnings = []
    for i in range(space.num_actions):
        v = space.values(i)
        try:
            limits.check_duration(v['duration'])
        except MotionError as exc:
            raise ValueError(f'action {i} {v}: {exc}') from None
        for ch in ('motor_left', 'motor_right'):
            if abs(v[ch]) > limits.max_speed:
                warnings.append(
                    f'action {i}: {ch}={v[ch]} is clamped to max_speed {limits.max_speed}'
                )
    return warnings


# a lost connection waits this long for a stop signal before it counts as a failure: on a
# launch file's shutdown the server may stop (and close the connection) just before the driver
# gets its own signal
STOP_GRACE_S = 1.0


class JetBotDriverNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('jetbot_driver', **kwargs)
        robot_config = declare(
            self, 'robot_config', '', 'robot file with the action space (required)'
        )
        ip = declare(self, 'jetbot_ip', protocol.DEFAULT_HOST, 'address of the JetBot RPyC service')
        port = declare(
            self,
            'port',
            protocol.DEFAULT_PORT,
            'TCP port of the JetBot RPyC service',
            int_range=(1, 65535),
        )
        request_timeout = declare(
            self,
            'sync_request_timeout',
            protocol.SYNC_REQUEST_TIMEOUT_S,
            'RPyC synchronous request timeout (s)',
            float_range=(1.0, 300.0),
        )
        connect_timeout = declare(
            self,
            'connect_timeout',
            10.0,
            'keep retrying the first connection this long (s)',
            float_range=(0.0, 300.0),
        )
        camera_rate = declare(
            self,
            'camera_rate',
            10.0,
            'idle camera stream rate (Hz); 0 = frames only after actions',
            float_range=(0.0, 60.0),
        )
        self.image_size = declare(
            self,
            'image_size',
            protocol.FRAME_SIZE,
            'published frame width and height; other camera sizes are resized',
            int_range=(16, 1024),
        )
        max_speed = declare(
            self,
            'max_speed',
            1.0,
            'motor values are clamped to [-max_speed, max_speed]',
            float_range=(0.0, 1.0),
        )
        max_duration = declare(
            self,
            'max_duration',
            5.0,
            'longest accepted action duration (s)',
            float_range=(0.01, 60.0),
        )
        watchdog = declare(
            self,
            'watchdog_timeout',
            0.5,
            'stop a cmd_vel drive after this long without cmd_vel (s)',
            float_range=(0.05, 10.0),
        )
        enable_cmd_vel = declare(
            self, 'enable_cmd_vel', True, 'accept geometry_msgs/Twist on cmd_vel (teleop)'
        )
        self.wheel_separation = declare(
            self,
            'wheel_separation',
            0.12,
            'distance between the wheels (m), for cmd_vel',
            float_range=(0.01, 2.0),
        )
        self.max_wheel_speed = declare(
            self,
            'max_wheel_speed',
            0.6,
            'wheel speed at motor value 1 (m/s), for cmd_vel',
            float_range=(0.01, 10.0),
        )
        post_action_delay = declare(
            self,
            'post_action_delay',
            0.0,
            'settle time between the ramp-down and the post-action frame (s)',
            float_range=(0.0, 2.0),
        )
        heartbeat = declare(
            self,
            'heartbeat_period',
            1.0,
            'check the link this often when idle (s)',
            float_range=(0.1, 60.0),
        )
        self._frame_id = declare(self, 'frame_id', 'camera', 'header.frame_id of published frames')
        ssl_keyfile = declare(self, 'ssl_keyfile', '', 'TLS: client key (PEM); empty = plain TCP')
        ssl_certfile = declare(
            self, 'ssl_certfile', '', 'TLS: client certificate (PEM); empty = plain TCP'
        )
        ssl_ca_certs = declare(
            self, 'ssl_ca_certs', '', 'TLS: CA/certificate the robot must present; empty = no check'
        )

        if not robot_config:
            raise ValueError('parameter robot_config is required (e.g. config/jetbot.yaml)')
        self.action_space = ActionSpace.from_yaml(robot_config)
        self.limits = MotionLimits(max_speed=max_speed, max_duration=max_duration)
        for warning in check_action_space(self.action_space, self.limits):
            self.get_logger().warning(warning)

        self.done = False
        self.failure: str | None = None
        # (text, monotonic time) of a lost connection not yet declared a failure (STOP_GRACE_S)
        self.lost: tuple[str, float] | None = None
        self.steps = 0
        self.rejected = 0
        self.refused = 0
        self.frames = 0

        address = f'{ip}:{port}'
        self.get_logger().info(f'connecting to the JetBot at {address} ...')
        client = JetBotClient.connect(
            ip,
            port,
            image_size=self.image_size,
            sync_request_timeout=request_timeout,
            connect_timeout=connect_timeout,
            ssl_keyfile=ssl_keyfile,
            ssl_certfile=ssl_certfile,
            ssl_ca_certs=ssl_ca_certs,
        )

        qos = topics.loop_qos()
        # a new subscriber gets the last frame again (see ResendingPublisher)
        self._image_pub = topics.ResendingPublisher(self, Image, topics.CAMERA_IMAGE, qos)
        self._executed_pub = self.create_publisher(JointState, topics.MOTOR_EXECUTED, qos)
        self.create_subscription(JointState, topics.MOTOR_COMMAND, self._on_command, qos)
        if enable_cmd_vel:
            self.create_subscription(Twist, CMD_VEL, self._on_cmd_vel, 10)
        self._executed = JointState()
        self._wake = self.create_guard_condition(self._on_worker_events)
        config = WorkerConfig(
            camera_period=1.0 / camera_rate if camera_rate > 0 else 0.0,
            watchdog_timeout=watchdog,
            heartbeat_period=heartbeat,
            post_action_delay=post_action_delay,
        )
        self.worker = RobotWorker(
            client,
            self.limits,
            config,
            now_ns=lambda: self.get_clock().now().nanoseconds,
            notify=self._wake.trigger,
        ).start()
        self.get_logger().info(
            f'connected to {address}: {self.action_space.num_actions} actions, camera '
            f'{f"{camera_rate:g} Hz" if camera_rate > 0 else "after actions only"}, '
            f'{self.image_size}x{self.image_size}, max_speed {max_speed:g}, '
            f'cmd_vel {"on" if enable_cmd_vel else "off"}'
        )

    # ------------------------------------------------------------------ commands (executor)

    def _on_command(self, msg: JointState) -> None:
        try:
            index = joint_state_to_action(self.action_space, msg)
            v = self.action_space.values(index)
            left, right, duration = self.limits.check_action(
                v['motor_left'], v['motor_right'], v['duration']
            )
        except (ActionError, MotionError) as exc:
            self.rejected += 1
            self.get_logger().error(
                f'rejected motor_command {list(msg.name)}={list(msg.position)}: {exc}'
            )
            return
        why = self.worker.submit_action(index, left, right, duration)
        if why is not None:
            self.refused += 1
            self.get_logger().warning(
                f'refused motor_command (action {index}): {why}', throttle_duration_sec=2.0
            )

    def _on_cmd_vel(self, msg: Twist) -> None:
        try:
            left, right = twist_to_wheels(
                msg.linear.x,
                msg.angular.z,
                self.wheel_separation,
                self.max_wheel_speed,
                self.limits,
            )
        except MotionError as exc:
            self.rejected += 1
            self.get_logger().error(f'rejected cmd_vel: {exc}')
            return
        why = self.worker.submit_drive(left, right)
        if why is not None:
            self.refused += 1
            self.get_logger().warning(f'refused cmd_vel: {why}', throttle_duration_sec=2.0)

    # ------------------------------------------------------------------ worker reports (executor)

    def _on_worker_events(self) -> None:
        for event in self.worker.events():
            if isinstance(event, Frame):
                self._publish_frame(event)
            elif isinstance(event, Executed):
                self.steps += 1
                stamp = Time(nanoseconds=event.stamp_ns).to_msg()
                self._executed_pub.publish(
                    action_to_joint_state(self.action_space, event.index, stamp, self._executed)
                )
            elif isinstance(event, Notice):
                self.get_logger().warning(event.text, throttle_duration_sec=1.0)
            elif isinstance(event, Fatal) and not self.done and self.lost is None:
                if event.connection_lost:
                    self.lost = (event.text, time.monotonic())
                else:
                    self._declare_failure(event.text)

    def _declare_failure(self, text: str) -> None:
        self.failure = text
        self.done = True
        self.get_logger().error(f'{text}; motors stopped where possible, shutting down')

    def finished(self) -> bool:
        """The driver cannot go on: a robot error, or a connection lost STOP_GRACE_S ago."""
        if self.lost is not None and not self.done:
            text, since = self.lost
            if time.monotonic() - since >= STOP_GRACE_S:
                self._declare_failure(text)
        return self.done

    def _publish_frame(self, frame: Frame) -> None:
        msg = Image()
        msg.header.frame_id = self._frame_id
        msg.header.stamp = Time(nanoseconds=frame.stamp_ns).to_msg()
        numpy_to_image(frame.rgb, 'rgb8', msg)
        self.frames += 1
        self._image_pub.publish(msg)

    def close(self) -> None:
        """Stop the motors and the worker, close the connection (idempotent)."""
        self.worker.close()


def main(args: list[str] | None = None) -> int:
    with ros_process(args) as stop:
        try:
            node = JetBotDriverNode()
        except (ConnectionLost, ValueError) as exc:
            # print, not log: the node (and its logger) does not exist
            print(f'[jetbot_driver] ERROR: {exc}', file=sys.stderr, flush=True)
            return 1
        try:
            spin_until(node, stop, node.finished)
            if node.lost is not None and node.failure is None:
                node.get_logger().info(
                    f'the JetBot closed the connection while the driver was stopping '
                    f'({node.lost[0]})'
                )
        finally:
            node.close()  # motors stopped, on a live context
            print(
                f'executed {node.steps} actions, published {node.frames} frames, '
                f'rejected {node.rejected} and refused {node.refused} commands',
                flush=True,
            )
            node.destroy_node()
        return 1 if node.failure else 0
    return 0  # stopped while connecting


if __name__ == '__main__':
    sys.exit(main())
