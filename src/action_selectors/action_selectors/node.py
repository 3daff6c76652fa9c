"""ROS 2 selector node: runs one policy from :mod:`action_selectors.policies` in the loop.

In runner mode (``trigger: frame``) it answers every new camera frame with one command; beside
a world model (``trigger: scores``) it answers every ``world_model/action_scores`` message,
which the world model publishes only while its quality gate is open.

Subscribed topics:
    camera/image_raw (sensor_msgs/Image): triggers a command (trigger=frame). Frames are
        de-duplicated by header.stamp (the robot re-sends its current frame to late joiners).
    world_model/action_scores (sensor_msgs/JointState): triggers a command (trigger=scores);
        name = candidate labels, position = uncertainty; de-duplicated by header.stamp.
    recorder/ready (std_msgs/Bool, latched; only with wait_for_recorder): the recorder
        receives every loop topic.

Published topics:
    motor_command (sensor_msgs/JointState): the chosen discrete action. The first one goes out
        only once the robot (the node publishing camera/image_raw) has subscribed for
        LISTENER_SETTLE_S; until then the trigger is kept and re-tried, because a command lost
        before the robot listens would stall the loop for good. With wait_for_recorder it also
        waits for recorder/ready, so a recorded session starts with its first transition.

Parameters:
    robot_config (string): robot file with the action space (required).
    policy (string): constant | sequence | random | uncertainty | recorded [sequence].
    action (int): the action of the constant policy [0].
    sequence (string): predefined name (ALWAYS_MOVE, ALWAYS_STAY, ALTERNATE, DOUBLE_MOVE,
        TRIPLE_MOVE) or a comma-separated list of indices [ALWAYS_MOVE].
    session (string): for policy recorded, the session (bag folder) whose actions are replayed in
        order; the run ends cleanly after the last one [''].
    filter (string): for policy recorded, keep only matching transitions (whole transitions,
        never just an action), e.g. ``actions=1`` or ``from=10; to=60`` [''].
    seed (int): RNG seed of random/uncertainty policies; -1 = random [-1].
    random_choice_probability (double): for policy uncertainty, the probability of a uniformly
        random candidate instead of the most uncertain one [0.25].
    trigger (string): frame | scores; empty = scores for uncertainty, frame otherwise [''].
    wait_for_recorder (bool): send no command before the recorder publishes true on
        recorder/ready (it has matched the publishers of motor_command, motor_command/executed
        and camera/image_raw) and motor_command has matched the recorder's reader besides the
        robot's (set by the launch files' ``record:=true``) [false].
    report_dir (string): write runner_stats.json here at the end; empty = no file [''].
    max_steps (int): stop after this many actions (0 = run until stopped) [0]. The node then
        waits for the trigger that follows its last action, prints the runner statistics and
        exits with status 0 (use ``on_exit: shutdown`` in a launch file to end the launch).

A setup mistake (a missing or bad parameter, robot file or recorded session) is one line on
stderr and exit status 2.
"""

from __future__ import annotations

import sys
import time

from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool

from action_selectors.policies import RANDOM_CHOICE_PROBABILITY, make_policy
from action_selectors.recorded import RecordedPolicy, RecordingFinished
from action_selectors.stats import RunnerStats
from action_selectors.wiring import declare_policy_params, wire_trigger
from devbot import topics
from devbot.bag.session import BagError
from devbot.cdr import header_stamp
from devbot.messages import action_to_joint_state
from devbot.params import declare
from devbot.spin import create_node, ros_process, spin_until

# seconds between progress lines
PROGRESS_PERIOD_S = 2.0
# seconds the robot's (and, with wait_for_recorder, the recorder's) subscriptions must have
# been visible before the first command: covers their readers matching this node's writer
LISTENER_SETTLE_S = 0.5
# log the wait for the robot only when it lasts this long (normally it takes milliseconds)
ROBOT_WAIT_LOG_S = 2.0


class SelectorNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('selector', **kwargs)
        params = declare_policy_params(
            self,
            'constant | sequence | random | uncertainty | recorded',
            'RNG seed of random/uncertainty policies',
        )
        trigger = declare(
            self, 'trigger', '', 'frame | scores; empty = scores for uncertainty, else frame'
        )
        session = str(
            declare(
                self,
                'session',
                '',
                'policy recorded: the session (bag folder) to replay',
                dynamic_typing=True,
            )
        )
        random_choice_probability = declare(
            self,
            'random_choice_probability',
            RANDOM_CHOICE_PROBABILITY,
            'policy uncertainty: probability of a random candidate instead of the most uncertain',
            float_range=(0.0, 1.0),
        )
        transition_filter = declare(
            self,
            'filter',
            '',
            'policy recorded: keep only these transitions, e.g. actions=1 or "from=10; to=60"',
        )
        self.max_steps = declare(
            self,
            'max_steps',
            0,
            'stop after this many actions; 0 = unlimited',
            int_range=(0, 2**31 - 1),
        )
        self.wait_for_recorder = declare(
            self,
            'wait_for_recorder',
            False,
            'send no command before the recorder reports on recorder/ready that it receives '
            'the loop topics',
        )
        self.report_dir = declare(
            self, 'report_dir', '', 'write runner_stats.json here at the end; empty = no file'
        )
        self.action_space = params.action_space
        policy = params.policy
        if policy == 'recorded':
            if not session:
                raise ValueError(
                    'policy recorded needs the session parameter (a recorded bag folder)'
                )
            self.policy = RecordedPolicy(session, self.action_space, transition_filter)
        else:
            self.policy = make_policy(
                policy,
                self.action_space.num_actions,
                action=params.action,
                sequence=params.sequence,
                seed=params.seed,
                random_choice_probability=random_choice_probability,
            )
        self.trigger = trigger or ('scores' if policy == 'uncertainty' else 'frame')
        self._command_pub, _ = wire_trigger(self, self.trigger, self._on_frame, self._on_scores)
        self.stats = RunnerStats(self.action_space.num_actions)
        self.done = False
        self._last_stamp = None
        self._command = JointState()
        self._retry_timer = None
        self._pending_scores = None
        self._listeners_seen: float | None = None
        self._waiting_since = 0.0
        self._robot_wait_logged = False
        self._listeners_ready = False
        self._recorder_ready = False
        if self.wait_for_recorder:
            self.create_subscription(
                Bool, topics.RECORDER_READY, self._on_recorder_ready, topics.state_qos()
            )
        self._next_progress = time.monotonic() + PROGRESS_PERIOD_S
        self.get_logger().info(
            f'policy {policy}, triggered by {self.trigger}, {self.action_space.num_actions} actions'
            + (
                f', random choice probability {random_choice_probability:g}'
                if policy == 'uncertainty'
                else ''
            )
            + (f', max_steps {self.max_steps}' if self.max_steps else '')
        )

    def _on_recorder_ready(self, msg: Bool) -> None:
        self._recorder_ready = msg.data

    def _on_frame(self, serialized: bytes) -> None:
        stamp = header_stamp(serialized)
        if stamp == self._last_stamp:
            return  # the same frame re-sent to a late joiner
        self._last_stamp = stamp
        self._act(None)

    def _on_scores(self, msg: JointState) -> None:
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        if stamp == self._last_stamp:
            return  # the same scores re-sent to a late joiner
        self._last_stamp = stamp
        self._act(dict(zip(msg.name, msg.position)))

    def _act(self, scores) -> None:
        if self.done:
            return
        if not self._listeners_ready and not self._check_listeners(scores):
            return
        if self.max_steps and self.stats.steps >= self.max_steps:
            self.done = True  # this trigger shows the outcome of the last action
            return
        try:
            action = self.policy.choose(scores)
        except RecordingFinished as exc:
            self.get_logger().info(str(exc))
            self.done = True
            return
        self._command_pub.publish(
            action_to_joint_state(
                self.action_space, action, self.get_clock().now().to_msg(), self._command
            )
        )
        now = time.monotonic()
        self.stats.record(action, now)
        if now >= self._next_progress:
            self._next_progress = now + PROGRESS_PERIOD_S
            total = f'/{self.max_steps}' if self.max_steps else ''
            self.get_logger().info(f'step {self.stats.steps}{total}')

    def _check_listeners(self, scores) -> bool:
        """True once the robot has subscribed (and, if wait_for_recorder, the recorder has
        reported ready and this node's command writer has matched a second reader, the
        recorder's) for LISTENER_SETTLE_S; until then the trigger is kept and re-tried by a
        timer. The robot must listen before the first command or that command is lost; the
        recorder must receive commands, executed actions and frames, so a recorded session
        starts with its first transition. The settle time covers their readers matching this
        node's writer after this node has seen them in the graph."""
        robot = topics.robot_subscribed(self, self._command_pub)
        # ready means the recorder's readers matched their writers; this writer must also have
        # matched the recorder's reader (discovery runs both ways, seconds apart under load)
        recorder = not self.wait_for_recorder or (
            self._recorder_ready and self._command_pub.get_subscription_count() >= 2
        )
        now = time.monotonic()
        if robot and recorder:
            if self._listeners_seen is None:
                self._listeners_seen = now
            if now - self._listeners_seen >= LISTENER_SETTLE_S:
                self._listeners_ready = True
                if self._retry_timer is not None:
                    self.destroy_timer(self._retry_timer)
                    self._retry_timer = None
                return True
        else:
            self._listeners_seen = None
        self._pending_scores = scores
        if self._retry_timer is None:  # the first wait
            self._waiting_since = now
            if not recorder:
                self.get_logger().info('waiting for recorder/ready before the first command')
            self._retry_timer = self.create_timer(0.1, lambda: self._act(self._pending_scores))
        elif (
            not robot
            and not self._robot_wait_logged
            and now - self._waiting_since >= ROBOT_WAIT_LOG_S
        ):
            self._robot_wait_logged = True
            self.get_logger().warning(
                'waiting for the robot to subscribe to motor_command '
                '(no node that publishes camera/image_raw listens yet)'
            )
        return False

    def summary_text(self) -> str:
        """The runner statistics (also written to report_dir, if set)."""
        labels = {
            i: ', '.join(f'{k}={v:g}' for k, v in self.action_space.values(i).items())
            for i in range(self.action_space.num_actions)
        }
        return self.stats.finish(labels, self.report_dir)


def main(args: list[str] | None = None) -> int:
    with ros_process(args) as stop:
        # a bad parameter, robot file or recorded session: one line, exit 2
        node = create_node(SelectorNode, 'selector_node', (ValueError, BagError))
        if node is None:
            return 2
        try:
            spin_until(node, stop, lambda: node.done)
        finally:
            print(node.summary_text(), flush=True)
            node.destroy_node()
    return 0


if __name__ == '__main__':
    sys.exit(main())
