"""rosbag2 sessions without DDS: writing, reading back (rosbags and the independent mcap reader),
metadata schema, splitting, transitions and filters, crash repair, write errors, disk limit, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from devbot.bag import (
    BagError,
    BagFormatError,
    BagWriteError,
    BagWriter,
    FilterError,
    Session,
    TopicSpec,
    TransitionFilter,
    WriterOptions,
    enforce_disk_limit,
    list_sessions,
    read_info,
    reindex,
)
from devbot.bag.cli import main as bag_cli
from devbot.bag.metadata import KEY_ACTION_SPACE, KEY_ROBOT_TYPE, KEY_SOFTWARE
from devbot.cdr import action_cdr, image_cdr
from toroidal_sim.env import DOT_ACTION_SPACE, ToroidalDotConfig, ToroidalDotEnv
from toroidal_sim.session import START_NS, STEP_NS, write_dot_session

NS = '/toroidal_dot/'
CUSTOM = {
    KEY_ROBOT_TYPE: 'toroidal_dot',
    KEY_ACTION_SPACE: json.dumps(DOT_ACTION_SPACE.to_dict()),
    KEY_SOFTWARE: 'devbot test',
}


ACTIONS = [1, 1, 0] * 10 + [0, 1] * 5


def test_round_trip_is_bit_exact_with_rosbags_and_an_independent_mcap_reader(tmp_path):
    bag = tmp_path / 'toroidal_dot' / 's1'
    frames = write_dot_session(bag, ACTIONS)
    with Session(bag) as s:
        assert s.robot_type == 'toroidal_dot' and s.action_space == DOT_ACTION_SPACE
        assert s.num_frames == len(frames)
        assert all(np.array_equal(f.image, frames[f.index]) for f in s.frames())
        assert np.array_equal(s.frame(17).image, frames[17]) and np.array_equal(
            s.frame(-1).image, frames[-1]
        )
        assert [a.index for a in s.actions()] == ACTIONS
        assert list(s.action_counts()) == [ACTIONS.count(0), ACTIONS.count(1)]
        ts = list(s.transitions())
        assert len(ts) == len(ACTIONS)
        for t in ts:
            assert (
                t.action == ACTIONS[t.index]
                and t.next_frame_index == t.frame_index + 1 == t.index + 1
            )
            assert np.array_equal(t.frame, frames[t.frame_index]) and np.array_equal(
                t.next_frame, frames[t.next_frame_index]
            )
            assert t.frame_stamp_ns < t.action_stamp_ns == t.next_stamp_ns

    # independent reader: the mcap library with its ROS 2 decoder
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    mcap_files = sorted(bag.glob('*.mcap'))
    assert [p.name for p in mcap_files] == ['s1_0.mcap']
    with mcap_files[0].open('rb') as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert reader.get_header().profile == 'ros2'
        images, acts, xs = [], [], []
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            if channel.topic.endswith('image_raw'):
                assert schema.name == 'sensor_msgs/msg/Image' and channel.message_encoding == 'cdr'
                images.append(
                    np.frombuffer(bytes(decoded.data), np.uint8).reshape(
                        decoded.height, decoded.width, 3
                    )
                )
            elif channel.topic.endswith('executed'):
                acts.append(int(decoded.position[0]))
            else:
                assert channel.topic == NS + 'ground_truth/dot_position'
                xs.append(decoded.point.x)
        summary = reader.get_summary()
    assert all(np.array_equal(a, b) for a, b in zip(images, frames)) and len(images) == len(frames)
    assert acts == ACTIONS
    moves = [(x1 - x0) % 224 for x0, x1 in zip(xs, xs[1:])]  # the dot's ground truth: 27 px a move
    assert moves == [27 * a for a in ACTIONS]
    assert {c.compression for c in summary.chunk_indexes} == {'zstd'}


def test_metadata_follows_the_rosbag2_schema(tmp_path):
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    inf = QosTime(2147483647, 4294967295)
    offered = Qos(
        QosHistory.UNKNOWN,
        0,
        QosReliability.RELIABLE,
        QosDurability.VOLATILE,
        inf,
        inf,
        QosLiveliness.AUTOMATIC,
        inf,
        False,
    )
    bag = tmp_path / 'b'
    with BagWriter(bag, CUSTOM) as w:
        tid = w.add_topic(TopicSpec(NS + 'camera/image_raw', 'sensor_msgs/msg/Image', (offered,)))
        for k in range(3):
            w.write(tid, 10**18 + k * 10**8, image_cdr(np.zeros((4, 4, 3), np.uint8), 10**18 + k))
    meta = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert meta['version'] == 9 and meta['storage_identifier'] == 'mcap'
    assert meta['relative_file_paths'] == ['b_0.mcap'] and meta['files'][0]['path'] == 'b_0.mcap'
    assert meta['message_count'] == 3 and meta['files'][0]['message_count'] == 3
    assert meta['starting_time'] == {'nanoseconds_since_epoch': 10**18}
    assert meta['duration'] == {'nanoseconds': 2 * 10**8}
    assert meta['compression_mode'] == '' and meta['compression_format'] == ''  # storage-level zstd
    topic = meta['topics_with_message_count'][0]
    assert topic['message_count'] == 3
    tm = topic['topic_metadata']
    assert tm['name'] == NS + 'camera/image_raw' and tm['type'] == 'sensor_msgs/msg/Image'
    assert tm['serialization_format'] == 'cdr'
    assert (
        tm['type_description_hash']
        == 'RIHS01_d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47'
    )
    assert tm['offered_qos_profiles'][0]['reliability'] == 'reliable'
    assert tm['offered_qos_profiles'][0]['deadline'] == {'sec': 2147483647, 'nsec': 4294967295}
    assert meta['custom_data'] == CUSTOM
    # rosbags' own reader agrees (QoS in metadata.yaml == QoS in the MCAP channel)
    from rosbags.rosbag2 import Reader

    with Reader(bag) as r:
        assert r.message_count == 3 and len(list(r.messages())) == 3
        assert r.connections[0].ext.offered_qos_profiles == [offered]


def test_split_by_size_and_duration_reads_back_as_one_session(tmp_path):
    bag = tmp_path / 'split'
    frames = write_dot_session(
        bag, ACTIONS, options=WriterOptions(split_bytes=700_000, compression='none')
    )
    files = read_info(bag).files
    assert len(files) >= 5 and files[0] == 'split_0.mcap'
    with Session(bag) as s:
        assert [a.index for a in s.actions()] == ACTIONS
        assert all(np.array_equal(f.image, frames[f.index]) for f in s.frames())
    bag2 = tmp_path / 'split2'
    write_dot_session(bag2, ACTIONS, options=WriterOptions(split_duration_ns=100_000_000))
    assert len(read_info(bag2).files) == 5  # messages over 0..400 ms, a file per 100 ms
    with Session(bag2) as s:
        assert [a.index for a in s.actions()] == ACTIONS


def test_missing_frames_drop_whole_transitions_never_mislabel(tmp_path):
    bag = tmp_path / 'gaps'
    frames = write_dot_session(bag, ACTIONS, drop_frames={5, 20}, record_losses=False)
    with Session(bag) as s:
        ts = list(s.transitions())
        # frames 5 and 20 are missing (and no loss was reported): actions 5+6 and 20+21 would
        # share a frame pair -> both dropped
        assert len(ts) == len(ACTIONS) - 4
        for t in ts:
            expected = [i for i, f in enumerate(frames) if np.array_equal(f, t.next_frame)]
            assert np.array_equal(t.frame, frames[expected[0] - 1]) or t.action == 0
        stamps = {t.action_stamp_ns for t in ts}
        assert len(stamps) == len(ts)


def test_a_frame_and_the_next_action_lost_together_never_mislabel(tmp_path):
    # frame 5 (outcome of action 5) and action 6 lost at once: frames 4 and 6 look like one step
    # labelled action 5, while actions 5 and 6 happened between them
    moves = [1] * 5 + [1, 1] + [0, 1] * 8  # actions 5 and 6: moves, so 4 -> 6 moved 54 px
    lost = {'drop_frames': {5}, 'drop_actions': {6}}
    write_dot_session(tmp_path / 'unreported', moves, record_losses=False, **lost)
    with Session(tmp_path / 'unreported') as s:
        assert s.losses() == []
        wrong = [t for t in s.transitions() if not _shows_its_action(t)]
        assert [t.action_stamp_ns for t in wrong] == [s.actions()[4].stamp_ns]

    frames = write_dot_session(tmp_path / 'reported', moves, **lost)
    with Session(tmp_path / 'reported') as s:
        [frame_loss, action_loss] = sorted(s.losses(), key=lambda loss: loss.topic)
        assert frame_loss.topic == NS + 'camera/image_raw' and frame_loss.count == 1
        assert action_loss.topic == NS + 'motor_command/executed' and action_loss.count == 1
        ts = list(s.transitions())
        assert all(_shows_its_action(t) for t in ts)
        # left out: action 5 (frame 4 -> 6), 6 (lost), and 7 and 8, whose stamps come before the
        # records (written when the next frame/action arrived) that bound the losses
        kept = [k for k in range(1, len(moves) + 1) if k not in (5, 6, 7, 8)]
        assert [t.action_stamp_ns for t in ts] == [START_NS + k * STEP_NS for k in kept]
        assert all(np.array_equal(t.next_frame, frames[t.next_frame_index + 1]) for t in ts[4:])


def _shows_its_action(t) -> bool:
    return np.array_equal(np.roll(t.frame, 27 * t.action, axis=1), t.next_frame)


def test_filter_keeps_whole_transitions(tmp_path):
    bag = tmp_path / 'f'
    write_dot_session(bag, ACTIONS)
    with Session(bag) as s:
        moves = list(s.transitions('actions=1'))
        assert len(moves) == ACTIONS.count(1) and {t.action for t in moves} == {1}
        for t in moves:  # the frames are those of that very transition: the dot moved 27 px right
            assert np.array_equal(np.roll(t.frame, 27, axis=1), t.next_frame)
        stays = list(s.transitions('action = 0; from=0.1'))
        assert stays and all(
            t.action == 0 and t.action_stamp_ns - s.start_ns >= 0.1e9 for t in stays
        )
        assert all(np.array_equal(t.frame, t.next_frame) for t in stays)
        assert len(list(s.transitions('action>=0.5', frames=False))) == ACTIONS.count(1)
    for bad, reason in (
        ('actions=7', 'no action'),
        ('speed=1', 'unknown channel'),
        ('action=x', 'not a number'),
        ('import os', 'not <name><op><value>'),
        ('from>1', 'takes "="'),
    ):
        with pytest.raises(FilterError, match=reason):
            TransitionFilter.parse(bad, DOT_ACTION_SPACE)


def _killed_writer_script(bag: Path, frames: int, flush_every: int) -> str:
    return textwrap.dedent(f'''
        import os, signal, sys, json
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_bag import write_frames_then_die
        write_frames_then_die({str(bag)!r}, {frames}, {flush_every})
    ''')


def write_frames_then_die(bag: str, frames: int, flush_every: int) -> None:
    """Runs in a child: writes dot frames, forcing a chunk out every ``flush_every`` frames, then
    SIGKILLs itself with a pending (unwritten) chunk."""
    env = ToroidalDotEnv(ToroidalDotConfig(seed=3))
    w = BagWriter(bag, CUSTOM, WriterOptions(flush_interval_s=1e-3))
    img = w.add_topic(TopicSpec(NS + 'camera/image_raw', 'sensor_msgs/msg/Image'))
    exe = w.add_topic(TopicSpec(NS + 'motor_command/executed', 'sensor_msgs/msg/JointState'))
    t0 = 1_700_000_000_000_000_000
    w.write(img, t0, image_cdr(env.frame(), t0))
    for k in range(1, frames + 1):
        ns = t0 + k * 10_000_000
        w.write(exe, ns, action_cdr(DOT_ACTION_SPACE, 1, ns))
        w.write(img, ns + 1, image_cdr(env.step(1), ns))
        if k % flush_every == 0:
            time.sleep(0.002)
            w.flush_due()
    os.kill(os.getpid(), signal.SIGKILL)


def test_killed_writer_leaves_a_bag_readable_after_reindex(tmp_path, capsys):
    bag = tmp_path / 'toroidal_dot' / 'killed'
    proc = subprocess.run(
        [sys.executable, '-c', _killed_writer_script(bag, 45, 10)], capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    info = read_info(bag)
    assert not info.complete and info.custom_data == CUSTOM  # metadata.yaml written at start
    with pytest.raises(BagError, match='devbot bag reindex'):
        Session(bag)
    assert 'unfinished' in _run_cli(capsys, 'list', '--root', str(tmp_path))
    out = _run_cli(capsys, 'reindex', str(bag))
    assert 'repaired' in out
    with Session(bag) as s:
        # frames 0..40 were flushed (the last 5 sat in the killed process's memory)
        assert s.num_frames == 41 and [a.index for a in s.actions()] == [1] * 40
        env = ToroidalDotEnv(ToroidalDotConfig(seed=3))
        expected = [env.frame()] + [env.step(1) for _ in range(40)]
        assert all(np.array_equal(f.image, expected[f.index]) for f in s.frames())
        assert s.info.complete and s.info.custom_data == CUSTOM
        assert s.info.topics[NS + 'camera/image_raw'].count == 41
    from mcap.reader import make_reader

    with next(bag.glob('*.mcap')).open('rb') as f:
        assert sum(1 for _ in make_reader(f).iter_messages()) == 81
    assert reindex(bag).repaired == []  # a second reindex finds nothing to repair


def test_write_error_is_clear_and_keeps_what_was_written(tmp_path):
    bag = tmp_path / 'full'
    script = textwrap.dedent(f'''
        import resource, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_bag import *
        # a "disk" of 3 MB per file
        resource.setrlimit(resource.RLIMIT_FSIZE, (3_000_000, 3_000_000))
        try:
            write_dot_session(
                Path({str(bag)!r}), [1] * 400, seed=1, options=WriterOptions(compression='none')
            )
        except BagWriteError as exc:
            print('ERROR:', exc)
    ''')
    proc = subprocess.run(
        [sys.executable, '-c', script], capture_output=True, text=True, timeout=60
    )
    assert 'ERROR: write to' in proc.stdout and 'File too large' in proc.stdout, (
        proc.stdout + proc.stderr
    )
    with Session(bag) as s:  # closed as far as possible: readable without a reindex
        n = s.num_frames
        assert 5 <= n < 400 and len(s.actions()) >= n - 1
        env = ToroidalDotEnv(ToroidalDotConfig(seed=1))
        expected = [env.frame()] + [env.step(1) for _ in range(n)]
        assert all(np.array_equal(f.image, expected[f.index]) for f in s.frames())


def test_foreign_and_corrupt_bags_are_clear_errors(tmp_path):
    with pytest.raises(BagError, match='no such session'):
        Session(tmp_path / 'nope')
    plain = tmp_path / 'plain'
    plain.mkdir()
    with pytest.raises(BagError, match='no metadata.yaml'):
        Session(plain)
    (plain / 'metadata.yaml').write_text('hello: [1, 2')
    with pytest.raises(BagError, match='unreadable'):
        Session(plain)
    (plain / 'metadata.yaml').write_text('just: text\n')
    with pytest.raises(BagError, match='not rosbag2 metadata'):
        Session(plain)
    sqlite = tmp_path / 'sqlite'
    write_dot_session(sqlite, [1, 0])
    meta = (sqlite / 'metadata.yaml').read_text()
    (sqlite / 'metadata.yaml').write_text(
        meta.replace('storage_identifier: mcap', 'storage_identifier: sqlite3')
    )
    with pytest.raises(BagError, match='sqlite3'):
        Session(sqlite)
    garbage = tmp_path / 'garbage'
    write_dot_session(garbage, [1, 0])
    mcap = next(garbage.glob('*.mcap'))
    mcap.write_bytes(b'not an mcap file at all' * 10)
    with pytest.raises(BagError):
        Session(garbage)
    with pytest.raises(BagFormatError, match='not an MCAP file'):
        reindex(garbage)
    # a valid MCAP that is not a rosbag2 one (another profile)
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    from mcap.writer import Writer

    with (foreign / 'x.mcap').open('wb') as f:
        w = Writer(f)
        w.start(profile='', library='test')
        w.finish()
    with pytest.raises(BagFormatError, match='not ros2'):
        reindex(foreign)
    # corrupt chunk data in an otherwise valid bag
    flipped = tmp_path / 'flipped'
    write_dot_session(flipped, [1] * 20)
    data = bytearray(next(flipped.glob('*.mcap')).read_bytes())
    data[300:340] = b'\xff' * 40
    next(flipped.glob('*.mcap')).write_bytes(bytes(data))
    with pytest.raises(BagError):
        with Session(flipped) as s:
            list(s.frames())
    # a bag without an action space still plays/reads frames but says why actions need one
    bare = tmp_path / 'bare'
    with BagWriter(bare) as w:
        w.add_topic(TopicSpec('/x', 'std_msgs/msg/Header'))
    with Session(bare) as s:
        with pytest.raises(BagError, match='action_space'):
            s.action_space
        with pytest.raises(BagError, match='no executed-action topic'):
            s.actions()
        with pytest.raises(BagError, match='no camera topic'):
            s.num_frames
    with pytest.raises(BagWriteError, match='unknown to the rosbags typestore'):
        with BagWriter(tmp_path / 'odd') as w:
            w.add_topic(TopicSpec('/x', 'my_pkg/msg/Odd'))
    with pytest.raises(BagWriteError, match='exists already'):
        BagWriter(bare)


def _fake_session(path: Path, size: int, mtime: float) -> None:
    path.mkdir(parents=True)
    (path / 'metadata.yaml').write_text('rosbag2_bagfile_information: {}\n')
    (path / f'{path.name}_0.mcap').write_bytes(b'\0' * size)
    for p in (path / 'metadata.yaml', path / f'{path.name}_0.mcap', path):
        os.utime(p, (mtime, mtime))


def test_disk_limit_deletes_oldest_sessions_first(tmp_path):
    robot = tmp_path / 'toroidal_dot'
    now = time.time()
    for i, name in enumerate(['c_newest', 'a_oldest', 'b_middle']):
        _fake_session(robot / name, 100_000, now - {0: 10, 1: 300, 2: 200}[i])
    (robot / 'notes').mkdir()
    (robot / 'notes' / 'big.txt').write_bytes(b'x' * 500_000)  # not a bag: never touched
    current = robot / 'current'
    _fake_session(current, 150_000, now)
    used, deleted = enforce_disk_limit(robot, 300_000, keep=current)
    assert [d.path.name for d in deleted] == ['a_oldest', 'b_middle']
    assert (
        used <= 300_000
        and (robot / 'c_newest').exists()
        and current.exists()
        and (robot / 'notes').exists()
    )
    # the session being recorded is never deleted, even when it alone is over the limit
    used, deleted = enforce_disk_limit(robot, 100_000, keep=current)
    assert [d.path.name for d in deleted] == ['c_newest'] and used > 100_000 and current.exists()


def _run_cli(capsys, *argv) -> str:
    rc = bag_cli(list(argv))
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def test_cli_list_and_info(tmp_path, capsys):
    write_dot_session(tmp_path / 'toroidal_dot' / '20260101-000000-000001', ACTIONS)
    write_dot_session(tmp_path / 'jetbot' / '20260101-000000-000002', [0, 1])
    (tmp_path / 'jetbot' / 'broken').mkdir()
    (tmp_path / 'jetbot' / 'broken' / 'metadata.yaml').write_text('nonsense: 1\n')
    infos = list_sessions(tmp_path)
    assert [(i.robot, i.name) for i in infos] == [
        ('jetbot', '20260101-000000-000002'),
        ('jetbot', 'broken'),
        ('toroidal_dot', '20260101-000000-000001'),
    ]
    assert (
        infos[1].error
        and infos[2].robot_type == 'toroidal_dot'
        and infos[2].action_space == DOT_ACTION_SPACE
    )
    out = _run_cli(capsys, 'list', '--root', str(tmp_path))
    assert 'unreadable' in out and 'toroidal_dot' in out and ' ok' in out
    out = _run_cli(capsys, 'info', str(tmp_path / 'toroidal_dot' / '20260101-000000-000001'))
    assert f'actions:      0: {ACTIONS.count(0)}, 1: {ACTIONS.count(1)}' in out
    assert f'transitions {len(ACTIONS)}' in out and 'sensor_msgs/msg/Image' in out
    assert 'lost:' not in out
    write_dot_session(tmp_path / 'lossy', ACTIONS, drop_frames={3, 4}, drop_actions={9})
    out = _run_cli(capsys, 'info', str(tmp_path / 'lossy'))
    assert f'lost:         {NS}camera/image_raw: 2, {NS}motor_command/executed: 1' in out
    assert bag_cli(['info', str(tmp_path / 'nope')]) == 1
    assert 'no such session' in capsys.readouterr().err
