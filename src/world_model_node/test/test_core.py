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
from world_model_node.core import WeightAverage, WorldModelCore, joint_loss, resolve_precision
from world_model_node.dot_heldout import evaluate_dot
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


def _offline_step(offline_core, cfg, frames, actions) -> dict[str, torch.Tensor]:
    """One joint offline step (``WorldModelStep``) of ``offline_core`` on ``frames``
    [B, F+1, 3, S, S] / ``actions`` [B, F]; returns its losses."""
    step = WorldModelStep(
        offline_core.autoencoder,
        offline_core.levels[0].predictor,
        offline_core.levels[0].actions,
        cfg,
    )
    offline_core.zero_grad(offline_core.levels)
    out = step(frames, actions, 'joint')
    out['loss'].backward()
    offline_core.apply_gradients(offline_core.levels, autoencoder=True)
    return out


def _assert_offline_step_matches(offline_core, cfg, frames, actions, online, result) -> None:
    """The offline step (``WorldModelStep``) from ``offline_core`` (a copy of the online core
    before its step) on ``frames`` [1, F+1, 3, S, S] / ``actions`` [1, F] gives the online
    step's losses (``result``) and leaves the same weights as ``online``, to float rounding:
    the offline step encodes its frames as one batch, and a CPU's kernels may sum a batch in
    another order than one frame at a time (bit for bit on one development machine, 1e-7
    apart on another, and up to ~1e-5 in the attention's key biases, whose gradient is rounding
    noise that Adam scales up). A step that differs in any other way moves weights by ~1e-3."""
    out = _offline_step(offline_core, cfg, frames, actions)
    for k in ('patch', 'latent', 'action'):
        assert float(out[k]) == pytest.approx(result.predictor_losses[0][k], rel=1e-5), k
    mine = _state(offline_core.autoencoder, offline_core.levels[0].predictor)
    theirs = _state(online.autoencoder, online.levels[0].predictor)
    assert mine.keys() == theirs.keys()
    differ = {k: float((mine[k].double() - theirs[k].double()).abs().max()) for k in mine}
    assert max(differ.values()) < 1e-5, max(differ.items(), key=lambda kv: kv[1])


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
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0)[None]  # [1, 2, 3, S, S]
    _assert_offline_step_matches(offline_core, cfg, x, torch.tensor([[1]]), online, r)


def test_roll_frames_moves_a_whole_sequence_by_one_offset():
    frames = torch.zeros(3, 2, 1, 8, 8)
    frames[:, :, 0, 1, 2] = 1.0  # one bright pixel, at the same place in every frame
    assert core_module.roll_frames(frames, 0.0, None) is frames
    gen = torch.Generator().manual_seed(0)
    rolled = core_module.roll_frames(frames, 1.0, gen)
    assert rolled.shape == frames.shape and torch.equal(rolled.sum((-2, -1)), frames.sum((-2, -1)))
    places = [[tuple(torch.nonzero(f[0])[0].tolist()) for f in seq] for seq in rolled]
    assert all(seq[0] == seq[1] for seq in places)  # one offset per sequence
    assert len({seq[0] for seq in places}) > 1  # drawn per sequence
    half = core_module.roll_frames(frames[:1].expand(400, -1, -1, -1, -1), 0.5, gen)
    moved = (half[:, 0, 0, 1, 2] == 0).float().mean()
    assert 0.4 < float(moved) < 0.6  # about half the sequences (an offset of 0 stays put)


