"""``devbot import-original`` end to end (here, beside the graph tests, because it crosses
packages: devbot's bag tools and the world model's trainer): sessions written in the original
codebase's format (by a small writer here that follows that format) become devbot sessions that
the session reader, an independent MCAP reader and the offline trainer read; broken sessions give
a clear error and leave nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from devbot.action_space import ActionSpace
from devbot.bag import Session, list_sessions, read_info
from devbot.bag.import_original import (
    KEY_IMPORTED_FROM,
    KEY_ORIGINAL_META,
    OriginalSessionError,
    import_session,
    main,
)
from devbot.bag.metadata import KEY_NAMESPACE, KEY_ROBOT
from devbot.cli import main as devbot_main

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'config'
DOT_SPACE = ActionSpace.from_yaml(CONFIG / 'toroidal_dot.yaml')
JETBOT_SPACE = ActionSpace.from_yaml(CONFIG / 'jetbot.yaml')
# the action spaces as the original's robots declare them (ToroidalDotRobot, JetBotInterface)
ORIGINAL_DOT_SPACE = [{'action': 0}, {'action': 1}]
ORIGINAL_JETBOT_SPACE = [
    {'motor_left': 0, 'motor_right': 0, 'duration': 0.2},
    {'motor_left': 0, 'motor_right': 0.12, 'duration': 0.2},
]
T0 = 1_758_457_293.25  # wall-clock seconds of the first event


class OriginalWriter:
    """Writes a session folder the way the original's RecordingWriter does: one step counter for
    observations and actions, frames/frame_<step:06d>.jpg (PIL, quality 85), the event stream
    in events_shard_<NNN>.jsonl files of ``shard_size`` events, session_meta.json."""

    def __init__(
        self, base: Path, name: str, robot_type: str, action_space: list, shard_size: int = 16
    ) -> None:
        self.dir = base / name
        (self.dir / 'frames').mkdir(parents=True)
        self.shard_size = shard_size
        self.step = 0
        self.shard = 0
        self.buffer: list[dict] = []
        self.meta = {
            'session_name': name,
            'start_time': datetime.fromtimestamp(T0).isoformat(),
            'shard_size': shard_size,
            'max_disk_gb': 10.0,
            'action_space': action_space,
            'robot_type': robot_type,
            'total_shards': 0,
        }
        self._write_meta()

    def observation(self, frame: np.ndarray, timestamp: float) -> None:
        name = f'frame_{self.step:06d}.jpg'
        Image.fromarray(frame).save(self.dir / 'frames' / name, 'JPEG', quality=85)
        self._event('observation', {'frame_path': f'frames/{name}'}, timestamp)

    def action(self, action: dict, timestamp: float) -> None:
        self._event('action', action, timestamp)

    def finalize(self) -> None:
        if self.buffer:
            self._write_shard()
        self.meta['total_shards'] = len(list(self.dir.glob('events_shard_*.jsonl')))
        self.meta['end_time'] = datetime.now().isoformat()
        self.meta['total_steps'] = self.step
        self._write_meta()

    def _event(self, kind: str, data: dict, timestamp: float) -> None:
        self.buffer.append({'step': self.step, 'type': kind, 'data': data, 'timestamp': timestamp})
        self.step += 1
        if len(self.buffer) >= self.shard_size:
            self._write_shard()
            self.shard += 1
            self.buffer = []
            self.meta['total_shards'] = self.shard
            self._write_meta()

    def _write_shard(self) -> None:
        path = self.dir / f'events_shard_{self.shard:03d}.jsonl'
        path.write_text(''.join(json.dumps(e) + '\n' for e in self.buffer))

    def _write_meta(self) -> None:
        (self.dir / 'session_meta.json').write_text(json.dumps(self.meta, indent=2))


def dot_frame(x: int, size: int = 48) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    img[size // 2 - 3 : size // 2 + 3, [(x + d) % size for d in range(-3, 4)]] = 255
    return img


def record_dot(base: Path, name: str, actions: list[int], step_s: float = 0.05, **kw) -> Path:
    """observation, then (action, observation) per action, as the original's loop records."""
    w = OriginalWriter(base, name, 'ToroidalDotRobot', ORIGINAL_DOT_SPACE, **kw)
    x, t = 5, T0
    w.observation(dot_frame(x), t)
    for a in actions:
        w.action({'action': a}, t + step_s / 3)
        x += 7 * a
        t += step_s
        w.observation(dot_frame(x), t)
    w.finalize()
    return w.dir


