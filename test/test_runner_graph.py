"""The dot robot and a selector as separate processes over real DDS, started by the launcher."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time

from geometry_msgs.msg import PointStamped
from graphtest import BIN, REPO, pid_alive
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger

RUNNER = 'launch/toroidal_dot_runner.launch.yaml'
NS = '/toroidal_dot/'


def stamp_of(msg) -> tuple[int, int]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def test_sequence_run_moves_the_dot_27px_per_move_and_ends_with_statistics(launch, probe, tmp_path):
    positions = probe.record(PointStamped, NS + 'ground_truth/dot_position')
    executed = probe.record(JointState, NS + 'motor_command/executed')
    # action_delay slows the run to ~13 s: discovery of the probe (up to a few seconds on a
    # loaded machine) costs only the first steps
    run = launch(
        RUNNER,
        'selector:=sequence',
        'sequence:=DOUBLE_MOVE',
        'max_steps:=90',
        'seed:=5',
        'action_delay:=0.15',
        f'report_dir:={tmp_path}',
    )
    # the probe keeps spinning while the launch runs, so it sees the messages live
    assert probe.spin_until(lambda: run.proc.poll() is not None, timeout=60), run.output
    probe.spin_until(lambda: False, timeout=0.5)  # drain what is still in flight
    assert run.wait(10) == 0, run.output

    # max_steps ended the launch cleanly with the right statistics: 60 moves, 30 stays
    stats = json.loads((tmp_path / 'runner_stats.json').read_text())
    assert stats['steps'] == 90
    assert stats['counts'] == {'0': 30, '1': 60}
    assert math.isclose(stats['percent']['1'], 200 / 3)
    assert stats['interval_s']['min'] <= stats['interval_s']['median'] <= stats['interval_s']['max']
    assert 'steps: 90' in run.output and 'has on_exit: shutdown' in run.output

    # every executed action shares its stamp with the position it led to; check each transition
    by_stamp = {stamp_of(p): (int(p.point.x), int(p.point.y)) for p in positions}
    ordered = sorted(by_stamp)
    actions = {stamp_of(e): int(e.position[0]) for e in executed}
    assert len(actions) >= 45, f'only {len(actions)} of 90 executed actions seen'
    checked = wraps = 0
    for before, after in zip(ordered, ordered[1:]):
        if after not in actions:
            continue
        (x0, y0), (x1, y1) = by_stamp[before], by_stamp[after]
        assert y1 == y0
        assert x1 == (x0 + 27 * actions[after]) % 224, (x0, x1, actions[after])
        wraps += x1 < x0
        checked += 1
    assert checked >= 40 and wraps >= 2

    # executed in sequence order: DOUBLE_MOVE = 1, 1, 0, 1, 1, 0, ...
    seq = [actions[s] for s in sorted(actions)]
    assert any(all(a == (1, 1, 0)[(i + k) % 3] for i, a in enumerate(seq)) for k in range(3)), seq


def test_sigint_stops_every_process(launch, probe):
    positions = probe.record(PointStamped, NS + 'ground_truth/dot_position')
    run = launch(RUNNER, 'selector:=random', 'seed:=3')
    assert probe.spin_until(lambda: len(positions) > 20, timeout=30), run.output
    pids = run.child_pids()
    assert set(pids) == {'toroidal_sim', 'selector'}
    run.proc.send_signal(signal.SIGINT)
    assert run.wait(20) == 0, run.output
    time.sleep(0.2)
    assert not any(pid_alive(p) for p in pids.values()), run.output
    assert 'runner statistics' in run.output  # the selector printed its summary on the way out


def test_malformed_commands_are_rejected_and_logged_while_the_sim_keeps_serving(ros_env, probe):
    sim = subprocess.Popen(
        [
            str(BIN / 'toroidal_sim_node'),
            '--ros-args',
            '-r',
            '__ns:=/toroidal_dot',
            '-p',
            'seed:=1',
        ],
        env=ros_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        frames = probe.record(Image, NS + 'camera/image_raw')
        executed = probe.record(JointState, NS + 'motor_command/executed')
        pub = probe.node.create_publisher(JointState, NS + 'motor_command', 10)
        # the sim re-sends its current frame to a new subscriber: the probe gets the start frame
        assert probe.spin_until(
            lambda: (
                frames
                and pub.get_subscription_count() > 0
                and probe.matched(NS + 'motor_command/executed')
            ),
            timeout=20,
        )
        stay = JointState(name=['action'], position=[0.0], velocity=[0.0], effort=[0.0])
        move = JointState(name=['action'], position=[1.0], velocity=[0.0], effort=[0.0])
        # a good command first: once it is executed, the connection surely stands (a stay
        # re-sent while discovery settles may be executed more than once: count them)
        deadline = time.monotonic() + 20
        while not executed and time.monotonic() < deadline:
            pub.publish(stay)
            probe.spin_until(lambda: bool(executed), timeout=1.0)
        probe.spin_until(lambda: False, timeout=1.0)
        stays = len(executed)
        assert stays >= 1
        bad = [
            JointState(name=['bogus'], position=[1.0]),
            JointState(name=['action'], position=[float('nan')]),
            JointState(name=['action'], position=[2.0]),
            JointState(name=['action'], position=[0.5]),
            JointState(name=[], position=[]),
        ]
        for msg in bad:
            pub.publish(msg)
        pub.publish(move)
        assert probe.spin_until(lambda: len(executed) == stays + 1, timeout=10)
        assert [e.position[0] for e in executed] == [0.0] * stays + [1.0]

        client = probe.node.create_client(Trigger, NS + 'reset')
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(Trigger.Request())
        probe.executor.spin_until_future_complete(future, timeout_sec=10)
        assert future.result().success and 'dot at' in future.result().message
        assert probe.spin_until(lambda: len(frames) >= 3, timeout=10)
        assert sim.poll() is None, 'the sim must keep running after bad commands'
    finally:
        sim.send_signal(signal.SIGINT)
        out = sim.communicate(timeout=20)[0]
    assert sim.returncode == 0, out
    assert out.count('rejected motor_command') == len(bad), out
    for reason in (
        'unknown channel',
        'non-finite',
        'outside its range',
        'not one of',
        'missing channel',
    ):
        assert reason in out, reason
    assert f'executed {stays + 1} actions, rejected 5 commands' in out


ONE_PIXEL_FRAME = Image(height=1, width=1, encoding='rgb8', step=3, data=bytes(3))
ONE_PIXEL_FRAME.header.stamp.sec = 1


def positions(commands: list) -> list[list[float]]:
    return [list(m.position) for m in commands]


def _move_selector_cmd(*params: str) -> list[str]:
    """selector_node in /toroidal_dot answering every frame with "move", plus ``params``."""
    cmd = [str(BIN / 'selector_node'), '--ros-args', '-r', '__ns:=/toroidal_dot']
    for param in (
        'robot_config:=config/toroidal_dot.yaml',
        'policy:=constant',
        'action:=1',
        *params,
    ):
        cmd += ['-p', param]
    return cmd


def test_the_first_command_waits_until_the_robot_itself_listens(node_process, probe):
    """A command published before the robot's reader matched is lost, and the closed loop then
    waits forever for its outcome. Another reader of motor_command (a recorder, a viewer)
    matching first must not count: the selector holds the trigger until the robot listens."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    seen_by_other = probe.record(JointState, NS + 'motor_command')
    robot = rclpy.create_node('fake_robot', context=probe.context)
    probe.executor.add_node(robot)
    camera = robot.create_publisher(Image, NS + 'camera/image_raw', reliable)
    selector = node_process(_move_selector_cmd())
    try:
        assert probe.spin_until(
            lambda: (
                camera.get_subscription_count() > 0
                and probe.node.count_publishers(NS + 'motor_command') > 0
            ),
            timeout=20,
        )
        camera.publish(ONE_PIXEL_FRAME)
        # the other reader has matched the selector, the robot does not listen: the selector
        # says it waits, and nothing is sent
        assert probe.spin_until(
            lambda: 'waiting for the robot to subscribe to motor_command' in selector.output,
            timeout=20,
        ), selector.output
        probe.spin_until(lambda: False, timeout=0.5)
        assert seen_by_other == []
        seen_by_robot: list = []
        robot.create_subscription(JointState, NS + 'motor_command', seen_by_robot.append, reliable)
        assert probe.spin_until(lambda: seen_by_robot and seen_by_other, timeout=20)
        probe.spin_until(lambda: False, timeout=0.5)
        assert positions(seen_by_robot) == [[1.0]] == positions(seen_by_other)
    finally:
        probe.executor.remove_node(robot)
        robot.destroy_node()
    assert selector.stop() == 0, selector.output
    assert 'steps: 1 ' in selector.output, selector.output


