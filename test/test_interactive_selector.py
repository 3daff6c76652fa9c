"""The interactive selector in a real terminal (a pty), driving the dot robot over real DDS."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import subprocess
import termios
import threading
import time

import pytest
from graphtest import BIN, REPO
from sensor_msgs.msg import Image, JointState

# a namespace of this test run's own: graph tests of other runs on this machine may share the
# randomly drawn ROS domain, and must not be able to drive (or be driven by) this one
NS = f'/toroidal_dot_it{os.getpid()}'
CONFIG = str(REPO / 'config' / 'toroidal_dot.yaml')


class Terminal:
    """A process on the slave side of a pty; the test types on the master side like a user."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        # a session of its own with the pty as its controlling terminal, as in a terminal window:
        # Ctrl-C typed on the master side then reaches it as SIGINT
        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=REPO,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.master = master
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.2)
                if not ready:
                    if self.proc.poll() is not None:
                        # drain what is left, then stop
                        ready, _, _ = select.select([self.master], [], [], 0.2)
                        if not ready:
                            return
                    continue
                data = os.read(self.master, 4096)
            except OSError:  # EIO: the slave side is closed
                return
            if not data:
                return
            self._chunks.append(data)

    @property
    def text(self) -> str:
        return b''.join(self._chunks).decode(errors='replace').replace('\r\n', '\n')

    def type(self, keys: str) -> None:
        """Keys as a user presses them.

        Enter is a carriage return; the terminal makes it a newline.
        """
        os.write(self.master, keys.encode())

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(re.findall(pattern, self.text)) >= count:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2)
        os.close(self.master)


@pytest.fixture
def terminals():
    started: list[Terminal] = []
    yield lambda argv, env: started.append(Terminal(argv, env)) or started[-1]
    for term in started:
        term.close()


@pytest.fixture
def sims(ros_env):
    """Start the dot robot with ``sims()``; stopped at the end of the test."""
    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        started.append(
            subprocess.Popen(
                [
                    str(BIN / 'toroidal_sim_node'),
                    '--ros-args',
                    '-r',
                    f'__ns:={NS}',
                    '-p',
                    'seed:=2',
                ],
                env=ros_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )
        )
        return started[-1]

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def selector_argv(*params: str) -> list[str]:
    argv = [
        str(BIN / 'interactive_selector'),
        '--ros-args',
        '-r',
        f'__ns:={NS}',
        '-p',
        f'robot_config:={CONFIG}',
    ]
    for p in params:
        argv += ['-p', p]
    return argv


def test_accept_override_bad_line_and_stop_in_a_terminal(sims, ros_env, probe, terminals, tmp_path):
    sims()
    executed = probe.record(JointState, NS + '/motor_command/executed')
    assert probe.spin_until(lambda: probe.matched(NS + '/motor_command/executed'), timeout=20)
    # the proposal is the ALTERNATE sequence: 0, 1, 0, ...
    term = terminals(selector_argv('sequence:=ALTERNATE', f'report_dir:={tmp_path}'), ros_env)

    assert term.wait_for(r'step 1: proposed 0 \(action=0\)'), term.text
    assert term.wait_for(r'accept \| action \| stop > '), term.text
    # Enter accepts 0; refused with "try again" until the selector's graph shows the robot
    # listening to motor_command (the frame can arrive before that), so a user presses it again
    deadline = time.monotonic() + 20
    while not executed and time.monotonic() < deadline:
        term.type('\r')
        probe.spin_until(lambda: len(executed) >= 1, timeout=2)
    assert len(executed) == 1, term.text

    assert term.wait_for(r'step 2: proposed 1 \(action=1\)'), term.text
    term.type('0\r')  # override the proposed 1 with 0
    assert probe.spin_until(lambda: len(executed) >= 2, timeout=20), term.text

    assert term.wait_for(r'step 3: proposed 0'), term.text
    marker = tmp_path / 'PWNED'
    term.type(f"__import__('os').system('touch {marker}')\r")
    assert term.wait_for(r'not sent: not an action'), term.text
    term.type('{"action": 7}\r')
    assert term.wait_for(r'not sent: action: action=7.0 outside its range'), term.text
    term.type('1\r')  # after bad lines, a good one still goes through
    assert probe.spin_until(lambda: len(executed) >= 3, timeout=20), term.text
    assert term.wait_for(r'step 4: proposed 1'), term.text
    assert term.proc.poll() is None and not marker.exists()

    term.type('stop\r')
    assert term.proc.wait(20) == 0, term.text
    assert term.wait_for(r'runner statistics written to', timeout=5), term.text
    probe.spin_until(lambda: False, timeout=0.5)  # anything still in flight

    # exactly what was typed was executed, in order, and nothing else
    assert [int(m.position[0]) for m in executed] == [0, 0, 1]
    text = term.text
    assert 'sent 0 (action=0) [accepted]' in text and 'sent 1 (action=1)' in text
    assert re.search(r'steps: 3 ', text) and re.search(r'\n0 \(action=0\)\s+2\s+66\.7', text), text
    assert (tmp_path / 'runner_stats.json').is_file()