def record_jetbot(base: Path, name: str, actions: list[int]) -> Path:
    rng = np.random.default_rng(3)
    w = OriginalWriter(base, name, 'JetBotInterface', ORIGINAL_JETBOT_SPACE, shard_size=10)
    t = T0
    yy, xx = np.mgrid[0:36, 0:60]
    for k, a in enumerate([None, *actions]):
        if a is not None:
            w.action(dict(ORIGINAL_JETBOT_SPACE[a]), t + 0.01)
            t += 0.3
        smooth = (xx * 3 + yy * 2 + 9 * k) % 256
        frame = np.stack([smooth, 255 - smooth, rng.integers(0, 256, smooth.shape)], -1)
        w.observation(frame.astype(np.uint8), t)
    w.finalize()
    return w.dir


def source_frames(session_dir: Path) -> list[np.ndarray]:
    """The frames as the original's reader decodes them, in step order."""
    events = []
    for shard in sorted(session_dir.glob('events_shard_*.jsonl')):
        events += [json.loads(line) for line in shard.read_text().splitlines() if line.strip()]
    events.sort(key=lambda e: e['step'])
    return [
        np.array(Image.open(session_dir / e['data']['frame_path']).convert('RGB'))
        for e in events
        if e['type'] == 'observation'
    ]


def source_events(session_dir: Path) -> list[dict]:
    events = []
    for shard in sorted(session_dir.glob('events_shard_*.jsonl')):
        events += [json.loads(line) for line in shard.read_text().splitlines() if line.strip()]
    return sorted(events, key=lambda e: e['step'])


DOT_ACTIONS = [1, 1, 0, 1, 0, 0, 1] * 4 + [1, 0]  # 30 actions, 31 frames, 61 events, 4 shards


