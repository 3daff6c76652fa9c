"""Recorder: writes a robot's topics into a rosbag2 session (``devbot record``, ``recorder_node``).

Each message is stored exactly as it arrived: the subscription is raw (serialized CDR), so
nothing is deserialized or re-serialized. Bag: ``<output_dir>/<robot>/<session>/`` (MCAP with
zstd chunk compression + metadata.yaml; see :mod:`devbot.bag.writer`); the robot type, its
action space and the software version go into the bag's custom_data.

Subscribed topics (relative to the node namespace; those that exist are recorded, types found
on the graph or given with ``types``):
    camera/image_raw, motor_command, motor_command/executed, ground_truth/dot_position,
    world_model/action_scores, world_model/metrics (the ``topics`` parameter).

Published topics:
    recorder/ready (std_msgs/Bool, reliable, latched): true while every loop topic it records
        (camera/image_raw, motor_command, motor_command/executed) has a matched publisher, so a
        run's messages reach the bag; a selector with ``wait_for_recorder`` holds its first
        command until then. Seeing the recorder's subscriptions on the graph is not enough: on a
        loaded machine DDS may match the robot's writers with the recorder seconds later.

Written into the bag only: ``recorder/messages_lost``
(diagnostic_msgs/DiagnosticArray), one message each time DDS reports messages of a recorded topic
lost before they reached the recorder (e.g. the recorder starved of CPU for longer than the
publisher's history lasts); readers leave out the transitions such a loss could have touched.

Parameters:
    robot_config (string): robot file (type + action space for the bag); empty = none [''].
    robot (string): sessions sub-directory; empty = the robot type, else the namespace [''].
    output_dir (string): sessions root [saved/sessions].
    session (string): session name; empty = start time to the microsecond [''].
    topics (string): comma-separated topics to record [the six above].
    types (string): comma-separated ``topic=pkg/msg/Type`` for topics not (yet) on the graph [''].
    disk_limit_gb (float, 0..1e6): budget of this robot's sessions; the oldest are deleted
        first, at start and while recording; 0 = no limit [10.0].
    split_size_mb (float): start a new MCAP file at this size; 0 = never [0].
    split_duration_s (float): ... or after this long; 0 = never [0].
    flush_interval_s (float, 0.05..60): a message reaches the disk at the latest after this [1.0].
    compression (string): zstd | none [zstd].
    qos_depth (int, 1..100000): subscription queue depth [1000].
    duration_s (float): stop after this long; 0 = until stopped [0].

A ``kill -9`` leaves the bag readable up to the last written chunk after
``devbot bag reindex <session>``. A write error (disk full, ...) or the disk limit reached by the
session itself is logged as an error, the bag is closed as far as possible, and the node exits
with status 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import Subscription
from std_msgs.msg import Bool

from devbot import topics
from devbot.bag.metadata import TopicSpec, custom_data
from devbot.bag.storage import (
    DEFAULT_ROOT,
    GB,
    dir_size,
    enforce_disk_limit,
    sessions_of,
    unique_session_dir,
)
from devbot.bag.writer import BagWriteError, BagWriter, WriterOptions
from devbot.cdr import header_stamp, messages_lost_cdr
from devbot.params import declare, declare_number
from devbot.spin import ros_process, spin_until

#: one-line help of this ``devbot`` subcommand (``devbot --help`` lists it)
HELP = 'record robot topics into a rosbag2 (MCAP) session'

# the graph's topic contract (devbot.topics): these are subscribed at start, before their
# publishers are discovered, so the first messages of a run are not missed
DEFAULT_TYPES = {
    topics.CAMERA_IMAGE: 'sensor_msgs/msg/Image',
    topics.MOTOR_COMMAND: 'sensor_msgs/msg/JointState',
    topics.MOTOR_EXECUTED: 'sensor_msgs/msg/JointState',
    topics.DOT_POSITION: 'geometry_msgs/msg/PointStamped',
    topics.ACTION_SCORES: 'sensor_msgs/msg/JointState',
    topics.WM_METRICS: 'diagnostic_msgs/msg/DiagnosticArray',
}
DEFAULT_TOPICS = tuple(DEFAULT_TYPES)
# seconds between disk-limit checks, and between re-measuring the other sessions
DISK_CHECK_S = 1.0
DISK_RESCAN_S = 30.0


def parse_types(text: str) -> dict[str, str]:
    """``topic=pkg/msg/Type,...`` -> {topic: type}."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(','))):
        topic, sep, msgtype = item.partition('=')
        parts = msgtype.strip().split('/')
        if not sep or len(parts) != 3 or parts[1] != 'msg' or not all(parts):
            raise ValueError(f'types entry {item!r} must be topic=pkg/msg/Type')
        out[topic.strip()] = msgtype.strip()
    return out


