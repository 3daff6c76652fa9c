"""Tests of the model workbench (the model side of the session explorer): read-only loading,
inference, interruptible training, weight views and saving in the checkpoint format."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import world_model_node.core as core_module
from devbot_explorer.workbench import LiveCheckpointError, ModelWorkbench, Training
from toroidal_sim.env import ToroidalDotConfig, random_run
from world_model_node.checkpoint import CheckpointError
from world_model_node.config import WorldModelConfig
from world_model_node.core import WorldModelCore
from world_model_node.learner import OnlineLearner

torch.set_num_threads(1)
ACTIONS = np.array([[-1.0], [1.0]], np.float32)


def tiny(**kw) -> WorldModelConfig:
    return WorldModelConfig.tiny(**kw)


def dot_session(n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n frames of the dot and the n-1 actions between them (random stay/move)."""
    return random_run(ToroidalDotConfig(size=32, dot_radius=2, move_pixels=5, seed=seed), n)


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.fixture()
def live_checkpoint(tmp_path) -> tuple[Path, OnlineLearner]:
    """A tiny learner's checkpoint after a few gate-open, trained steps."""
    directory = tmp_path / 'live'
    learner = OnlineLearner(
        tiny(reconstruction_threshold=1.0, prediction_threshold=0.0),
        ACTIONS,
        checkpoint_dir=directory,
    )
    frames, actions = dot_session(8, seed=1)
    for f, a in zip(frames, actions):
        learner.observe(f)
        learner.record_action(int(a))
    learner.save()
    return directory, learner


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_from_checkpoint_loads_read_only(live_checkpoint):
    directory, learner = live_checkpoint
    before = digest(directory)
    wb = ModelWorkbench.from_checkpoint(directory)
    assert same(state(wb.autoencoder), state(learner.autoencoder))
    assert same(state(wb.predictor), state(learner.levels[0].predictor))
    assert wb.config.to_dict() == learner.config.to_dict() and np.array_equal(
        wb.action_space, ACTIONS
    )
    assert wb.learner.checkpoints is None and wb.learner.step == learner.step
    frames, actions = dot_session(12)
    wb.train_autoencoder(frames, steps=3)
    wb.train_predictor(frames, actions, steps=3)
    assert digest(directory) == before  # nothing written to the live directory
    with pytest.raises(CheckpointError, match='no world-model checkpoint'):
        ModelWorkbench.from_checkpoint(directory.parent / 'nothing')


def test_reconstruct_shapes_and_losses():
    wb = ModelWorkbench.fresh(tiny(), ACTIONS)
    frames, _ = dot_session(5)
    recon, losses = wb.reconstruct(frames)
    assert recon.shape == (5, 32, 32, 3) and recon.dtype == np.uint8
    assert losses.shape == (5,) and np.all(np.isfinite(losses)) and np.all(losses > 0)
    with torch.no_grad():
        x = wb.frames_tensor(frames[2])
        expected = float(
            (wb.autoencoder.decode(wb.autoencoder.encode(x)) - wb.autoencoder.patchify(x))
            .pow(2)
            .mean()
        )
    assert losses[2] == pytest.approx(expected, rel=1e-5)
    big = np.zeros((3, 64, 48, 3), np.uint8)  # resized like the online learner
    assert wb.reconstruct(big)[0].shape == (3, 32, 32, 3)
    with pytest.raises(ValueError, match='uint8'):
        wb.reconstruct(frames.astype(np.float32))


def test_train_autoencoder_lowers_the_loss_and_stops_at_a_threshold():
    wb = ModelWorkbench.fresh(tiny(), ACTIONS)
    frames, _ = dot_session(16)
    pred_before = state(wb.predictor)
    run = wb.train_autoencoder(frames, steps=60, batch_size=8)
    assert run.done and run.reason == 'steps' and run.steps_done == 60 and len(run.losses) == 60
    assert run.evals[-1][1] < 0.7 * run.evals[0][1]
    assert same(state(wb.predictor), pred_before)  # only the autoencoder trained
    # a threshold already met: done before any step
    again = wb.train_autoencoder(frames, threshold=run.last_eval * 2)
    assert again.done and again.reason == 'threshold' and again.steps_done == 0