class FakeRobotAndRecorder:
    """A robot (publishes camera frames, records the commands it receives) and a recorder (its
    recorder/ready latched, its readers created by the test) as nodes of the probe."""

    def __init__(self, probe) -> None:
        import rclpy
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from std_msgs.msg import Bool

        self.probe, self.bool = probe, Bool
        self.reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self.robot = rclpy.create_node('fake_robot', context=probe.context)
        self.recorder = rclpy.create_node(
            'recorder', namespace='/toroidal_dot', context=probe.context
        )
        for node in (self.robot, self.recorder):
            probe.executor.add_node(node)
        self.camera = self.robot.create_publisher(Image, NS + 'camera/image_raw', self.reliable)
        self.seen_by_robot: list = []
        self.robot.create_subscription(
            JointState, NS + 'motor_command', self.seen_by_robot.append, self.reliable
        )
        self.seen_by_recorder: list = []
        self.ready = self.recorder.create_publisher(Bool, 'recorder/ready', latched)

    def record_commands(self) -> None:
        """The recorder's reader on motor_command."""
        self.recorder.create_subscription(
            JointState, 'motor_command', self.seen_by_recorder.append, self.reliable
        )

    def send_frame_once_the_selector_listens(self) -> None:
        assert self.probe.spin_until(
            lambda: (
                self.camera.get_subscription_count() > 0 and self.ready.get_subscription_count() > 0
            ),
            timeout=20,
        )
        self.camera.publish(ONE_PIXEL_FRAME)

    def assert_both_receive_the_first_command(self) -> None:
        assert self.probe.spin_until(lambda: self.seen_by_robot and self.seen_by_recorder, 20)
        self.probe.spin_until(lambda: False, timeout=0.5)
        assert positions(self.seen_by_robot) == [[1.0]] == positions(self.seen_by_recorder)

    def close(self) -> None:
        for node in (self.robot, self.recorder):
            self.probe.executor.remove_node(node)
            node.destroy_node()


