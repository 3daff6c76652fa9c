"""The world-model core: the online learner and the offline trainer train through the same loss
functions and optimizer steps (the workbench too: devbot_explorer's tests), and the offline
batched step computes the online step's losses and update on the same transition."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import world_model_node.core as core_module
import world_model_node.learner as learner_module
import world_model_node.offline.trainer as trainer_module
from toroidal_sim.env import ToroidalDotConfig, random_run
from world_model_node.config import WorldModelConfig
from world_model_node.core import WorldModelCore, joint_loss
from world_model_node.learner import OnlineLearner
from world_model_node.offline.synthetic import write_random_dot_sessions
from world_model_node.offline.trainer import OfflineTrainer, TrainSettings, WorldModelStep

torch.set_num_threads(1)
ACTIONS = np.array([[-1.0], [1.0]], np.float32)


def dot_frames(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n frames of the dot and the n-1 actions between them (random stay/move)."""
    return random_run(ToroidalDotConfig(size=32, dot_radius=2, move_pixels=5, seed=seed), n)


@pytest.fixture()
def spies(monkeypatch) -> dict[str, list[str]]:
    """Record which caller module used the core's loss functions and optimizer steps."""
    calls: dict[str, list[str]] = {
        'prediction_losses': [],
        'autoencoder_loss': [],
        'apply_gradients': [],
    }
    for module in (learner_module, trainer_module):
        for name in ('prediction_losses', 'autoencoder_loss'):
            if not hasattr(module, name):
                continue
            assert getattr(module, name) is getattr(core_module, name), (module, name)

            def spy(*args, _name=name, _module=module.__name__, **kwargs):
                calls[_name].append(_module)
                return getattr(core_module, _name)(*args, **kwargs)

            monkeypatch.setattr(module, name, spy)
    original_loss = core_module.autoencoder_loss
    monkeypatch.setattr(
        core_module,
        'autoencoder_loss',
        lambda *a, **k: (calls['autoencoder_loss'].append('core'), original_loss(*a, **k))[1],
    )
    original_apply = WorldModelCore.apply_gradients

    def apply(self, levels, autoencoder, *args, **kwargs):
        calls['apply_gradients'].append((tuple(lvl.index for lvl in levels), autoencoder))
        return original_apply(self, levels, autoencoder, *args, **kwargs)

    monkeypatch.setattr(WorldModelCore, 'apply_gradients', apply)
    return calls


def test_online_learner_trains_through_the_core(spies):
    learner = OnlineLearner(
        WorldModelConfig.tiny(reconstruction_threshold=1e-9, prediction_threshold=0.0), ACTIONS
    )
    frames, actions = dot_frames(6)
    learner.observe(frames[0])  # gate closed: one masked autoencoder step
    assert spies['autoencoder_loss'] == ['core'] and spies['apply_gradients'] == [((), True)]
    learner.config = learner.config.replace(reconstruction_threshold=1.0)
    assert learner.train_gate().gate_open
    for f, a in zip(frames[1:], actions):
        learner.record_action(int(a))
        learner.observe(f)
    assert learner.levels[0].training_steps > 0
    assert 'world_model_node.learner' in spies['prediction_losses']
    assert ((0,), True) in spies['apply_gradients']  # joint level-0 + autoencoder step


def test_offline_trainer_trains_through_the_core(spies, tmp_path):
    paths = write_random_dot_sessions(
        tmp_path / 'sessions' / 'toroidal_dot', 1, 30, 0, ['s0'], size=32, dot_radius=2
    )
    settings = TrainSettings(batch_size=4, steps=4, gate_check_interval=1, val_fraction=0.0)
    cfg = WorldModelConfig.tiny(reconstruction_threshold=1.0)  # open after the first check
    trainer = OfflineTrainer(paths, tmp_path / 'out', cfg, settings, device='cpu', progress=False)
    trainer.train()
    assert 'world_model_node.offline.trainer' in spies['autoencoder_loss']
    assert 'world_model_node.offline.trainer' in spies['prediction_losses']
    assert spies['apply_gradients'][0] == ((), True)
    assert ((0,), True) in spies['apply_gradients']


def _state(*modules: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        f'{i}.{k}': v.detach().clone()
        for i, m in enumerate(modules)
        for k, v in m.state_dict().items()
    }


def test_offline_step_equals_the_online_step_on_the_same_transition():
    """One level-0 transition (f0, a) -> f1 without history: the offline batched step
    (WorldModelStep, B = 1) gives the online learner's losses, and the same weights after one
    optimizer step through the core, bit for bit."""
    cfg = WorldModelConfig.tiny(
        reconstruction_threshold=1.0, prediction_threshold=0.0, log_interval=1000
    )
    frames, _ = dot_frames(2, seed=3)
    online = OnlineLearner(cfg, ACTIONS)
    online.observe(frames[0])  # scores f0: the pending context, no training
    online.record_action(1)
    offline_core = copy.deepcopy(online.core)  # the weights and optimizers before the step
    r = online.observe(frames[1])
    assert r.trained_levels == [0]

    step = WorldModelStep(
        offline_core.autoencoder,
        offline_core.levels[0].predictor,
        offline_core.levels[0].actions,
        cfg,
    )
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0)[None]  # [1, 2, 3, S, S]
    offline_core.zero_grad(offline_core.levels)
    out = step(x, torch.tensor([[1]]), 'joint')
    for k in ('patch', 'latent', 'action'):
        assert float(out[k]) == r.predictor_losses[0][k], k
    out['loss'].backward()
    offline_core.apply_gradients(offline_core.levels, autoencoder=True)
    mine = _state(offline_core.autoencoder, offline_core.levels[0].predictor)
    theirs = _state(online.autoencoder, online.levels[0].predictor)
    assert mine.keys() == theirs.keys()
    for k in mine:
        assert torch.equal(mine[k], theirs[k]), k


def test_joint_loss_leaves_out_a_zero_reconstruction_weight():
    total, recon = torch.tensor(2.0), torch.tensor(3.0, requires_grad=True)
    assert float(joint_loss(total, recon, 0.5).detach()) == 3.5
    assert joint_loss(total, recon, 0.0) is total  # no zero gradient for the decoder


def test_core_counts_its_steps_and_versions():
    core = WorldModelCore(WorldModelConfig.tiny(), ACTIONS)
    x = torch.rand(2, 3, 32, 32)
    loss = core.autoencoder_step(x, 0.5, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and core.autoencoder_steps == 1 and core.ae_version == 1
    lvl = core.levels[0]
    t, d = core.config.tokens_per_frame, core.config.embed_dim
    feats, target = torch.randn(1, t, d), torch.randn(1, t, d)
    core.head_step(lvl, feats, torch.zeros(1, t, d), lvl.actions[:1], target)
    assert lvl.version == 1 and lvl.training_steps == 0  # heads only: not a predictor step


def test_wrong_action_space_is_refused():
    with pytest.raises(ValueError, match='finite'):
        WorldModelCore(WorldModelConfig.tiny(), np.array([[np.nan]], np.float32))