def test_training_pauses_and_resumes_where_it_stopped():
    wb = ModelWorkbench.fresh(tiny(), ACTIONS)
    frames, _ = dot_session(8)
    seen = []

    def callback(run: Training) -> None:
        seen.append(run.steps_done)
        if run.steps_done == 4:
            run.pause()

    run = wb.train_autoencoder(frames, steps=10, callback=callback, eval_every=2)
    assert run.paused and not run.done and run.steps_done == 4 and len(run.losses) == 4
    run.resume()
    assert (
        run.done and run.steps_done == 10 and len(run.losses) == 10 and seen == list(range(1, 11))
    )
    assert [s for s, _ in run.evals] == [0, 2, 4, 6, 8, 10]
    # chunks: run(n) takes at most n steps
    chunked = wb.train_autoencoder(frames, steps=7, run=False)
    assert chunked.steps_done == 0 and len(chunked.evals) == 1
    chunked.run(3)
    assert chunked.steps_done == 3 and not chunked.done
    chunked.run(10)
    assert chunked.steps_done == 7 and chunked.done
    open_ended = wb.train_autoencoder(frames, run=False)
    with pytest.raises(ValueError, match='neither steps nor threshold'):
        open_ended.run()
    assert open_ended.run(2).steps_done == 2


def test_train_predictor_lowers_the_prediction_error_with_a_frozen_autoencoder(live_checkpoint):
    wb = ModelWorkbench.from_checkpoint(live_checkpoint[0])
    frames, actions = dot_session(16, seed=2)
    ae_before = state(wb.autoencoder)
    steps_before = wb.learner.levels[0].training_steps
    run = wb.train_predictor(frames, actions, steps=40, batch_size=8)
    assert run.steps_done == 40 and all(np.isfinite(run.losses))
    assert run.evals[-1][1] < run.evals[0][1]
    assert same(state(wb.autoencoder), ae_before)
    assert wb.learner.levels[0].training_steps == steps_before + 40
    with pytest.raises(ValueError, match='no transition'):
        wb.train_predictor(frames, np.full(15, -1), steps=1)
    with pytest.raises(ValueError, match='actions'):
        wb.train_predictor(frames, actions[:5], steps=1)


def test_analyse_and_sweep_a_window():
    wb = ModelWorkbench.fresh(tiny(), ACTIONS)
    frames, actions = dot_session(10)
    cfg = wb.config
    t = cfg.tokens_per_frame
    d = wb.analyse(frames, actions, index=5)
    assert d.executed == int(actions[5]) and d.predictions.shape == (2, 32, 32, 3)
    assert (
        d.attention.shape[-1] == 4 * t + 3 + 1 + t
    )  # 3 history frames + current, candidate, queries
    assert d.errors.shape == (2,) and d.counterfactual is not None
    first = wb.analyse(frames, actions, index=0)  # no history before the first frame
    assert first.attention.shape[-1] == t + 1 + t
    unknown = actions.copy()
    unknown[3] = -1  # the context stops at an unknown action
    assert wb.analyse(frames, unknown, index=5).attention.shape[-1] == 2 * t + 1 + 1 + t
    last = wb.analyse(frames, actions, index=9)  # no next frame
    assert last.errors is None and last.counterfactual is None
    s = wb.sweep(frames, actions)
    assert s.attention is None and s.counterfactual is None and s.errors.shape == (2,)
    with pytest.raises(ValueError, match='index'):
        wb.analyse(frames, actions, index=10)
    with pytest.raises(ValueError, match='action indices'):
        wb.analyse(frames, np.full(9, 2))


def test_weight_change_and_weight_images():
    wb = ModelWorkbench.fresh(tiny(), ACTIONS)
    change = wb.weight_change()
    assert change and all(v == 0.0 for v in change.values())
    assert 'autoencoder/patch_embed' in change and 'predictor/films_0' in change
    frames, _ = dot_session(8)
    wb.train_autoencoder(frames, steps=5)
    change = wb.weight_change()
    assert change['autoencoder/patch_embed'] > 0 and change['autoencoder/blocks_0'] > 0
    assert all(v == 0.0 for k, v in change.items() if k.startswith('predictor/'))
    wb.snapshot()
    assert all(v == 0.0 for v in wb.weight_change().values())
    images = wb.weight_images()
    cfg = wb.config
    assert (
        images['autoencoder/patch_embed'].dtype == np.uint8
        and images['autoencoder/patch_embed'].ndim == 3
    )
    assert images['autoencoder/blocks_0/qkv'].shape == (3 * cfg.embed_dim, cfg.embed_dim, 3)
    assert images['predictor/layers_0/proj'].shape == (cfg.embed_dim, cfg.embed_dim, 3)
    assert images['predictor/films_0/gamma'].shape == (cfg.embed_dim, cfg.action_embed_dim, 3)
    assert np.all(images['predictor/films_0/gamma'] == 255)  # zero-initialised FiLM: all white
    assert wb.weight_images(scale=2)['predictor/layers_0/proj'].shape == (
        2 * cfg.embed_dim,
        2 * cfg.embed_dim,
        3,
    )


