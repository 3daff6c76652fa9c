"""``devbot foxglove``: serve ROS topics live to the Foxglove app over WebSocket, no ROS install.

Subscribes ROS topics and re-publishes them with the ``foxglove-sdk`` WebSocket server: images
as ``foxglove.RawImage`` (protobuf; the app's Image panel shows them), actions, scores and
metrics as JSON channels with a JSON schema (Raw Messages, Plot and State panels). In the
Foxglove app: *Open connection* -> *Foxglove WebSocket* -> ``ws://127.0.0.1:8765``.

The bridge never slows the learning loop: every subscription is best-effort (images keep only
the latest frame, :func:`devbot.topics.viewer_qos`), a frame is converted only while a client
is subscribed to its channel, and the SDK drops the oldest queued message of a slow client.

Topics are given as ``NAME`` or ``NAME:TYPE``; relative names are resolved under
``--namespace``. Without topics, the robot's camera, the world-model panels, the commanded and
executed actions, the action scores and the metrics are served.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterable

from devbot import topics

#: one-line help of this ``devbot`` subcommand (``devbot --help`` lists it)
HELP = 'serve topics to the Foxglove app over WebSocket'

EXAMPLES = """\
examples:
  devbot foxglove                                   # /toroidal_dot's default topics on ws://127.0.0.1:8765
  devbot foxglove --namespace /jetbot --port 8766
  devbot foxglove camera/image_raw ground_truth/dot_position
  devbot foxglove /other/camera:sensor_msgs/Image --host 0.0.0.0

