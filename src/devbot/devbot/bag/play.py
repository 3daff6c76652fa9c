"""Player: publishes a recorded session's topics (``devbot play``, ``player_node``).

Messages are published as they were recorded (serialized CDR bytes, no round trip), either
timed (the recorded gaps divided by ``rate``) or in **lockstep** for training faster than real
time.

Lockstep and its ack contract:
    The player publishes the bag's messages in order; after each message on the pace topic
    (``camera/image_raw``: one frame = the end of one transition, with the executed action and
    ground truth of that transition already published before it) it waits for an ack on
    ``ack_topic`` (default ``world_model/processed``, relative to the output namespace) before
    publishing on. An ack is any message whose type starts with a ``std_msgs/Header`` (default
    type ``std_msgs/msg/Header``; ``sensor_msgs/Image``, ``JointState``, ``DiagnosticArray`` also
    work) and whose ``header.stamp`` equals the frame's ``header.stamp``: "I have processed the
    frame stamped T". With ``ack_match: any`` every message on the ack topic counts. If no ack
    comes within ``ack_timeout_s`` the player logs a warning and goes on (0 = wait forever), so a
    lost ack never deadlocks a run. Frames re-sent with an already published stamp are skipped in
    lockstep (consumers de-duplicate by stamp and would never ack them).

Published topics: the bag's topics (all, or those chosen), under their recorded names or moved
    from the recorded robot namespace to ``namespace``.

Subscribed topics:
    <ack_topic> (lockstep only): the consumer's per-frame ack, see above.

Parameters:
    session (string): the bag directory (required).
    rate (float, >0): speed factor of timed playback [1.0].
    loop (bool): start over at the end [false]. restamp_loops (bool): on each repetition shift
        the header stamps by the session length, so stamp-de-duplicating consumers see new
        frames [true].
    start_s (float): skip the first seconds of the session [0].
    topics (string): comma-separated topics (names or suffixes) to play; empty = all [''].
    exclude (string): comma-separated topics not to play [''].
    namespace (string): publish under this namespace instead of the recorded one [''].
    lockstep (bool) [false], pace_topic [camera/image_raw], ack_topic [world_model/processed],
    ack_type [std_msgs/msg/Header], ack_match (stamp | any) [stamp], ack_timeout_s [5.0].
    wait_subscribers (int): before starting, wait until the pace topic (in lockstep: every played
        topic) has this many subscribers, then 0.5 s more for them to match us; -1 = 1 in lockstep,
        else 0 [-1].
        wait_timeout_s (float) [10.0].
    qos_depth (int): publisher queue depth [100].

Ends (status 0) at the end of the session unless looping; status 1 for a bag that cannot be read.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from devbot import topics
from devbot.bag.metadata import KEY_NAMESPACE
from devbot.bag.record import message_class
from devbot.bag.session import BagError, BagMessage, Session
from devbot.bag.storage import resolve_session_path
from devbot.cdr import header_stamp
from devbot.params import declare, declare_number
from devbot.spin import ros_process

#: one-line help of this ``devbot`` subcommand (``devbot --help`` lists it)
HELP = 'play a rosbag2 session back (rate, loop, lockstep)'

_STAMP = struct.Struct('<iI')
SETTLE_S = 0.5  # after the wanted subscribers have matched, before the first message
ACK_WAIT_S = 2.0  # at the end, at most this long per topic for reliable readers to acknowledge


# ---------------------------------------------------------------------- ROS-free core


@dataclass(frozen=True)
class Selection:
    """Which bag topics are played and under which names."""

    topics: dict[str, str]  # bag topic -> published topic
    types: dict[str, str]  # bag topic -> pkg/msg/Type


def select_topics(
    session: Session, include: list[str], exclude: list[str], namespace: str = ''
) -> Selection:
    """Resolve include/exclude lists (names or suffixes) and the output namespace."""
    all_topics = dict((n, t.msgtype) for n, t in session.info.topics.items())
    chosen = list(all_topics)
    if include:
        chosen = []
        for item in include:
            name = session.topic(item)
            if name is None:
                raise BagError(f'no topic {item!r} in {session.path}; topics: {sorted(all_topics)}')
            chosen.append(name)
    for item in exclude:
        name = session.topic(item)
        if name in chosen:
            chosen.remove(name)
    recorded_ns = session.info.custom_data.get(KEY_NAMESPACE, '')
    out = {}
    for name in chosen:
        target = name
        if namespace:
            rel = (
                name[len(recorded_ns.rstrip('/')) + 1 :]
                if recorded_ns.strip('/') and name.startswith(recorded_ns.rstrip('/') + '/')
                else name.lstrip('/')
            )
            target = '/' + '/'.join(p for p in (namespace.strip('/'), rel) if p)
        out[name] = target
    return Selection(out, {n: all_topics[n] for n in chosen})


def header_types() -> set[str]:
    """Message types whose first field is a std_msgs/Header (their stamps can be shifted)."""
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    out = {'std_msgs/msg/Header'}
    for name, (_, fields) in store.fielddefs.items():
        if fields and fields[0][0] == 'header':
            out.add(name)
    return out


def shift_stamp(data: bytes, shift_ns: int) -> bytes:
    """A serialized message whose leading header stamp is moved by ``shift_ns``."""
    if not shift_ns or len(data) < 12 or data[1] != 1:
        return data
    sec, nsec = _STAMP.unpack_from(data, 4)
    total = sec * 1_000_000_000 + nsec + shift_ns
    out = bytearray(data)
    _STAMP.pack_into(out, 4, total // 1_000_000_000, total % 1_000_000_000)
    return bytes(out)


def schedule(
    session: Session, topics: list[str], start_s: float = 0.0
) -> Iterator[tuple[int, BagMessage]]:
    """(ns since the first played message, message) in recorded order, from ``start_s`` on."""
    start = session.start_ns + int(start_s * 1e9)
    first = None
    for msg in session.messages(topics, start_ns=start):
        if first is None:
            first = msg.log_time_ns
        yield msg.log_time_ns - first, msg


# ---------------------------------------------------------------------- the node


class PlayerNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('player', **kwargs)
        path = str(
            declare(
                self, 'session', '', 'the bag directory to play (required)', dynamic_typing=True
            )
        )
        self.rate = declare_number(
            self, 'rate', 1.0, 'speed factor of timed playback', low=1e-3, high=1e6
        )
        self.loop = declare(self, 'loop', False, 'start over at the end of the session')
        self.restamp = declare(
            self, 'restamp_loops', True, 'shift header stamps on each repetition'
        )
        self.start_s = declare_number(
            self, 'start_s', 0.0, 'skip the first seconds of the session', high=1e9
        )
        include = declare(
            self, 'topics', '', 'comma-separated topics (names or suffixes); empty = all'
        )
        exclude = declare(self, 'exclude', '', 'comma-separated topics not to play')
        namespace = declare(
            self, 'namespace', '', 'publish under this namespace instead of the recorded one'
        )
        self.lockstep = declare(
            self, 'lockstep', False, 'wait for an ack after each pace-topic message'
        )
        pace = declare(
            self, 'pace_topic', topics.CAMERA_IMAGE, 'lockstep: the topic whose messages are acked'
        )
        ack_topic = declare(
            self, 'ack_topic', topics.WM_PROCESSED, 'lockstep: topic of the consumer acks'
        )
        ack_type = declare(
            self, 'ack_type', 'std_msgs/msg/Header', 'lockstep: message type of the acks'
        )
        self.ack_match = declare(
            self, 'ack_match', 'stamp', 'lockstep: stamp (ack.header.stamp = frame stamp) | any'
        )
        self.ack_timeout = declare_number(
            self,
            'ack_timeout_s',
            5.0,
            'lockstep: go on after this long without ack; 0 = never',
            high=1e6,
        )
        self.wait_subscribers = declare(
            self,
            'wait_subscribers',
            -1,
            'wait for this many subscribers before starting; -1 = 1 in lockstep else 0',
            int_range=(-1, 1000),
        )
        self.wait_timeout = declare_number(
            self, 'wait_timeout_s', 10.0, 'give up waiting for subscribers after this', high=1e6
        )
        depth = declare(self, 'qos_depth', 100, 'publisher queue depth', int_range=(1, 100000))
        if self.ack_match not in ('stamp', 'any'):
            raise ValueError(f"ack_match must be 'stamp' or 'any', got {self.ack_match!r}")
        if not path:
            raise ValueError('parameter session (the bag directory) is required')

        self.session = Session(path)
        split = lambda text: [t.strip() for t in text.split(',') if t.strip()]  # noqa: E731
        self.selection = select_topics(self.session, split(include), split(exclude), namespace)
        if not self.selection.topics:
            raise BagError(f'{path}: no topic left to play')
        self.pace_topic = self.session.topic(pace) if pace else None
        if self.lockstep and self.pace_topic not in self.selection.topics:
            raise BagError(
                f'lockstep needs the pace topic {pace!r} among the played topics '
                f'{sorted(self.selection.topics)}'
            )
        self._pubs = {}
        offered = self._offered_reliability()
        for name, target in self.selection.topics.items():
            qos = QoSProfile(
                history=HistoryPolicy.KEEP_LAST,
                depth=depth,
                durability=DurabilityPolicy.VOLATILE,
                reliability=offered.get(name, ReliabilityPolicy.RELIABLE),
            )
            self._pubs[name] = self.create_publisher(
                message_class(self.selection.types[name]), target, qos
            )
        self._header_types = header_types()
        self._acks: set[tuple[int, int]] = set()
        self._any_acks = 0
        if self.lockstep:
            ns = (
                namespace
                or self.session.info.custom_data.get(KEY_NAMESPACE, '')
                or self.get_namespace()
            )
            ack_name = (
                ack_topic
                if ack_topic.startswith('/')
                else '/' + '/'.join(p for p in (ns.strip('/'), ack_topic) if p)
            )
            self.create_subscription(
                message_class(ack_type),
                ack_name,
                self._on_ack,
                QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE),
                raw=True,
            )
            self.ack_topic = ack_name
        self.published = 0
        self.play_started: float | None = None  # after waiting for subscribers
        self.play_ended: float | None = None  # the last message published
        self.acks_missed = 0
        self.passes = 0
        self.get_logger().info(
            f'playing {self.session.path} ({len(self.selection.topics)} topics, '
            + ('lockstep on ' + self.ack_topic if self.lockstep else f'rate {self.rate:g}')
            + (', looping' if self.loop else '')
            + ')'
        )

    def _offered_reliability(self) -> dict:
        import yaml

        out = {}
        try:
            doc = yaml.safe_load((self.session.path / 'metadata.yaml').read_text())
            for t in doc['rosbag2_bagfile_information']['topics_with_message_count']:
                profiles = t['topic_metadata'].get('offered_qos_profiles') or []
                if (
                    isinstance(profiles, list)
                    and profiles
                    and all(p.get('reliability') == 'best_effort' for p in profiles)
                ):
                    out[t['topic_metadata']['name']] = ReliabilityPolicy.BEST_EFFORT
        except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError):
            pass
        return out

    def _on_ack(self, data: bytes) -> None:
        self._any_acks += 1
        try:
            self._acks.add(header_stamp(data))
        except ValueError:
            pass

    # -------------------------------------------------------------- playing

    def play(self, executor: SingleThreadedExecutor) -> None:
        self._wait_for_subscribers(executor)
        self.play_started = time.monotonic()
        span = self.session.info.duration_ns + 1_000_000_000
        while True:
            shift = self.passes * span if (self.restamp and self.passes) else 0
            self._play_once(executor, shift)
            self.passes += 1
            if not self.loop:
                break
        self.play_ended = time.monotonic()
        # reliable readers get the last messages before the process goes away with them
        for pub in self._pubs.values():
            pub.wait_for_all_acked(Duration(seconds=ACK_WAIT_S))

    def _wait_for_subscribers(self, executor) -> None:
        wanted = (
            self.wait_subscribers if self.wait_subscribers >= 0 else (1 if self.lockstep else 0)
        )
        if not wanted:
            return
        # lockstep: every played topic must reach the consumer (a lost executed action would
        # stall the loop); timed playback: the pace topic's readers suffice
        pubs = (
            [self._pubs[self.pace_topic]]
            if self.pace_topic in self._pubs and not self.lockstep
            else list(self._pubs.values())
        )
        deadline = time.monotonic() + self.wait_timeout
        while any(p.get_subscription_count() < wanted for p in pubs):
            if time.monotonic() > deadline:
                self.get_logger().warning(
                    f'no {wanted} subscriber(s) after {self.wait_timeout:g} s; playing anyway'
                )
                return
            executor.spin_once(timeout_sec=0.05)
        # Discovery is two-sided: our writer has matched the reader, but the reader may not have
        # matched our writer yet, and a best-effort reader would miss the first messages
        settle = time.monotonic() + SETTLE_S
        while time.monotonic() < settle:
            executor.spin_once(timeout_sec=0.05)

    def _play_once(self, executor, shift_ns: int) -> None:
        t0 = time.monotonic()
        published_frames: set[tuple[int, int]] = set()
        pending_ack = None  # stamp of the last pace message, acked before anything newer goes out
        for offset, msg in schedule(self.session, list(self.selection.topics), self.start_s):
            data = msg.data
            if shift_ns and msg.msgtype in self._header_types:
                data = shift_stamp(data, shift_ns)
            is_pace = msg.topic == self.pace_topic
            if self.lockstep:
                stamp = header_stamp(data) if msg.msgtype in self._header_types else None
                # Messages stamped like the frame (its executed action, its ground truth) may be
                # recorded after it: they go out before the wait, so the consumer has the whole
                # transition when it processes the frame.
                if pending_ack is not None and (is_pace or stamp is None or stamp > pending_ack):
                    self._wait_ack(executor, pending_ack)
                    pending_ack = None
                if is_pace and stamp in published_frames:
                    continue
                self._pubs[msg.topic].publish(data)
                self.published += 1
                if is_pace:
                    published_frames.add(stamp)
                    pending_ack = stamp
                continue
            due = t0 + offset / 1e9 / self.rate
            while True:
                left = due - time.monotonic()
                if left <= 0:
                    break
                executor.spin_once(timeout_sec=min(left, 0.05))
            self._pubs[msg.topic].publish(data)
            self.published += 1
        if pending_ack is not None:
            self._wait_ack(executor, pending_ack)

    def _wait_ack(self, executor, stamp: tuple[int, int]) -> None:
        before = self._any_acks
        deadline = None if self.ack_timeout == 0 else time.monotonic() + self.ack_timeout
        while True:
            if self.ack_match == 'any' and self._any_acks > before:
                return
            if self.ack_match == 'stamp' and stamp in self._acks:
                self._acks.discard(stamp)
                return
            if deadline is not None and time.monotonic() > deadline:
                self.acks_missed += 1
                self.get_logger().warning(
                    f'no ack on {self.ack_topic} for the frame stamped '
                    f'{stamp[0]}.{stamp[1]:09d} within {self.ack_timeout:g} s; going on'
                )
                return
            executor.spin_once(timeout_sec=0.01)


def node_main(args: list[str] | None = None, **node_kwargs) -> int:
    """Run the player node (console script ``player_node``; parameters via --ros-args).

    It spins only between its own publishes, so a stop signal interrupts playback at once (see
    ``ros_process``: it never defers them); the summary line is printed and the node destroyed
    on a live context."""
    status = 0
    with ros_process(args):
        try:
            node = PlayerNode(**node_kwargs)
        except (BagError, ValueError) as exc:
            print(f'player: {exc}', file=sys.stderr, flush=True)
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            node.play(executor)
        except BagError as exc:
            print(f'player: {exc}', file=sys.stderr, flush=True)
            status = 1
        finally:
            elapsed = (
                (node.play_ended or time.monotonic()) - node.play_started
                if node.play_started
                else 0.0
            )
            missed = f', {node.acks_missed} acks missed' if node.lockstep else ''
            print(
                f'played {node.published} messages in {elapsed:.3f} s '
                f'({node.passes} pass(es){missed})',
                flush=True,
            )
            executor.remove_node(node)
            executor.shutdown()
            node.session.close()
            node.destroy_node()
    return status


def main(argv: list[str] | None = None) -> int:
    """``devbot play``: publish a recorded session (timed with a rate, or lockstep with acks)."""
    parser = argparse.ArgumentParser(prog='devbot play', description=main.__doc__)
    parser.add_argument('session', help='bag directory, or <robot>/<session> under saved/sessions')
    parser.add_argument('--rate', type=float, default=1.0)
    parser.add_argument('--loop', action='store_true')
    parser.add_argument(
        '--no-restamp', action='store_true', help='loop without shifting header stamps'
    )
    parser.add_argument(
        '--start', type=float, default=0.0, metavar='SECONDS', help='skip the first seconds'
    )
    parser.add_argument(
        '--topics', default='', help='comma-separated topics (names or suffixes) to play'
    )
    parser.add_argument('--exclude', default='', help='comma-separated topics not to play')
    parser.add_argument(
        '--namespace', default='', help='publish under this namespace instead of the recorded one'
    )
    parser.add_argument('--lockstep', action='store_true', help='wait for an ack after each frame')
    parser.add_argument('--pace-topic', default=topics.CAMERA_IMAGE)
    parser.add_argument('--ack-topic', default=topics.WM_PROCESSED)
    parser.add_argument('--ack-type', default='std_msgs/msg/Header')
    parser.add_argument('--ack-match', choices=('stamp', 'any'), default='stamp')
    parser.add_argument(
        '--ack-timeout', type=float, default=5.0, metavar='SECONDS', help='0 = wait forever'
    )
    parser.add_argument('--wait-subscribers', type=int, default=-1)
    parser.add_argument('--wait-timeout', type=float, default=10.0, metavar='SECONDS')
    parser.add_argument('--qos-depth', type=int, default=100)
    opts, rest = parser.parse_known_args(argv)
    if not opts.rate > 0:
        parser.error('--rate must be > 0')
    params = [
        Parameter('session', value=str(resolve_session_path(opts.session))),
        Parameter('rate', value=float(opts.rate)),
        Parameter('loop', value=opts.loop),
        Parameter('restamp_loops', value=not opts.no_restamp),
        Parameter('start_s', value=float(opts.start)),
        Parameter('topics', value=opts.topics),
        Parameter('exclude', value=opts.exclude),
        Parameter('namespace', value=opts.namespace),
        Parameter('lockstep', value=opts.lockstep),
        Parameter('pace_topic', value=opts.pace_topic),
        Parameter('ack_topic', value=opts.ack_topic),
        Parameter('ack_type', value=opts.ack_type),
        Parameter('ack_match', value=opts.ack_match),
        Parameter('ack_timeout_s', value=float(opts.ack_timeout)),
        Parameter('wait_subscribers', value=opts.wait_subscribers),
        Parameter('wait_timeout_s', value=float(opts.wait_timeout)),
        Parameter('qos_depth', value=opts.qos_depth),
    ]
    return node_main(['devbot-play', *rest], parameter_overrides=params)


if __name__ == '__main__':
    sys.exit(node_main())
