"""Importing sessions recorded by the original Python codebase into devbot sessions. ROS-free.

``devbot import-original SESSION_DIR...`` turns each session folder written by the original
research code (its ``RecordingWriter``) into a rosbag2 session under
``<out>/<robot>/<session>/``, laid out like a ``devbot record`` session of that robot, so
``devbot bag info``, ``devbot play``, ``devbot replay`` and ``devbot train`` read it unchanged.
The source folder is only read, never changed.

The original's session format
-----------------------------
One folder per session (``saved/sessions/<robot>/session_YYYYmmdd_HHMMSS/``)::

    session_meta.json           JSON object, rewritten at every shard rotation and at the end
    events_shard_000.jsonl      the events, one JSON object a line
    events_shard_001.jsonl      ...
    frames/frame_000000.jpg     one JPEG (RGB, PIL quality 85) per observation

``session_meta.json`` holds ``session_name``, ``start_time`` (local time, ISO 8601),
``shard_size`` (events per shard), ``max_disk_gb``, ``robot_type`` (the Python class name of the
robot: ``ToroidalDotRobot`` or ``JetBotInterface``), ``action_space`` (the discrete actions, a
list of ``{channel: value}`` objects such as ``{"action": 1}`` or ``{"motor_left": 0,
"motor_right": 0.12, "duration": 0.2}``; no channel ranges) and ``total_shards``; a session
that was finished properly also has ``end_time`` and ``total_steps``.

Observations and actions share one step counter and one event stream. Every event is
``{"step": n, "type": "observation" | "action", "data": ..., "timestamp": t}`` with ``t`` the
wall-clock time in seconds (float, ``time.time()``). An observation's data is
``{"frame_path": "frames/frame_NNNNNN.jpg"}``, ``NNNNNN`` being its step number zero-padded to
six digits (so frame files are numbered by step, not consecutively). An action's data is the
action object itself, recorded just before the robot starts executing it; execution is
synchronous, so the next observation is taken after the action has finished. The usual sequence
is observation, action, observation, action, ...

Events are buffered and a shard file is written in one go once it holds ``shard_size`` events
(1000 by default); the remainder is written when the recording is finalized. A recording that
was killed has lost its last, unwritten shard (its frames exist without events) and has no
``total_steps``. Shard numbers are three-digit zero-padded (``events_shard_000.jsonl``) and grow
past 999 without more padding. The original's reader reads every ``events_shard_*.jsonl``,
sorts all events by ``step`` and resolves ``frame_path`` relative to the session folder; this
importer does the same.

What the devbot session holds
-----------------------------
* ``<ns>/camera/image_raw`` (``sensor_msgs/msg/Image``, ``rgb8``, ``header.frame_id`` camera):
  one message per observation, ``header.stamp`` = the observation's timestamp.
* ``<ns>/motor_command/executed`` (``sensor_msgs/msg/JointState``, the action space's channels,
  velocity and effort zero): one message per action, ``header.stamp`` = the action's timestamp.
  That is when the action started rather than the completion time a devbot robot stamps, but
  both lie between the observation before the action and the one after it, which is all that
  pairing a frame, its action and the next frame depends on (:mod:`devbot.bag.session`).
* The bag's receive times equal the header stamps; the namespace ``<ns>`` is the robot file's.
* custom_data: the robot type and action space of the devbot robot file, the namespace, the
  robot (sessions sub-directory), the software version, plus ``devbot.imported_from`` (the
  source folder) and ``devbot.original_session_meta`` (its ``session_meta.json`` verbatim).

Stamps are the original's timestamps in ns, made strictly increasing in step order: a clock
that did not advance between two events (a coarse system clock) or went back would otherwise
merge two frames that devbot tells apart by stamp, or pair an action with the wrong frame; such
a stamp is moved to 1 ns after the previous one (the import reports how many).

Frames are decoded to ``sensor_msgs/Image`` (rgb8) rather than kept as
``sensor_msgs/CompressedImage`` JPEG bytes: the session reader, the dataset of ``devbot train``,
``devbot replay`` and the world-model node all read ``sensor_msgs/Image`` from
``camera/image_raw``, the topic a devbot recording has, and none decodes JPEG. The decoding is
the original's own (PIL, converted to RGB), so the pixels are exactly those the original
trained on; the source JPEGs stay where they are. The bag is larger (zstd-compressed raw
pixels instead of JPEG).

Each action of the original session must be one of the discrete actions of the devbot robot file
(``config/toroidal_dot.yaml`` for ``ToroidalDotRobot``, ``config/jetbot.yaml`` for
``JetBotInterface``, or ``--robot-config``); a session whose action space lists another action
is refused before anything is written.

A session is written into a hidden folder ``<out>/<robot>/.importing-<name>-<random>/`` and moved
to its place only when complete, so an error (a line that is not JSON, a missing frame file, a
truncated JPEG, ...) leaves no session behind; the error names the shard file and line.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from devbot import topics
from devbot.action_space import ActionError, ActionSpace, ConfigError
from devbot.bag.metadata import (
    KEY_ACTION_SPACE,
    KEY_NAMESPACE,
    KEY_ROBOT,
    KEY_ROBOT_TYPE,
    KEY_SOFTWARE,
    TopicSpec,
    software_version,
)
from devbot.bag.storage import DEFAULT_ROOT, new_session_name
from devbot.bag.writer import BagWriteError, BagWriter
from devbot.cdr import action_cdr, image_cdr

HELP = "convert the original codebase's recorded sessions into devbot sessions"
META_FILE = 'session_meta.json'
SHARD_RE = re.compile(r'^events_shard_(\d+)\.jsonl$')
# the original's robot class name -> devbot robot type
ROBOT_TYPES = {'ToroidalDotRobot': 'toroidal_dot', 'JetBotInterface': 'jetbot'}
KEY_IMPORTED_FROM = 'devbot.imported_from'
KEY_ORIGINAL_META = 'devbot.original_session_meta'
FRAME_ID = 'camera'

EXAMPLES = """\
examples:
  devbot import-original ~/old/saved/sessions/toroidal_dot/session_20250921_142133
      -> saved/sessions/toroidal_dot/20250921-142133-412345/
  devbot import-original ~/old/saved/sessions/jetbot          (every session in that folder)
  devbot import-original old/session_20251002_090000 --out /data/sessions --robot jetbot_lab
  devbot import-original old/session_x --robot-config config/jetbot.yaml   (robot type unknown)

