"""The driver's exit status when its JetBot server goes away: a stop or a failure.

Real processes: ``jetbot_sim_server`` and ``jetbot_driver_node`` over RPyC on loopback, the
driver on an isolated ROS domain. A launch file that ends signals every process at once, so the
server may close the connection just before the driver gets its own SIGINT: that is a clean stop
(status 0, no error). The server dying while the driver runs on is a failure (status 1, one error).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
CONFIG = Path(__file__).resolve().parents[3] / 'config' / 'jetbot.yaml'
LOST = 'lost the connection to the JetBot'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Proc:
    """A console script in a subprocess, its output (stdout and stderr) collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return ''.join(self.lines)

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return True
            if self.proc.poll() is not None:
                self._reader.join(2)
                return text in self.output
            time.sleep(0.05)
        return False

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def robot():
    """A simulated JetBot server and a driver connected to it, streaming frames."""
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(random.Random().randint(100, 230)),
        ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
        PYTHONUNBUFFERED='1',
    )
    port = free_port()
    server = Proc([str(BIN / 'jetbot_sim_server'), '--host', '127.0.0.1', '--port', str(port)], env)
    driver = None
    try:
        driver = Proc(
            [
                str(BIN / 'jetbot_driver_node'),
                '--ros-args',
                '-p',
                f'robot_config:={CONFIG}',
                '-p',
                'jetbot_ip:=127.0.0.1',
                '-p',
                f'port:={port}',
                '-p',
                'connect_timeout:=20.0',
            ],
            env,
        )
        assert driver.wait_for('connected to 127.0.0.1', timeout=40), driver.output
        time.sleep(0.5)  # streaming: the worker is in its camera loop
        yield server, driver
    finally:
        for proc in (driver, server):
            if proc is not None:
                proc.end()


@pytest.mark.parametrize('server_first_s', [0.0, 0.2], ids=['together', 'server_first'])
def test_a_stop_signal_to_both_ends_the_driver_cleanly(robot, server_first_s):
    server, driver = robot
    server.proc.send_signal(signal.SIGINT)
    if server_first_s:
        # the driver sees the closed connection before its own signal arrives
        time.sleep(server_first_s)
    driver.proc.send_signal(signal.SIGINT)
    assert driver.wait(30) == 0, driver.output
    assert server.wait(30) == 0, server.output
    assert 'ERROR' not in driver.output and 'Traceback' not in driver.output, driver.output
    assert 'executed 0 actions' in driver.output, driver.output


def test_a_server_dying_mid_run_is_a_failure(robot):
    server, driver = robot
    server.proc.send_signal(signal.SIGKILL)
    server.wait(10)
    assert driver.wait(30) == 1, driver.output
    assert driver.output.count(LOST) == 1, driver.output
    assert '[ERROR]' in driver.output, driver.output
