"""Recording and playback over real DDS between separate processes: the runner recorded with
record:=true read back bit-exactly (rosbags and the independent mcap reader), a recorder killed
with -9, the disk limit, timed playback at a rate, lockstep playback with acks."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import numpy as np
import pytest
import yaml
from graphtest import BIN, REPO
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header

from devbot.bag import BagWriter, Session, TopicSpec, list_sessions
from devbot.bag.metadata import KEY_ACTION_SPACE, KEY_NAMESPACE, KEY_ROBOT_TYPE, KEY_SOFTWARE
from toroidal_sim.env import DOT_ACTION_SPACE, ToroidalDotConfig, ToroidalDotEnv

RUNNER = 'launch/toroidal_dot_runner.launch.yaml'
NS = '/toroidal_dot/'


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def dot_frame(x: int, y: int) -> np.ndarray:
    env = ToroidalDotEnv(ToroidalDotConfig(seed=0))
    env.x, env.y = x, y
    return env.frame()


def ground_truth(session: Session) -> dict[int, np.ndarray]:
    """stamp -> the frame regenerated from the recorded dot position."""
    out = {}
    for msg in session.messages(['ground_truth/dot_position']):
        p = session.deserialize(msg)
        out[p.header.stamp.sec * 1_000_000_000 + p.header.stamp.nanosec] = dot_frame(
            int(p.point.x), int(p.point.y)
        )
    return out


def mcap_frames(bag) -> dict[int, np.ndarray]:
    """stamp -> frame, read with the mcap library and its ROS 2 decoder (not rosbags)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out = {}
    for path in sorted(bag.glob('*.mcap')):
        with path.open('rb') as f:
            for _, channel, _, msg in make_reader(
                f, decoder_factories=[DecoderFactory()]
            ).iter_decoded_messages(topics=[NS + 'camera/image_raw']):
                assert msg.encoding == 'rgb8' and msg.step == 224 * 3
                out.setdefault(
                    stamp_ns(msg), np.frombuffer(bytes(msg.data), np.uint8).reshape(224, 224, 3)
                )
    return out