def test_a_rolled_online_step_is_the_offline_step_on_the_rolled_transition(monkeypatch):
    """roll_augmentation: the learner trains on its transition rolled (current and target frame
    by one offset, the joint reconstruction on the rolled current frame) and predicted from the
    rolled current frame alone, although it has a history: the offline step on those two rolled
    frames gives the same losses and weights."""
    cfg = WorldModelConfig.tiny(
        reconstruction_threshold=1.0, prediction_threshold=0.0, log_interval=1000
    )
    frames, actions = dot_frames(5, seed=3)
    online = OnlineLearner(cfg.replace(roll_augmentation=1.0), ACTIONS)
    for f, a in zip(frames[:-1], actions):
        online.observe(f)
        online.record_action(int(a))
    assert len(online._context_entries(online.levels[0], 3)) == 4  # a history to leave out
    offline_core = copy.deepcopy(online.core)
    seen = []
    original = learner_module.roll_frames
    monkeypatch.setattr(
        learner_module, 'roll_frames', lambda *a: seen.append(original(*a)) or seen[-1]
    )
    r = online.observe(frames[-1])
    assert r.trained_levels == [0] and len(seen) == 1
    x = torch.from_numpy(frames[-2:]).permute(0, 3, 1, 2).float().div(255.0)[None]
    assert seen[0].shape == x.shape  # the current frame and the target, nothing older
    assert not torch.equal(seen[0], x)  # rolled...
    assert torch.equal(seen[0].sum((-2, -1)), x.sum((-2, -1)))  # ...not changed
    acts = torch.from_numpy(actions[-1:]).long()[None]
    _assert_offline_step_matches(offline_core, cfg, seen[0], acts, online, r)


def test_a_replayed_transition_is_one_more_transition_of_the_step(monkeypatch):
    """predictor_replay: a level-0 training step also learns a past transition of the history,
    with its own action, predicted from its frame alone: the online step equals the offline
    step on a batch of the two transitions (to float rounding: a batch of two sums in another
    order)."""
    cfg = WorldModelConfig.tiny(
        reconstruction_threshold=1.0, prediction_threshold=0.0, log_interval=1000
    )
    frames, actions = dot_frames(6, seed=0)
    online = OnlineLearner(cfg.replace(roll_augmentation=1.0, predictor_replay=1), ACTIONS)
    for f, a in zip(frames[:-1], actions):
        online.observe(f)
        online.record_action(int(a))
    offline_core = copy.deepcopy(online.core)
    before = _state(online.autoencoder, online.levels[0].predictor)
    rolled, pairs = [], []
    roll = learner_module.roll_frames
    monkeypatch.setattr(
        learner_module, 'roll_frames', lambda *a: rolled.append(roll(*a)) or rolled[-1]
    )
    transition = OnlineLearner._single_frame_transition
    monkeypatch.setattr(
        OnlineLearner,
        '_single_frame_transition',
        lambda self, lvl, e, nxt, *a, **k: (
            pairs.append((e, nxt)) or transition(self, lvl, e, nxt, *a, **k)
        ),
    )
    r = online.observe(frames[-1])
    assert r.trained_levels == [0] and online.levels[0].training_steps == 5
    [(current, newest), (e, after)] = pairs
    assert (current, newest) == (4, -1) and 0 <= e < 4 and after == e + 1
    assert actions[e] != actions[-1]  # the replay is trained with its own action
    x = torch.cat(rolled)  # [2, 2, 3, S, S]: each transition rolled by its own offset
    acts = torch.tensor([[int(actions[-1])], [int(actions[e])]])
    _offline_step(offline_core, cfg, x, acts)
    mine = _state(offline_core.autoencoder, offline_core.levels[0].predictor)
    theirs = _state(online.autoencoder, online.levels[0].predictor)
    moved = max(float((theirs[k] - before[k]).abs().max()) for k in mine)
    differ = max(float((theirs[k] - mine[k]).abs().max()) for k in mine)
    assert moved > 1e-4 and differ < 1e-5, (moved, differ)


