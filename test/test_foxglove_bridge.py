"""``devbot foxglove`` as a process: ROS topics from another process reach a WebSocket client.

The client speaks the Foxglove WebSocket protocol with the ``websockets`` library: serverInfo,
advertise, subscribe, then binary message-data frames (opcode 1, subscription id, log time,
payload). Image payloads are decoded with a protobuf wire reader written here, using the field
numbers from the schema the server advertises.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from graphtest import BIN, REPO, read_fields

websockets = pytest.importorskip(
    'websockets', reason='the Foxglove client needs websockets==17.4 (requirements.txt)'
)

# a namespace of this run's own: other graph tests on this machine may share the ROS domain
NS = f'/toroidal_dot_fx{os.getpid()}'
# the SDK (0.30) speaks foxglove.sdk.v1; foxglove.websocket.v1 is the older name of the protocol
SUBPROTOCOLS = ['foxglove.sdk.v1', 'foxglove.websocket.v1']

PUBLISHER = r'''
import sys, time
import numpy as np
import rclpy
from sensor_msgs.msg import Image, JointState
from devbot.image import numpy_to_image
from devbot.topics import loop_qos
rclpy.init()
node = rclpy.create_node('fake_robot', namespace=sys.argv[1])
images = node.create_publisher(Image, 'camera/image_raw', loop_qos())
executed = node.create_publisher(JointState, 'motor_command/executed', loop_qos())
pixels = (np.arange(48 * 64 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
msg = numpy_to_image(pixels, 'rgb8')
msg.header.frame_id = 'camera'
js = JointState(name=['action'], position=[1.0], velocity=[0.0], effort=[0.0])
n = 0
print('publishing', flush=True)
try:
    while True:
        n += 1
        msg.header.stamp.sec = js.header.stamp.sec = 1000 + n
        images.publish(msg)
        executed.publish(js)
        rclpy.spin_once(node, timeout_sec=0.05)
except KeyboardInterrupt:
    pass
'''


def expected_pixels() -> np.ndarray:
    return (np.arange(48 * 64 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)


def field_numbers(descriptor_set: bytes, message: str) -> dict[str, int]:
    for file in read_fields(descriptor_set).get(1, []):
        for msg in read_fields(file).get(4, []):
            desc = read_fields(msg)
            if desc[1][0].decode() == message:
                return {
                    read_fields(f)[1][0].decode(): read_fields(f)[3][0] for f in desc.get(2, [])
                }
    raise KeyError(message)


class Output:
    """Collects a process's output lines in a thread."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip('\n'))

    @property
    def text(self) -> str:
        return '\n'.join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.text)
            if match:
                return match
            time.sleep(0.05)
        return None

    def join(self) -> None:
        self._thread.join(5)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []

    def start(argv, env):
        started.append(
            subprocess.Popen(
                argv,
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                stdin=subprocess.DEVNULL,
            )
        )
        return Output(started[-1])

    yield start
    for proc in started:
        _stop(proc)


async def watch(port: int, topics: list[str], timeout: float = 30.0) -> dict:
    """Connect, subscribe to ``topics`` and return what arrived: channels and one payload each."""
    result = {'payloads': {}}
    async with websockets.connect(
        f'ws://127.0.0.1:{port}',
        subprotocols=SUBPROTOCOLS,
        proxy=None,
        max_size=None,
        open_timeout=timeout,
    ) as ws:
        result['subprotocol'] = ws.subprotocol
        channels: dict[str, dict] = {}
        async with asyncio.timeout(timeout):
            first = json.loads(await ws.recv())
            result['server_info'] = first
            while not all(t in channels for t in topics):
                message = await ws.recv()
                assert isinstance(message, str), 'binary data before any subscription'
                data = json.loads(message)
                if data['op'] == 'advertise':
                    channels.update({c['topic']: c for c in data['channels']})
            result['channels'] = channels
            by_subscription = {i + 1: channels[t] for i, t in enumerate(topics)}
            await ws.send(
                json.dumps(
                    {
                        'op': 'subscribe',
                        'subscriptions': [
                            {'id': sub, 'channelId': ch['id']}
                            for sub, ch in by_subscription.items()
                        ],
                    }
                )
            )
            while len(result['payloads']) < len(topics):
                message = await ws.recv()
                if isinstance(message, str):
                    continue  # e.g. more advertisements
                opcode, subscription, log_time = struct.unpack_from('<BIQ', message, 0)
                assert opcode == 1, f'unexpected binary opcode {opcode}'
                topic = by_subscription[subscription]['topic']
                result['payloads'].setdefault(topic, (log_time, message[13:]))
    return result