def test_recorded_runner_session_round_trips_bit_exactly(launch, probe, tmp_path):
    executed = probe.record(JointState, NS + 'motor_command/executed')
    run = launch(
        RUNNER,
        'record:=true',
        f'sessions_dir:={tmp_path}',
        'selector:=sequence',
        'sequence:=DOUBLE_MOVE',
        'max_steps:=250',
        'seed:=5',
        'action_delay:=0.02',
        'report_dir:=',
    )  # >= 5 s: DDS discovery can take ~3 s
    assert probe.spin_until(lambda: run.proc.poll() is not None, timeout=90), run.output
    assert run.wait(10) == 0, run.output
    assert re.search(r'recorded \d+ messages into', run.output), run.output

    [info] = list_sessions(tmp_path)
    assert info.robot == 'toroidal_dot' and info.robot_type == 'toroidal_dot' and info.complete
    assert re.fullmatch(r'\d{8}-\d{6}-\d{6}', info.name)
    assert info.action_space == DOT_ACTION_SPACE and info.software_version.startswith('devbot ')
    meta = yaml.safe_load((info.path / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert meta['storage_identifier'] == 'mcap' and meta['version'] == 9
    assert set(meta['custom_data']) >= {
        KEY_ROBOT_TYPE,
        KEY_ACTION_SPACE,
        KEY_SOFTWARE,
        KEY_NAMESPACE,
    }
    topics = {t['topic_metadata']['name']: t for t in meta['topics_with_message_count']}
    camera = topics[NS + 'camera/image_raw']['topic_metadata']
    assert camera['type'] == 'sensor_msgs/msg/Image' and camera['serialization_format'] == 'cdr'
    assert camera['offered_qos_profiles'][0]['reliability'] == 'reliable'
    assert camera['type_description_hash'].startswith('RIHS01_')

    with Session(info.path) as s:
        counts = {}
        for msg in s.messages():
            counts[msg.topic] = counts.get(msg.topic, 0) + 1
        assert counts == {
            name: t['message_count'] for name, t in topics.items() if t['message_count']
        }
        truth = ground_truth(s)
        frames = list(s.frames())
        assert len(frames) >= 40, f'only {len(frames)} frames recorded'
        checked = [f for f in frames if f.stamp_ns in truth]
        assert len(checked) >= len(frames) - 2
        assert all(np.array_equal(f.image, truth[f.stamp_ns]) for f in checked)
        independent = mcap_frames(info.path)
        assert set(independent) == {f.stamp_ns for f in frames}
        assert all(np.array_equal(independent[f.stamp_ns], f.image) for f in frames)
        # the same actions as the robot executed on the graph (seen by the probe)
        live = {stamp_ns(e): int(e.position[0]) for e in executed}
        recorded = s.actions()
        both = [
            a for a in recorded if a.stamp_ns in live
        ]  # DDS discovery may delay either side's start
        assert len(recorded) >= 40 and len(both) >= 30, (len(recorded), len(both))
        assert all(live[a.stamp_ns] == a.index for a in both)
        transitions = list(s.transitions())
        assert len(transitions) >= 35
        for t in transitions:  # the frames of each transition show exactly its action
            assert shows_its_action(t), (t.index, t.frame_stamp_ns, t.next_stamp_ns, s.losses())


def shows_its_action(t) -> bool:
    """The dot moved 27 px right between the transition's frames if its action was a move."""
    return np.array_equal(np.roll(t.frame, 27 * t.action, axis=1), t.next_frame)


def _node_cmd(script: str, *params: str, namespace: str | None = None) -> list[str]:
    """The command line of a node's console script: each of ``params`` (``name:=value``) as a
    ``-p`` ROS argument, and the namespace if given."""
    args = [str(BIN / script), '--ros-args']
    if namespace:
        args += ['-r', f'__ns:={namespace}']
    for param in params:
        args += ['-p', param]
    return args


def _recorder_cmd(output_dir, *params: str) -> list[str]:
    """The toroidal dot's recorder_node, writing sessions under ``output_dir``."""
    return _node_cmd(
        'recorder_node',
        f'robot_config:={REPO / "config/toroidal_dot.yaml"}',
        f'output_dir:={output_dir}',
        *params,
        namespace='/toroidal_dot',
    )


def _start(cmd: list[str], env) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def _wait_recorded(output_dir, frames: int, timeout: float):
    """The session folder once the recorder has ``frames`` frames and some ground truth on disk
    (its metadata.yaml, refreshed every flush_interval_s, says so), or None after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for meta in (output_dir / 'toroidal_dot').glob('*/metadata.yaml'):
            try:
                doc = yaml.safe_load(meta.read_text())['rosbag2_bagfile_information']
            except (OSError, yaml.YAMLError, TypeError, KeyError):
                continue
            counts = {
                t['topic_metadata']['name']: t['message_count']
                for t in doc['topics_with_message_count']
            }
            if counts.get(NS + 'camera/image_raw', 0) >= frames and counts.get(
                NS + 'ground_truth/dot_position', 0
            ):
                return meta.parent
        time.sleep(0.1)
    return None


def test_recorder_reports_ready_once_it_receives_every_loop_topic(node_process, probe, tmp_path):
    """recorder/ready (latched) is false until a publisher of each of camera/image_raw,
    motor_command/executed and motor_command has matched the recorder's readers."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Bool

    states: list[bool] = []
    probe.node.create_subscription(
        Bool,
        NS + 'recorder/ready',
        lambda msg: states.append(msg.data),
        QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        ),
    )
    rec = node_process(_recorder_cmd(tmp_path, 'flush_interval_s:=0.2'))
    assert probe.spin_until(lambda: states, timeout=30), rec.output
    assert states == [False]
    # the robot publishes frames and executed actions; nobody commands yet
    node_process(
        _node_cmd(
            'toroidal_sim_node',
            f'robot_config:={REPO / "config/toroidal_dot.yaml"}',
            namespace='/toroidal_dot',
        )
    )
    assert rec.wait_for_line(r'recording /toroidal_dot/camera/image_raw', 30), rec.output
    assert probe.spin_until(
        lambda: probe.node.count_publishers(NS + 'motor_command/executed') > 0, timeout=30
    )
    probe.spin_until(lambda: False, timeout=2.0)
    assert states == [False], rec.output
    probe.node.create_publisher(
        JointState,
        NS + 'motor_command',
        QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
    )
    assert probe.spin_until(lambda: states[-1:] == [True], timeout=30), (states, rec.output)
    assert states == [False, True]


def test_recorder_killed_with_sigkill_leaves_a_readable_bag(launch, node_process, tmp_path):
    run = launch(RUNNER, 'selector:=random', 'seed:=2', 'action_delay:=0.01', 'report_dir:=')
    rec = node_process(_recorder_cmd(tmp_path, 'flush_interval_s:=0.2'))
    assert rec.wait_for_line(r'recording /toroidal_dot/camera/image_raw', 30), rec.output
    session_dir = _wait_recorded(tmp_path, 30, timeout=45)
    assert session_dir is not None, rec.output + run.output
    rec.proc.send_signal(signal.SIGKILL)
    rec.wait(10)
    run.stop()
    info = list_sessions(tmp_path)[0]
    assert not info.complete
    out = subprocess.run(
        [str(BIN / 'devbot'), 'bag', 'reindex', str(session_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and 'repaired' in out.stdout, out.stdout + out.stderr
    with Session(session_dir) as s:
        truth = ground_truth(s)
        frames = list(s.frames())
        assert len(frames) >= 5
        assert (
            sum(np.array_equal(f.image, truth[f.stamp_ns]) for f in frames if f.stamp_ns in truth)
            >= len(frames) - 2
        )
        assert all(shows_its_action(t) for t in s.transitions())
        assert s.info.robot_type == 'toroidal_dot' and s.info.action_space == DOT_ACTION_SPACE


def test_a_starved_recorder_reports_lost_messages_and_no_transition_spans_them(
    launch, node_process, tmp_path
):
    # while the recorder is stopped the sim's keep-last-10 history overflows: DDS drops frames
    # and executed actions the recorder never received
    run = launch(RUNNER, 'selector:=random', 'seed:=4', 'action_delay:=0.0', 'report_dir:=')
    rec = node_process(_recorder_cmd(tmp_path, 'flush_interval_s:=0.2'))
    assert rec.wait_for_line(r'recording /toroidal_dot/motor_command/executed', 30), rec.output
    assert _wait_recorded(tmp_path, 20, timeout=45) is not None, rec.output + run.output
    # starved until DDS drops frames: a loaded machine's sim may not overflow 10 frames at once
    for _ in range(5):
        rec.proc.send_signal(signal.SIGSTOP)
        time.sleep(1.5)
        rec.proc.send_signal(signal.SIGCONT)
        if rec.wait_for_line(r'messages of /toroidal_dot/camera/image_raw lost', 10):
            break
    else:
        pytest.fail('no loss reported after 5 starvations:\n' + rec.output)
    time.sleep(1.0)
    rec.proc.send_signal(signal.SIGINT)
    assert rec.wait(30) == 0, rec.output
    run.stop()
    assert re.search(r'; lost \d+ of /toroidal_dot/camera/image_raw', rec.output), rec.output

    [info] = list_sessions(tmp_path)
    with Session(info.path) as s:
        losses = s.losses()
        lost_frames = [x for x in losses if x.topic == NS + 'camera/image_raw']
        assert lost_frames and all(x.count > 0 and x.from_ns < x.to_ns for x in lost_frames)
        truth = ground_truth(s)
        frames = list(s.frames())
        gone = [  # simulated frames not in the bag whose ground truth is (often lost with them)
            stamp
            for stamp in truth
            if stamp not in {f.stamp_ns for f in frames}
            and frames[0].stamp_ns < stamp < frames[-1].stamp_ns
        ]
        assert all(any(x.from_ns < stamp <= x.to_ns for x in lost_frames) for stamp in gone), (
            gone,
            losses,
        )
        transitions = list(s.transitions())
        assert len(transitions) >= 20
        assert all(shows_its_action(t) for t in transitions)
        assert not any(  # none spans a lost frame
            t.frame_stamp_ns < stamp < t.next_stamp_ns for t in transitions for stamp in gone
        )


def test_a_burst_of_stop_signals_still_closes_the_bag(launch, node_process, tmp_path):
    # every signal only asks the recorder's loop to stop: none may interrupt a write or the
    # closing of the bag
    run = launch(RUNNER, 'selector:=random', 'seed:=3', 'action_delay:=0.0', 'report_dir:=')
    rec = node_process(_recorder_cmd(tmp_path, 'flush_interval_s:=0.2'))
    assert rec.wait_for_line(r'recording /toroidal_dot/camera/image_raw', 30), rec.output
    # frames are flowing into the bag (discovery can take seconds under load)
    assert _wait_recorded(tmp_path, 10, timeout=45) is not None, rec.output + run.output
    for sig in (signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGINT):
        rec.proc.send_signal(sig)
        time.sleep(0.002)
    assert rec.wait(30) == 0, rec.output
    run.stop()
    [info] = list_sessions(tmp_path)
    assert info.complete, 'the bag was closed'
    with Session(info.path) as session:
        assert len(list(session.frames())) >= 5


def _fake_session(path, size: int, age_s: float) -> None:
    import os

    path.mkdir(parents=True)
    (path / 'metadata.yaml').write_text('rosbag2_bagfile_information: {}\n')
    (path / f'{path.name}_0.mcap').write_bytes(b'\0' * size)
    t = time.time() - age_s
    for p in (path / 'metadata.yaml', path / f'{path.name}_0.mcap', path):
        os.utime(p, (t, t))


def test_disk_limit_deletes_oldest_sessions_at_start_and_while_recording(launch, ros_env, tmp_path):
    robot = tmp_path / 'toroidal_dot'
    _fake_session(robot / 'old', 700_000, 300)
    _fake_session(robot / 'newer', 500_000, 100)
    run = launch(RUNNER, 'selector:=sequence', 'seed:=1', 'action_delay:=0.05', 'report_dir:=')
    # 0.001 GB = 1.07 MB; frames stored uncompressed (150 KB each) fill it within a second
    rec = subprocess.run(
        _recorder_cmd(
            tmp_path,
            'disk_limit_gb:=0.001',
            'compression:=none',
            'flush_interval_s:=0.1',
            'duration_s:=60.0',
        ),
        env=ros_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
    )
    run.stop()
    out = rec.stdout + rec.stderr
    assert rec.returncode == 1, out
    first, second = (
        out.index('deleted oldest session'),
        out.index('recording /toroidal_dot/camera/image_raw'),
    )
    assert first < second and f'{robot / "old"}' in out[:second]  # at start: the oldest
    assert re.search(r'disk limit: deleted oldest session .*newer', out), (
        out
    )  # then while recording
    assert 'reached by this session alone' in out
    [info] = list_sessions(
        tmp_path
    )  # only the current session is left, and it is closed and readable
    assert info.complete
    with Session(info.path) as s:
        assert s.num_frames >= 5


def write_timed_bag(path, frames: int, period_ns: int):
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    rng = np.random.default_rng(0)
    images = []
    t0 = 1_760_000_000_000_000_000
    custom = {KEY_ROBOT_TYPE: 'toroidal_dot', KEY_NAMESPACE: '/toroidal_dot'}
    with BagWriter(path, custom) as bag:
        tid = bag.add_topic(TopicSpec(NS + 'camera/image_raw', 'sensor_msgs/msg/Image'))
        for k in range(frames):
            ns = t0 + k * period_ns
            img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            images.append(img)
            hdr = T['std_msgs/msg/Header'](
                T['builtin_interfaces/msg/Time'](ns // 10**9, ns % 10**9), 'camera'
            )
            msg = T['sensor_msgs/msg/Image'](hdr, 32, 32, 'rgb8', 0, 96, img.reshape(-1))
            bag.write(tid, ns, ts.serialize_cdr(msg, 'sensor_msgs/msg/Image'))
    return images


def _played_seconds(output: str) -> float:
    m = re.search(r'played (\d+) messages in ([\d.]+) s', output)
    assert m, output
    return float(m.group(2))


def test_playback_at_rate_two_takes_half_the_recorded_time(probe, ros_env, tmp_path):
    images = write_timed_bag(tmp_path / 'timed', 21, 100_000_000)  # 2.0 s of frames
    frames = probe.record(Image, NS + 'camera/image_raw')
    player = _start(
        _node_cmd(
            'player_node', f'session:={tmp_path / "timed"}', 'rate:=2.0', 'wait_subscribers:=1'
        ),
        ros_env,
    )
    assert probe.spin_until(lambda: player.poll() is not None, timeout=60)
    probe.spin_until(lambda: len(frames) >= 21, timeout=5)
    out = player.stdout.read()
    assert player.returncode == 0, out
    assert 0.8 <= _played_seconds(out) <= 1.7, out  # 2.0 s recorded / rate 2 = 1.0 s
    assert len(frames) == 21
    assert all(
        np.array_equal(np.frombuffer(bytes(f.data), np.uint8).reshape(32, 32, 3), img)
        for f, img in zip(frames, images)
    )


def test_lockstep_publishes_the_next_frame_only_after_the_ack(probe, ros_env, tmp_path):
    write_timed_bag(tmp_path / 'slow', 8, 2_000_000_000)  # 14 s in real time
    frames = probe.record(Image, NS + 'camera/image_raw')
    acks = probe.node.create_publisher(Header, NS + 'world_model/processed', 10)
    player = _start(
        _node_cmd(
            'player_node', f'session:={tmp_path / "slow"}', 'lockstep:=true', 'ack_timeout_s:=20.0'
        ),
        ros_env,
    )
    acked = 0
    try:
        while acked < 8:
            assert probe.spin_until(lambda: len(frames) > acked, timeout=30), (
                f'frame {acked} never came'
            )
            assert len(frames) == acked + 1, 'a frame came before the previous one was acked'
            if acked == 3:  # a slow consumer: nothing new may arrive while it works
                assert not probe.spin_until(lambda: len(frames) > 4, timeout=1.0)
            # an ack sent before the player's reader matched would be lost
            assert probe.spin_until(lambda: acks.get_subscription_count() > 0, timeout=30)
            acks.publish(Header(stamp=frames[acked].header.stamp, frame_id='processed'))
            acked += 1
        out, _ = player.communicate(timeout=30)
    finally:
        if player.poll() is None:
            player.kill()
            player.wait()
    assert player.returncode == 0, out
    assert 'played 8 messages' in out and '0 acks missed' in out, out
    assert _played_seconds(out) < 10  # far faster than the 14 s the frames span
    stamps = [stamp_ns(f) for f in frames]
    assert stamps == sorted(stamps) and len(set(stamps)) == 8


def test_ctrl_c_stops_a_playback_at_once_and_reports_what_was_played(probe, ros_env, tmp_path):
    write_timed_bag(tmp_path / 'slow', 8, 2_000_000_000)  # 14 s in real time
    frames = probe.record(Image, NS + 'camera/image_raw')
    player = _start(
        _node_cmd('player_node', f'session:={tmp_path / "slow"}', 'wait_subscribers:=1'),
        ros_env,
    )
    try:
        assert probe.spin_until(lambda: len(frames) >= 2, timeout=30), 'playback never started'
        player.send_signal(signal.SIGINT)
        out, _ = player.communicate(timeout=5)  # not the 10 s of frames still to come
    finally:
        if player.poll() is None:
            player.kill()
            player.wait()
    assert player.returncode == 0, out
    played = int(re.search(r'played (\d+) messages', out).group(1))
    assert 2 <= played < 8, out
    assert 'Traceback' not in out, out