def test_offline_rolled_steps_predict_from_the_current_frame_alone(monkeypatch, tmp_path):
    batches = []
    original = WorldModelStep.forward

    def spy(self, frames, actions, mode, *args, **kwargs):
        if mode == 'joint':
            batches.append((frames.detach().clone(), actions.clone()))
        return original(self, frames, actions, mode, *args, **kwargs)

    monkeypatch.setattr(WorldModelStep, 'forward', spy)
    paths = write_random_dot_sessions(
        tmp_path / 'sessions' / 'toroidal_dot', 1, 30, 0, ['s0'], size=32, dot_radius=2
    )
    settings = TrainSettings(batch_size=4, steps=2, gate_check_interval=1, val_fraction=0.0)
    first_joint = []
    for roll in (0.0, 1.0):
        cfg = WorldModelConfig.tiny(
            reconstruction_threshold=1.0, context_dropout=0.0, roll_augmentation=roll
        )
        OfflineTrainer(paths, tmp_path / f'out{roll}', cfg, settings, progress=False).train()
        first_joint.append(batches[0])
        batches.clear()
    (plain, plain_actions), (rolled, rolled_actions) = first_joint  # the same batch (same seed)
    assert plain.shape[1] == cfg.context_frames + 1
    assert rolled.shape[1] == 2 and torch.equal(rolled_actions, plain_actions[:, -1:])
    assert not torch.equal(rolled, plain[:, -2:])
    assert torch.equal(rolled.sum((-2, -1)), plain[:, -2:].sum((-2, -1)))


def test_context_dropout_trains_on_a_shortened_context(monkeypatch):
    """context_dropout: a training transition keeps only the newest history frames of its
    context (fewer than all); the loss is the offline step's on those frames."""
    cfg = WorldModelConfig.tiny(
        reconstruction_threshold=1.0, prediction_threshold=0.0, log_interval=1000
    )
    frames, actions = dot_frames(5, seed=2)
    online = OnlineLearner(cfg.replace(context_dropout=1.0), ACTIONS)
    kept = []
    original = OnlineLearner._training_entries
    monkeypatch.setattr(
        OnlineLearner,
        '_training_entries',
        lambda self, lvl, e: kept.append((e, *original(self, lvl, e))) or kept[-1][1:],
    )
    for f, a in zip(frames[:-1], actions):
        online.observe(f)
        online.record_action(int(a))
    offline_core = copy.deepcopy(online.core)
    r = online.observe(frames[-1])
    e, entries, shortened, rolled = kept[-1]
    assert r.trained_levels == [0] and e == 3 and len(entries) < 4 and entries[-1] == 3
    assert shortened and not rolled
    x = torch.from_numpy(frames[entries[0] :]).permute(0, 3, 1, 2).float().div(255.0)[None]
    acts = torch.from_numpy(actions[entries[0] :]).long()[None]
    _assert_offline_step_matches(offline_core, cfg, x, acts, online, r)


def test_offline_context_dropout_shortens_the_batches_contexts(monkeypatch, tmp_path):
    lengths = []
    original = WorldModelStep.forward

    def spy(self, frames, actions, mode, *args, **kwargs):
        if mode == 'joint':
            lengths.append((frames.shape[1], actions.shape[1]))
        return original(self, frames, actions, mode, *args, **kwargs)

    monkeypatch.setattr(WorldModelStep, 'forward', spy)
    paths = write_random_dot_sessions(
        tmp_path / 'sessions' / 'toroidal_dot', 1, 30, 0, ['s0'], size=32, dot_radius=2
    )
    settings = TrainSettings(batch_size=4, steps=12, gate_check_interval=1, val_fraction=0.0)
    for dropout in (0.0, 1.0):
        cfg = WorldModelConfig.tiny(reconstruction_threshold=1.0, context_dropout=dropout)
        OfflineTrainer(paths, tmp_path / f'out{dropout}', cfg, settings, progress=False).train()
        full = cfg.context_frames + 1
        seen, lengths[:] = set(lengths), []
        if dropout:
            assert seen and all(f < full and f - a == 1 for f, a in seen), seen
        else:
            assert seen == {(full, full - 1)}