def message_class(msgtype: str):
    """The rclpy message class of ``pkg/msg/Type``."""
    pkg, _, name = msgtype.split('/')
    try:
        return getattr(importlib.import_module(f'{pkg}.msg'), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f'message type {msgtype} is not installed ({exc})') from exc


def qos_to_bag(profile):
    """An rclpy QoSProfile as the rosbags Qos stored in bag metadata."""
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    def duration(d) -> QosTime:
        ns = d.nanoseconds
        if ns >= 2**63 - 1:
            return QosTime(2147483647, 4294967295)  # RMW_DURATION_INFINITE as rosbag2 writes it
        return QosTime(ns // 1_000_000_000, ns % 1_000_000_000)

    return Qos(
        QosHistory(int(profile.history)),
        int(profile.depth),
        QosReliability(int(profile.reliability)),
        QosDurability(int(profile.durability)),
        duration(profile.deadline),
        duration(profile.lifespan),
        QosLiveliness(int(profile.liveliness)),
        duration(profile.liveliness_lease_duration),
        bool(profile.avoid_ros_namespace_conventions),
    )


def build_custom_data(robot_config: str, robot: str, namespace: str) -> tuple[dict[str, str], str]:
    """(custom_data for the bag, the robot directory name)."""
    from devbot.action_space import ActionSpace

    space = ActionSpace.from_yaml(robot_config) if robot_config else None
    robot_type = space.robot_type if space is not None else 'unknown'
    name = robot or (
        robot_type if robot_type != 'unknown' else namespace.strip('/').split('/')[-1] or 'unknown'
    )
    custom = custom_data(space, namespace=namespace, robot=name, robot_type=robot_type)
    return custom, name


class RecorderNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('recorder', **kwargs)
        robot_config = declare(
            self, 'robot_config', '', 'robot file (type + action space stored in the bag)'
        )
        robot = declare(
            self, 'robot', '', 'sessions sub-directory; empty = robot type, else namespace'
        )
        output_dir = declare(self, 'output_dir', str(DEFAULT_ROOT), 'sessions root directory')
        session = str(
            declare(
                self,
                'session',
                '',
                'session name; empty = start time to the microsecond',
                dynamic_typing=True,
            )
        )
        recorded = declare(
            self, 'topics', ','.join(DEFAULT_TOPICS), 'comma-separated topics to record'
        )
        types = declare(
            self, 'types', '', 'comma-separated topic=pkg/msg/Type for topics not on the graph'
        )
        limit_gb = declare_number(
            self, 'disk_limit_gb', 10.0, "budget of this robot's sessions (GB); 0 = none", 1e6
        )
        split_mb = declare_number(
            self, 'split_size_mb', 0.0, 'new MCAP file at this size (MB); 0 = never', 1e7
        )
        split_s = declare_number(
            self, 'split_duration_s', 0.0, 'new MCAP file after this long (s); 0 = never', 1e7
        )
        flush_s = declare_number(
            self,
            'flush_interval_s',
            1.0,
            'a message reaches the disk at the latest after this (s)',
            60.0,
            low=0.05,
        )
        compression = declare(
            self, 'compression', 'zstd', 'zstd | none (MCAP chunk compression, lossless)'
        )
        self._depth = declare(
            self, 'qos_depth', 1000, 'subscription queue depth', int_range=(1, 100000)
        )
        self.duration_s = declare_number(
            self, 'duration_s', 0.0, 'stop after this long (s); 0 = until stopped', 1e9
        )

        self.custom_data, robot_name = build_custom_data(robot_config, robot, self.get_namespace())
        self.robot_dir = Path(output_dir) / robot_name
        self.limit_bytes = int(limit_gb * GB)
        self.wanted = [t.strip() for t in recorded.split(',') if t.strip()]
        given = {**DEFAULT_TYPES, **parse_types(types)}
        self.given_types = {
            self.resolve_topic_name(t): v for t, v in given.items() if t in self.wanted
        }
        self.error: str | None = None
        self.done = False
        self.counts: dict[str, int] = {}
        self.lost: dict[str, int] = {}
        # per stamped topic: the last two messages written (their stamps bound a loss)
        self._recent: dict[str, tuple[bytes | None, bytes | None]] = {}
        self._lost_topic_id = 0
        self._subscribed: dict[str, int] = {}  # resolved topic -> bag topic id (0: no message yet)
        self._subscriptions_of: dict[str, Subscription] = {}  # resolved topic -> its subscription
        self._ready_pub = self.create_publisher(Bool, topics.RECORDER_READY, topics.state_qos())
        self._ready: bool | None = None
        # subscribed at start (DEFAULT_TYPES) when wanted: ready needs a publisher for each
        self._loop_topics = {self.resolve_topic_name(t) for t in topics.LOOP_TOPICS}
        self._types: dict[str, str] = {}
        self._warned: set[str] = set()
        self._last_ns = 0
        self._started = time.monotonic()

        self.robot_dir.mkdir(parents=True, exist_ok=True)
        self.session_dir = unique_session_dir(self.robot_dir, session or None)
        if self.limit_bytes:
            used, deleted = enforce_disk_limit(self.robot_dir, self.limit_bytes)
            for d in deleted:
                self.get_logger().warning(
                    f'disk limit {limit_gb:g} GB: deleted oldest session {d.path} '
                    f'({d.size / 1e6:.1f} MB)'
                )
            if used > self.limit_bytes:
                raise RuntimeError(
                    f'disk limit {limit_gb:g} GB: {self.robot_dir} still holds {used / GB:.2f} GB'
                )
        self._others_bytes = self._measure_others()
        self._next_rescan = time.monotonic() + DISK_RESCAN_S
        options = WriterOptions(
            compression=compression,
            flush_interval_s=flush_s,
            split_bytes=int(split_mb * 1e6),
            split_duration_ns=int(split_s * 1e9),
        )
        self.writer = BagWriter(self.session_dir, self.custom_data, options)
        self.get_logger().info(f'recording into {self.session_dir}')
        self._discover()
        self.create_timer(0.5, self._discover)
        self.create_timer(min(flush_s, DISK_CHECK_S) / 2, self._housekeeping)

    # -------------------------------------------------------------- topics

    def _discover(self) -> None:
        if self.done:
            return
        graph = dict(self.get_topic_names_and_types())
        for rel in self.wanted:
            name = self.resolve_topic_name(rel)
            if name in self._subscribed:
                found = graph.get(name)
                if found and self._types[name] not in found and name not in self._warned:
                    self._warned.add(name)
                    self.get_logger().warning(
                        f'{name} is published as {found}, but recorded as {self._types[name]}: '
                        f'its messages are not recorded (set the types parameter)'
                    )
                continue
            msgtype = self.given_types.get(name)
            if msgtype is None:
                found = graph.get(name)
                if not found:
                    continue
                msgtype = found[0]
                if len(found) > 1:
                    self.get_logger().warning(
                        f'{name} has several types {found}; recording {msgtype}'
                    )
            self._subscribe(name, msgtype)
        self._update_ready()

    def _update_ready(self) -> None:
        """Publish recorder/ready at start and whenever it changes."""
        ready = all(
            sub.get_publisher_count() > 0
            for name, sub in self._subscriptions_of.items()
            if name in self._loop_topics
        )
        if ready != self._ready:
            self._ready = ready
            self._ready_pub.publish(Bool(data=ready))

    def _subscribe(self, name: str, msgtype: str) -> None:
        infos = [i for i in self.get_publishers_info_by_topic(name) if i.topic_type == msgtype]
        reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
        latched = bool(infos) and all(
            i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos
        )
        # no publisher yet: reliable (the loop's QoS; a reliable reader also matches reliable
        # writers only, so a best-effort publisher appearing later is reported below)
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=self._depth,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
        )
        try:
            cls = message_class(msgtype)
        except ValueError as exc:
            self._fail(f'cannot record {name}: {exc}')
            return
        self._subscribed[name] = (
            0  # added to the bag with its first message (offered QoS known then)
        )
        self._types[name] = msgtype
        self.counts[name] = 0
        if next(iter(cls.get_fields_and_field_types().values()), '') == 'std_msgs/Header':
            self._recent[name] = (None, None)
        self._subscriptions_of[name] = self.create_subscription(
            cls,
            name,
            lambda data, n=name: self._on_message(n, data),
            qos,
            raw=True,
            event_callbacks=SubscriptionEventCallbacks(
                message_lost=lambda info, n=name: self._on_lost(n, info.total_count_change),
                matched=lambda info: self._update_ready(),
            ),
        )
        self.get_logger().info(
            f'recording {name} ({msgtype}, '
            f'{"reliable" if qos.reliability == ReliabilityPolicy.RELIABLE else "best effort"})'
        )

    def _add_to_bag(self, name: str) -> int:
        msgtype = self._types[name]
        infos = [i for i in self.get_publishers_info_by_topic(name) if i.topic_type == msgtype]
        offered = tuple(qos_to_bag(i.qos_profile) for i in infos)
        topic_id = self.writer.add_topic(TopicSpec(name, msgtype, offered))
        hashes = {str(i.topic_type_hash) for i in infos}
        stored = self.writer.type_hash(topic_id)
        if hashes and hashes != {stored}:
            self.get_logger().warning(
                f'{name}: type hash on the graph {sorted(hashes)} differs from the stored '
                f'definition {stored}'
            )
        self._subscribed[name] = topic_id
        return topic_id

    def _log_time(self) -> int:
        """Receive time, kept non-decreasing so the file is in time order if the clock steps."""
        now = time.time_ns()
        self._last_ns = now if now > self._last_ns else self._last_ns
        return self._last_ns

    def _on_message(self, name: str, data: bytes) -> None:
        if self.done:
            return
        try:
            topic_id = self._subscribed[name] or self._add_to_bag(name)
            self.writer.write(topic_id, self._log_time(), data)
        except BagWriteError as exc:
            self._fail(f'write error: {exc}')
            return
        self.counts[name] += 1
        if name in self._recent:
            self._recent[name] = (self._recent[name][1], data)

    def _on_lost(self, name: str, count: int) -> None:
        """DDS lost ``count`` messages of ``name`` (e.g. the publisher's history overflowed
        while this process starved): record where, so readers never pair across the gap.

        The event may be handled before or after the first message behind the gap, and messages
        queued before the gap may still be waiting: so the lost stamps are bounded below by the
        message before the last one written, and above by now."""
        if self.done or count <= 0:
            return
        self.lost[name] = self.lost.get(name, 0) + count
        after_ns = None  # a topic without header stamps: unknown
        if name in self._recent:
            before = self._recent[name][0]
            sec, nanosec = header_stamp(before) if before is not None else (0, 0)
            after_ns = sec * 1_000_000_000 + nanosec
        self.get_logger().warning(
            f'{count} messages of {name} lost before they reached the recorder '
            f'({self.lost[name]} so far); readers leave out transitions around them'
        )
        try:
            if not self._lost_topic_id:
                self._lost_topic_id = self.writer.add_topic(
                    TopicSpec(
                        self.resolve_topic_name(topics.RECORDER_MESSAGES_LOST),
                        'diagnostic_msgs/msg/DiagnosticArray',
                    )
                )
            log_ns = self._log_time()
            self.writer.write(
                self._lost_topic_id, log_ns, messages_lost_cdr(name, count, after_ns, log_ns)
            )
        except BagWriteError as exc:
            self._fail(f'write error: {exc}')

    # -------------------------------------------------------------- housekeeping

    def _measure_others(self) -> int:
        keep = self.session_dir.resolve()
        return sum(dir_size(p) for p in sessions_of(self.robot_dir) if p.resolve() != keep)

    def _housekeeping(self) -> None:
        if self.done:
            return
        try:
            self.writer.flush_due()
        except BagWriteError as exc:
            self._fail(f'write error: {exc}')
            return
        if self.duration_s and time.monotonic() - self._started >= self.duration_s:
            self.get_logger().info(f'duration {self.duration_s:g} s reached')
            self.done = True
            return
        if not self.limit_bytes:
            return
        now = time.monotonic()
        if now >= self._next_rescan:
            self._others_bytes = self._measure_others()
            self._next_rescan = now + DISK_RESCAN_S
        current = self.writer.bytes_written
        if self._others_bytes + current <= self.limit_bytes:
            return
        used, deleted = enforce_disk_limit(
            self.robot_dir, self.limit_bytes, keep=self.session_dir, current_bytes=current
        )
        for d in deleted:
            self.get_logger().warning(
                f'disk limit: deleted oldest session {d.path} ({d.size / 1e6:.1f} MB)'
            )
        self._others_bytes = used - current
        if used > self.limit_bytes:
            self._fail(
                f'disk limit {self.limit_bytes / GB:g} GB reached by this session alone '
                f'({current / GB:.3f} GB); stopped recording'
            )

    def _fail(self, reason: str) -> None:
        self.error = reason
        self.done = True
        self.get_logger().error(reason)

    def finish(self) -> str:
        """Close the bag; returns a one-line summary."""
        try:
            self.writer.close()
        except BagWriteError as exc:
            self.error = self.error or f'closing the bag failed: {exc}'
        total = sum(self.counts.values())
        per_topic = ', '.join(f'{n}: {c}' for n, c in self.counts.items())
        lost = ''.join(f'; lost {c} of {n}' for n, c in self.lost.items())
        return f'recorded {total} messages into {self.session_dir} ({per_topic}){lost}'