Then: devbot bag info toroidal_dot/20250921-142133-412345, devbot train, devbot replay, ...
"""


class OriginalSessionError(ValueError):
    """An original session that cannot be imported; the message names the file (and line)."""


@dataclass(frozen=True)
class Event:
    """One event of the original's stream.

    Attributes:
        step: the original's step number (the order of events).
        kind: ``observation`` or ``action``.
        data: the frame reference (observation) or the action object.
        timestamp: wall-clock seconds.
        where: ``<shard file>:<line>`` for error messages.
    """

    step: int
    kind: str
    data: dict
    timestamp: float
    where: str


@dataclass(frozen=True)
class OriginalSession:
    """An original session folder, read (events parsed, frames not yet decoded).

    Attributes:
        path: the folder. meta: its session_meta.json. events: all events by step.
        shards: the shard files, by shard number.
    """

    path: Path
    meta: dict
    events: tuple[Event, ...]
    shards: tuple[Path, ...]


@dataclass(frozen=True)
class ImportResult:
    """What one import wrote.

    Attributes:
        source: the original session folder. bag: the new devbot session.
        frames, actions: messages written. adjusted_stamps: stamps moved to keep them increasing.
    """

    source: Path
    bag: Path
    frames: int
    actions: int
    adjusted_stamps: int


# ---------------------------------------------------------------------------------------------
# reading the original format
# ---------------------------------------------------------------------------------------------


def is_original_session(path: Path) -> bool:
    """A folder holding a session of the original codebase (it has session_meta.json)."""
    return (path / META_FILE).is_file()


def find_sessions(paths: Sequence[str | Path]) -> list[Path]:
    """The session folders named, a folder of sessions standing for all sessions in it.

    Raises:
        OriginalSessionError: a path is neither a session nor a folder holding sessions.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if is_original_session(p):
            out.append(p)
            continue
        if not p.is_dir():
            raise OriginalSessionError(f'{p}: no such folder')
        inner = sorted(c for c in p.iterdir() if c.is_dir() and is_original_session(c))
        if not inner:
            raise OriginalSessionError(
                f'{p}: not a session of the original codebase (no {META_FILE}) and holds none'
            )
        out.extend(inner)
    return out