def test_roll_augmentation_rolls_the_autoencoder_steps_of_both_trainers(monkeypatch, tmp_path):
    seen = []
    original = core_module.autoencoder_loss

    def spy(autoencoder, frames, *args):
        seen.append(frames.detach().clone())
        return original(autoencoder, frames, *args)

    monkeypatch.setattr(core_module, 'autoencoder_loss', spy)
    monkeypatch.setattr(trainer_module, 'autoencoder_loss', spy)
    frames, _ = dot_frames(1)
    learner = OnlineLearner(
        WorldModelConfig.tiny(reconstruction_threshold=0.0, roll_augmentation=1.0), ACTIONS
    )
    learner.observe(frames[0])  # gate closed: one autoencoder step
    x = learner.latest.x
    assert not torch.equal(seen[0], x) and torch.equal(seen[0].sum(), x.sum())

    paths = write_random_dot_sessions(
        tmp_path / 'sessions' / 'toroidal_dot', 1, 30, 0, ['s0'], size=32, dot_radius=2
    )
    settings = TrainSettings(batch_size=4, steps=1, gate_check_interval=1, val_fraction=0.0)
    for roll in (0.0, 1.0):
        cfg = WorldModelConfig.tiny(reconstruction_threshold=0.0, roll_augmentation=roll)
        out = tmp_path / f'out{roll}'
        OfflineTrainer(paths, out, cfg, settings, device='cpu', progress=False).train()
    plain, rolled = seen[-2], seen[-1]  # the same batch (same seed), rolled or not
    assert not torch.equal(plain, rolled)
    assert torch.equal(plain.sum((1, 2, 3)), rolled.sum((1, 2, 3)))


def test_the_autoencoder_learning_rate_warms_up_over_its_first_steps():
    """autoencoder_warmup_steps: gate-closed and joint autoencoder steps alike raise the rate
    linearly to autoencoder_lr (or to the learner's explicit rate), then leave it there."""
    frames, actions = dot_frames(4)
    cfg = WorldModelConfig.tiny(
        reconstruction_threshold=0.0, autoencoder_lr=1e-3, autoencoder_warmup_steps=4
    )

    def lr(learner: OnlineLearner) -> float:
        return learner.ae_optimizer.param_groups[0]['lr']

    closed = OnlineLearner(cfg, ACTIONS)
    closed.observe(frames[0])  # gate closed: autoencoder step 1
    rates = [lr(closed)]
    for _ in range(5):
        closed.train_gate()
        rates.append(lr(closed))
    assert closed.autoencoder_steps == 6
    assert rates == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])

    explicit = OnlineLearner(cfg, ACTIONS, autoencoder_lr=2e-3)
    explicit.observe(frames[0])
    assert lr(explicit) == pytest.approx(5e-4)

    joint = OnlineLearner(
        cfg.replace(reconstruction_threshold=1.0, prediction_threshold=0.0), ACTIONS
    )
    for f, a in zip(frames[:-1], actions):
        joint.observe(f)
        joint.record_action(int(a))
    joint.observe(frames[-1])
    assert joint.autoencoder_steps == 3  # one joint step per frame after the first
    assert lr(joint) == pytest.approx(7.5e-4)


def test_devbot_train_warms_the_autoencoder_up_too_and_not_a_trained_one(monkeypatch, tmp_path):
    """The offline trainer multiplies its schedule by the same warm-up, counted over the
    autoencoder's steps: a fresh model starts low, one from a trained checkpoint at full rate."""
    paths = write_random_dot_sessions(
        tmp_path / 'sessions' / 'toroidal_dot', 1, 30, 0, ['s0'], size=32, dot_radius=2
    )
    cfg = WorldModelConfig.tiny(reconstruction_threshold=1.0, autoencoder_warmup_steps=4)
    settings = TrainSettings(batch_size=4, steps=3, gate_check_interval=1, val_fraction=0.0)
    rates = spy_on_step_rates(monkeypatch)
    fresh = OfflineTrainer(paths, tmp_path / 'fresh', cfg, settings, device='cpu', progress=False)
    fresh.train()
    lr = cfg.autoencoder_lr
    assert rates['MaskedAutoencoderViT'] == pytest.approx([lr / 4, lr / 2, 3 * lr / 4])
    predictor_rates = rates['TransformerActionConditionedPredictor']  # the joint steps
    assert predictor_rates == pytest.approx([cfg.predictor_lr] * len(predictor_rates))

    trained = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path / 'ckpt')
    trained.autoencoder_steps = 10
    trained.save()
    more = OfflineTrainer(
        paths, tmp_path / 'more', cfg, settings, progress=False, init_dir=tmp_path / 'ckpt'
    )
    assert more.optimizers[0].param_groups[0]['lr'] == pytest.approx(lr)