Types: sensor_msgs/Image, sensor_msgs/JointState, diagnostic_msgs/DiagnosticArray,
geometry_msgs/PointStamped (known devbot topics need no type). Ctrl-C or SIGTERM stops.
"""

IMAGE = 'sensor_msgs/msg/Image'
JOINT_STATE = 'sensor_msgs/msg/JointState'
DIAGNOSTICS = 'diagnostic_msgs/msg/DiagnosticArray'
POINT = 'geometry_msgs/msg/PointStamped'
SUPPORTED_TYPES = (IMAGE, JOINT_STATE, DIAGNOSTICS, POINT)

# devbot topics (relative to the robot namespace) and their types; see devbot.topics
KNOWN_TOPICS: dict[str, str] = {
    topics.CAMERA_IMAGE: IMAGE,
    topics.WM_VISUALIZATION: IMAGE,
    topics.MOTOR_COMMAND: JOINT_STATE,
    topics.MOTOR_EXECUTED: JOINT_STATE,
    topics.ACTION_SCORES: JOINT_STATE,
    topics.WM_METRICS: DIAGNOSTICS,
    topics.DOT_POSITION: POINT,
}
DEFAULT_TOPICS = (
    topics.CAMERA_IMAGE,
    topics.WM_VISUALIZATION,
    topics.MOTOR_COMMAND,
    topics.MOTOR_EXECUTED,
    topics.ACTION_SCORES,
    topics.WM_METRICS,
)


# ---------------------------------------------------------------------------------------------
# pure parts: topic specs and message conversion


def normalize_type(name: str) -> str:
    """The full name of a message type.

    ``sensor_msgs/Image``, ``sensor_msgs/msg/Image`` or ``Image`` -> ``sensor_msgs/msg/Image``.
    """
    parts = [p for p in name.strip().split('/') if p]
    if len(parts) == 2:
        parts = [parts[0], 'msg', parts[1]]
    for supported in SUPPORTED_TYPES:
        if parts == supported.split('/') or (
            len(parts) == 1 and parts[0] == supported.rsplit('/', 1)[1]
        ):
            return supported
    raise ValueError(
        f'unsupported message type {name!r}; supported: '
        f'{", ".join(t.replace("/msg/", "/") for t in SUPPORTED_TYPES)}'
    )


def resolve_topic(name: str, namespace: str) -> str:
    """A relative name under ``namespace``; an absolute name unchanged."""
    name = name.strip()
    if not name or name.endswith('/') or '//' in name or ' ' in name:
        raise ValueError(f'invalid topic name {name!r}')
    if name.startswith('/'):
        return name
    ns = '/' + namespace.strip('/') if namespace.strip('/') else ''
    return f'{ns}/{name}'


def parse_topic_spec(spec: str, namespace: str) -> tuple[str, str]:
    """``NAME[:TYPE]`` -> (absolute topic, ROS type); known devbot topics need no type."""
    name, sep, type_name = spec.partition(':')
    topic = resolve_topic(name, namespace)
    if sep:
        return topic, normalize_type(type_name)
    for relative, known_type in KNOWN_TOPICS.items():  # a devbot topic, in any namespace
        if topic == '/' + relative or topic.endswith('/' + relative):
            return topic, known_type
    raise ValueError(
        f'the type of {topic} is not known: give it as {name}:TYPE (e.g. {name}:sensor_msgs/Image)'
    )


def _finite(value: float) -> float | None:
    """JSON has no NaN/inf: those become null."""
    value = float(value)
    return value if math.isfinite(value) else None


def _header(msg) -> dict:
    return {
        'stamp': {'sec': int(msg.header.stamp.sec), 'nsec': int(msg.header.stamp.nanosec)},
        'frame_id': str(msg.header.frame_id),
    }


def image_fields(msg) -> dict:
    """The fields of a ``foxglove.RawImage`` for a ``sensor_msgs/Image`` (rows packed, no padding).

    Raises:
        devbot.image.ImageError: unsupported encoding or inconsistent sizes.
    """
    from devbot.image import image_to_numpy

    pixels = image_to_numpy(msg)  # validates encoding, step and size; drops row padding
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    return {
        'sec': int(msg.header.stamp.sec),
        'nsec': int(msg.header.stamp.nanosec),
        'frame_id': str(msg.header.frame_id),
        'width': int(width),
        'height': int(height),
        'encoding': str(msg.encoding),
        'step': int(width * channels),
        'data': pixels.tobytes(),
    }


def raw_image(fields: dict):
    """A ``foxglove.messages.RawImage`` from :func:`image_fields`."""
    from foxglove.messages import RawImage, Timestamp

    return RawImage(
        timestamp=Timestamp(fields['sec'], fields['nsec']),
        frame_id=fields['frame_id'],
        width=fields['width'],
        height=fields['height'],
        encoding=fields['encoding'],
        step=fields['step'],
        data=fields['data'],
    )


def joint_state_json(msg) -> dict:
    """A JointState as JSON; ``by_name`` maps each name to its position (for Plot paths)."""
    names = [str(n) for n in msg.name]
    position = [_finite(v) for v in msg.position]
    return {
        'header': _header(msg),
        'name': names,
        'position': position,
        'velocity': [_finite(v) for v in msg.velocity],
        'effort': [_finite(v) for v in msg.effort],
        'by_name': dict(zip(names, position)),
    }


def diagnostics_json(msg) -> dict:
    """A DiagnosticArray as JSON.

    Each status also has ``numbers``: its values that parse as floats.
    """
    statuses = []
    for status in msg.status:
        values = {str(kv.key): str(kv.value) for kv in status.values}
        numbers = {}
        for key, text in values.items():
            try:
                numbers[key] = _finite(float(text))
            except ValueError:
                pass
        level = status.level  # a ROS byte: bytes of length 1 in rclpy
        statuses.append(
            {
                'level': level[0] if isinstance(level, (bytes, bytearray)) else int(level),
                'name': str(status.name),
                'message': str(status.message),
                'hardware_id': str(status.hardware_id),
                'values': values,
                'numbers': numbers,
            }
        )
    return {'header': _header(msg), 'status': statuses}


def point_json(msg) -> dict:
    return {
        'header': _header(msg),
        'point': {'x': _finite(msg.point.x), 'y': _finite(msg.point.y), 'z': _finite(msg.point.z)},
    }


_HEADER_SCHEMA = {
    'type': 'object',
    'properties': {
        'stamp': {
            'type': 'object',
            'properties': {'sec': {'type': 'integer'}, 'nsec': {'type': 'integer'}},
        },
        'frame_id': {'type': 'string'},
    },
}
_FLOATS = {'type': 'array', 'items': {'type': ['number', 'null']}}

JSON_SCHEMAS: dict[str, dict] = {
    JOINT_STATE: {
        'title': 'sensor_msgs/JointState',
        'type': 'object',
        'properties': {
            'header': _HEADER_SCHEMA,
            'name': {'type': 'array', 'items': {'type': 'string'}},
            'position': _FLOATS,
            'velocity': _FLOATS,
            'effort': _FLOATS,
            'by_name': {'type': 'object', 'additionalProperties': {'type': ['number', 'null']}},
        },
    },
    DIAGNOSTICS: {
        'title': 'diagnostic_msgs/DiagnosticArray',
        'type': 'object',
        'properties': {
            'header': _HEADER_SCHEMA,
            'status': {
                'type': 'array',
                'items': {
                    'type': 'object',
                    'properties': {
                        'level': {'type': 'integer'},
                        'name': {'type': 'string'},
                        'message': {'type': 'string'},
                        'hardware_id': {'type': 'string'},
                        'values': {'type': 'object', 'additionalProperties': {'type': 'string'}},
                        'numbers': {
                            'type': 'object',
                            'additionalProperties': {'type': ['number', 'null']},
                        },
                    },
                },
            },
        },
    },
    POINT: {
        'title': 'geometry_msgs/PointStamped',
        'type': 'object',
        'properties': {
            'header': _HEADER_SCHEMA,
            'point': {
                'type': 'object',
                'properties': {
                    'x': {'type': ['number', 'null']},
                    'y': {'type': ['number', 'null']},
                    'z': {'type': ['number', 'null']},
                },
            },
        },
    },
}
JSON_CONVERTERS = {JOINT_STATE: joint_state_json, DIAGNOSTICS: diagnostics_json, POINT: point_json}


# ---------------------------------------------------------------------------------------------
# the bridge


class _TopicStats:
    def __init__(self) -> None:
        self.received = 0
        self.forwarded = 0
        self.errors = 0
        self.last_error = ''


class FoxgloveBridge:
    """ROS subscriptions -> foxglove channels in ``context`` (served by a WebSocket server)."""

    def __init__(self, node, topics: Iterable[tuple[str, str]], context) -> None:
        import foxglove
        from foxglove.channels import RawImageChannel

        from devbot.topics import viewer_qos

        self.node = node
        self.topics = list(topics)
        self.stats: dict[str, _TopicStats] = {}
        for topic, type_name in self.topics:
            if topic in self.stats:
                raise ValueError(f'topic {topic} given twice')
            stats = self.stats[topic] = _TopicStats()
            if type_name == IMAGE:
                channel = RawImageChannel(topic, context=context)
                callback = self._image_callback(channel, stats)
                qos = viewer_qos()
            else:
                channel = foxglove.Channel(topic, schema=JSON_SCHEMAS[type_name], context=context)
                callback = self._json_callback(channel, stats, JSON_CONVERTERS[type_name])
                qos = viewer_qos()
                qos.depth = 10  # small messages: keep a few, still best-effort
            node.create_subscription(_message_class(type_name), topic, callback, qos)

    def _image_callback(self, channel, stats: _TopicStats):
        def on_image(msg) -> None:
            stats.received += 1
            if not channel.has_sinks():
                return  # nobody watches this channel: no conversion at all
            try:
                image = raw_image(image_fields(msg))
            except ValueError as exc:
                self._error(channel.topic(), stats, exc)
                return
            channel.log(image, log_time=time.time_ns())
            stats.forwarded += 1

        return on_image

    def _json_callback(self, channel, stats: _TopicStats, convert):
        def on_message(msg) -> None:
            stats.received += 1
            if not channel.has_sinks():
                return
            try:
                payload = convert(msg)
            except (ValueError, TypeError) as exc:
                self._error(channel.topic(), stats, exc)
                return
            channel.log(payload, log_time=time.time_ns())
            stats.forwarded += 1

        return on_message

    def _error(self, topic: str, stats: _TopicStats, exc: Exception) -> None:
        stats.errors += 1
        if stats.errors == 1 or str(exc) != stats.last_error:
            print(
                f'[devbot.foxglove] {topic}: message not forwarded: {exc}',
                file=sys.stderr,
                flush=True,
            )
        stats.last_error = str(exc)

    def summary(self) -> str:
        lines = [
            f'[devbot.foxglove] {topic}: received {s.received}, forwarded {s.forwarded}'
            + (f', {s.errors} not convertible ({s.last_error})' if s.errors else '')
            for topic, s in self.stats.items()
        ]
        return '\n'.join(lines)


def _message_class(type_name: str):
    if type_name == IMAGE:
        from sensor_msgs.msg import Image

        return Image
    if type_name == JOINT_STATE:
        from sensor_msgs.msg import JointState

        return JointState
    if type_name == DIAGNOSTICS:
        from diagnostic_msgs.msg import DiagnosticArray

        return DiagnosticArray
    if type_name == POINT:
        from geometry_msgs.msg import PointStamped

        return PointStamped
    raise ValueError(f'unsupported message type {type_name!r}')


class _Listener:
    """Tells the terminal which client watches what (the SDK calls it from its own thread)."""

    def on_subscribe(self, client, channel) -> None:
        print(f'[devbot.foxglove] client {client.id} subscribed to {channel.topic}', flush=True)

    def on_unsubscribe(self, client, channel) -> None:
        print(f'[devbot.foxglove] client {client.id} unsubscribed from {channel.topic}', flush=True)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='devbot foxglove',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            'Serve ROS topics to the Foxglove app over WebSocket (foxglove-sdk), '
            'no ROS install needed.'
        ),
        epilog=EXAMPLES,
    )
    parser.add_argument(
        'topics',
        nargs='*',
        metavar='TOPIC[:TYPE]',
        help='topics to serve (default: ' + ', '.join(DEFAULT_TOPICS) + ')',
    )
    parser.add_argument(
        '--namespace',
        default='/toroidal_dot',
        help='robot namespace of relative topics (default /toroidal_dot)',
    )
    parser.add_argument(
        '--host',
        default='127.0.0.1',
        help='address to listen on (default 127.0.0.1; 0.0.0.0 for other machines)',
    )
    parser.add_argument(
        '--port', type=int, default=8765, help='WebSocket port (default 8765; 0 = any free port)'
    )
    parser.add_argument(
        '--duration',
        type=float,
        default=0.0,
        help='stop after this many seconds (default: run until Ctrl-C)',
    )
    options = parser.parse_args(argv)
    if not 0 <= options.port <= 65535:
        parser.error(f'--port must be in 0..65535, got {options.port}')
    if options.duration < 0:
        parser.error('--duration must not be negative')
    try:
        options.specs = [
            parse_topic_spec(s, options.namespace) for s in (options.topics or DEFAULT_TOPICS)
        ]
    except ValueError as exc:
        parser.error(str(exc))
    if len({t for t, _ in options.specs}) != len(options.specs):
        parser.error('a topic is given twice')
    return options


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args = argv[argv.index('--ros-args') :] if '--ros-args' in argv else []
    argv = argv[: len(argv) - len(ros_args)]
    try:
        options = _parse(argv)
    except SystemExit as exc:
        return int(exc.code or 0)

    import foxglove
    import rclpy

    from devbot.spin import ros_process, spin_until

    context = foxglove.Context()
    try:
        server = foxglove.start_server(
            name='devbot',
            host=options.host,
            port=options.port,
            context=context,
            server_listener=_Listener(),
        )
    except RuntimeError as exc:
        print(
            f'[devbot.foxglove] cannot serve on {options.host}:{options.port}: {exc}',
            file=sys.stderr,
        )
        return 2
    bridge = None
    try:
        with ros_process(['devbot_foxglove', *ros_args]) as stop:
            node = rclpy.create_node('foxglove_bridge')
            bridge = FoxgloveBridge(node, options.specs, context)
            print(
                f'[devbot.foxglove] serving {len(options.specs)} topic(s) '
                f'on ws://{options.host}:{server.port} '
                f'(Foxglove app: Open connection -> Foxglove WebSocket)',
                flush=True,
            )
            for topic, type_name in options.specs:
                print(
                    f'[devbot.foxglove]   {topic} ({type_name.replace("/msg/", "/")})', flush=True
                )
            deadline = time.monotonic() + options.duration if options.duration else float('inf')
            try:
                spin_until(node, stop, lambda: time.monotonic() >= deadline)
            finally:
                node.destroy_node()
    finally:
        server.stop()
        if bridge is not None:
            print(bridge.summary(), flush=True)
        print('[devbot.foxglove] stopped', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
