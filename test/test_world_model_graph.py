"""The world model in the graph: sim + world model (tiny config) + selector as separate
processes over real DDS, started by the launcher on an isolated domain."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import time

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from graphtest import BIN, REPO, pid_alive
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header

from toroidal_sim.env import ToroidalDotConfig, ToroidalDotEnv
from world_model_node.visualization import panel_layout

LAUNCH = 'launch/toroidal_dot_world_model.launch.yaml'
NS = '/toroidal_dot/'
ROBOT = REPO / 'config' / 'toroidal_dot.yaml'
CANDIDATES = {1: 2, 2: 2 + 4, 3: 2 + 4 + 16}  # the dot's candidates by number of levels


def write_params(path, **values) -> str:
    lines = ['/**:', '  ros__parameters:'] + [f'    {k}: {v}' for k, v in values.items()]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def metric(msg: DiagnosticArray, key: str) -> str:
    return next(kv.value for kv in msg.status[0].values if kv.key == key)


def assert_take_turns(first: list, then: list) -> None:
    """Sorted by stamp, messages of ``first`` and ``then`` alternate (first, then, first, ...)
    over the span in which the probe received both topics."""
    # a message re-sent to a late-joining reader reaches every reader again: count a stamp once
    stamps = [sorted({stamp_ns(m) for m in msgs}) for msgs in (first, then)]
    lo = max(stamps[0][0], stamps[1][0])
    hi = min(stamps[0][-1], stamps[1][-1])
    merged = sorted([(t, 0) for t in stamps[0]] + [(t, 1) for t in stamps[1]])
    turns = [which for t, which in merged if lo <= t <= hi]
    assert len(turns) >= 20, f'too short an overlap to check: {len(turns)} messages'
    repeats = [i for i in range(1, len(turns)) if turns[i] == turns[i - 1]]
    assert not repeats, f'{len(repeats)} of {len(turns)} out of turn, first at {repeats[0]}'


def tiny_world_model_cmd(tmp_path) -> list[str]:
    """The dot's world_model_node, tiny preset, one thread, its files under ``tmp_path``."""
    params = [
        f'robot_config:={ROBOT}',
        'preset:=tiny',
        'num_threads:=1',
        f'checkpoint_dir:={tmp_path / "c"}',
        f'report_dir:={tmp_path / "r"}',
    ]
    cmd = [str(BIN / 'world_model_node'), '--ros-args', '-r', '__ns:=/toroidal_dot']
    for param in params:
        cmd += ['-p', param]
    return cmd


def generation(checkpoint_dir) -> tuple[int, int]:
    """(generation, step) of the newest complete checkpoint (after a kill -9 the newest files
    may be mid-rotation)."""
    from world_model_node.checkpoint import CheckpointManager

    state = CheckpointManager(checkpoint_dir).load()['learner_state']
    return int(state['generation']), int(state['step'])