def test_images_and_joint_states_reach_a_websocket_client(ros_env, processes):
    robot = processes([sys.executable, '-c', PUBLISHER, NS], ros_env)
    bridge = processes([str(BIN / 'devbot'), 'foxglove', '--namespace', NS, '--port', '0'], ros_env)
    match = bridge.wait_for(r'serving 6 topic\(s\) on ws://127\.0\.0\.1:(\d+)', timeout=30)
    assert match, bridge.text
    assert robot.wait_for('publishing', timeout=30), robot.text
    port = int(match.group(1))
    image_topic, executed_topic = NS + '/camera/image_raw', NS + '/motor_command/executed'

    started = time.time_ns()
    seen = asyncio.run(watch(port, [image_topic, executed_topic]))
    assert seen['subprotocol'] in SUBPROTOCOLS
    assert seen['server_info']['op'] == 'serverInfo' and seen['server_info']['name'] == 'devbot'
    assert set(seen['channels']) == {
        NS + '/' + t
        for t in (
            'camera/image_raw',
            'world_model/visualization',
            'motor_command',
            'motor_command/executed',
            'world_model/action_scores',
            'world_model/metrics',
        )
    }

    # the image: foxglove.RawImage in protobuf, decoded with the advertised schema
    channel = seen['channels'][image_topic]
    assert (channel['encoding'], channel['schemaName'], channel['schemaEncoding']) == (
        'protobuf',
        'foxglove.RawImage',
        'protobuf',
    )
    numbers = field_numbers(base64.b64decode(channel['schema']), 'RawImage')
    log_time, payload = seen['payloads'][image_topic]
    assert log_time >= started - 10**9
    image = read_fields(payload)
    assert image[numbers['width']] == [64] and image[numbers['height']] == [48]
    assert image[numbers['encoding']] == [b'rgb8'] and image[numbers['step']] == [64 * 3]
    assert image[numbers['frame_id']] == [b'camera']
    pixels = np.frombuffer(image[numbers['data']][0], np.uint8).reshape(48, 64, 3)
    np.testing.assert_array_equal(pixels, expected_pixels())
    assert read_fields(image[numbers['timestamp']][0])[1][0] > 1000  # the ROS header stamp

    # the executed action: a JSON channel with a JSON schema
    channel = seen['channels'][executed_topic]
    assert (channel['encoding'], channel['schemaEncoding']) == ('json', 'jsonschema')
    assert json.loads(channel['schema'])['title'] == 'sensor_msgs/JointState'
    action = json.loads(seen['payloads'][executed_topic][1])
    assert (
        action['name'] == ['action']
        and action['position'] == [1.0]
        and action['by_name'] == {'action': 1.0}
    )
    assert action['header']['stamp']['sec'] > 1000

    # SIGTERM: a clean stop with a summary
    bridge.proc.send_signal(signal.SIGTERM)
    assert bridge.proc.wait(15) == 0, bridge.text
    bridge.join()
    assert re.search(rf'{image_topic}: received \d+, forwarded [1-9]', bridge.text), bridge.text
    assert 'client 1 subscribed to ' + image_topic in bridge.text
    assert bridge.text.rstrip().endswith('[devbot.foxglove] stopped'), bridge.text


def test_a_busy_port_is_a_clear_error(ros_env):
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [str(BIN / 'devbot'), 'foxglove', '--port', str(port)],
            env=ros_env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    assert result.returncode == 2, result
    assert (
        f'cannot serve on 127.0.0.1:{port}' in result.stderr
        and 'Address already in use' in result.stderr
    )


def test_an_unknown_topic_type_is_refused_before_starting(ros_env):
    result = subprocess.run(
        [str(BIN / 'devbot'), 'foxglove', '/some/topic'],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert 'the type of /some/topic is not known' in result.stderr