def node_main(args: list[str] | None = None, **node_kwargs) -> int:
    """Run the recorder node (console script ``recorder_node``; parameters via --ros-args).

    SIGINT and SIGTERM only ask the spin loop to stop (see ``ros_process``), and the bag is closed
    after it: a KeyboardInterrupt raised in the middle of writing a message could leave the writer
    unable to write the MCAP summary, and the session unreadable until reindexed."""
    status = 0
    try:
        with ros_process(args) as stop:
            node = RecorderNode(**node_kwargs)
            try:
                spin_until(node, stop, lambda: node.done)
            finally:
                summary = node.finish()
                print(summary, flush=True)
                if node.error:
                    print(f'recorder error: {node.error}', file=sys.stderr, flush=True)
                    status = 1
                node.destroy_node()
    except (RuntimeError, ValueError, OSError, BagWriteError) as exc:
        print(f'recorder: {exc}', file=sys.stderr, flush=True)
        return 1
    return status


def main(argv: list[str] | None = None) -> int:
    """``devbot record``: record a robot's topics into ``saved/sessions/<robot>/<session>``."""
    parser = argparse.ArgumentParser(prog='devbot record', description=main.__doc__)
    parser.add_argument(
        '--robot-config', default='', help='robot file, e.g. config/toroidal_dot.yaml'
    )
    parser.add_argument(
        '--namespace',
        default=None,
        help="robot namespace (default: robot.namespace of the robot file, else '/')",
    )
    parser.add_argument(
        '--robot', default='', help='sessions sub-directory (default: the robot type)'
    )
    parser.add_argument('--output-dir', default=str(DEFAULT_ROOT))
    parser.add_argument('--session', default='', help='session name (default: start time)')
    parser.add_argument('--topics', default=','.join(DEFAULT_TOPICS), help='comma-separated topics')
    parser.add_argument('--types', default='', help='comma-separated topic=pkg/msg/Type')
    parser.add_argument('--disk-limit-gb', type=float, default=10.0)
    parser.add_argument('--split-size-mb', type=float, default=0.0)
    parser.add_argument('--split-duration', type=float, default=0.0, metavar='SECONDS')
    parser.add_argument('--flush-interval', type=float, default=1.0, metavar='SECONDS')
    parser.add_argument('--compression', choices=('zstd', 'none'), default='zstd')
    parser.add_argument('--qos-depth', type=int, default=1000)
    parser.add_argument(
        '--duration', type=float, default=0.0, metavar='SECONDS', help='0 = until Ctrl-C'
    )
    opts, rest = parser.parse_known_args(argv)
    namespace = opts.namespace
    if namespace is None:
        namespace = '/'
        if opts.robot_config:
            import yaml

            try:
                doc = yaml.safe_load(Path(opts.robot_config).read_text()) or {}
                namespace = '/' + str((doc.get('robot') or {}).get('namespace') or '').strip('/')
            except (OSError, yaml.YAMLError, AttributeError) as exc:
                print(f'devbot record: cannot read {opts.robot_config}: {exc}', file=sys.stderr)
                return 2
    params = [
        Parameter('robot_config', value=opts.robot_config),
        Parameter('robot', value=opts.robot),
        Parameter('output_dir', value=opts.output_dir),
        Parameter('session', value=opts.session),
        Parameter('topics', value=opts.topics),
        Parameter('types', value=opts.types),
        Parameter('disk_limit_gb', value=opts.disk_limit_gb),
        Parameter('split_size_mb', value=opts.split_size_mb),
        Parameter('split_duration_s', value=opts.split_duration),
        Parameter('flush_interval_s', value=opts.flush_interval),
        Parameter('compression', value=opts.compression),
        Parameter('qos_depth', value=opts.qos_depth),
        Parameter('duration_s', value=opts.duration),
    ]
    return node_main(['devbot-record', *rest], namespace=namespace, parameter_overrides=params)


if __name__ == '__main__':
    sys.exit(node_main())
