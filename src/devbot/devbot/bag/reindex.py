"""Repairing a bag whose recorder died: close its MCAP files and rebuild metadata.yaml. ROS-free.

A recorder killed with ``-9`` (or stopped by a full disk) leaves MCAP files without index and
footer; the chunks it finished are complete records on disk. :func:`repair_mcap` scans the
records from the start, cuts the file after the last complete one and appends the MCAP end
records (a data-end record and a footer that says "no summary"), so every reader (``rosbags``,
the ``mcap`` library, ``ros2 bag``, Foxglove) reads it by scanning. :func:`reindex` does that for
every file of a bag and rewrites ``metadata.yaml`` from what the files really hold (message
counts, time range, topics with their types and offered QoS), keeping the custom data of the
metadata.yaml the recorder wrote when it started.

Nothing readable is dropped: only the incomplete record at the very end (a chunk cut short by
the kill) is cut off.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from devbot.bag.metadata import (
    TopicSpec,
    UnknownMessageType,
    build_metadata,
    message_definition,
    read_metadata,
    write_metadata,
)

MAGIC = b'\x89MCAP0\r\n'
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = (
    0x01,
    0x02,
    0x03,
    0x04,
    0x05,
    0x06,
)
OP_METADATA, OP_DATA_END = 0x0C, 0x0F
_U16, _U32, _U64 = struct.Struct('<H'), struct.Struct('<I'), struct.Struct('<Q')


class BagFormatError(ValueError):
    """A file or directory that is not a (repairable) rosbag2 MCAP bag."""


@dataclass
class McapScan:
    """What an MCAP file holds, found by reading its records in order.

    Attributes:
        path: the file.
        complete: it ends with a valid footer (the writer closed it).
        good_end: offset after the last complete data record (where a repair cuts).
        schemas: id -> (name, encoding, data).
        channels: id -> (topic, schema id, message encoding, metadata dict).
        counts: channel id -> messages.
        first_ns, last_ns: log time range of the messages (None when there are none).
        messages: messages in total.
        rosbag2_metadata: the ``serialized_metadata`` YAML a closed rosbag2 file carries.
        problem: why the scan stopped early (None when it read to the end).
    """

    path: Path
    complete: bool = False
    good_end: int = 0
    schemas: dict = field(default_factory=dict)
    channels: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    first_ns: int | None = None
    last_ns: int | None = None
    messages: int = 0
    rosbag2_metadata: str | None = None
    problem: str | None = None


def _string(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = _U32.unpack_from(buf, pos)
    pos += 4
    return bytes(buf[pos : pos + n]).decode(), pos + n


def _decompress(compression: str, data: bytes, size: int) -> bytes:
    if compression == '':
        return data
    if compression == 'zstd':
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
    if compression == 'lz4':
        import lz4.frame

        return lz4.frame.decompress(data)
    raise BagFormatError(f'unsupported chunk compression {compression!r}')


class _Records:
    """Counts schemas, channels and messages of a record stream into a scan."""

    def __init__(self, scan: McapScan) -> None:
        self.scan = scan

    def record(self, op: int, body: memoryview) -> None:
        scan = self.scan
        if op == OP_SCHEMA:
            (sid,) = _U16.unpack_from(body, 0)
            name, pos = _string(body, 2)
            encoding, pos = _string(body, pos)
            (n,) = _U32.unpack_from(body, pos)
            scan.schemas[sid] = (name, encoding, bytes(body[pos + 4 : pos + 4 + n]).decode())
        elif op == OP_CHANNEL:
            cid, sid = struct.unpack_from('<HH', body, 0)
            topic, pos = _string(body, 4)
            encoding, pos = _string(body, pos)
            (size,) = _U32.unpack_from(body, pos)
            pos += 4
            end = pos + size
            meta = {}
            while pos < end:
                key, pos = _string(body, pos)
                value, pos = _string(body, pos)
                meta[key] = value
            scan.channels[cid] = (topic, sid, encoding, meta)
        elif op == OP_MESSAGE:
            cid, _, log_time = struct.unpack_from('<HIQ', body, 0)
            scan.counts[cid] = scan.counts.get(cid, 0) + 1
            scan.messages += 1
            scan.first_ns = log_time if scan.first_ns is None else min(scan.first_ns, log_time)
            scan.last_ns = log_time if scan.last_ns is None else max(scan.last_ns, log_time)
        elif op == OP_METADATA:
            name, pos = _string(body, 0)
            if name == 'rosbag2':
                pos += 4  # byte length of the map
                while pos < len(body):
                    key, pos = _string(body, pos)
                    value, pos = _string(body, pos)
                    if key == 'serialized_metadata':
                        scan.rosbag2_metadata = value

    def chunk(self, body: memoryview) -> None:
        # start, end, uncompressed size, crc, compression, compressed size, records
        (size,) = _U64.unpack_from(body, 16)
        compression, pos = _string(body, 28)
        (csize,) = _U64.unpack_from(body, pos)
        pos += 8
        if pos + csize > len(body):
            raise BagFormatError('chunk data exceeds its record')
        data = memoryview(_decompress(compression, bytes(body[pos : pos + csize]), size))
        if len(data) != size:
            raise BagFormatError(f'chunk holds {len(data)} bytes, its header says {size}')
        # validate the whole chunk before counting any of it
        records, p = [], 0
        while p < len(data):
            if p + 9 > len(data):
                raise BagFormatError('truncated record inside a chunk')
            op = data[p]
            (n,) = _U64.unpack_from(data, p + 1)
            if p + 9 + n > len(data):
                raise BagFormatError('record inside a chunk exceeds the chunk')
            records.append((op, data[p + 9 : p + 9 + n]))
            p += 9 + n
        for op, rec in records:
            self.record(op, rec)


def scan_mcap(path: str | Path) -> McapScan:
    """Read an MCAP file's records in order (no index needed); see :class:`McapScan`.

    Raises:
        BagFormatError: not an MCAP file, or not a ros2-profile one.
    """
    path = Path(path)
    scan = McapScan(path)
    counter = _Records(scan)
    size = path.stat().st_size
    with path.open('rb') as f:
        head = f.read(8 + 9)
        if len(head) < 8 or head[:8] != MAGIC:
            raise BagFormatError(f'{path}: not an MCAP file (bad magic)')
        if len(head) < 17 or head[8] != OP_HEADER:
            raise BagFormatError(f'{path}: MCAP header record missing')
        (n,) = _U64.unpack_from(head, 9)
        if 17 + n > size:
            raise BagFormatError(f'{path}: MCAP header record truncated')
        body = f.read(n)
        profile = _string(memoryview(body), 0)[0] if n >= 4 else ''
        if profile != 'ros2':
            raise BagFormatError(
                f'{path}: MCAP profile is {profile!r}, not ros2 (not a rosbag2 file)'
            )
        pos = 17 + n
        scan.good_end = pos
        while True:
            if pos == size:
                scan.problem = 'file ends without index and footer (recorder stopped early)'
                break
            if pos + 9 > size:
                scan.problem = f'incomplete record at byte {pos}'
                break
            rec_head = f.read(9)
            op = rec_head[0]
            (n,) = _U64.unpack_from(rec_head, 1)
            if pos + 9 + n > size:
                scan.problem = f'incomplete record (op 0x{op:02x}) at byte {pos}'
                break
            if op == OP_DATA_END:
                scan.good_end = pos
                f.seek(size - 37)
                tail = f.read(37)
                scan.complete = (
                    size >= pos + 9 + n + 37 and tail[-8:] == MAGIC and tail[0] == OP_FOOTER
                )
                if not scan.complete:
                    scan.problem = 'data section ends without a valid footer'
                break
            body = memoryview(f.read(n))
            try:
                if op == OP_CHUNK:
                    counter.chunk(body)
                elif op not in (OP_HEADER, OP_FOOTER):
                    counter.record(op, body)
            except Exception as exc:  # noqa: BLE001 - any malformed record ends the readable part
                scan.problem = f'unreadable record (op 0x{op:02x}) at byte {pos}: {exc}'
                break
            pos += 9 + n
            scan.good_end = pos
    return scan


def repair_mcap(path: str | Path) -> McapScan:
    """Close an MCAP file a dead writer left open: cut after its last complete record and
    append the end records. A complete file is left untouched. Returns the scan."""
    scan = scan_mcap(path)
    if scan.complete:
        return scan
    with Path(path).open('r+b') as f:
        f.truncate(scan.good_end)
        f.seek(scan.good_end)
        f.write(bytes([OP_DATA_END]) + _U64.pack(4) + _U32.pack(0))
        # footer: summary start 0 and summary offset start 0 = no summary section; crc 0
        f.write(bytes([OP_FOOTER]) + _U64.pack(20) + _U64.pack(0) + _U64.pack(0) + _U32.pack(0))
        f.write(MAGIC)
        f.flush()
    return scan


@dataclass
class ReindexResult:
    path: Path
    files: list[McapScan]
    repaired: list[Path]
    message_count: int
    metadata: dict


def _split_number(path: Path) -> tuple[int, str]:
    stem = path.stem
    tail = stem.rsplit('_', 1)[-1]
    return (int(tail) if tail.isdigit() else -1, path.name)


def reindex(bag_dir: str | Path, repair: bool = True) -> ReindexResult:
    """Rebuild ``metadata.yaml`` of a bag directory from its MCAP files (repairing them).

    Raises:
        BagFormatError: no MCAP file in the directory, or a file that is not a rosbag2 MCAP.
    """
    from rosbags.rosbag2.metadata import parse_qos

    bag_dir = Path(bag_dir)
    if not bag_dir.is_dir():
        raise BagFormatError(f'{bag_dir}: not a directory')
    files = sorted(bag_dir.glob('*.mcap'), key=_split_number)
    if not files:
        raise BagFormatError(f'{bag_dir}: no .mcap file (not an MCAP rosbag2 bag)')
    old = read_metadata(bag_dir)
    custom = old.get('custom_data') or {}
    old_hashes = {
        t['topic_metadata']['name']: t['topic_metadata'].get('type_description_hash', '')
        for t in old.get('topics_with_message_count') or []
        if isinstance(t, dict)
    }
    scans, repaired = [], []
    for f in files:
        scan = repair_mcap(f) if repair else scan_mcap(f)
        if not scan.complete and repair:
            repaired.append(f)
        if not custom and scan.rosbag2_metadata:
            try:
                custom = (yaml.safe_load(scan.rosbag2_metadata) or {}).get('custom_data') or {}
            except yaml.YAMLError:
                pass
        scans.append(scan)

    topics: dict[str, list] = {}  # name -> [TopicSpec, msgdef, hash, count]
    for scan in scans:
        for cid, (topic, sid, encoding, meta) in scan.channels.items():
            if encoding != 'cdr':
                raise BagFormatError(
                    f'{scan.path}: topic {topic} has encoding {encoding!r}, not cdr'
                )
            schema = scan.schemas.get(sid, ('', '', ''))
            if topic not in topics:
                qos = tuple(parse_qos(meta.get('offered_qos_profiles', '')))
                type_hash = old_hashes.get(topic) or _known_hash(schema[0])
                topics[topic] = [TopicSpec(topic, schema[0], qos), schema[2], type_hash, 0]
            topics[topic][3] += scan.counts.get(cid, 0)
    firsts = [s.first_ns for s in scans if s.first_ns is not None]
    lasts = [s.last_ns for s in scans if s.last_ns is not None]
    start = min(firsts) if firsts else 0
    duration = (max(lasts) - start) if lasts else 0
    doc = build_metadata(
        topics=[tuple(v) for v in topics.values()],
        files=[
            (
                s.path.name,
                s.first_ns or 0,
                (s.last_ns - s.first_ns) if s.first_ns is not None else 0,
                s.messages,
            )
            for s in scans
        ],
        start_ns=start,
        duration_ns=duration,
        custom_data={str(k): str(v) for k, v in custom.items()},
    )
    if repair:
        write_metadata(bag_dir, doc)
    return ReindexResult(bag_dir, scans, repaired, sum(s.messages for s in scans), doc)


def _known_hash(msgtype: str) -> str:
    try:
        return message_definition(msgtype)[1]
    except UnknownMessageType:
        return ''
