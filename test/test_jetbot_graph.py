"""The JetBot driver over real RPyC (simulated JetBot server) and real DDS, separate processes."""

from __future__ import annotations

import json
import math
import re
import signal
import socket
import subprocess

import numpy as np
from geometry_msgs.msg import Twist
from graphtest import BIN, REPO
from sensor_msgs.msg import Image, JointState

from devbot.image import image_to_numpy
from jetbot_driver.client import JetBotClient

SIM_RUNNER = 'launch/jetbot_sim_runner.launch.yaml'
NS = '/jetbot/'
CONFIG = str(REPO / 'config' / 'jetbot.yaml')
TURN = ['motor_left', 'motor_right', 'duration'], [0.0, 0.12, 0.2]
EXPECTED_TURN = [
    (0.0, 0.03),
    (0.0, 0.06),
    (0.0, 0.09),
    (0.0, 0.12),
    (0.0, 0.09),
    (0.0, 0.06),
    (0.0, 0.03),
    (0.0, 0.0),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def joint_state(names, values) -> JointState:
    return JointState(
        name=list(names),
        position=[float(v) for v in values],
        velocity=[0.0] * len(values),
        effort=[0.0] * len(values),
    )


def motor_values(inspector) -> list[tuple[float, float]]:
    return [(left, right) for _, left, right in inspector.call_extra('get_motor_log')]


def close_pairs(got, expected, tol=1e-9) -> bool:
    return len(got) == len(expected) and all(
        abs(a - b) <= tol for g, e in zip(got, expected) for a, b in zip(g, e)
    )


def test_sim_runner_launch_runs_20_steps_and_pairs_every_action_with_a_later_frame(
    launch, probe, tmp_path
):
    frames = probe.record(Image, NS + 'camera/image_raw')
    executed = probe.record(JointState, NS + 'motor_command/executed')
    run = launch(
        SIM_RUNNER,
        'max_steps:=20',
        f'port:={free_port()}',
        'sequence:=ALTERNATE',
        f'report_dir:={tmp_path}',
    )
    assert probe.spin_until(lambda: run.proc.poll() is not None, timeout=90), run.output
    probe.spin_until(lambda: False, timeout=0.5)
    assert run.wait(10) == 0, run.output

    stats = json.loads((tmp_path / 'runner_stats.json').read_text())
    assert stats['steps'] == 20 and stats['counts'] == {'0': 10, '1': 10}
    assert 'runner statistics' in run.output and 'has on_exit: shutdown' in run.output
    # the driver's own count: with the camera streaming, a command sent before discovery
    # completed may be lost, or one sent on a stream frame may meet a running action (refused)
    found = re.search(
        r'executed (\d+) actions, published (\d+) frames, rejected (\d+) and refused (\d+)',
        run.output,
    )
    assert found, run.output
    done, published, rejected, refused = map(int, found.groups())
    assert 17 <= done <= 20 and done + refused <= 20 and rejected == 0 and published > done, (
        found.group(0)
    )
    assert 'Traceback' not in run.output, run.output

    # the probe misses what was sent before discovery matched it to the new processes
    assert len(executed) >= 8, f'only {len(executed)} executed actions seen'
    assert all(f.encoding == 'rgb8' and (f.width, f.height) == (224, 224) for f in frames)
    frame_stamps = sorted({stamp_ns(f) for f in frames})
    for e in executed:
        assert len(e.name) == 3 and e.position[2] == 0.2
        after = [s for s in frame_stamps if s >= stamp_ns(e)]
        assert after and after[0] - stamp_ns(e) < 10**9, (
            'a fresh frame follows every executed action'
        )
    # the turn action moves the virtual robot: consecutive post-turn frames differ
    images = {stamp_ns(f): image_to_numpy(f) for f in frames}
    turns = [stamp_ns(e) for e in executed if e.position[1] > 0]
    firsts = [
        min(s for s in frame_stamps if s >= t) for t in turns if any(s >= t for s in frame_stamps)
    ]
    diffs = [
        np.abs(images[a].astype(int) - images[b].astype(int)).mean()
        for a, b in zip(firsts, firsts[1:])
    ]
    assert diffs and min(diffs) > 1.0, diffs


def test_driver_rejects_bad_commands_untouched_executes_the_ramp_watchdogs_and_dies_with_the_server(
    ros_env, probe
):
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / 'jetbot_sim_server'), '--port', str(port), '--size', '320x240'],
        env=ros_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    driver = inspector = None
    out = ''
    try:
        inspector = JetBotClient.connect('127.0.0.1', port, connect_timeout=20)
        driver = subprocess.Popen(
            [
                str(BIN / 'jetbot_driver_node'),
                '--ros-args',
                '-r',
                '__ns:=/jetbot',
                '-p',
                f'robot_config:={CONFIG}',
                '-p',
                f'port:={port}',
                '-p',
                'camera_rate:=5.0',
                '-p',
                'watchdog_timeout:=0.3',
            ],
            env=ros_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        frames = probe.record(Image, NS + 'camera/image_raw')
        executed = probe.record(JointState, NS + 'motor_command/executed')
        pub = probe.node.create_publisher(JointState, NS + 'motor_command', 10)
        twist_pub = probe.node.create_publisher(Twist, NS + 'cmd_vel', 10)
        assert probe.spin_until(
            lambda: (
                frames
                and pub.get_subscription_count() > 0
                and twist_pub.get_subscription_count() > 0
                and probe.matched(NS + 'motor_command/executed')
            ),
            timeout=30,
        ), 'no frame from the driver'
        # the sim sends 320x240; the driver publishes 224x224 rgb8
        assert (frames[0].width, frames[0].height, frames[0].encoding) == (224, 224, 'rgb8')

        names, good = TURN
        bad = [
            joint_state(names, [0.0, math.nan, 0.2]),
            joint_state(names, [0.0, math.inf, 0.2]),
            joint_state(names, [0.0, 0.5, 0.2]),  # out of range
            joint_state(names, [0.0, 0.06, 0.2]),  # in range, not a discrete action
            joint_state(names, [0.0, 0.12, -0.2]),  # negative duration
            joint_state(names, [0.0, 0.12, 1e6]),  # huge duration
            joint_state(
                ['motor_left', 'motor_right', 'boost'], [0.0, 0.12, 1.0]
            ),  # unknown channel
            joint_state(['motor_left', 'motor_right'], [0.0, 0.12]),
        ]  # missing channel
        for msg in bad:
            pub.publish(msg)
        probe.spin_until(lambda: False, timeout=1.0)
        assert motor_values(inspector) == [], 'a rejected command must not touch the motors'
        assert not executed

        pub.publish(joint_state(names, good))
        assert probe.spin_until(lambda: executed, timeout=10)
        assert close_pairs(motor_values(inspector), EXPECTED_TURN)
        assert list(executed[0].position) == good
        assert probe.spin_until(
            lambda: any(stamp_ns(f) >= stamp_ns(executed[0]) for f in frames), timeout=5
        )

        # teleop: cmd_vel drives, silence stops it (watchdog)
        inspector.call_extra('clear_motor_log')
        for _ in range(4):
            twist_pub.publish(Twist())  # zero twist first: nothing moves
        drive = Twist()
        drive.linear.x = 0.12  # 0.12 m/s / 0.6 m/s -> motor 0.2 both sides
        for _ in range(5):
            twist_pub.publish(drive)
            probe.spin_until(lambda: False, timeout=0.1)

        def driven_then_stopped() -> bool:
            values = [(round(left, 9), round(right, 9)) for left, right in motor_values(inspector)]
            return (0.2, 0.2) in values and values[-1] == (0.0, 0.0)

        # the watchdog stops the motors 0.3 s after the last twist (a busy driver may apply
        # both late)
        assert probe.spin_until(driven_then_stopped, timeout=10), motor_values(inspector)

        # the robot vanishes (battery, network): the driver stops, says so once, exits non-zero
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        out = driver.communicate(timeout=40)[0]
        assert driver.returncode == 1, out
    finally:
        if inspector is not None:
            inspector.close()
        for proc in (driver, server):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.communicate(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    assert out.count('rejected motor_command') == len(bad), out
    for reason in (
        'non-finite',
        'outside its range',
        'not one of',
        'unknown channel',
        'missing channel',
    ):
        assert reason in out, reason
    assert 'watchdog' in out
    assert out.count('lost the connection to the JetBot') == 1, out
    assert 'executed 1 actions' in out and 'rejected 8' in out


def test_a_dying_server_ends_the_launch_with_an_error(launch, probe):
    port = free_port()
    frames = probe.record(Image, NS + 'camera/image_raw')
    run = launch(SIM_RUNNER, f'port:={port}', 'max_steps:=0', 'report_dir:=')
    assert probe.spin_until(lambda: len(frames) >= 5, timeout=40), run.output
    JetBotClient.connect('127.0.0.1', port).call_extra('die')
    rc = run.wait(40)
    assert rc == 1, run.output
    assert run.output.count('lost the connection to the JetBot') == 1, run.output
    assert 'process[jetbot_driver] has died' in run.output
    assert 'process[jetbot_sim_server] has finished cleanly' in run.output


def test_driver_without_a_robot_exits_non_zero_with_one_clear_error(ros_env):
    proc = subprocess.run(
        [
            str(BIN / 'jetbot_driver_node'),
            '--ros-args',
            '-p',
            f'robot_config:={CONFIG}',
            '-p',
            f'port:={free_port()}',
            '-p',
            'connect_timeout:=1.0',
        ],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert (proc.stdout + proc.stderr).count('no JetBot service at 127.0.0.1') == 1, proc.stderr


def test_jetbot_runner_launch_file_resolves(ros_env):
    proc = subprocess.run(
        [
            str(BIN / 'devbot'),
            'launch',
            'launch/jetbot_runner.launch.yaml',
            '--print',
            'jetbot_ip:=192.168.1.42',
            'max_steps:=5',
        ],
        cwd=REPO,
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "'jetbot_ip': '192.168.1.42'" in proc.stdout and "'port': 18861" in proc.stdout
    assert 'jetbot_driver_node' in proc.stdout and 'selector_node' in proc.stdout
    assert 'config/jetbot.yaml' in proc.stdout