def test_the_autoencoder_learning_rate_falls_after_its_warm_up(monkeypatch, tmp_path):
    """autoencoder_initial_lr_factor / autoencoder_lr_decay_steps: the rate warms up towards the
    factor times the rate, falls linearly to the rate by the decay's end and stays, in both
    trainers; an autoencoder from a trained checkpoint does not start high again."""
    cfg = WorldModelConfig.tiny(
        reconstruction_threshold=0.0,
        autoencoder_lr=1e-3,
        autoencoder_warmup_steps=4,
        autoencoder_initial_lr_factor=3.0,
        autoencoder_lr_decay_steps=8,
    )
    factors = [0.75, 1.375, 1.875, 2.25, 2.0, 1.75, 1.5, 1.25, 1.0, 1.0, 1.0]
    rates = spy_on_step_rates(monkeypatch)
    learner = OnlineLearner(cfg, ACTIONS)
    learner.observe(dot_frames(1)[0][0])
    for _ in range(len(factors) - 1):
        learner.train_gate()
    assert rates['MaskedAutoencoderViT'] == pytest.approx([1e-3 * f for f in factors])

    paths = write_random_dot_sessions(
        tmp_path / 'sessions' / 'toroidal_dot', 1, 30, 0, ['s0'], size=32, dot_radius=2
    )
    settings = TrainSettings(batch_size=4, steps=6, gate_check_interval=1, val_fraction=0.0)
    rates.clear()
    OfflineTrainer(paths, tmp_path / 'fresh', cfg, settings, progress=False).train()
    assert rates['MaskedAutoencoderViT'] == pytest.approx([1e-3 * f for f in factors[:6]])

    trained = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path / 'ckpt')
    trained.autoencoder_steps = 10
    trained.save()
    more = OfflineTrainer(
        paths, tmp_path / 'more', cfg, settings, progress=False, init_dir=tmp_path / 'ckpt'
    )
    assert more.optimizers[0].param_groups[0]['lr'] == pytest.approx(1e-3)


def spy_on_step_rates(monkeypatch) -> dict[str, list[float]]:
    """The learning rate of every optimizer step, by the stepped module's class name."""
    rates: dict[str, list[float]] = {}
    original = core_module.clipped_step

    def spy(module, optimizer, *args):
        rates.setdefault(type(module).__name__, []).append(optimizer.param_groups[0]['lr'])
        return original(module, optimizer, *args)

    monkeypatch.setattr(core_module, 'clipped_step', spy)
    return rates


def test_the_predictor_learning_rate_falls_over_its_first_steps(monkeypatch, tmp_path):
    """predictor_initial_lr_factor / predictor_lr_decay_steps: the online learner's and
    devbot-train's predictor steps start at the factor times the rate (the config's or the
    explicit one) and fall linearly to it, then stay; a trained predictor does not start high."""
    frames, actions = dot_frames(6)
    cfg = WorldModelConfig.tiny(
        reconstruction_threshold=1.0,
        prediction_threshold=0.0,
        predictor_lr=1e-3,
        predictor_initial_lr_factor=3.0,
        predictor_lr_decay_steps=2,
    )
    rates = spy_on_step_rates(monkeypatch)
    for explicit in (None, 2e-3):
        rates.clear()
        learner = OnlineLearner(cfg, ACTIONS, predictor_lr=explicit)
        for f, a in zip(frames[:-1], actions):
            learner.observe(f)
            learner.record_action(int(a))
        learner.observe(frames[-1])
        lr = explicit or cfg.predictor_lr
        assert rates['TransformerActionConditionedPredictor'] == pytest.approx(
            [3 * lr, 2 * lr, lr, lr, lr]
        )

    paths = write_random_dot_sessions(
        tmp_path / 'sessions' / 'toroidal_dot', 1, 30, 0, ['s0'], size=32, dot_radius=2
    )
    settings = TrainSettings(batch_size=4, steps=5, gate_check_interval=1, val_fraction=0.0)
    rates.clear()
    OfflineTrainer(paths, tmp_path / 'fresh', cfg, settings, progress=False).train()
    lr, joint = cfg.predictor_lr, rates['TransformerActionConditionedPredictor']
    assert len(joint) >= 3 and joint == pytest.approx([3 * lr, 2 * lr] + [lr] * (len(joint) - 2))

    trained = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path / 'ckpt')
    trained.levels[0].training_steps = 10
    trained.save()
    more = OfflineTrainer(
        paths, tmp_path / 'more', cfg, settings, progress=False, init_dir=tmp_path / 'ckpt'
    )
    assert more.optimizers[1].param_groups[0]['lr'] == pytest.approx(lr)


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