def test_with_wait_for_recorder_the_first_command_waits_for_recorder_ready(node_process, probe):
    """The recorder's subscriptions on the graph do not mean it receives: DDS may match the
    robot's writers with it seconds later, and the session would miss its first transitions. The
    selector holds the first command until the recorder publishes true on recorder/ready."""
    fake = FakeRobotAndRecorder(probe)
    for topic in ('camera/image_raw', 'motor_command/executed'):
        fake.recorder.create_subscription(Image, topic, lambda _: None, fake.reliable)
    fake.record_commands()
    fake.ready.publish(fake.bool(data=False))
    selector = node_process(_move_selector_cmd('wait_for_recorder:=true'))
    try:
        fake.send_frame_once_the_selector_listens()
        assert probe.spin_until(
            lambda: 'waiting for recorder/ready before the first command' in selector.output,
            timeout=20,
        ), selector.output
        # robot and recorder subscribed long past the settle time: still nothing is sent
        probe.spin_until(lambda: False, timeout=2.0)
        assert fake.seen_by_robot == [] == fake.seen_by_recorder
        fake.ready.publish(fake.bool(data=True))
        fake.assert_both_receive_the_first_command()
    finally:
        fake.close()
    assert selector.stop() == 0, selector.output
    assert 'steps: 1 ' in selector.output, selector.output


def test_with_wait_for_recorder_the_first_command_waits_until_it_can_reach_the_recorder(
    node_process, probe
):
    """recorder/ready says that the recorder's readers matched their writers; the selector's
    writer learns of the recorder's reader on its own, later under load (a replayed session
    once lost its first command so). Here the recorder reports ready before it has a reader on
    motor_command at all: the first command waits for that reader."""
    fake = FakeRobotAndRecorder(probe)
    fake.ready.publish(fake.bool(data=True))
    selector = node_process(_move_selector_cmd('wait_for_recorder:=true'))
    try:
        fake.send_frame_once_the_selector_listens()
        # the robot listens and the recorder said ready, long past the settle time: nothing yet
        probe.spin_until(lambda: False, timeout=2.0)
        assert fake.seen_by_robot == [], selector.output
        fake.record_commands()
        fake.assert_both_receive_the_first_command()
    finally:
        fake.close()
    assert selector.stop() == 0, selector.output
    assert 'steps: 1 ' in selector.output, selector.output


def test_a_setup_mistake_at_start_is_one_clear_line_and_exit_2(ros_env, tmp_path):
    robot = REPO / 'config' / 'toroidal_dot.yaml'
    cases = [
        (
            'toroidal_sim_node',
            ['-p', f'robot_config:={tmp_path / "nope.yaml"}'],
            'robot config not found',
        ),
        (
            'toroidal_sim_node',
            ['-p', f'robot_config:={REPO / "config" / "jetbot.yaml"}'],
            'the toroidal sim executes only',
        ),
        ('selector_node', [], 'parameter robot_config is required'),
        (
            'selector_node',
            ['-p', f'robot_config:={robot}', '-p', 'policy:=sequence', '-p', 'sequence:=ZIGZAG'],
            "sequence 'ZIGZAG' is neither one of",
        ),
        (
            'selector_node',
            [
                '-p',
                f'robot_config:={robot}',
                '-p',
                'policy:=recorded',
                '-p',
                f'session:={tmp_path / "no_such_session"}',
            ],
            'no such session directory',
        ),
    ]
    for program, params, expected in cases:
        run = subprocess.run(
            [str(BIN / program), '--ros-args', '-r', '__ns:=/toroidal_dot', *params],
            env=ros_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 2, run
        assert 'Traceback' not in run.stdout + run.stderr, run
        assert f'{program}: cannot start: ' in run.stderr and expected in run.stderr, run.stderr
