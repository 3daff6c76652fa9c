"""Reading recorded sessions: metadata, frames, actions, transitions. ROS-free.

For the session explorer, the offline trainer and the recorded selector::

    from devbot.bag import list_sessions, Session

    for info in list_sessions():                      # every robot under saved/sessions
        print(info.robot, info.name, info.robot_type, info.topics)
    with Session('saved/sessions/toroidal_dot/20261125-185501-123456') as s:
        s.action_space                                # from the bag's custom_data
        s.num_frames, s.frame(0).image                # [224, 224, 3] uint8 (rgb8)
        for t in s.transitions():                     # frame, action, next frame, stamps
            t.frame, t.action, t.next_frame
        s.action_counts()

Frames are the camera messages de-duplicated by header stamp (a robot re-sends its current
frame to late joiners), in stamp order. A transition pairs an executed action (stamp =
completion) with the last frame stamped before it and the first frame stamped at or after it
(for the simulated robot: the frame showing its outcome has the same stamp). Where frames are
missing so that two actions would share a frame pair, both are left out; so is every transition
whose frames span stamps where the recorder was told that frames or actions were lost
(:meth:`Session.losses`): a transition is never labelled with the wrong action.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from devbot import topics
from devbot.action_space import ActionError, ActionSpace, ConfigError
from devbot.bag.filter import TransitionFilter
from devbot.bag.metadata import KEY_ACTION_SPACE, KEY_ROBOT_TYPE, KEY_SOFTWARE, METADATA_FILE
from devbot.bag.reindex import BagFormatError, scan_mcap
from devbot.bag.storage import DEFAULT_ROOT, dir_size, is_bag_dir
from devbot.cdr import header_stamp

CAMERA_SUFFIX = topics.CAMERA_IMAGE
EXECUTED_SUFFIX = topics.MOTOR_EXECUTED
LOSSES_SUFFIX = topics.RECORDER_MESSAGES_LOST


class BagError(RuntimeError):
    """A session that cannot be read: not a bag, foreign or corrupt files, unfinished recording."""


@dataclass(frozen=True)
class TopicInfo:
    name: str
    msgtype: str
    count: int


@dataclass(frozen=True)
class SessionInfo:
    """A session's metadata (from metadata.yaml; no message is read).

    Attributes:
        path: the bag directory. name: its name. robot: the robot directory it lives in.
        robot_type, action_space, software_version: from the bag's custom_data (None if absent).
        custom_data: all of it.
        start_ns, duration_ns, message_count: the recording's time range and size.
        topics: name -> TopicInfo.
        files: the MCAP files. size_bytes: bytes on disk.
        complete: every MCAP file was closed (False: the recorder died; run `devbot bag reindex`).
        error: why the session is unreadable (list_sessions only; the other fields are then empty).
    """

    path: Path
    name: str
    robot: str
    robot_type: str | None = None
    action_space: ActionSpace | None = None
    software_version: str | None = None
    custom_data: dict = field(default_factory=dict)
    start_ns: int = 0
    duration_ns: int = 0
    message_count: int = 0
    topics: dict = field(default_factory=dict)
    files: tuple[str, ...] = ()
    size_bytes: int = 0
    complete: bool = False
    error: str | None = None

    def topic(self, suffix: str) -> str | None:
        """The bag topic named ``suffix`` or ending with ``/suffix`` (None if absent)."""
        return _find_topic(self.topics, suffix)


def _find_topic(topics, suffix: str) -> str | None:
    if suffix in topics:
        return suffix
    matches = [t for t in topics if t.endswith('/' + suffix.lstrip('/'))]
    if len(matches) > 1:
        raise BagError(f'several topics end with {suffix!r}: {matches}; name one exactly')
    return matches[0] if matches else None


def _mcap_closed(path: Path) -> bool:
    try:
        with path.open('rb') as f:
            f.seek(0, 2)
            if f.tell() < 8 + 37:
                return False
            f.seek(-37, 2)
            tail = f.read(37)
        return tail[0] == 0x02 and tail[-8:] == b'\x89MCAP0\r\n'
    except OSError:
        return False


def read_info(path: str | Path) -> SessionInfo:
    """The metadata of one session directory.

    Raises:
        BagError: not a directory, no or unreadable metadata.yaml, not MCAP storage, missing files.
    """
    path = Path(path)
    if not path.is_dir():
        raise BagError(f'{path}: no such session directory')
    meta_path = path / METADATA_FILE
    if not meta_path.is_file():
        hint = (
            ' (MCAP files found: run `devbot bag reindex` to rebuild it)'
            if any(path.glob('*.mcap'))
            else ''
        )
        raise BagError(f'{path}: no metadata.yaml, not a rosbag2 bag{hint}')
    try:
        doc = yaml.safe_load(meta_path.read_text())
        meta = doc['rosbag2_bagfile_information']
        storage = meta['storage_identifier']
        files = tuple(str(f) for f in meta['relative_file_paths'])
        topics = {
            t['topic_metadata']['name']: TopicInfo(
                t['topic_metadata']['name'], t['topic_metadata']['type'], int(t['message_count'])
            )
            for t in meta['topics_with_message_count']
        }
        start = int(meta['starting_time']['nanoseconds_since_epoch'])
        duration = int(meta['duration']['nanoseconds'])
        count = int(meta['message_count'])
        custom = {str(k): str(v) for k, v in (meta.get('custom_data') or {}).items()}
    except (yaml.YAMLError, OSError) as exc:
        raise BagError(f'{meta_path}: unreadable: {exc}') from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise BagError(f'{meta_path}: not rosbag2 metadata ({type(exc).__name__}: {exc})') from exc
    if storage != 'mcap':
        raise BagError(f'{path}: storage {storage!r} is not supported (devbot reads MCAP bags)')
    missing = [f for f in files if not (path / Path(f).name).is_file()]
    if missing:
        raise BagError(f'{path}: files listed in metadata.yaml are missing: {missing}')
    space = None
    if KEY_ACTION_SPACE in custom:
        try:
            space = ActionSpace.from_dict(
                json.loads(custom[KEY_ACTION_SPACE]), robot_type=custom.get(KEY_ROBOT_TYPE)
            )
        except (ValueError, ConfigError) as exc:
            raise BagError(
                f'{path}: custom_data {KEY_ACTION_SPACE} is not a valid action space: {exc}'
            ) from exc
    return SessionInfo(
        path=path,
        name=path.name,
        robot=path.parent.name,
        robot_type=custom.get(KEY_ROBOT_TYPE),
        action_space=space,
        software_version=custom.get(KEY_SOFTWARE),
        custom_data=custom,
        start_ns=start,
        duration_ns=duration,
        message_count=count,
        topics=topics,
        files=files,
        size_bytes=dir_size(path),
        complete=all(_mcap_closed(path / Path(f).name) for f in files),
    )


def list_sessions(root: str | Path = DEFAULT_ROOT, robot: str | None = None) -> list[SessionInfo]:
    """Every session under ``root`` (``<root>/<robot>/<session>``), by robot then name (= time).

    Unreadable bag directories are listed too, with ``error`` set.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    robots = [root / robot] if robot else sorted(p for p in root.iterdir() if p.is_dir())
    out = []
    for robot_dir in robots:
        if not robot_dir.is_dir():
            continue
        for path in sorted(robot_dir.iterdir()):
            if not is_bag_dir(path):
                continue
            try:
                out.append(read_info(path))
            except BagError as exc:
                out.append(
                    SessionInfo(path=path, name=path.name, robot=robot_dir.name, error=str(exc))
                )
    return out


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int  # receive time (the bag's message timestamp)
    data: bytes  # serialized CDR


