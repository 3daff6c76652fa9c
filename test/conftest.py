"""Graph-test fixtures: an isolated ROS domain per test, the launcher as a subprocess, and a
probe node in the test process that records what flows on the graph."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable

import pytest
from graphtest import BIN, REPO


@pytest.fixture
def ros_env():
    """Environment for processes of one test graph: its own domain, discovery on localhost only."""
    domain = random.Random().randint(100, 230)
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', PYTHONUNBUFFERED='1'
    )
    return env


class Process:
    """A subprocess whose output (stdout and stderr) a thread collects line by line, so that
    a chatty process never blocks on a full pipe and a failing test can show what it said."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip('\n'))

    @property
    def output(self) -> str:
        return '\n'.join(self.lines)

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def wait_for_line(self, pattern: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.output):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> int:
        """SIGINT, then SIGKILL after 15 s; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.wait(15)


class Launch(Process):
    """``devbot launch`` running in a subprocess."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        super().__init__([str(BIN / 'devbot'), 'launch', *args], env)

    def child_pids(self) -> dict[str, int]:
        return {
            m.group(1): int(m.group(2))
            for m in re.finditer(r'process\[(\S+)\] started with pid (\d+)', self.output)
        }


@pytest.fixture
def node_process(ros_env):
    """Start ROS processes with ``node_process(cmd)``; all are stopped at the end of the test."""
    started: list[Process] = []

    def start(cmd: list[str]) -> Process:
        started.append(Process(cmd, ros_env))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def launch(ros_env):
    """Start launches with ``launch(args)``; all are stopped at the end of the test."""
    started: list[Launch] = []

    def start(*args: str) -> Launch:
        started.append(Launch(list(args), ros_env))
        return started[-1]

    yield start
    for lch in started:
        lch.stop()


class Probe:
    """A node in the test process: subscribes and records, publishes, calls services."""

    def __init__(self, domain_id: int) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('graph_test_probe', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list] = {}

    def record(self, msg_type, topic: str, depth: int = 1000) -> list:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        store = self.received.setdefault(topic, [])
        self.node.create_subscription(
            msg_type,
            topic,
            store.append,
            QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE),
        )
        return store

    def matched(self, topic: str) -> bool:
        """Whether the probe's subscriptions to ``topic`` are matched with a publisher (messages
        published before the match would be lost to a volatile subscription)."""
        subs = [s for s in self.node.subscriptions if s.topic_name == topic]
        return bool(subs) and all(s.get_publisher_count() > 0 for s in subs)

    def spin_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return condition()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.shutdown(context=self.context)


@pytest.fixture
def probe(ros_env):
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    p = Probe(int(ros_env['ROS_DOMAIN_ID']))
    yield p
    p.close()
