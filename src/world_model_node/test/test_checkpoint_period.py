"""Checkpoints by wall time and the background checkpoint writer (tiny model, fake clock)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from toroidal_sim.env import ToroidalDotConfig, ToroidalDotEnv
from world_model_node import checkpoint as ckpt
from world_model_node.checkpoint import CheckpointManager, learner_components
from world_model_node.config import ConfigError, WorldModelConfig
from world_model_node.learner import OnlineLearner

ACTIONS = np.array([[-1.0], [1.0]], np.float32)


class FakeClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def dot_env(seed: int = 0) -> ToroidalDotEnv:
    return ToroidalDotEnv(ToroidalDotConfig(size=32, dot_radius=2, move_pixels=5, seed=seed))


def closed_learner(tmp_path, period: float) -> tuple[OnlineLearner, FakeClock]:
    """A learner whose gate never opens (threshold 0), on a fake clock that starts at its
    construction (the period counts from there)."""
    cfg = WorldModelConfig.tiny(reconstruction_threshold=0.0, checkpoint_period_s=period)
    learner = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    clock = FakeClock()
    learner.clock = clock
    learner._last_save_time = clock()
    return learner, clock


def all_state(components: dict) -> dict[str, torch.Tensor]:
    """Every tensor of a generation, by a path name (weights, optimizer moments, history...)."""
    out: dict[str, torch.Tensor] = {}

    def walk(prefix: str, obj) -> None:
        if isinstance(obj, torch.Tensor):
            out[prefix] = obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(f'{prefix}.{k}', v)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(f'{prefix}.{i}', v)

    walk('', components)
    return out


def test_checkpoint_period_is_a_validated_config_field():
    assert WorldModelConfig().checkpoint_period_s == 120.0
    assert 'seconds' in WorldModelConfig.descriptions()['checkpoint_period_s']
    with pytest.raises(ConfigError, match='checkpoint_period_s'):
        WorldModelConfig.tiny(checkpoint_period_s=-1.0)


def test_gate_closed_phase_saves_once_per_period_by_wall_time(tmp_path):
    learner, clock = closed_learner(tmp_path, period=10.0)
    env = dot_env()
    r = learner.observe(env.frame())
    for _ in range(3):
        clock.now += 4.0  # 12 s after the start: one period has passed
        r = learner.train_gate()
        assert not r.gate_open
    learner.checkpoints.wait()
    assert learner.generation == 1 and learner.checkpoints.exists()
    saved_step = learner.step - 1  # the save came after the second train_gate (8 s < 10 s)
    for _ in range(2):  # 20 s: the period counts from the last save (at 12 s)
        clock.now += 4.0
        learner.train_gate()
    assert learner.generation == 1
    clock.now += 4.0  # 24 s: 12 s since the last save
    learner.train_gate()
    learner.checkpoints.wait()
    assert learner.generation == 2
    resumed = OnlineLearner(learner.config, ACTIONS, checkpoint_dir=tmp_path)
    assert resumed.generation == 2 and resumed.step == learner.step
    assert saved_step < resumed.step
    learner.close()


def test_period_zero_saves_only_by_step_count(tmp_path):
    learner, clock = closed_learner(tmp_path, period=0.0)
    learner.observe(dot_env().frame())
    for _ in range(3):
        clock.now += 1e6
        learner.train_gate()
    assert learner.generation == 0 and not learner.checkpoints.exists()


def test_a_save_due_while_a_write_is_in_flight_starts_after_it(tmp_path, monkeypatch):
    learner, clock = closed_learner(tmp_path, period=10.0)
    release = threading.Event()
    real_write = ckpt.write_file

    def slow_write(data, path):
        release.wait(timeout=60)
        real_write(data, path)

    monkeypatch.setattr(ckpt, 'write_file', slow_write)
    learner.observe(dot_env().frame())
    clock.now += 11.0
    learner.train_gate()  # starts generation 1; its write blocks
    assert learner.generation == 1 and learner.checkpoints.writing
    clock.now += 11.0
    learner.train_gate()  # due, but the writer is busy: not dropped, not waited for
    assert learner.generation == 1 and learner._save_due
    release.set()
    learner.checkpoints.wait()
    learner.train_gate()  # the writer is free: the due save starts now
    learner.checkpoints.wait()
    assert learner.generation == 2 and not learner._save_due
    assert CheckpointManager(tmp_path).load()['learner_state']['generation'] == 2


def test_background_write_equals_a_synchronous_save(tmp_path):
    cfg = WorldModelConfig.tiny(
        reconstruction_threshold=1.0, prediction_threshold=0.0, checkpoint_period_s=0.0
    )
    learner = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path / 'bg')
    env = dot_env(seed=3)
    frame = env.frame()
    for a in [1, 0, 1, 1, 0, 1]:
        learner.observe(frame)
        learner.record_action(a)
        frame = env.step(a)
    assert learner.levels[0].training_steps > 0 and learner.levels[0].optimizer.state
    comps = learner_components(learner)
    sync = CheckpointManager(tmp_path / 'sync')
    sync.save(comps, 7)
    expected = all_state(CheckpointManager(tmp_path / 'sync').load())
    background = CheckpointManager(tmp_path / 'bg')
    assert background.save_in_background(learner_components(learner), 7)
    # the loop goes on training while the writer works: the snapshot must not change
    for a in [0, 1, 0]:
        learner.observe(frame)
        learner.record_action(a)
        frame = env.step(a)
    assert background.wait() is None
    got = all_state(CheckpointManager(tmp_path / 'bg').load())
    assert got.keys() == expected.keys() and len(got) > 20
    assert any('optimizer.state' in k for k in got)
    assert all(torch.equal(got[k], expected[k]) for k in got), [
        k for k in got if not torch.equal(got[k], expected[k])
    ][:5]
    # and it is the state of the snapshot's moment, not of now
    now = all_state(CheckpointManager(tmp_path / 'now').snapshot(learner_components(learner), 7))
    assert any(not torch.equal(now[k], got[k]) for k in got if k in now)


@pytest.mark.parametrize('fail_at', ['file', 'rotation'])
def test_a_crash_mid_write_leaves_the_previous_generation_loadable(
    tmp_path, monkeypatch, fail_at, caplog
):
    cfg = WorldModelConfig.tiny(reconstruction_threshold=0.0, checkpoint_period_s=0.0)
    learner = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    learner.observe(dot_env().frame())
    assert learner.save() == 1
    previous = all_state(CheckpointManager(tmp_path).load())
    learner.train_gate()  # the state changes

    if fail_at == 'file':  # the writer dies half-way through a file
        real_write = ckpt.write_file
        calls = []

        def dying_write(data, path):
            calls.append(path)
            if len(calls) == 2:
                with open(path, 'wb') as fh:
                    fh.write(b'PK\x03\x04 half a file')
                raise OSError(28, 'No space left on device')
            real_write(data, path)

        monkeypatch.setattr(ckpt, 'write_file', dying_write)
    else:  # the writer dies after the first primary was replaced
        real_replace = ckpt.os.replace
        calls = []

        def dying_replace(src, dst):
            calls.append(dst)
            if len(calls) == 3:
                raise OSError(5, 'Input/output error')
            real_replace(src, dst)

        monkeypatch.setattr(ckpt.os, 'replace', dying_replace)
    assert learner.save(background=True) == 2
    error = learner.checkpoints.wait()
    monkeypatch.undo()
    assert isinstance(error, OSError)
    assert 'generation 2 could not be written' in caplog.text
    loaded = CheckpointManager(tmp_path).load()
    assert loaded['learner_state']['generation'] == 1
    got = all_state(loaded)
    assert got.keys() == previous.keys()
    assert all(torch.equal(got[k], previous[k]) for k in got)
    resumed = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    assert resumed.generation == 1
    # the next save works and is the one loaded
    assert learner.save() == 3
    assert CheckpointManager(tmp_path).load()['learner_state']['generation'] == 3


def test_close_waits_for_the_write_in_flight_and_saves_the_final_state(tmp_path, monkeypatch):
    learner, clock = closed_learner(tmp_path, period=10.0)
    release = threading.Event()
    real_write = ckpt.write_file
    written = []

    def slow_write(data, path):
        release.wait(timeout=60)
        real_write(data, path)
        written.append(data['generation'])

    monkeypatch.setattr(ckpt, 'write_file', slow_write)
    learner.observe(dot_env().frame())
    clock.now += 11.0
    learner.train_gate()
    assert learner.checkpoints.writing
    threading.Timer(0.2, release.set).start()
    learner.close()
    assert not learner.checkpoints.writing
    n = len(learner_components(learner))
    assert written == [1] * n + [2] * n  # the background generation, then the final one
    assert CheckpointManager(tmp_path).load()['learner_state']['step'] == learner.step
