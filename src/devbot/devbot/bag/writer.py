"""Writing rosbag2 bags (MCAP storage + metadata.yaml) from serialized CDR messages. ROS-free.

A bag is a directory::

    <session>/metadata.yaml        rosbag2 metadata, version 9 (what `ros2 bag info` reads)
    <session>/<session>_0.mcap     MCAP, profile ros2, zstd-compressed chunks
    <session>/<session>_1.mcap     ... one more file per split

The MCAP files are written by ``rosbags``' MCAP storage writer, with two additions that make a
crash lose as little as possible:

* every finished chunk is handed to the operating system at once (a ``kill -9`` keeps it), and a
  chunk is closed at the latest ``flush_interval_s`` after its first message, so a slow topic
  does not sit in memory;
* ``metadata.yaml`` is written when the bag opens and refreshed while recording (atomically), so
  even a killed recording has its custom data (robot type, action space, software version) on
  disk. ``devbot bag reindex`` then closes the MCAP file and recounts the messages
  (see :mod:`devbot.bag.reindex`).

Message timestamps are the receive times in ns; callers keep them non-decreasing (an MCAP file
without an index, as a repaired one is, must be in time order).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import yaml
from backports import zstd
from rosbags.interfaces import (
    Connection,
    ConnectionExtRosbag2,
    MessageDefinition,
    MessageDefinitionFormat,
    Qos,
)
from rosbags.rosbag2.enums import CompressionMode
from rosbags.rosbag2.metadata import dump_qos_v9
from rosbags.rosbag2.storage_mcap import McapWriter

from devbot.bag.metadata import (
    METADATA_VERSION,
    TopicSpec,
    UnknownMessageType,
    build_metadata,
    message_definition,
    write_metadata,
)


class BagWriteError(RuntimeError):
    """A bag that cannot be written (disk full, permissions, bad topic/type, writer closed)."""


def qos_yaml(profiles: Sequence[Qos]) -> str:
    """Offered QoS profiles as the YAML text rosbag2 stores in MCAP channel metadata."""
    from ruamel.yaml import YAML

    stream = StringIO()
    ryaml = YAML(typ='safe')
    ryaml.default_flow_style = False
    ryaml.dump(dump_qos_v9(list(profiles)), stream)
    return stream.getvalue().strip()


class _Storage(McapWriter):
    """rosbags' MCAP writer, handing each finished chunk to the OS and naming the file."""

    def __init__(self, bag_dir: Path, file_name: str, compression: CompressionMode) -> None:
        # the base class names its file <dir>/<dir name>.mcap: create it, then rename it while
        # open (POSIX keeps writing to the same file)
        super().__init__(bag_dir, compression)
        target = bag_dir / file_name
        if target.exists():
            self.abort()
            raise BagWriteError(f'{target} exists already, not overwriting')
        os.rename(self.path, target)
        self.path = target
        if compression == CompressionMode.STORAGE:
            # zstd frames with a content checksum: a damaged chunk is an error when read, never
            # silently wrong pixels (rosbags writes no chunk CRC)
            options = {zstd.CompressionParameter.checksum_flag: 1}
            self.compressor = lambda data: zstd.compress(data, options=options)
        self.chunk_opened = 0.0  # monotonic time of the first message of the pending chunk
        self.messages = 0  # messages written to this file
        self.first_ns = None  # first and last timestamp in this file
        self.last_ns = None

    def close_chunk(self) -> None:
        super().close_chunk()
        self.bio.flush()  # the chunk now survives a kill of this process

    def add(self, connection: Connection, timestamp: int, data: bytes | memoryview) -> None:
        if not self.chunk.msgs:
            self.chunk_opened = time.monotonic()
        self.write(connection, timestamp, data)
        self.messages += 1
        if self.first_ns is None:
            self.first_ns = timestamp
        self.last_ns = timestamp if self.last_ns is None else max(self.last_ns, timestamp)

    def has_pending(self) -> bool:
        return bool(self.chunk.msgs)

    def size(self) -> int:
        return self.bio.tell()


@dataclass
class _FileStats:
    path: str
    first_ns: int | None = None
    last_ns: int | None = None
    messages: int = 0


@dataclass
class _TopicState:
    spec: TopicSpec
    connection: Connection
    count: int = 0
    msgdef: str = ''
    type_hash: str = ''