def test_precision_auto_is_bf16_only_on_a_cpu_that_computes_it_natively(monkeypatch):
    assert resolve_precision('fp32', 'cpu') == 'fp32' and resolve_precision('bf16', 'cpu') == 'bf16'
    for avx512_bf16, amx, expected in [(True, False, 'bf16'), (False, True, 'bf16')] + [
        (False, False, 'fp32')
    ]:
        monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda v=amx: v)
        assert resolve_precision('auto', 'cpu') == expected, (avx512_bf16, amx)
    assert resolve_precision('auto', 'cuda') == 'fp32'  # launch-bound online: nothing to gain
    with pytest.raises(ValueError, match='fp16 needs a CUDA device'):
        resolve_precision('fp16', 'cpu')
    with pytest.raises(ValueError, match="precision must be one of .*got 'half'"):
        OnlineLearner(WorldModelConfig.tiny(), ACTIONS, precision='half')


def test_a_bf16_frame_computes_what_follows_its_step_with_the_stepped_weights(tmp_path):
    # autocast keeps its bf16 copies of the weights for its whole region, and a frame's step
    # runs inside the frame's region: the re-encoding and the scoring after the step must not
    # use the copies from before it (a large rate, so that the step moves the bf16 copies too)
    cfg = WorldModelConfig.tiny(reconstruction_threshold=1.0, prediction_threshold=0.0)
    learner = OnlineLearner(
        cfg, ACTIONS, precision='bf16', autoencoder_lr=1e-2, checkpoint_dir=tmp_path
    )
    frames, actions = dot_frames(6)
    before = None
    for f, a in zip(frames, [0, *actions]):
        if learner.history:
            learner.record_action(int(a))
        with learner.core.autocast(), torch.no_grad():
            before = learner.autoencoder.encode(learner._frame_tensor(torch.from_numpy(f)))[0]
        result = learner.observe(f)
    assert 0 in result.trained_levels  # a joint step: the encoder changed within the frame
    with learner.core.autocast(), torch.no_grad():
        after = learner.autoencoder.encode(learner.latest.x)[0]
    features = learner.history[-1].features
    assert not torch.equal(after, before), 'the step must move the bf16 encoding'
    assert torch.equal(features, after), 'the features must come from the stepped encoder'
    assert features.dtype == torch.float32 and learner.latest.recon.dtype == torch.float32
    # weights, optimizer moments and checkpoints stay float32
    moments = [t for s in learner.ae_optimizer.state.values() for t in s.values() if t.ndim]
    assert {p.dtype for p in learner.autoencoder.parameters()} == {torch.float32}
    assert moments and {t.dtype for t in moments} == {torch.float32}
    learner.save()
    resumed = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)  # fp32 resumes a bf16 run
    assert resumed.step == learner.step
    for mine, theirs in zip(resumed.autoencoder.parameters(), learner.autoencoder.parameters()):
        assert torch.equal(mine, theirs)


def test_wrong_action_space_is_refused():
    with pytest.raises(ValueError, match='finite'):
        WorldModelCore(WorldModelConfig.tiny(), np.array([[np.nan]], np.float32))


