"""devbot.spin: a node process's stop signals (real signals to a real rclpy process)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap

import pytest

# A node process as devbot's mains write it. It reports, after spinning, whether the context was
# still up while the node finished (rclpy's own handlers shut it down at the signal) and whether
# a publish from there went through.
PROCESS = textwrap.dedent('''
    import sys, time
    import rclpy
    from std_msgs.msg import String
    from devbot.spin import ros_process, spin_until

    def main():
        with ros_process([]) as stop:
            print('starting', flush=True)
            if sys.argv[1] == 'slow-start':
                time.sleep(30)            # a robot connection being retried, say
            node = rclpy.create_node('spin_test')
            pub = node.create_publisher(String, 'spin_test', 1)
            timer = node.create_timer(0.01, lambda: (print('spinning', flush=True), timer.cancel()))
            try:
                spin_until(node, stop)
            finally:
                print(f'finishing: stop={stop.is_set()} ok={rclpy.ok()}', flush=True)
                time.sleep(0.5)           # a checkpoint being saved; a second signal arrives here
                pub.publish(String(data='last words'))
                print('published', flush=True)
                node.destroy_node()
            return 0
        return 3  # stopped before spinning

    sys.exit(main())
''')


def start(mode: str) -> subprocess.Popen:
    env = dict(
        os.environ,
        ROS_DOMAIN_ID=str(random.randint(100, 230)),
        ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
    )
    return subprocess.Popen(
        [sys.executable, '-c', PROCESS, mode],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_for(proc: subprocess.Popen, line: str) -> list[str]:
    seen = []
    while True:
        out = proc.stdout.readline()
        assert out, f'process ended before {line!r}: {seen}'
        seen.append(out.strip())
        if out.strip() == line:
            return seen


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_while_spinning_lets_the_node_finish_on_a_live_context(sig):
    proc = start('normal')
    try:
        wait_for(proc, 'spinning')
        proc.send_signal(sig)
        wait_for(proc, 'finishing: stop=True ok=True')
        proc.send_signal(signal.SIGINT)  # impatient second Ctrl-C: the node still finishes
        proc.wait(timeout=30)
        out = proc.stdout.read()  # not communicate(): it would skip what readline buffered
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert 'published' in out and 'Traceback' not in out, out


def test_a_stop_signal_before_the_node_spins_ends_the_process_at_once():
    proc = start('slow-start')
    try:
        wait_for(proc, 'starting')
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)  # not the 30 s start
        out = proc.stdout.read()
    finally:
        proc.kill()
    assert proc.returncode == 3, out
    assert 'spinning' not in out and 'Traceback' not in out, out