def test_dot_session_imports_with_frames_actions_stamps_and_metadata(tmp_path):
    src = record_dot(tmp_path / 'orig', 'session_20250921_142133', DOT_ACTIONS)
    assert len(list(src.glob('events_shard_*.jsonl'))) == 4
    result = import_session(src, tmp_path / 'sessions', config_dir=CONFIG)
    start = datetime.fromtimestamp(T0).strftime('%Y%m%d-%H%M%S-%f')
    assert result.bag == tmp_path / 'sessions' / 'toroidal_dot' / start
    assert (result.frames, result.actions, result.adjusted_stamps) == (31, 30, 0)
    # only the finished session is there: no staging folder left
    assert [p.name for p in result.bag.parent.iterdir()] == [start]

    events = source_events(src)
    obs_ns = [round(e['timestamp'] * 1e9) for e in events if e['type'] == 'observation']
    act_ns = [round(e['timestamp'] * 1e9) for e in events if e['type'] == 'action']
    frames = source_frames(src)
    with Session(result.bag) as s:
        assert s.robot_type == 'toroidal_dot' and s.action_space == DOT_SPACE
        assert s.info.complete and s.camera_topic == '/toroidal_dot/camera/image_raw'
        assert s.num_frames == 31 and list(s.frame_stamps) == obs_ns
        assert all(np.array_equal(f.image, frames[f.index]) for f in s.frames())
        assert [a.index for a in s.actions()] == DOT_ACTIONS
        assert [a.stamp_ns for a in s.actions()] == act_ns
        trans = s.transition_list()
        assert [t.action for t in trans] == DOT_ACTIONS
        assert [(t.frame_index, t.next_frame_index) for t in trans] == [
            (k, k + 1) for k in range(30)
        ]
        custom = s.info.custom_data
    assert custom[KEY_NAMESPACE] == '/toroidal_dot' and custom[KEY_ROBOT] == 'toroidal_dot'
    assert custom[KEY_IMPORTED_FROM] == str(src.resolve())
    original_meta = json.loads(custom[KEY_ORIGINAL_META])
    assert original_meta['robot_type'] == 'ToroidalDotRobot' and original_meta['total_steps'] == 61
    info = read_info(result.bag)
    assert info.start_ns == obs_ns[0] and info.duration_ns == obs_ns[-1] - obs_ns[0]
    assert {n: t.count for n, t in info.topics.items()} == {
        '/toroidal_dot/camera/image_raw': 31,
        '/toroidal_dot/motor_command/executed': 30,
    }
    assert [i.name for i in list_sessions(tmp_path / 'sessions')] == [start]

    # independent reader: the mcap library with its ROS 2 decoder
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    (mcap_file,) = result.bag.glob('*.mcap')
    images, image_stamps, actions, log_times = [], [], [], []
    with mcap_file.open('rb') as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            log_times.append(message.log_time)
            stamp = decoded.header.stamp.sec * 1_000_000_000 + decoded.header.stamp.nanosec
            if channel.topic == '/toroidal_dot/camera/image_raw':
                assert schema.name == 'sensor_msgs/msg/Image' and decoded.encoding == 'rgb8'
                assert decoded.header.frame_id == 'camera'
                images.append(
                    np.frombuffer(bytes(decoded.data), np.uint8).reshape(
                        decoded.height, decoded.width, 3
                    )
                )
                image_stamps.append(stamp)
            else:
                assert channel.topic == '/toroidal_dot/motor_command/executed'
                assert schema.name == 'sensor_msgs/msg/JointState'
                assert list(decoded.name) == ['action'] and stamp == message.log_time
                actions.append(int(decoded.position[0]))
    assert len(images) == 31 and all(np.array_equal(a, b) for a, b in zip(images, frames))
    assert image_stamps == obs_ns and actions == DOT_ACTIONS
    assert log_times == sorted(obs_ns + act_ns)


