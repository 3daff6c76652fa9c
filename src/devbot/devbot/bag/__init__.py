"""rosbag2 sessions: recording, playback and reading (MCAP storage + metadata.yaml).

ROS-free modules: :mod:`~devbot.bag.writer` (BagWriter), :mod:`~devbot.bag.session` (reading API),
:mod:`~devbot.bag.reindex` (repair a killed recording), :mod:`~devbot.bag.storage` (layout, disk
limit), :mod:`~devbot.bag.filter` (transition filters). The ROS nodes are :mod:`~devbot.bag.record`
and :mod:`~devbot.bag.play`; the ``devbot bag`` command is :mod:`~devbot.bag.cli`.
"""

from devbot.bag.filter import FilterError, TransitionFilter
from devbot.bag.metadata import TopicSpec
from devbot.bag.reindex import BagFormatError, reindex
from devbot.bag.session import (
    Action,
    BagError,
    BagMessage,
    Frame,
    Loss,
    Session,
    SessionInfo,
    TopicInfo,
    Transition,
    list_sessions,
    read_info,
)
from devbot.bag.storage import DEFAULT_ROOT, enforce_disk_limit, new_session_name
from devbot.bag.writer import BagWriteError, BagWriter, WriterOptions

__all__ = [
    'Action',
    'BagError',
    'BagFormatError',
    'BagMessage',
    'BagWriteError',
    'BagWriter',
    'DEFAULT_ROOT',
    'FilterError',
    'Frame',
    'Loss',
    'Session',
    'SessionInfo',
    'TopicInfo',
    'TopicSpec',
    'Transition',
    'TransitionFilter',
    'WriterOptions',
    'enforce_disk_limit',
    'list_sessions',
    'new_session_name',
    'read_info',
    'reindex',
]