@dataclass
class WriterOptions:
    """How a bag is written.

    Attributes:
        compression: ``zstd`` (chunk compression, lossless) or ``none``.
        flush_interval_s: a message reaches the file at the latest this long after it arrived
            (the pending chunk is closed early); also how often metadata.yaml is refreshed.
        split_bytes: start a new MCAP file when the current one reaches this size (0 = never).
        split_duration_ns: ... or when it spans this long (0 = never).
    """

    compression: str = 'zstd'
    flush_interval_s: float = 1.0
    split_bytes: int = 0
    split_duration_ns: int = 0

    def __post_init__(self) -> None:
        if self.compression not in ('zstd', 'none'):
            raise BagWriteError(f"compression must be 'zstd' or 'none', got {self.compression!r}")
        if not self.flush_interval_s > 0:
            raise BagWriteError(f'flush_interval_s must be > 0, got {self.flush_interval_s}')
        if self.split_bytes < 0 or self.split_duration_ns < 0:
            raise BagWriteError('split sizes must be >= 0')


class BagWriter:
    """Writes one rosbag2 bag directory.

    Example:
        >>> with BagWriter('saved/sessions/toroidal_dot/x', custom_data={'k': 'v'}) as bag:
        ...     spec = TopicSpec('/toroidal_dot/camera/image_raw', 'sensor_msgs/msg/Image')
        ...     tid = bag.add_topic(spec)
        ...     bag.write(tid, time.time_ns(), serialized_bytes)

    Errors (disk full, permissions, ...) raise :class:`BagWriteError`; after one the writer is
    closed as far as the disk allows, and every chunk written before stays readable.
    """

    def __init__(
        self,
        path: str | Path,
        custom_data: Mapping[str, str] | None = None,
        options: WriterOptions | None = None,
    ) -> None:
        self.path = Path(path)
        self.options = options or WriterOptions()
        self.custom_data = {str(k): str(v) for k, v in (custom_data or {}).items()}
        self._compression = (
            CompressionMode.STORAGE if self.options.compression == 'zstd' else CompressionMode.NONE
        )
        self._topics: list[_TopicState] = []
        self._files: list[_FileStats] = []
        self._storage: _Storage | None = None
        self._closed_bytes = 0  # size of finished split files
        self._last_metadata = 0.0
        self._last_sync = time.monotonic()
        self.closed = False
        self.failed: str | None = None
        if self.path.exists():
            raise BagWriteError(f'{self.path} exists already, not overwriting')
        try:
            self.path.mkdir(parents=True)
            self._open_file()
            self._write_metadata()
        except OSError as exc:
            raise BagWriteError(f'cannot create bag {self.path}: {exc}') from exc

    # ------------------------------------------------------------------ topics and messages

    def add_topic(self, spec: TopicSpec) -> int:
        """Register a topic; returns the id to pass to :meth:`write`."""
        self._check_open()
        if any(t.spec.name == spec.name for t in self._topics):
            raise BagWriteError(f'topic {spec.name} is already in the bag')
        msgdef, type_hash = spec.msgdef, spec.type_hash
        if msgdef is None or type_hash is None:
            try:
                msgdef, type_hash = message_definition(spec.msgtype)
            except UnknownMessageType as exc:
                raise BagWriteError(str(exc)) from exc
        fmt = (
            MessageDefinitionFormat.IDL
            if msgdef.startswith('=' * 80 + '\nIDL: ')
            else MessageDefinitionFormat.MSG
        )
        connection = Connection(
            id=len(self._topics) + 1,
            topic=spec.name,
            msgtype=spec.msgtype,
            msgdef=MessageDefinition(fmt, msgdef),
            digest=type_hash,
            msgcount=0,
            ext=ConnectionExtRosbag2('cdr', list(spec.offered_qos)),
            owner=self,
        )
        state = _TopicState(spec, connection, msgdef=msgdef, type_hash=type_hash)
        self._topics.append(state)
        try:
            self._register(state)
            self._write_metadata()
        except OSError as exc:
            self._fail(f'cannot add topic {spec.name}: {exc}')
        return connection.id

    def write(self, topic_id: int, timestamp_ns: int, data: bytes | memoryview) -> None:
        """Append one serialized message (timestamp = receive time in ns)."""
        self._check_open()
        if not 1 <= topic_id <= len(self._topics):
            raise BagWriteError(f'unknown topic id {topic_id}')
        topic = self._topics[topic_id - 1]
        storage = self._storage
        try:
            if self._split_due(storage, timestamp_ns):
                self._roll_over()
                storage = self._storage
            storage.add(topic.connection, timestamp_ns, data)
        except OSError as exc:
            self._fail(f'write to {storage.path} failed: {exc}')
        topic.count += 1
        stats = self._files[-1]
        stats.messages += 1
        stats.first_ns = timestamp_ns if stats.first_ns is None else stats.first_ns
        stats.last_ns = timestamp_ns if stats.last_ns is None else max(stats.last_ns, timestamp_ns)

    def flush_due(self) -> None:
        """Call periodically.

        Writes a chunk older than flush_interval_s and refreshes metadata.yaml.
        """
        if self.closed:
            return
        now = time.monotonic()
        try:
            if (
                self._storage.has_pending()
                and now - self._storage.chunk_opened >= self.options.flush_interval_s
            ):
                self._storage.close_chunk()
            if now - self._last_metadata >= self.options.flush_interval_s:
                self._write_metadata()
            if now - self._last_sync >= 5 * self.options.flush_interval_s:
                os.fsync(self._storage.bio.fileno())
                self._last_sync = now
        except OSError as exc:
            self._fail(f'flushing {self._storage.path} failed: {exc}')

    def close(self) -> None:
        """Finish the MCAP file (index, footer) and write the final metadata.yaml."""
        if self.closed:
            return
        try:
            self._storage.close(METADATA_VERSION, self._metadata_text(inner=True))
            self._closed_bytes += self._storage.path.stat().st_size
            self.closed = True
            self._write_metadata()
        except OSError as exc:
            self._fail(f'closing {self.path} failed: {exc}')

    def __enter__(self) -> 'BagWriter':
        return self

    def __exit__(self, *exc) -> None:
        if not self.closed:
            self.close()

    # ------------------------------------------------------------------ queries

    @property
    def bytes_written(self) -> int:
        """Bytes in the bag's files so far (closed splits + the open file)."""
        if self.closed or self._storage is None:
            return self._closed_bytes
        return self._closed_bytes + self._storage.size()

    def type_hash(self, topic_id: int) -> str:
        """The RIHS01 hash stored for a topic."""
        return self._topics[topic_id - 1].type_hash

    @property
    def message_counts(self) -> dict[str, int]:
        return {t.spec.name: t.count for t in self._topics}

    @property
    def files(self) -> list[Path]:
        return [self.path / f.path for f in self._files]

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self.closed:
            raise BagWriteError(
                f'bag {self.path} is closed'
                + (f' after an error: {self.failed}' if self.failed else '')
            )

    def _open_file(self) -> None:
        name = f'{self.path.name}_{len(self._files)}.mcap'
        self._storage = _Storage(self.path, name, self._compression)
        self._files.append(_FileStats(name))
        for topic in self._topics:
            self._register(topic)

    def _register(self, topic: _TopicState) -> None:
        storage = self._storage
        if not any(s.name == topic.spec.msgtype for s in storage.schemas):
            storage.add_msgtype(topic.connection)
        storage.add_connection(topic.connection, qos_yaml(topic.spec.offered_qos))

    def _split_due(self, storage: _Storage, timestamp_ns: int) -> bool:
        opts = self.options
        if (
            opts.split_bytes
            and storage.size() + storage.chunk.bio.tell() >= opts.split_bytes
            and storage.messages
        ):
            return True
        return bool(
            opts.split_duration_ns
            and storage.first_ns is not None
            and timestamp_ns - storage.first_ns >= opts.split_duration_ns
        )

    def _roll_over(self) -> None:
        self._storage.close(METADATA_VERSION, self._metadata_text(inner=True))
        self._closed_bytes += self._storage.path.stat().st_size
        self._open_file()
        self._write_metadata()

    def _fail(self, reason: str) -> None:
        """After an I/O error: keep what is on disk readable as far as possible, then raise."""
        self.failed = reason
        self.closed = True
        storage = self._storage
        if storage is not None:
            try:
                storage.abort()
            except OSError:
                pass
            try:
                from devbot.bag.reindex import repair_mcap  # reindex imports metadata only

                repair_mcap(storage.path)
            except Exception:  # noqa: BLE001 - the disk may be full; `devbot bag reindex` later
                pass
        try:
            self._write_metadata()
        except OSError:
            pass
        raise BagWriteError(reason)

    def _metadata(self) -> dict:
        files = [f for f in self._files]
        firsts = [f.first_ns for f in files if f.first_ns is not None]
        lasts = [f.last_ns for f in files if f.last_ns is not None]
        start = min(firsts) if firsts else 0
        end = max(lasts) if lasts else 0
        return build_metadata(
            topics=[(t.spec, t.msgdef, t.type_hash, t.count) for t in self._topics],
            files=[
                (
                    f.path,
                    f.first_ns or 0,
                    (f.last_ns - f.first_ns) if f.first_ns is not None else 0,
                    f.messages,
                )
                for f in files
            ],
            start_ns=start,
            duration_ns=end - start,
            custom_data=self.custom_data,
        )

    def _metadata_text(self, inner: bool = False) -> str:
        doc = self._metadata()
        return yaml.safe_dump(doc['rosbag2_bagfile_information'] if inner else doc, sort_keys=False)

    def _write_metadata(self) -> None:
        write_metadata(self.path, self._metadata())
        self._last_metadata = time.monotonic()