def test_gate_then_lockstep_then_checkpoint_resume_and_report(launch, probe, tmp_path):
    # a threshold the tiny model reaches after some autoencoder steps: the gate starts closed
    # panels every 20 steps: enough to check them, few enough (each ~0.6 MB) that the probe keeps
    # up with the keep-last-10 loop topics while it also takes the panels
    params = write_params(
        tmp_path / 'wm.yaml', reconstruction_threshold=0.0009, display_interval=20
    )
    frames = probe.record(Image, NS + 'camera/image_raw')
    scores = probe.record(JointState, NS + 'world_model/action_scores')
    commands = probe.record(JointState, NS + 'motor_command')
    executed = probe.record(JointState, NS + 'motor_command/executed')
    metrics = probe.record(DiagnosticArray, NS + 'world_model/metrics', depth=5000)
    panels = probe.record(Image, NS + 'world_model/visualization')
    ckpt, report = tmp_path / 'ckpt', tmp_path / 'report'
    args = [
        LAUNCH,
        'preset:=tiny',
        f'params_file:={params}',
        f'checkpoint_dir:={ckpt}',
        f'report_dir:={report}',
        'seed:=2',
        'num_threads:=1',
    ]
    run = launch(*args, 'max_steps:=600')
    assert probe.spin_until(lambda: run.proc.poll() is not None, timeout=240), run.output
    probe.spin_until(lambda: False, timeout=0.5)
    assert run.wait(10) == 0, run.output

    # the gate starts closed and opens after some autoencoder steps: from the node's complete
    # per-step record (under load DDS discovery can take seconds, so the probe may miss the
    # first hundreds of tiny-model steps)
    rows = list(csv.DictReader(open(report / 'metrics.csv')))
    opened = [int(r['step']) for r in rows if r['gate_open'] == '1']
    assert rows[0]['gate_open'] == '0' and opened and opened[0] > 5, 'the gate must start closed'
    assert scores and commands and executed, run.output
    # the metrics topic says what the record says, for every step the probe heard (a busy probe
    # may drop some of the keep-last-10 messages)
    gate_by_step = {int(r['step']): r['gate_open'] == '1' for r in rows}
    gates = [(int(metric(m, 'step')), metric(m, 'gate_open') == '1') for m in metrics]
    assert gates and all(gate_by_step[step] == is_open for step, is_open in gates)
    # while the gate was closed no action flowed: the first command the probe saw comes after
    # every step before the gate's first opening that the probe heard (a step's metrics are
    # stamped after its scores went out, so the bound is a gate-closed step's)
    closed = [stamp_ns(m) for m, (step, _) in zip(metrics, gates) if step < opened[0]]
    if closed:
        assert stamp_ns(commands[0]) > max(closed)
    # lockstep: each scores message is about a frame; each executed action's stamp is the stamp
    # of exactly one frame (its outcome) and of the next scores message, if the gate stayed open
    # (checked from the first frame the probe heard: it may hear the camera late)
    frame_stamps = {stamp_ns(f) for f in frames}
    heard = [t for t in map(stamp_ns, [*scores, *executed]) if t >= min(frame_stamps)]
    assert len(heard) >= 20 and set(heard) <= frame_stamps
    # one command per scores message, one executed action per command: in stamp order they take
    # turns (the probe discovers each topic at its own time, so only where it heard both)
    assert_take_turns(scores, commands)
    assert_take_turns(commands, executed)
    assert all(
        list(s.name[:2]) == ['L0:0', 'L0:1'] and np.isfinite(s.position).all() for s in scores
    )
    assert all(c.position[0] == 1.0 for c in commands)  # ALWAYS_MOVE
    # the live panel: the layout of the frame, its reconstruction and every candidate (2 actions:
    # 2 candidates with level 0 only, 6 with level 1, 22 with level 2) of the run's levels
    levels = {int(r['num_levels']) for r in rows}
    sizes = {(lay.width, lay.height) for lay in (panel_layout(32, CANDIDATES[n]) for n in levels)}
    assert panels and panels[-1].encoding == 'rgb8'
    assert (panels[-1].width, panels[-1].height) in sizes, (panels[-1].width, sizes)
    shown = np.frombuffer(panels[-1].data, np.uint8).reshape(panels[-1].height, -1, 3)
    caption = shown[: panel_layout(32, 2).caption_height]
    assert (caption.max(axis=2) > 150).sum() > 200, 'the caption carries text'
    last = panel_layout(32, CANDIDATES[int(rows[-1]['num_levels'])])
    saved = cv2.imread(str(report / 'panels.png'))  # the report keeps the last panel as drawn
    assert saved is not None and saved.shape == (last.height, last.width, 3)

    # the checkpoint and the report exist
    gen1, step1 = generation(ckpt)
    assert gen1 >= 1 and step1 >= 600
    for name in ('summary.md', 'curves.png', 'panels.png', 'metrics.csv'):
        assert (report / name).is_file(), name
    assert 'gate_open_at_step' in (report / 'summary.md').read_text()
    # the dot robot's report scores every action on held-out transitions, on the dot's row (read
    # off the last frame) and on rows it never visited
    true_row = ToroidalDotEnv(ToroidalDotConfig(seed=2)).y
    row = summary_value(report, 'heldout_dot_row')
    assert min(abs(row - true_row), 224 - abs(row - true_row)) <= 4, (row, true_row)
    for kind in ('home_row', 'unseen_rows'):
        for a in (0, 1):
            ev = summary_number(report, f'{kind}_action_{a}_ev')
            within = summary_number(report, f'{kind}_action_{a}_within_3px')
            assert ev <= 1.0 and 0.0 <= within <= 1.0, (kind, a, ev, within)

    # a restart resumes: the learner's step counter continues; SIGINT writes a checkpoint
    run2 = launch(*args[:-1], f'report_dir:={tmp_path / "report2"}')
    assert run2.wait_for_line(r'resumed at step \d+', timeout=120), run2.output
    assert f'resumed at step {step1}' in run2.output
    assert run2.wait_for_line(r'step \d+.*steps/s', timeout=120), run2.output
    run2.proc.send_signal(signal.SIGINT)
    assert run2.wait(60) == 0, run2.output
    gen2, step2 = generation(ckpt)
    assert gen2 == gen1 + 1 and step2 > step1
    assert (tmp_path / 'report2' / 'summary.md').is_file()