@dataclass(frozen=True)
class Frame:
    index: int  # position among the session's frames
    stamp_ns: int  # header.stamp (capture time)
    image: np.ndarray  # [H, W, 3] uint8 in the session's encoding (rgb8 by default)


@dataclass(frozen=True)
class Action:
    stamp_ns: int  # header.stamp of the executed action (completion time)
    index: int  # discrete action index in the session's action space
    values: dict  # channel -> value


@dataclass(frozen=True)
class Loss:
    """``count`` messages of ``topic`` lost before they reached the recorder, with header stamps
    in (``from_ns``, ``to_ns``] (``from_ns`` None: unknown, the topic has no header)."""

    topic: str
    count: int
    from_ns: int | None
    to_ns: int


@dataclass(frozen=True)
class Transition:
    """One step: ``frame`` --``action``--> ``next_frame``.

    ``index`` is the position among all of the session's transitions (before any filter);
    frames are None when transitions are listed without pixels.
    """

    index: int
    frame_index: int
    action: int
    next_frame_index: int
    frame_stamp_ns: int
    action_stamp_ns: int
    next_stamp_ns: int
    values: dict
    frame: np.ndarray | None = None
    next_frame: np.ndarray | None = None


def _stamp_ns(sec_nsec: tuple[int, int]) -> int:
    return sec_nsec[0] * 1_000_000_000 + sec_nsec[1]


