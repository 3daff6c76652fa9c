"""A session's rosbag2 metadata: the ``metadata.yaml`` document, its topics and devbot's
custom_data keys. ROS-free.

Shared by the writer (which refreshes the metadata while recording) and the reindexer (which
rebuilds it from the MCAP files after a crash); it imports neither.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from rosbags.interfaces import Qos
from rosbags.rosbag2.metadata import dump_qos_v9

# rosbag2 metadata version written (Jazzy and later read it)
METADATA_VERSION = 9
METADATA_FILE = 'metadata.yaml'
# the ROS 2 distribution of the rclpy wheels this project runs on
ROS_DISTRO = os.environ.get('ROS_DISTRO') or 'kilted'

# custom_data keys devbot writes into every session (all values are strings)
KEY_ROBOT_TYPE = 'devbot.robot_type'  # e.g. toroidal_dot
KEY_ACTION_SPACE = 'devbot.action_space'  # JSON of ActionSpace.to_dict()
KEY_SOFTWARE = 'devbot.software_version'  # devbot <version> (git <commit>)
KEY_NAMESPACE = 'devbot.namespace'  # the robot's ROS namespace, e.g. /toroidal_dot
KEY_ROBOT = 'devbot.robot'  # the sessions sub-directory (robot name)


class UnknownMessageType(LookupError):
    """A message type the rosbags typestore does not know (its definition must be given)."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic of a bag.

    Attributes:
        name: absolute topic name, e.g. ``/toroidal_dot/camera/image_raw``.
        msgtype: ``pkg/msg/Type``.
        offered_qos: the QoS profiles its publishers offered (stored in the metadata).
        msgdef: the ``ros2msg`` definition text (with dependencies); None = from the typestore.
        type_hash: ``RIHS01_...`` type description hash; None = from the typestore.
    """

    name: str
    msgtype: str
    offered_qos: tuple[Qos, ...] = ()
    msgdef: str | None = None
    type_hash: str | None = None


_TYPESTORE = None


def message_definition(msgtype: str) -> tuple[str, str]:
    """(ros2msg definition text, RIHS01 hash) of a standard ROS 2 message type.

    Raises:
        UnknownMessageType: the type is not known to the rosbags Kilted typestore.
    """
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore

        _TYPESTORE = get_typestore(Stores.ROS2_KILTED)
    if msgtype not in _TYPESTORE.fielddefs:
        raise UnknownMessageType(
            f'message type {msgtype!r} is unknown to the rosbags typestore; '
            f'give its definition (TopicSpec.msgdef and type_hash)'
        )
    text, _ = _TYPESTORE.generate_msgdef(msgtype, ros_version=2)
    return text, _TYPESTORE.hash_rihs01(msgtype)


def build_metadata(
    topics, files, start_ns: int, duration_ns: int, custom_data: Mapping[str, str]
) -> dict:
    """The rosbag2 (version 9) metadata document.

    Args:
        topics: (TopicSpec, msgdef, type_hash, message_count) per topic.
        files: (relative path, start ns, duration ns, message_count) per storage file.
        start_ns, duration_ns: the bag's time range.
        custom_data: string -> string.
    """
    count = sum(t[3] for t in topics)
    return {
        'rosbag2_bagfile_information': {
            'version': METADATA_VERSION,
            'storage_identifier': 'mcap',
            'duration': {'nanoseconds': int(duration_ns)},
            'starting_time': {'nanoseconds_since_epoch': int(start_ns)},
            'message_count': int(count),
            'topics_with_message_count': [
                {
                    'topic_metadata': {
                        'name': spec.name,
                        'type': spec.msgtype,
                        'serialization_format': 'cdr',
                        'offered_qos_profiles': dump_qos_v9(list(spec.offered_qos)),
                        'type_description_hash': type_hash,
                    },
                    'message_count': int(n),
                }
                for spec, _, type_hash, n in topics
            ],
            'compression_format': '',
            'compression_mode': '',
            'relative_file_paths': [f[0] for f in files],
            'files': [
                {
                    'path': p,
                    'starting_time': {'nanoseconds_since_epoch': int(s)},
                    'duration': {'nanoseconds': int(d)},
                    'message_count': int(n),
                }
                for p, s, d, n in files
            ],
            'custom_data': dict(custom_data),
            'ros_distro': ROS_DISTRO,
        }
    }


def write_metadata(bag_dir: Path, doc: dict) -> None:
    """Write metadata.yaml atomically (temporary file + rename)."""
    target = Path(bag_dir) / METADATA_FILE
    tmp = target.with_suffix('.yaml.tmp')
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, target)


def read_metadata(bag_dir: Path) -> dict:
    """The ``rosbag2_bagfile_information`` of a bag's metadata.yaml; {} when the file is missing
    or unreadable (a bag being repaired may have none)."""
    meta = Path(bag_dir) / METADATA_FILE
    if not meta.is_file():
        return {}
    try:
        doc = yaml.safe_load(meta.read_text())
        return doc.get('rosbag2_bagfile_information') or {} if isinstance(doc, dict) else {}
    except yaml.YAMLError:
        return {}


def custom_data(
    action_space=None,
    software: str | None = None,
    namespace: str | None = None,
    robot: str | None = None,
    robot_type: str | None = None,
) -> dict[str, str]:
    """The custom_data devbot stores in a session (only the keys given).

    Args:
        action_space: a :class:`devbot.action_space.ActionSpace`: its JSON, and its robot type
            unless ``robot_type`` is given.
        software: what wrote the session (default: :func:`software_version`).
        namespace: the robot's ROS namespace, e.g. ``/toroidal_dot``.
        robot: the sessions sub-directory (robot name).
        robot_type: e.g. ``toroidal_dot``.
    Returns:
        string -> string.
    """
    out = {KEY_SOFTWARE: software if software is not None else software_version()}
    if namespace is not None:
        out[KEY_NAMESPACE] = namespace
    if action_space is not None:
        out[KEY_ACTION_SPACE] = json.dumps(action_space.to_dict())
        robot_type = robot_type or action_space.robot_type
    if robot_type is not None:
        out[KEY_ROBOT_TYPE] = robot_type
    if robot is not None:
        out[KEY_ROBOT] = robot
    return out


def software_version() -> str:
    """``devbot <version>``, plus the git commit when run from a checkout."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = f'devbot {version("devbot")}'
    except PackageNotFoundError:
        text = 'devbot (not installed)'
    try:
        out = subprocess.run(
            ['git', 'describe', '--always', '--dirty'],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if out.returncode == 0 and out.stdout.strip():
            text += f' (git {out.stdout.strip()})'
    except (OSError, subprocess.SubprocessError):
        pass
    return text
