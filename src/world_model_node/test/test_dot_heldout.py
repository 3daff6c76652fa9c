"""The held-out evaluation of the dot world (``world_model_node.dot_heldout``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toroidal_sim.env import ToroidalDotConfig, ToroidalDotEnv
from world_model_node.config import WorldModelConfig
from world_model_node.dot_heldout import DotHeldOut, dot_row, evaluate_dot
from world_model_node.learner import OnlineLearner
from world_model_node.offline.evaluation import dot_centroids

ACTIONS = np.array([[-1.0], [1.0]], np.float32)
ENV = ToroidalDotConfig()  # 224 px, the launch files' world


def test_dot_row_reads_the_row_of_the_dot_at_any_scale():
    env = ToroidalDotEnv(ToroidalDotConfig(seed=3))
    frame = env.frame()
    assert dot_row(frame) == env.y
    small = frame[::7, ::7]  # 32 px, as a tiny learner keeps its frames
    assert abs(dot_row(small, env_size=224) - env.y) <= 4
    with pytest.raises(ValueError, match='no dot'):
        dot_row(np.zeros_like(frame))


def test_evaluation_scores_every_action_and_leaves_the_learner_as_it_was():
    learner = OnlineLearner(WorldModelConfig.tiny(reconstruction_threshold=1.0), ACTIONS)
    learner.observe(ToroidalDotEnv(ToroidalDotConfig(seed=1)).frame())
    before = {k: v.clone() for k, v in learner.levels[0].predictor.state_dict().items()}
    ae_before = {k: v.clone() for k, v in learner.autoencoder.state_dict().items()}
    learner.autoencoder.train()
    step, history = learner.step, len(learner.history)

    held = evaluate_dot(learner, ENV, samples=6, seed=0, row=100, tile_rows=2)

    assert set(held.per_action) == {0, 1}
    for d in held.per_action.values():
        assert d['samples'] == 6 and np.isfinite(d['explained_variance_mean'])
        assert 0.0 <= d['within_3px'] <= 1.0 and d['mse_mean'] > 0
        assert np.isfinite(d['reconstruction_ev_mean']) and d['reconstruction_ev_mean'] < 1.0
    # the learner: same weights, same step and history, train mode given back
    assert all(
        torch.equal(v, learner.levels[0].predictor.state_dict()[k]) for k, v in before.items()
    )
    assert all(torch.equal(v, learner.autoencoder.state_dict()[k]) for k, v in ae_before.items())
    assert (learner.step, len(learner.history)) == (step, history)
    assert learner.autoencoder.training
    # the samples lie on the row asked for: the current frame of each picture row shows it there
    assert len(held.tiles) == 2
    size = learner.config.img_size
    for tile in held.tiles:
        y = dot_centroids(tile[:, :size][None])[0, 1] * ENV.size / size
        assert abs(y - 100) <= 4
    # rows to avoid are avoided
    away = evaluate_dot(learner, ENV, samples=4, seed=1, avoid_row=100, tile_rows=4)
    for tile in away.tiles:
        y = dot_centroids(tile[:, :size][None])[0, 1] * ENV.size / size
        d = min(abs(y - 100), ENV.size - abs(y - 100))
        assert d > 2 * ENV.dot_radius - 4


def test_targets_flat_keys_and_the_one_line():
    right = {
        'explained_variance_mean': 0.95,
        'mse_mean': 1e-4,
        'dot_error_px_median': 0.4,
        'dot_error_px_mean': 0.5,
        'within_3px': 1.0,
        'samples': 64,
    }
    blurred = dict(right, explained_variance_mean=0.85)
    lost = dict(right, dot_error_px_median=None, dot_error_px_mean=None, within_3px=0.0)
    assert DotHeldOut({0: right, 1: right}).targets_reached() == {
        'ev_above_0.9': True,
        'within_3px_all': True,
    }
    assert DotHeldOut({0: right, 1: blurred}).targets_reached() == {
        'ev_above_0.9': False,
        'within_3px_all': True,
    }
    held = DotHeldOut({0: right, 1: lost})
    assert held.targets_reached()['within_3px_all'] is False
    assert held.flat('home_row') == {
        'home_row_action_0_ev': 0.95,
        'home_row_action_0_dot_px': 0.4,
        'home_row_action_0_within_3px': 1.0,
        'home_row_action_1_ev': 0.95,
        'home_row_action_1_dot_px': None,
        'home_row_action_1_within_3px': 0.0,
    }
    line = held.describe()
    assert 'action 0: EV 0.950, dot 0.4 px, 100% within 3 px' in line
    assert 'action 1: EV 0.950, dot not found, 0% within 3 px' in line