def _shard_files(path: Path) -> list[Path]:
    found = []
    for f in path.iterdir():
        m = SHARD_RE.match(f.name)
        if m and f.is_file():
            found.append((int(m.group(1)), f))
    return [f for _, f in sorted(found)]


def _parse_event(raw: Any, where: str) -> Event:
    if not isinstance(raw, dict):
        raise OriginalSessionError(
            f'{where}: an event must be a JSON object, got {type(raw).__name__}'
        )
    missing = [k for k in ('step', 'type', 'data', 'timestamp') if k not in raw]
    if missing:
        raise OriginalSessionError(f'{where}: event without {", ".join(missing)}: {raw!r}')
    step, kind, data, ts = raw['step'], raw['type'], raw['data'], raw['timestamp']
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise OriginalSessionError(f'{where}: step must be an integer >= 0, got {step!r}')
    if kind not in ('observation', 'action'):
        raise OriginalSessionError(f"{where}: type must be 'observation' or 'action', got {kind!r}")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts) or ts < 0:
        raise OriginalSessionError(
            f'{where}: timestamp must be seconds since the epoch, got {ts!r}'
        )
    if not isinstance(data, dict):
        raise OriginalSessionError(f'{where}: data must be a JSON object, got {data!r}')
    if kind == 'observation' and not isinstance(data.get('frame_path'), str):
        raise OriginalSessionError(f'{where}: observation without a frame_path: {data!r}')
    return Event(step, kind, data, float(ts), where)


def read_original(path: str | Path) -> OriginalSession:
    """Read an original session's metadata and events (frames are decoded later).

    Raises:
        OriginalSessionError: no or unreadable session_meta.json, no shard, a line that is not
            an event, two events with the same step, no observation at all.
    """
    path = Path(path)
    meta_path = path / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError as exc:
        raise OriginalSessionError(
            f'{path}: no {META_FILE}, not a session of the original'
        ) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OriginalSessionError(f'{meta_path}: unreadable: {exc}') from exc
    if not isinstance(meta, dict):
        raise OriginalSessionError(f'{meta_path}: must hold a JSON object')
    shards = _shard_files(path)
    if not shards:
        raise OriginalSessionError(f'{path}: no events_shard_*.jsonl files')
    events: list[Event] = []
    for shard in shards:
        try:
            text = shard.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise OriginalSessionError(f'{shard}: unreadable: {exc}') from exc
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f'{shard}:{number}'
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise OriginalSessionError(
                    f'{where}: not valid JSON ({exc.msg}): {line[:80]!r}'
                ) from exc
            events.append(_parse_event(raw, where))
    if not any(e.kind == 'observation' for e in events):
        raise OriginalSessionError(
            f'{path}: no observation in {len(shards)} shard(s), nothing to import'
        )
    events.sort(key=lambda e: e.step)
    for a, b in zip(events, events[1:]):
        if a.step == b.step:
            raise OriginalSessionError(f'{b.where}: step {b.step} occurs twice (also at {a.where})')
    return OriginalSession(path, meta, tuple(events), tuple(shards))