def test_save_refuses_live_checkpoints_and_the_saved_one_resumes(live_checkpoint, tmp_path):
    directory, learner = live_checkpoint
    assert learner.save() == 2  # the live directory holds generation 2
    before = digest(directory)
    wb = ModelWorkbench.from_checkpoint(directory)
    frames, actions = dot_session(12)
    wb.train_autoencoder(frames, steps=5)
    wb.train_predictor(frames, actions, steps=5)
    with pytest.raises(LiveCheckpointError, match='loaded from'):
        wb.save(directory)
    other = tmp_path / 'other'  # another robot's live checkpoint
    shutil.copytree(directory, other)
    with pytest.raises(LiveCheckpointError, match='already holds a checkpoint'):
        wb.save(other)
    assert digest(directory) == before
    wb.save(tmp_path / 'tuned')
    resumed = OnlineLearner(wb.config, ACTIONS, checkpoint_dir=tmp_path / 'tuned')
    assert same(state(resumed.autoencoder), state(wb.autoencoder))
    assert same(state(resumed.levels[0].predictor), state(wb.predictor))
    assert resumed.levels[0].training_steps == wb.learner.levels[0].training_steps
    with torch.no_grad():  # history features re-encoded for the new encoder
        x = resumed._frame_tensor(resumed.history[-1].frame)
        assert torch.allclose(
            resumed.history[-1].features, resumed.autoencoder.encode(x)[0], atol=1e-5
        )
    r = resumed.observe(frames[0])  # and it goes on learning
    assert r.gate_open and r.scores.shape == (2,)
    # overwrite_live=True: a fresh model (generation 0) saved over a generation-2 checkpoint must
    # become the newest generation there, or loading would pick the older files
    fresh = ModelWorkbench.fresh(wb.config, ACTIONS)
    gen = fresh.save(other, overwrite_live=True)
    assert gen == 3
    reloaded = ModelWorkbench.from_checkpoint(other)
    assert same(state(reloaded.predictor), state(fresh.predictor))


def test_workbench_trains_through_the_core(monkeypatch):
    """The workbench's training runs use the world model's one loss and step implementation."""
    import devbot_explorer.workbench as workbench_module

    calls: list[str] = []
    assert workbench_module.prediction_losses is core_module.prediction_losses
    original_losses, original_ae = core_module.prediction_losses, core_module.autoencoder_loss
    original_apply = WorldModelCore.apply_gradients
    monkeypatch.setattr(
        workbench_module,
        'prediction_losses',
        lambda *a, **k: (calls.append('prediction_losses'), original_losses(*a, **k))[1],
    )
    monkeypatch.setattr(
        core_module,
        'autoencoder_loss',
        lambda *a, **k: (calls.append('autoencoder_loss'), original_ae(*a, **k))[1],
    )

    def apply(self, levels, autoencoder, *args, **kwargs):
        calls.append(f'apply {[lvl.index for lvl in levels]} {autoencoder}')
        return original_apply(self, levels, autoencoder, *args, **kwargs)

    monkeypatch.setattr(WorldModelCore, 'apply_gradients', apply)
    wb = ModelWorkbench.fresh(tiny(), ACTIONS)
    frames, actions = dot_session(10)
    wb.train_autoencoder(frames, steps=2)
    assert calls == ['autoencoder_loss', 'apply [] True'] * 2
    calls.clear()
    wb.train_predictor(frames, actions, steps=2)
    assert 'prediction_losses' in calls and calls.count('apply [0] False') == 2
    assert set(calls) == {'prediction_losses', 'apply [0] False'}