def test_jetbot_session_through_the_devbot_command(tmp_path, capsys):
    actions = [0, 1, 1, 0, 1, 1, 1, 0, 0, 1, 0, 1]
    src = record_jetbot(tmp_path / 'orig', 'session_20250922_101010', actions)
    out = tmp_path / 'sessions'
    status = devbot_main(
        ['import-original', str(src), '--out', str(out), '--config-dir', str(CONFIG)]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert '13 frames, 12 actions' in printed
    (bag,) = (out / 'jetbot').iterdir()
    assert str(bag) in printed
    frames = source_frames(src)
    with Session(bag) as s:
        assert s.robot_type == 'jetbot' and s.action_space == JETBOT_SPACE
        assert s.frame(0).image.shape == (36, 60, 3)
        assert all(np.array_equal(f.image, frames[f.index]) for f in s.frames())
        assert [a.index for a in s.actions()] == actions
        assert [a.values for a in s.actions()] == [JETBOT_SPACE.values(a) for a in actions]
        assert len(s.transition_list()) == 12
        assert s.info.custom_data[KEY_NAMESPACE] == '/jetbot'


def test_robot_name_and_robot_config_options(tmp_path, capsys):
    src = record_dot(tmp_path / 'orig', 'session_a', [1, 0, 1])
    meta = json.loads((src / 'session_meta.json').read_text())
    meta['robot_type'] = 'MyOtherRobot'
    (src / 'session_meta.json').write_text(json.dumps(meta))
    out = tmp_path / 'sessions'
    assert main([str(src), '--out', str(out), '--config-dir', str(CONFIG)]) == 1
    err = capsys.readouterr().err
    assert "robot_type 'MyOtherRobot'" in err and '--robot-config' in err
    assert not out.exists() or not any(out.rglob('*.mcap'))
    status = main(
        [
            str(src),
            '--out',
            str(out),
            '--robot',
            'dot_lab',
            '--robot-config',
            str(CONFIG / 'toroidal_dot.yaml'),
            '--no-progress',
        ]
    )
    assert status == 0
    (bag,) = (out / 'dot_lab').iterdir()
    info = read_info(bag)
    assert info.robot == 'dot_lab' and info.robot_type == 'toroidal_dot'
    assert info.custom_data[KEY_ROBOT] == 'dot_lab'
    # a second import of the same session is refused, the first one kept
    again = [str(src), '--out', str(out), '--robot', 'dot_lab']
    assert main([*again, '--robot-config', str(CONFIG / 'toroidal_dot.yaml')]) == 1
    assert 'exists already' in capsys.readouterr().err
    assert read_info(bag).message_count == 7


def _break_json(src: Path) -> str:
    shard = src / 'events_shard_001.jsonl'
    lines = shard.read_text().splitlines()
    lines[4] = lines[4][: len(lines[4]) // 2]
    shard.write_text('\n'.join(lines) + '\n')
    return f'{shard}:5: not valid JSON'


def _missing_frame(src: Path) -> str:
    frame = src / 'frames' / 'frame_000040.jpg'
    frame.unlink()
    return f'{src / "events_shard_002.jsonl"}:9: frame file {frame} is missing'


def _truncated_jpeg(src: Path) -> str:
    path = src / 'frames' / 'frame_000050.jpg'
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return f'{src / "events_shard_003.jsonl"}:3: frame file {path} is not a complete image'


def _foreign_action(src: Path) -> str:
    shard = src / 'events_shard_000.jsonl'
    lines = shard.read_text().splitlines()
    event = json.loads(lines[5])
    assert event['type'] == 'action'
    event['data'] = {'action': 2}
    lines[5] = json.dumps(event)
    shard.write_text('\n'.join(lines) + '\n')
    return f"{shard}:6: action {{'action': 2}} is not in the toroidal_dot action space"


@pytest.mark.parametrize('damage', [_break_json, _missing_frame, _truncated_jpeg, _foreign_action])
def test_a_broken_session_names_shard_and_line_and_leaves_no_bag(tmp_path, capsys, damage):
    broken = record_dot(tmp_path / 'orig', 'session_1_broken', DOT_ACTIONS)
    good = record_dot(tmp_path / 'orig', 'session_2_good', [0, 1, 1], step_s=0.5)
    meta = json.loads((good / 'session_meta.json').read_text())
    meta['start_time'] = datetime.fromtimestamp(T0 + 3600).isoformat()
    (good / 'session_meta.json').write_text(json.dumps(meta))
    expected = damage(broken)
    out = tmp_path / 'sessions'

    with pytest.raises(OriginalSessionError) as exc:
        import_session(broken, out, config_dir=CONFIG)
    assert expected in str(exc.value)
    robot_dir = out / 'toroidal_dot'
    assert not robot_dir.exists() or list(robot_dir.iterdir()) == []

    # the command goes on with the other session, and says which one failed
    status = main([str(tmp_path / 'orig'), '--out', str(out), '--config-dir', str(CONFIG)])
    assert status == 1
    captured = capsys.readouterr()
    assert expected in captured.err and '1 of 2 sessions not imported' in captured.err
    (bag,) = robot_dir.iterdir()  # the good one only, no half-written bag or staging folder
    assert 'session_2_good' in captured.out and str(bag) in captured.out
    assert [i.name for i in list_sessions(out)] == [bag.name]
    with Session(bag) as s:
        assert [a.index for a in s.actions()] == [0, 1, 1]


def test_a_coarse_clock_keeps_every_frame_and_the_pairing(tmp_path):
    """Events stamped alike (a 15.6 ms system clock) stay distinct and in step order."""
    src = record_dot(tmp_path / 'orig', 'session_coarse', [1, 0, 1, 1], step_s=0.0)
    result = import_session(src, tmp_path / 'sessions', config_dir=CONFIG)
    assert result.adjusted_stamps == 8  # every event after the first shares its timestamp
    with Session(result.bag) as s:
        assert s.num_frames == 5
        assert [t.action for t in s.transition_list()] == [1, 0, 1, 1]
        assert [(t.frame_index, t.next_frame_index) for t in s.transition_list()] == [
            (k, k + 1) for k in range(4)
        ]
        assert np.all(np.diff(s.frame_stamps) == 2)


def test_events_are_ordered_by_step_as_the_original_reader_orders_them(tmp_path):
    src = record_dot(tmp_path / 'orig', 'session_shuffled', DOT_ACTIONS)
    shard = src / 'events_shard_001.jsonl'
    lines = shard.read_text().splitlines()
    shard.write_text('\n'.join(lines[::-1]) + '\n')
    result = import_session(src, tmp_path / 'sessions', config_dir=CONFIG)
    frames = source_frames(src)
    with Session(result.bag) as s:
        assert [a.index for a in s.actions()] == DOT_ACTIONS
        assert all(np.array_equal(f.image, frames[f.index]) for f in s.frames())
        assert len(s.transition_list()) == 30


def test_a_killed_recording_imports_what_its_shards_hold(tmp_path):
    """The original loses its unwritten last shard when killed: its frames have no events."""
    src = record_dot(tmp_path / 'orig', 'session_killed', DOT_ACTIONS)
    (src / 'events_shard_003.jsonl').unlink()  # 13 events never written: 48 remain
    meta = json.loads((src / 'session_meta.json').read_text())
    del meta['end_time'], meta['total_steps']
    (src / 'session_meta.json').write_text(json.dumps(meta))
    result = import_session(src, tmp_path / 'sessions', config_dir=CONFIG)
    assert (result.frames, result.actions) == (24, 24)
    with Session(result.bag) as s:
        assert [a.index for a in s.actions()] == DOT_ACTIONS[:24]
        assert len(s.transition_list()) == 23  # the last action's outcome frame was lost


def test_an_imported_session_trains(tmp_path):
    import torch

    from world_model_node.config import WorldModelConfig
    from world_model_node.offline.dataset import TransitionDataset, build_index, resize_frame
    from world_model_node.offline.trainer import OfflineTrainer, TrainSettings

    torch.set_num_threads(1)
    src = record_dot(tmp_path / 'orig', 'session_train', DOT_ACTIONS)
    bag = import_session(src, tmp_path / 'sessions', config_dir=CONFIG).bag
    cfg = WorldModelConfig.tiny()
    index = build_index([bag], cfg.context_frames)
    assert len(index) == 30 - cfg.context_frames + 1 and index.robot_type == 'toroidal_dot'
    assert index.sessions[0].actions[0].tolist() == DOT_ACTIONS[: cfg.context_frames]
    item = TransitionDataset(index, [0], cfg.img_size)[0]
    frames = source_frames(src)
    expected = torch.stack(
        [
            resize_frame(torch.from_numpy(frames[i]), cfg.img_size).permute(2, 0, 1)
            for i in range(cfg.context_frames + 1)
        ]
    )
    assert torch.equal(item['frames'], expected)

    settings = TrainSettings(batch_size=4, steps=2, gate=False, save_every=0, val_fraction=0.0)
    trainer = OfflineTrainer([bag], tmp_path / 'run', cfg, settings, device='cpu', progress=False)
    result = trainer.train()
    assert result.global_step == 2 and result.samples_this_run == 8


def test_an_unwritable_destination_is_a_clear_error(tmp_path, capsys):
    src = record_dot(tmp_path / 'orig', 'session_a', [1, 0])
    out = tmp_path / 'not_a_folder'
    out.write_text('')
    assert main([str(src), '--out', str(out), '--config-dir', str(CONFIG)]) == 1
    err = capsys.readouterr().err
    assert f'cannot create a session in {out / "toroidal_dot"}' in err
    assert out.read_text() == ''


def test_help_shows_examples():
    proc = subprocess.run(
        [sys.executable, '-m', 'devbot.bag.import_original', '--help'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert 'examples:' in proc.stdout and 'devbot import-original ~/old/' in proc.stdout
    assert '--robot-config' in proc.stdout and '--out' in proc.stdout