def test_a_weight_average_follows_its_module_and_swaps_in_and_out_exactly():
    torch.manual_seed(0)
    module = torch.nn.Linear(3, 2)
    start = copy.deepcopy(module.state_dict())
    avg = WeightAverage(module, 0.9)
    with torch.no_grad():
        module.weight.add_(1.0)
    avg.update()  # first update: decay min(0.9, 2 / 11)
    expected = start['weight'] + (1 - 2 / 11) * 1.0
    assert torch.allclose(avg.state_dict()['average']['weight'], expected)
    for _ in range(200):
        avg.update()  # the module stands still: the average converges to it
    assert torch.allclose(avg.average[0], module.weight, atol=1e-6)
    live = copy.deepcopy(module.state_dict())
    avg.average[0].zero_()
    avg.swap()
    assert torch.equal(module.weight, torch.zeros(2, 3))
    avg.swap()
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in live.items())
    with pytest.raises(ValueError, match='decay'):
        WeightAverage(module, 1.0)


def test_the_learner_averages_its_weights_evaluates_them_and_saves_them(tmp_path):
    """weight_average_decay: every training step (both parameter sets) moves the average;
    ``averaged_weights()`` puts it in place for evaluation and gives the live weights back
    bit for bit; a checkpoint keeps it, and one saved without it starts it at its weights."""
    frames, actions = dot_frames(6)
    cfg = WorldModelConfig.tiny(
        reconstruction_threshold=1.0, prediction_threshold=0.0, weight_average_decay=0.5
    )
    learner = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    for f, a in zip(frames[:4], actions):
        learner.observe(f)
        learner.record_action(int(a))
    learner.observe(frames[4])
    core = learner.core
    assert core.ae_average.updates == core.autoencoder_steps == 4
    assert core.levels[0].average.updates >= core.levels[0].training_steps == 4  # + head steps
    live = {
        k: v.clone()
        for k, v in [
            *core.autoencoder.state_dict().items(),
            *core.levels[0].predictor.state_dict().items(),
        ]
    }
    averaged_pred = {
        n: a.clone() for n, a in core.levels[0].average.state_dict()['average'].items()
    }
    with core.averaged_weights() as on:
        assert on
        inside = dict(core.levels[0].predictor.named_parameters())
        assert all(torch.equal(inside[n], a) for n, a in averaged_pred.items())
        assert any(not torch.equal(inside[n], live[n]) for n in averaged_pred)
    after = {**core.autoencoder.state_dict(), **core.levels[0].predictor.state_dict()}
    assert all(torch.equal(v, after[k]) for k, v in live.items())

    env = ToroidalDotConfig(size=32, dot_radius=2, move_pixels=5)
    by_average = evaluate_dot(learner, env, samples=2, seed=0, row=10)
    by_live = evaluate_dot(learner, env, samples=2, seed=0, row=10, averaged=False)
    assert by_average.per_action[1]['mse_mean'] != by_live.per_action[1]['mse_mean']
    # the scoring pass's graph, built before the evaluation, still trains the next transition
    learner.record_action(int(actions[4]))
    assert 0 in learner.observe(frames[5]).trained_levels

    learner.save()
    resumed = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    got = resumed.core.levels[0].average.state_dict()
    assert got['updates'] == core.levels[0].average.updates
    now = core.levels[0].average.state_dict()['average']
    assert all(torch.equal(got['average'][n], a) for n, a in now.items())

    plain = OnlineLearner(cfg.replace(weight_average_decay=0.0), ACTIONS, checkpoint_dir=tmp_path)
    with plain.core.averaged_weights() as on:
        assert not on
    later = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path / 'plain')
    plain.checkpoints = later.checkpoints
    plain.save()  # saved without an average
    restarted = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path / 'plain')
    avg = restarted.core.ae_average
    assert avg.updates == 0
    assert all(torch.equal(a, p) for a, p in zip(avg.average, restarted.autoencoder.parameters()))