def test_scores_propose_the_most_uncertain_action(ros_env, probe, terminals):
    commands = probe.record(JointState, NS + '/motor_command')
    scores_pub = probe.node.create_publisher(JointState, NS + '/world_model/action_scores', 10)
    # the inner policy alone would propose 1; the scores say 0 is the most uncertain
    term = terminals(selector_argv('trigger:=scores', 'policy:=constant', 'action:=1'), ros_env)
    assert term.wait_for(rf'waiting for {NS}/world_model/action_scores'), term.text

    scores = JointState(
        name=['L0:0', 'L0:1'], position=[0.75, 0.25], velocity=[0.0, 0.0], effort=[0.0, 0.0]
    )
    assert probe.spin_until(lambda: scores_pub.get_subscription_count() > 0, timeout=20), term.text
    scores_pub.publish(scores)
    assert term.wait_for(r'step 1: proposed 0 \(action=0\)'), term.text
    assert 'L0:0: 0.75 *   L0:1: 0.25' in term.text
    # the probe listens to motor_command but is no robot (it publishes no camera frames): a
    # command sent now could be lost to the robot, so it is refused and the proposal stays
    term.type('\r')
    assert term.wait_for(r'not sent: no robot listens to motor_command yet'), term.text
    # now the probe is the robot: the same Enter goes out
    probe.node.create_publisher(Image, NS + '/camera/image_raw', 10)
    assert probe.spin_until(lambda: probe.matched(NS + '/motor_command'), timeout=20), term.text
    deadline = time.monotonic() + 20  # until the selector's graph shows the camera publisher
    while not commands and time.monotonic() < deadline:
        term.type('\r')
        probe.spin_until(lambda: len(commands) >= 1, timeout=2)
    assert len(commands) == 1, term.text
    assert list(commands[0].name) == ['action'] and list(commands[0].position) == [0.0]

    term.type('\x03')  # Ctrl-C: SIGINT from the terminal ends the run with the statistics
    assert term.proc.wait(20) == 0, term.text
    assert re.search(r'steps: 1 ', term.text), term.text


def test_typed_ahead_action_waits_for_the_first_proposal_and_ctrl_d_ends(sims, ros_env, terminals):
    # no robot yet: nothing is proposed, so the typed "0" waits and a bare Enter is refused
    term = terminals(selector_argv('sequence:=ALWAYS_MOVE'), ros_env)
    assert term.wait_for(rf'waiting for {NS}/camera/image_raw'), term.text
    term.type('0\r')
    term.type('\r')
    assert term.wait_for(r'nothing proposed yet: Enter has nothing to accept'), term.text
    time.sleep(0.3)
    assert term.proc.poll() is None and 'sent' not in term.text
    # the robot comes up: its first frame brings the proposal 1, which the typed 0 overrides
    sims()
    assert term.wait_for(r'step 1: proposed 1'), term.text
    assert term.wait_for(r'sent 0 \(action=0\)\n'), term.text
    assert term.wait_for(r'step 2: proposed 1'), term.text
    term.type('\x04')  # Ctrl-D on an empty line: end of input ends the run like stop
    assert term.proc.wait(20) == 0, term.text
    assert re.search(r'steps: 1 ', term.text), term.text


def test_without_a_terminal_it_refuses_with_status_2(ros_env):
    result = subprocess.run(
        selector_argv(),
        env=ros_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert (
        'stdin is not one' in result.stderr and 'interactive_selector --ros-args' in result.stderr
    )