class Session:
    """An open recorded session (a rosbag2 bag directory). Use as a context manager.

    Args:
        path: the bag directory.
        camera_topic, executed_topic: topic names or suffixes of the frames and executed actions.
        encoding: frames are returned in this encoding (rgb8, bgr8, mono8 or passthrough).
        action_space: use this instead of the one in the bag's custom_data.

    Raises:
        BagError: not a bag, a foreign or corrupt one, or an unfinished recording (reindex it).
    """

    def __init__(
        self,
        path: str | Path,
        camera_topic: str = CAMERA_SUFFIX,
        executed_topic: str = EXECUTED_SUFFIX,
        encoding: str = 'rgb8',
        action_space: ActionSpace | None = None,
    ) -> None:
        from rosbags.rosbag2 import Reader
        from rosbags.rosbag2.errors import ReaderError
        from rosbags.typesys import Stores, get_typestore

        self.info = read_info(path)
        self.path = self.info.path
        if not self.info.complete:
            raise BagError(
                f'{self.path}: the recording was not finished (recorder killed or disk full); '
                f'run `devbot bag reindex {self.path}` to make it readable'
            )
        self.encoding = encoding
        self._action_space = action_space or self.info.action_space
        self.camera_topic = self.info.topic(camera_topic)
        self.executed_topic = self.info.topic(executed_topic)
        self._typestore = get_typestore(Stores.ROS2_KILTED)
        self._reader = Reader(self.path)
        try:
            self._reader.open()
        except (ReaderError, OSError, KeyError, ValueError, AssertionError) as exc:
            raise BagError(f'{self.path}: unreadable bag: {exc}') from exc
        self._connections = {c.topic: c for c in self._reader.connections}
        self._frame_stamps: list[int] | None = None
        self._frame_logs: list[int] | None = None
        self._frames_in_log_order = True
        self._actions: list[Action] | None = None
        self._transitions: list[Transition] | None = None

    # ------------------------------------------------------------------ basics

    def close(self) -> None:
        if self._reader.is_open:
            self._reader.close()

    def __enter__(self) -> 'Session':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def robot_type(self) -> str | None:
        return self.info.robot_type

    @property
    def action_space(self) -> ActionSpace:
        if self._action_space is None:
            raise BagError(
                f'{self.path}: the bag has no {KEY_ACTION_SPACE} in its custom_data; '
                f'pass action_space= to read its actions'
            )
        return self._action_space

    @property
    def start_ns(self) -> int:
        return self.info.start_ns

    def topic(self, suffix: str) -> str | None:
        return self.info.topic(suffix)

    def messages(
        self,
        topics: Sequence[str] | None = None,
        start_ns: int | None = None,
        stop_ns: int | None = None,
    ) -> Iterator[BagMessage]:
        """Messages in time order.

        Optionally only those of some topics (names or suffixes) and in a log-time window.
        """
        from rosbags.rosbag2.errors import ReaderError

        if topics is None:
            conns = list(self._connections.values())
        else:
            conns = []
            for t in topics:
                name = self.topic(t)
                if name is None:
                    raise BagError(
                        f'{self.path}: no topic {t!r}; topics: {sorted(self._connections)}'
                    )
                conns.append(self._connections[name])
        if not conns:
            return
        try:
            for conn, timestamp, data in self._reader.messages(conns, start=start_ns, stop=stop_ns):
                yield BagMessage(conn.topic, conn.msgtype, timestamp, bytes(data))
        except (ReaderError, AssertionError, ValueError, Exception) as exc:  # noqa: BLE001 - e.g. ZstdError
            if isinstance(exc, BagError):
                raise
            raise BagError(f'{self.path}: corrupt data: {type(exc).__name__}: {exc}') from exc

    def deserialize(self, message: BagMessage):
        """The message as a ``rosbags`` object (fields as in ROS; arrays as numpy)."""
        try:
            return self._typestore.deserialize_cdr(message.data, message.msgtype)
        except Exception as exc:  # noqa: BLE001 - a corrupt payload of any kind
            raise BagError(
                f'{self.path}: cannot decode a {message.msgtype} on {message.topic}: {exc}'
            ) from exc

    # ------------------------------------------------------------------ frames

    def _require(self, topic: str | None, what: str) -> str:
        if topic is None:
            raise BagError(
                f'{self.path}: no {what} topic in the bag; topics: {sorted(self._connections)}'
            )
        return topic

    def _index_frames(self) -> None:
        if self._frame_stamps is not None:
            return
        topic = self._require(self.camera_topic, 'camera')
        seen: dict[int, int] = {}
        order = []
        for msg in self.messages([topic]):
            stamp = self._stamp_of(msg)
            if stamp not in seen:
                seen[stamp] = msg.log_time_ns
                order.append(stamp)
        self._frames_in_log_order = all(a < b for a, b in zip(order, order[1:]))
        stamps = sorted(order)
        self._frame_stamps = stamps
        self._frame_logs = [seen[s] for s in stamps]

    def _stamp_of(self, msg: BagMessage) -> int:
        try:
            return _stamp_ns(header_stamp(msg.data))
        except ValueError as exc:
            raise BagError(
                f'{self.path}: a {msg.msgtype} on {msg.topic} has no readable header: {exc}'
            ) from exc

    @property
    def num_frames(self) -> int:
        self._index_frames()
        return len(self._frame_stamps)

    @property
    def frame_stamps(self) -> np.ndarray:
        """Header stamps (ns) of the frames, in index order."""
        self._index_frames()
        return np.asarray(self._frame_stamps, dtype=np.int64)

    def _decode_image(self, msg: BagMessage) -> np.ndarray:
        from devbot.image import ImageError, image_to_numpy

        image = self.deserialize(msg)
        try:
            return image_to_numpy(image, self.encoding)
        except ImageError as exc:
            raise BagError(f'{self.path}: frame on {msg.topic}: {exc}') from exc

    def frame(self, index: int) -> Frame:
        """Frame ``index`` (0 <= index < num_frames; negative counts from the end)."""
        self._index_frames()
        n = len(self._frame_stamps)
        if not -n <= index < n:
            raise IndexError(f'frame {index} out of range: the session has {n} frames')
        index %= n
        stamp, log = self._frame_stamps[index], self._frame_logs[index]
        for msg in self.messages([self.camera_topic], start_ns=log, stop_ns=log + 1):
            if self._stamp_of(msg) == stamp:
                return Frame(index, stamp, self._decode_image(msg))
        raise BagError(f'{self.path}: frame {index} vanished from the bag')

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[Frame]:
        """Frames ``start`` .. ``stop - 1`` in order (one pass over the bag)."""
        self._index_frames()
        n = len(self._frame_stamps)
        stop = n if stop is None else min(stop, n)
        if start >= stop:
            return
        if not self._frames_in_log_order:
            for i in range(start, stop):
                yield self.frame(i)
            return
        index_of = {s: i for i, s in enumerate(self._frame_stamps)}
        emitted = set()
        for msg in self.messages([self.camera_topic], start_ns=self._frame_logs[start]):
            i = index_of[self._stamp_of(msg)]
            if i in emitted or i < start:
                continue
            if i >= stop:
                break
            emitted.add(i)
            yield Frame(i, self._frame_stamps[i], self._decode_image(msg))

    # ------------------------------------------------------------------ actions and transitions

    def actions(self) -> list[Action]:
        """The executed actions in stamp order (duplicates by stamp removed)."""
        if self._actions is None:
            topic = self._require(self.executed_topic, 'executed-action')
            space = self.action_space
            by_stamp: dict[int, Action] = {}
            for msg in self.messages([topic]):
                js = self.deserialize(msg)
                stamp = js.header.stamp.sec * 1_000_000_000 + js.header.stamp.nanosec
                try:
                    index = space.index_of(list(js.name), [float(v) for v in js.position])
                except ActionError as exc:
                    raise BagError(
                        f'{self.path}: executed action at {stamp} ns is not in the action space: '
                        f'{exc}'
                    ) from exc
                by_stamp.setdefault(stamp, Action(stamp, index, space.values(index)))
            self._actions = [by_stamp[s] for s in sorted(by_stamp)]
        return self._actions

    def action_counts(self) -> np.ndarray:
        """How often each action of the space was executed: int64 [num_actions]."""
        return np.bincount(
            [a.index for a in self.actions()], minlength=self.action_space.num_actions
        ).astype(np.int64)

    def losses(self) -> list[Loss]:
        """Where the recorder was told that messages were lost, in the order it was told."""
        topic = self.topic(LOSSES_SUFFIX)
        if topic is None:
            return []
        out = []
        for msg in self.messages([topic]):
            array = self.deserialize(msg)
            to_ns = _stamp_ns((array.header.stamp.sec, array.header.stamp.nanosec))
            for status in array.status:
                values = {kv.key: kv.value for kv in status.values}
                try:
                    count = int(values['count'])
                    after = values.get('after_stamp_ns')
                    from_ns = int(after) if after is not None else None
                except (KeyError, ValueError) as exc:
                    raise BagError(
                        f'{self.path}: unreadable loss record on {topic}: {values}'
                    ) from exc
                out.append(Loss(status.name, count, from_ns, to_ns))
        return out

    def transition_list(self) -> list[Transition]:
        """All transitions, without pixels (see the module docstring for the pairing rule)."""
        if self._transitions is None:
            self._index_frames()
            stamps = self._frame_stamps
            actions = self.actions()
            nexts = [bisect.bisect_left(stamps, a.stamp_ns) for a in actions]
            shared: dict[int, int] = {}
            for j in nexts:
                shared[j] = shared.get(j, 0) + 1
            paired = {self.camera_topic, self.executed_topic}
            gaps = [
                (loss.from_ns or 0, loss.to_ns) for loss in self.losses() if loss.topic in paired
            ]
            out = []
            for a, j in zip(actions, nexts):
                if j == 0 or j >= len(stamps) or shared[j] > 1:
                    continue  # no frame before/after it, or frames missing: never guess a label
                if any(lo < stamps[j] and stamps[j - 1] < hi for lo, hi in gaps):
                    continue  # a lost frame or action may lie between its two frames
                out.append(
                    Transition(
                        len(out), j - 1, a.index, j, stamps[j - 1], a.stamp_ns, stamps[j], a.values
                    )
                )
            self._transitions = out
        return self._transitions

    def transitions(
        self, filter: TransitionFilter | str | None = None, frames: bool = True
    ) -> Iterator[Transition]:
        """Transitions in order, with pixels unless frames=False.

        Only whole transitions kept by ``filter`` are yielded.
        """
        flt = (
            TransitionFilter.parse(filter, self.action_space)
            if isinstance(filter, str) or filter is None
            else filter
        )
        kept = [t for t in self.transition_list() if flt(t, self.start_ns)]
        if not frames:
            yield from kept
            return
        if not kept:
            return
        wanted_set = {t.frame_index for t in kept} | {t.next_frame_index for t in kept}
        wanted = sorted(wanted_set)
        cache: dict[int, np.ndarray] = {}
        source = self.frames(wanted[0], wanted[-1] + 1) if self._frames_in_log_order else None
        for t in kept:
            for i in (t.frame_index, t.next_frame_index):
                if i in cache:
                    continue
                if source is None:
                    cache[i] = self.frame(i).image
                    continue
                for f in source:
                    if f.index in wanted_set:
                        cache[f.index] = f.image
                    if f.index >= i:
                        break
            yield Transition(
                t.index,
                t.frame_index,
                t.action,
                t.next_frame_index,
                t.frame_stamp_ns,
                t.action_stamp_ns,
                t.next_stamp_ns,
                t.values,
                cache[t.frame_index],
                cache[t.next_frame_index],
            )
            for old in [k for k in cache if k < t.next_frame_index]:
                del cache[old]


def scan_problem(path: str | Path) -> str | None:
    """Why an MCAP file of a bag directory would need a reindex (None when all are closed)."""
    for f in sorted(Path(path).glob('*.mcap')):
        try:
            scan = scan_mcap(f)
        except BagFormatError as exc:
            return str(exc)
        if not scan.complete:
            return f'{f.name}: {scan.problem}'
    return None