def decode_frame(session_dir: Path, event: Event) -> np.ndarray:
    """An observation's frame as the original reads it: uint8 [H, W, 3] RGB.

    Raises:
        OriginalSessionError: the file is missing or not a complete image.
    """
    from PIL import Image, UnidentifiedImageError

    frame_path = session_dir / event.data['frame_path']
    if not frame_path.is_file():
        raise OriginalSessionError(f'{event.where}: frame file {frame_path} is missing')
    try:
        with Image.open(frame_path) as img:
            img.load()  # decodes everything now: a truncated file raises here
            return np.asarray(img.convert('RGB'), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise OriginalSessionError(
            f'{event.where}: frame file {frame_path} is not a complete image: {exc}'
        ) from exc


# ---------------------------------------------------------------------------------------------
# the devbot robot
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Robot:
    """The devbot robot an original session is imported as.

    Attributes:
        space: its action space (robot type included). namespace: e.g. ``/toroidal_dot``.
        name: the sessions sub-directory.
    """

    space: ActionSpace
    namespace: str
    name: str


def load_robot(robot_config: str | Path, name: str | None = None) -> Robot:
    """The action space and namespace of a devbot robot file.

    Raises:
        OriginalSessionError: the file is missing or not a valid robot file.
    """
    robot_config = Path(robot_config)
    try:
        space = ActionSpace.from_yaml(robot_config)
        doc = yaml.safe_load(robot_config.read_text()) or {}
    except (ConfigError, OSError, yaml.YAMLError) as exc:
        raise OriginalSessionError(f'robot file {robot_config}: {exc}') from exc
    robot = doc.get('robot') if isinstance(doc, dict) else None
    ns = str((robot or {}).get('namespace') or space.robot_type).strip('/')
    return Robot(space, '/' + ns, name or space.robot_type)


def default_robot_config(meta: dict, config_dir: Path) -> Path:
    """``<config_dir>/<devbot robot type>.yaml`` for the original's ``robot_type``.

    Raises:
        OriginalSessionError: the original's robot type is not one devbot knows.
    """
    original = meta.get('robot_type')
    robot_type = ROBOT_TYPES.get(str(original))
    if robot_type is None:
        raise OriginalSessionError(
            f'the session was recorded with robot_type {original!r}, which devbot does not map '
            f'to a robot ({", ".join(f"{k} -> {v}" for k, v in ROBOT_TYPES.items())}); '
            f'give --robot-config FILE'
        )
    return config_dir / f'{robot_type}.yaml'


def action_index(space: ActionSpace, action: Any, where: str) -> int:
    """The discrete action of ``space`` an original action object names.

    Raises:
        OriginalSessionError: not a ``{channel: number}`` object, or not one of the space's actions.
    """
    if not isinstance(action, dict) or not action:
        raise OriginalSessionError(
            f'{where}: an action must be a {{channel: value}} object, got {action!r}'
        )
    try:
        return space.index_of(list(action), list(action.values()))
    except ActionError as exc:
        raise OriginalSessionError(
            f'{where}: action {action} is not in the {space.robot_type} action space: {exc}'
        ) from exc


def check_action_space(meta: dict, space: ActionSpace, source: str) -> None:
    """Every action the original session declares must be one of ``space``'s.

    Raises:
        OriginalSessionError: an action of the original's space is not in ``space``.
    """
    declared = meta.get('action_space')
    if declared is None:
        return  # the actions are still checked one by one
    if not isinstance(declared, list):
        raise OriginalSessionError(f'{source}: action_space must be a list, got {declared!r}')
    for k, action in enumerate(declared):
        action_index(space, action, f'{source}: action_space[{k}]')


# ---------------------------------------------------------------------------------------------
# writing the devbot session
# ---------------------------------------------------------------------------------------------


def stamps_ns(events: Sequence[Event]) -> tuple[list[int], int]:
    """The events' timestamps in ns, strictly increasing (each at least 1 ns after the last).

    Returns:
        (stamps, how many were moved).
    """
    out: list[int] = []
    moved = 0
    for e in events:
        ns = int(round(e.timestamp * 1e9))
        if out and ns <= out[-1]:
            ns = out[-1] + 1
            moved += 1
        out.append(ns)
    return out, moved


def session_name(meta: dict, first_ns: int | None) -> str:
    """The devbot session name (``YYYYmmdd-HHMMSS-ffffff``) from the original's start time."""
    start = meta.get('start_time')
    if isinstance(start, str):
        try:
            return _dt.datetime.fromisoformat(start).strftime('%Y%m%d-%H%M%S-%f')
        except ValueError:
            pass
    return new_session_name(first_ns / 1e9 if first_ns is not None else None)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(
        total=total,
        unit='event',
        desc=desc,
        dynamic_ncols=True,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        file=sys.stderr,
    )


def import_session(
    source: str | Path,
    out_root: str | Path = DEFAULT_ROOT,
    robot: Robot | None = None,
    robot_name: str | None = None,
    config_dir: str | Path = 'config',
    progress: bool = False,
) -> ImportResult:
    """Convert one original session into a devbot session ``<out_root>/<robot>/<name>``.

    Args:
        source: the original session folder.
        out_root: the devbot sessions root.
        robot: the devbot robot to import as (default: from the session's robot_type and
            ``<config_dir>/<type>.yaml``).
        robot_name: the sessions sub-directory when ``robot`` is None [the robot type].
        config_dir: where the default robot files are.
        progress: show a progress bar (tqdm) on stderr.
    Returns:
        what was written.
    Raises:
        OriginalSessionError: the session cannot be imported (nothing is left behind).
        BagWriteError: the bag cannot be written (disk full, permissions; nothing is left behind).
    """
    try:
        import PIL  # noqa: F401 - the original's JPEG decoder, needed for every frame
    except ImportError as exc:
        raise OriginalSessionError(
            'reading the JPEG frames needs Pillow (pip install pillow)'
        ) from exc
    original = read_original(source)
    if robot is None:
        robot = load_robot(default_robot_config(original.meta, Path(config_dir)), robot_name)
    space = robot.space
    check_action_space(original.meta, space, str(original.path / META_FILE))
    # every action is checked before anything is written
    indices = {
        e.step: action_index(space, e.data, e.where) for e in original.events if e.kind == 'action'
    }
    stamps, moved = stamps_ns(original.events)
    name = session_name(original.meta, stamps[0] if stamps else None)
    robot_dir = Path(out_root) / robot.name
    target = robot_dir / name
    if target.exists():
        raise OriginalSessionError(f'{original.path}: {target} exists already (imported before?)')
    custom = {
        KEY_ROBOT_TYPE: space.robot_type,
        KEY_ACTION_SPACE: json.dumps(space.to_dict()),
        KEY_SOFTWARE: software_version(),
        KEY_NAMESPACE: robot.namespace,
        KEY_ROBOT: robot.name,
        KEY_IMPORTED_FROM: str(original.path.resolve()),
        KEY_ORIGINAL_META: json.dumps(original.meta, sort_keys=True),
    }
    try:
        robot_dir.mkdir(parents=True, exist_ok=True)
        # hidden staging folder next to the target: the final rename stays on one file system,
        # and a bag inside it is one level too deep to be listed as a session
        staging = Path(tempfile.mkdtemp(prefix=f'.importing-{name}-', dir=robot_dir))
    except OSError as exc:
        raise BagWriteError(f'cannot create a session in {robot_dir}: {exc}') from exc
    frames = actions = 0
    bar = _progress(len(original.events), original.path.name, progress)
    try:
        bag_dir = staging / name
        ns = robot.namespace.rstrip('/') + '/'
        with BagWriter(bag_dir, custom) as bag:
            cam = bag.add_topic(TopicSpec(ns + topics.CAMERA_IMAGE, 'sensor_msgs/msg/Image'))
            exe = bag.add_topic(TopicSpec(ns + topics.MOTOR_EXECUTED, 'sensor_msgs/msg/JointState'))
            for event, stamp in zip(original.events, stamps):
                if event.kind == 'observation':
                    frame = decode_frame(original.path, event)
                    bag.write(cam, stamp, image_cdr(frame, stamp, FRAME_ID))
                    frames += 1
                else:
                    bag.write(exe, stamp, action_cdr(space, indices[event.step], stamp))
                    actions += 1
                if bar is not None:
                    bar.update(1)
        try:
            os.rename(bag_dir, target)
        except OSError as exc:
            raise BagWriteError(f'cannot move the finished session to {target}: {exc}') from exc
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(staging, ignore_errors=True)
    return ImportResult(original.path, target, frames, actions, moved)


def main(argv: list[str] | None = None) -> int:
    """``devbot import-original``: convert the original codebase's sessions into devbot ones."""
    parser = argparse.ArgumentParser(
        prog='devbot import-original',
        description=(
            'Convert sessions recorded by the original Python codebase (session_meta.json,\n'
            'events_shard_*.jsonl, frames/*.jpg) into devbot rosbag2 sessions\n'
            '<out>/<robot>/<start time>/ that devbot bag, play, replay and train read.\n'
            'The source folders are only read. A session that cannot be converted leaves\n'
            'nothing behind; the others are still converted (exit status 1 if any failed).'
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        'sessions',
        nargs='+',
        metavar='SESSION_DIR',
        help='an original session folder, or a folder of them (all are imported)',
    )
    parser.add_argument(
        '--out',
        default=str(DEFAULT_ROOT),
        metavar='DIR',
        help=f'devbot sessions root [{DEFAULT_ROOT}]',
    )
    parser.add_argument(
        '--robot',
        default=None,
        metavar='NAME',
        help='sessions sub-directory [the robot type]',
    )
    parser.add_argument(
        '--robot-config',
        default=None,
        metavar='FILE',
        help='devbot robot file (type, namespace, action space) [config/toroidal_dot.yaml for '
        'ToroidalDotRobot sessions, config/jetbot.yaml for JetBotInterface ones]',
    )
    parser.add_argument(
        '--config-dir',
        default='config',
        metavar='DIR',
        help='where the default robot files are [config]',
    )
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    opts = parser.parse_args(argv)
    try:
        sources = find_sessions(opts.sessions)
        fixed = load_robot(opts.robot_config, opts.robot) if opts.robot_config else None
    except OriginalSessionError as exc:
        print(f'devbot import-original: {exc}', file=sys.stderr)
        return 2
    failed = 0
    for source in sources:
        try:
            result = import_session(
                source,
                opts.out,
                fixed,
                opts.robot,
                opts.config_dir,
                progress=not opts.no_progress,
            )
        except (OriginalSessionError, BagWriteError) as exc:
            failed += 1
            print(f'devbot import-original: {source}: not imported: {exc}', file=sys.stderr)
            continue
        moved = (
            f', {result.adjusted_stamps} stamps moved to keep them increasing'
            if result.adjusted_stamps
            else ''
        )
        print(f'{source} -> {result.bag}: {result.frames} frames, {result.actions} actions{moved}')
    if failed:
        print(
            f'devbot import-original: {failed} of {len(sources)} sessions not imported',
            file=sys.stderr,
        )
    return 1 if failed else 0


__all__ = [
    'OriginalSessionError',
    'ImportResult',
    'OriginalSession',
    'Robot',
    'find_sessions',
    'import_session',
    'load_robot',
    'main',
    'read_original',
]


if __name__ == '__main__':
    sys.exit(main())