def test_kill_9_then_restart_loads_the_last_periodic_checkpoint(ros_env, node_process, tmp_path):
    params = write_params(
        tmp_path / 'wm.yaml', reconstruction_threshold=0.05, checkpoint_save_interval=5
    )
    ckpt = tmp_path / 'ckpt'
    cmd_common = ['--ros-args', '-r', '__ns:=/toroidal_dot', '-p', f'robot_config:={ROBOT}']
    sim = subprocess.Popen([str(BIN / 'toroidal_sim_node'), *cmd_common], env=ros_env)
    sel = subprocess.Popen(
        [str(BIN / 'selector_node'), *cmd_common, '-p', 'trigger:=scores'], env=ros_env
    )
    wm_cmd = [
        str(BIN / 'world_model_node'),
        *cmd_common,
        '--params-file',
        params,
        '-p',
        'preset:=tiny',
        '-p',
        'progress_period:=0.5',
        '-p',
        f'checkpoint_dir:={ckpt}',
        '-p',
        f'report_dir:={tmp_path / "r"}',
        '-p',
        'num_threads:=1',
    ]
    try:
        wm = subprocess.Popen(
            wm_cmd, env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (ckpt / 'learner_state.pth').exists():
            time.sleep(0.2)
        assert (ckpt / 'learner_state.pth').exists(), 'no periodic checkpoint was written'
        time.sleep(1.0)
        wm.kill()
        wm.wait(10)
        saved_gen, saved_step = generation(ckpt)
        wm = node_process(wm_cmd)
        # the resume line, then a progress line: it is spinning
        assert wm.wait_for_line(r'steps/s', timeout=120), wm.output
        assert f'resumed at step {saved_step}' in wm.output, wm.output
        wm.proc.send_signal(signal.SIGINT)
        assert wm.wait(60) == 0, wm.output
        out = wm.output
        # SIGINT saved the final state (periodic checkpoints may have come before it)
        final_gen, final_step = generation(ckpt)
        last_step = int(re.findall(r'step (\d+), frames', out)[-1])
        assert final_gen > saved_gen and final_step == last_step >= saved_step, out
    finally:
        for p in (sim, sel):
            p.send_signal(signal.SIGINT)
            p.wait(20)


def test_kill_9_in_the_gate_closed_phase_loses_at_most_one_checkpoint_period(launch, tmp_path):
    from world_model_node.checkpoint import CheckpointManager

    # the gate never opens (threshold 0): no predictor step, so only the wall-time trigger saves
    params = write_params(
        tmp_path / 'wm.yaml',
        reconstruction_threshold=0.0,
        checkpoint_period_s=2.0,
        checkpoint_save_interval=100000,
    )
    ckpt = tmp_path / 'ckpt'
    args = [
        LAUNCH,
        'preset:=tiny',
        f'params_file:={params}',
        f'checkpoint_dir:={ckpt}',
        f'report_dir:={tmp_path / "r"}',
        'num_threads:=1',
    ]
    run = launch(*args)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (ckpt / 'learner_state.pth').exists():
        time.sleep(0.2)
    assert (ckpt / 'learner_state.pth').exists(), 'no checkpoint by wall time: ' + run.output
    [wm_pid] = [pid for name, pid in run.child_pids().items() if name.startswith('world_model')]
    time.sleep(1.0)  # into the next period: a write may be in flight when the kill comes
    os.kill(wm_pid, signal.SIGKILL)
    assert wait_gone(wm_pid, 10), 'world_model_node survived SIGKILL'
    run.stop()
    # the newest complete generation loads; it was made while the gate was closed
    comps = CheckpointManager(ckpt).load()
    state = comps['learner_state']
    saved_gen, saved_step = int(state['generation']), int(state['step'])
    assert saved_gen >= 1 and saved_step > 0
    assert state['levels'][0]['training_steps'] == 0 and state['autoencoder_steps'] > 0
    run2 = launch(*args[:-2], f'report_dir:={tmp_path / "r2"}', 'num_threads:=1')
    assert run2.wait_for_line(r'resumed at step \d+', timeout=120), run2.output
    assert f'resumed at step {saved_step}' in run2.output, run2.output
    run2.stop()


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_malformed_images_are_rejected_without_killing_the_node(node_process, probe, tmp_path):
    wm = node_process(tiny_world_model_cmd(tmp_path))
    metrics = probe.record(DiagnosticArray, NS + 'world_model/metrics', depth=5000)
    pub = probe.node.create_publisher(Image, NS + 'camera/image_raw', 10)
    assert wm.wait_for_line('fresh start', timeout=60), wm.output
    assert probe.spin_until(lambda: pub.get_subscription_count() > 0, timeout=60), wm.output

    def frame(sec, height=64, width=48):  # another size than the model's: resized
        msg = Image(
            height=height,
            width=width,
            encoding='bgr8',
            step=3 * width,
            data=np.zeros((height, width, 3), np.uint8).tobytes(),
        )
        msg.header.stamp.sec = sec
        return msg

    # good frames first (each newer than the last: the node drops re-sent stamps); once one is
    # learned from, the connection surely stands
    sec = 0
    deadline = time.monotonic() + 60
    while not metrics and time.monotonic() < deadline:
        sec += 1
        pub.publish(frame(sec))
        probe.spin_until(lambda: bool(metrics), timeout=1.0)
    assert metrics, f'the node never learned from a frame:\n{wm.output}'
    bad_encoding = Image(height=4, width=4, encoding='16UC1', step=8, data=bytes(32))
    truncated = Image(height=224, width=224, encoding='rgb8', step=672, data=bytes(1000))
    for msg in (bad_encoding, truncated):
        sec += 1
        msg.header.stamp.sec = sec
        pub.publish(msg)
    pub.publish(frame(sec + 10))
    seen = len(metrics)
    assert probe.spin_until(lambda: len(metrics) > seen + 3, timeout=60), (
        f'the node stopped learning:\n{wm.output}'
    )
    assert wm.proc.poll() is None, wm.output
    assert wm.stop() == 0, wm.output
    assert 'rejected camera frame #1' in wm.output and 'unsupported image encoding' in wm.output
    assert 'needs 150528 bytes, got 1000' in wm.output
    assert not pid_alive(wm.proc.pid)


def test_scores_wait_until_the_robots_executed_actions_can_be_heard(node_process, probe, tmp_path):
    # a selector's answer to scores sent before the node's executed-action reader matched the
    # robot would be lost, and the loop would wait for it forever: the scores wait instead
    # the gate open from the first frame: how soon the tiny autoencoder gets there varies by CPU
    wm = node_process(tiny_world_model_cmd(tmp_path) + ['-p', 'reconstruction_threshold:=1.0'])
    scores = probe.record(JointState, NS + 'world_model/action_scores')
    processed = probe.record(Header, NS + 'world_model/processed')
    camera = probe.node.create_publisher(Image, NS + 'camera/image_raw', 10)
    assert wm.wait_for_line('fresh start', timeout=60), wm.output
    assert probe.spin_until(lambda: camera.get_subscription_count() > 0, timeout=60), wm.output
    assert probe.spin_until(lambda: probe.matched(NS + 'world_model/processed'), timeout=60)
    env = ToroidalDotEnv(ToroidalDotConfig(seed=1))
    sec = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and 'holding the scores' not in wm.output:
        sec += 1
        msg = Image(height=224, width=224, encoding='rgb8', step=672, data=env.frame().tobytes())
        msg.header.stamp.sec = sec
        camera.publish(msg)
        probe.spin_until(lambda: False, timeout=0.2)
    assert 'holding the scores' in wm.output, wm.output
    probe.spin_until(lambda: False, timeout=2.0)
    assert not scores, 'scores went out while nobody could tell the node what was executed'
    probe.node.create_publisher(JointState, NS + 'motor_command/executed', 10)
    assert probe.spin_until(lambda: bool(scores), timeout=30), wm.output
    assert wm.wait_for_line('scores out', 10), wm.output
    # the held scores are those of the frame that opened the gate: the first one it observed
    first = processed[0].stamp
    assert stamp_ns(scores[0]) == first.sec * 1_000_000_000 + first.nanosec
    assert list(scores[0].name) == ['L0:0', 'L0:1']


def test_a_setup_mistake_at_start_is_one_clear_line_and_exit_2(ros_env, tmp_path):
    from devbot.action_space import ActionSpace
    from world_model_node.config import WorldModelConfig
    from world_model_node.learner import OnlineLearner

    ckpt = tmp_path / 'ckpt'  # a checkpoint of another model than the node's (no patch RoPE)
    learner = OnlineLearner(
        WorldModelConfig.tiny(patch_rope=False),
        ActionSpace.from_yaml(ROBOT).normalized(),
        checkpoint_dir=ckpt,
    )
    learner.save()
    learner.close()
    saved = {f.name: f.read_bytes() for f in ckpt.iterdir()}
    common = [
        str(BIN / 'world_model_node'),
        '--ros-args',
        '-r',
        '__ns:=/toroidal_dot',
        '-p',
        'preset:=tiny',
        '-p',
        'num_threads:=1',
        '-p',
        f'report_dir:={tmp_path / "r"}',
    ]
    cases = {
        'patch_rope=False (config: True)': [
            '-p',
            f'robot_config:={ROBOT}',
            '-p',
            f'checkpoint_dir:={ckpt}',
        ],
        'robot config not found': ['-p', f'robot_config:={tmp_path / "nope.yaml"}'],
        "train_filter 'actions=5': 'actions=5': no action [5]": [
            '-p',
            f'robot_config:={ROBOT}',
            '-p',
            f'checkpoint_dir:={ckpt}',
            '-p',
            'train_filter:=actions=5',
        ],
        'autoencoder_lr must be a finite number > 0 (0 = unset)': [
            '-p',
            f'robot_config:={ROBOT}',
            '-p',
            f'checkpoint_dir:={ckpt}',
            '-p',
            'autoencoder_lr:=-0.1',
        ],
        "precision must be one of auto | fp32 | bf16, got 'fp16'": [
            '-p',
            f'robot_config:={ROBOT}',
            '-p',
            f'checkpoint_dir:={ckpt}',
            '-p',
            'precision:=fp16',
        ],
        'set exactly one of robot_config': [],
    }
    for expected, extra in cases.items():
        run = subprocess.run(
            common + extra, env=ros_env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 2, run
        assert 'Traceback' not in run.stderr + run.stdout, run
        assert 'world_model_node: cannot start: ' in run.stderr and expected in run.stderr, (
            run.stderr
        )
    assert {f.name: f.read_bytes() for f in ckpt.iterdir()} == saved, (
        'the refused checkpoint must stay as it was'
    )


def test_lockstep_replay_trains_on_the_same_transitions_as_live(launch, tmp_path):
    from devbot.bag import Session, list_sessions

    params = write_params(tmp_path / 'wm.yaml', reconstruction_threshold=1.0)  # every frame acts
    sessions = tmp_path / 'sessions'
    live = launch(
        LAUNCH,
        'preset:=tiny',
        f'params_file:={params}',
        'record:=true',
        f'sessions_dir:={sessions}',
        f'checkpoint_dir:={tmp_path / "live_ckpt"}',
        f'report_dir:={tmp_path / "live"}',
        'max_steps:=40',
        'num_threads:=1',
    )
    assert live.wait(240) == 0, live.output
    [info] = list_sessions(sessions)
    with Session(info.path) as session:
        in_bag = len(session.transition_list())
    live_learned = summary_value(tmp_path / 'live', 'transitions_learned')
    assert in_bag >= 30 and live_learned in (in_bag - 1, in_bag)

    replay = launch(
        'launch/replay_training.launch.yaml',
        f'session:={info.path}',
        'preset:=tiny',
        f'params_file:={params}',
        f'checkpoint_dir:={tmp_path / "replay_ckpt"}',
        f'report_dir:={tmp_path / "replay"}',
        'num_threads:=1',
        f'namespace:=replay_{tmp_path.name[-8:]}',
    )
    assert replay.wait(240) == 0, replay.output
    assert summary_value(tmp_path / 'replay', 'transitions_learned') == in_bag
    assert (tmp_path / 'replay_ckpt' / 'learner_state.pth').is_file()


def summary_number(report_dir, key) -> float:
    for line in (report_dir / 'summary.md').read_text().splitlines():
        if line.startswith(f'| {key} |'):
            return float(line.split('|')[2])
    raise AssertionError(f'{key} not in the summary')


def summary_value(report_dir, key) -> int:
    value = summary_number(report_dir, key)
    assert value == int(value), (key, value)
    return int(value)


def test_devbot_replay_trains_every_session_of_a_robot_in_order(ros_env, tmp_path):
    """Two sessions of a robot: one checkpoint generation and one report per session."""
    params = write_params(tmp_path / 'wm.yaml', reconstruction_threshold=1.0)
    sessions = tmp_path / 'sessions'
    for seed in (1, 2):
        out = subprocess.run(
            [
                str(BIN / 'devbot'),
                'launch',
                'launch/toroidal_dot_runner.launch.yaml',
                'record:=true',
                f'sessions_dir:={sessions}',
                'max_steps:=15',
                f'seed:={seed}',
                f'report_dir:={tmp_path / "runner"}',
            ],
            cwd=REPO,
            env=ros_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stdout
    out = subprocess.run(
        [
            str(BIN / 'devbot'),
            'replay',
            '--robot',
            'toroidal_dot',
            '--sessions-dir',
            str(sessions),
            '--preset',
            'tiny',
            '--params-file',
            params,
            '--checkpoint-dir',
            str(tmp_path / 'ckpt'),
            '--reports-dir',
            str(tmp_path / 'reports'),
            '--num-threads',
            '1',
        ],
        cwd=REPO,
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert '[replay] 2 session(s)' in out.stdout
    assert generation(tmp_path / 'ckpt')[0] == 2
    reports = sorted((tmp_path / 'reports').iterdir())
    assert len(reports) == 2 and all(summary_value(r, 'transitions_learned') >= 14 for r in reports)

    bad = subprocess.run(
        [str(BIN / 'devbot'), 'replay', str(tmp_path / 'no_such_session')],
        cwd=REPO,
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and 'no_such_session' in bad.stderr


def dot_session(tmp_path, actions, name='s1'):
    from toroidal_sim.env import ToroidalDotConfig
    from toroidal_sim.session import write_dot_session

    path = tmp_path / 'sessions' / 'toroidal_dot' / name
    write_dot_session(path, actions, config=ToroidalDotConfig(seed=3))
    return path


def devbot_replay(ros_env, tmp_path, *args, timeout=300):
    return subprocess.run(
        [str(BIN / 'devbot'), 'replay', '--preset', 'tiny', '--num-threads', '1', *args],
        cwd=tmp_path,
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def optimizer_of(path):
    import torch

    return torch.load(path, weights_only=True, map_location='cpu')['optimizer']


def test_learning_rates_given_for_a_resume_replace_the_saved_ones(ros_env, node_process, tmp_path):
    """Resumed with autoencoder_lr:= / predictor_lr:= the run takes them, keeps the optimizer
    moments and says so once; resumed without them it keeps the saved rates."""
    session = dot_session(tmp_path, [1, 0] * 8)
    params = write_params(tmp_path / 'wm.yaml', reconstruction_threshold=1.0)
    ckpt = tmp_path / 'ckpt'
    first = devbot_replay(
        ros_env, tmp_path, str(session), '--params-file', params, '--checkpoint-dir', str(ckpt)
    )
    assert first.returncode == 0, first.stdout + first.stderr
    saved_lr = optimizer_of(ckpt / 'autoencoder.pth')['param_groups'][0]['lr']
    node = [
        str(BIN / 'world_model_node'),
        '--ros-args',
        '-r',
        f'__ns:=/lr_{tmp_path.name[-8:]}',
        '-p',
        'preset:=tiny',
        '-p',
        f'session:={session}',
        '-p',
        f'checkpoint_dir:={ckpt}',
        '-p',
        f'report_dir:={tmp_path / "r"}',
        '-p',
        'num_threads:=1',
        '-p',
        'progress_period:=0.5',
    ]

    def resume(*extra):
        """Start the node on the checkpoint, wait until it spins, stop it (it saves)."""
        wm = node_process(node + list(extra))
        # a progress line comes after the start-up lines
        assert wm.wait_for_line(r'steps/s', timeout=120), wm.output
        wm.proc.send_signal(signal.SIGINT)
        assert wm.wait(60) == 0, wm.output
        return wm.output

    out = resume('-p', 'autoencoder_lr:=0.0002', '-p', 'predictor_lr:=0.00005')
    expected = (
        f'resumed with autoencoder_lr 0.0002 (saved {saved_lr:g}), predictor_lr 5e-05 (saved '
    )
    assert out.count('resumed with') == 1 and expected in out, out
    before, after = (
        optimizer_of(ckpt / 'autoencoder_backup.pth'),
        optimizer_of(ckpt / 'autoencoder.pth'),
    )
    assert before['param_groups'][0]['lr'] == saved_lr != 0.0002
    assert after['param_groups'][0]['lr'] == 0.0002
    assert optimizer_of(ckpt / 'predictor_0.pth')['param_groups'][0]['lr'] == 0.00005
    assert before['state'] and before['state'].keys() == after['state'].keys()
    for k, moments in before['state'].items():  # nothing trained since: the moments as saved
        for name in ('exp_avg', 'exp_avg_sq', 'step'):
            assert (moments[name] == after['state'][k][name]).all(), (k, name)

    out = resume()  # unset: the saved (overridden) rates stay
    assert 'resumed with' not in out, out
    assert optimizer_of(ckpt / 'autoencoder.pth')['param_groups'][0]['lr'] == 0.0002
    assert optimizer_of(ckpt / 'predictor_0.pth')['param_groups'][0]['lr'] == 0.00005


def test_devbot_replay_filter_trains_only_on_kept_transitions(ros_env, tmp_path):
    import torch

    actions = [1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0]
    session = dot_session(tmp_path, actions)
    # every frame acts and every kept transition misses: each one trains
    params = write_params(
        tmp_path / 'wm.yaml', reconstruction_threshold=1.0, prediction_threshold=0.0
    )
    ckpt, reports = tmp_path / 'ckpt', tmp_path / 'reports'
    common = ['--params-file', params, '--checkpoint-dir', str(ckpt), '--reports-dir', str(reports)]

    bad = devbot_replay(ros_env, tmp_path, str(session), *common, '--filter', 'speed>0')
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "--filter 'speed>0'" in bad.stderr and 'unknown channel' in bad.stderr, bad.stderr
    assert 'Traceback' not in bad.stderr and not ckpt.exists() and not reports.exists()

    out = devbot_replay(ros_env, tmp_path, str(session), *common, '--filter', 'actions=1')
    assert out.returncode == 0, out.stdout + out.stderr
    [report] = list(reports.iterdir())
    moves = actions.count(1)
    kept = summary_value(report, 'transitions_trainable')
    trained = summary_value(report, 'predictor_training_steps')
    assert kept == moves and 0 < trained <= kept < len(actions)
    assert summary_value(report, 'transitions_learned') == len(actions)  # every one observed
    state = torch.load(ckpt / 'learner_state.pth', weights_only=True, map_location='cpu')
    assert state['levels'][0]['training_steps'] == trained
    hist = state['history']  # the newest entry has no action yet
    assert hist['trainable'].tolist() == [a == 1 or a < 0 for a in hist['actions'].tolist()]


def test_world_model_drives_the_simulated_jetbot_over_rpyc(launch, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    params = write_params(tmp_path / 'wm.yaml', reconstruction_threshold=1.0)
    run = launch(
        'launch/jetbot_sim_world_model.launch.yaml',
        'preset:=tiny',
        'max_steps:=30',
        f'port:={port}',
        f'params_file:={params}',
        f'checkpoint_dir:={tmp_path / "ckpt"}',
        f'report_dir:={tmp_path / "r"}',
        'num_threads:=1',
    )
    assert run.wait(240) == 0, run.output
    # every executed action was paired with the first frame after it and learned from
    assert summary_value(tmp_path / 'r', 'transitions_learned') >= 25
    assert 'executed' in run.output and 'jetbot_sim_server' in run.output
