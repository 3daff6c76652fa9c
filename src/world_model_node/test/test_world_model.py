"""Unit tests of the ROS-free world-model core (models, learner, checkpoints, metrics).

Everything runs on tiny configs (32x32 frames, 16 patches, width 32) so the file stays fast on
2 CPU cores.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torch.serialization

from toroidal_sim.env import ToroidalDotConfig, ToroidalDotEnv
from world_model_node.checkpoint import CheckpointError, CheckpointManager, atomic_save, load_file
from world_model_node.config import ConfigError, WorldModelConfig
from world_model_node.diagnostics import attention_metrics
from world_model_node.learner import ActionLabel, OnlineLearner
from world_model_node.metrics import (
    WandbLogger,
    explained_variance,
    grad_norm_stats,
    interval_stats,
    snapshot,
    update_ratio_stats,
)
from world_model_node.models import (
    ACTION_TOKEN,
    FRAME_TOKEN,
    QUERY_TOKEN,
    FiLM,
    MaskedAutoencoderViT,
    TransformerActionConditionedPredictor,
    apply_rope,
    build_predictor,
    ensemble_entropy,
    patch_rope_angles,
    patchify,
    sincos_2d,
    unpatchify,
)
from world_model_node.visualization import panel_layout

torch.set_num_threads(1)  # the tiny models gain nothing from a second thread
ACTIONS = np.array([[-1.0], [1.0]], np.float32)  # the dot: stay, move right


def tiny(**kw) -> WorldModelConfig:
    return WorldModelConfig.tiny(**kw)


def dot_env(seed: int = 0, move: int = 5) -> ToroidalDotEnv:
    return ToroidalDotEnv(ToroidalDotConfig(size=32, dot_radius=2, move_pixels=move, seed=seed))


def make_predictor(
    cfg: WorldModelConfig, seed: int = 0, **kw
) -> TransformerActionConditionedPredictor:
    torch.manual_seed(seed)
    return build_predictor(cfg, action_dim=1, num_actions=2, **{'dropout': 0.0, **kw}).eval()


def run_steps(learner: OnlineLearner, env: ToroidalDotEnv, actions, frame=None):
    """Drive the learner like the node: observe, retry the gate (bounded), act."""
    frame = env.frame() if frame is None else frame
    results = []
    for a in actions:
        r = learner.observe(frame)
        tries = 0
        while not r.gate_open and tries < 3:
            r = learner.train_gate()
            tries += 1
        learner.record_action(a)
        frame = env.step(a)
        results.append(r)
    return results, frame


# ---------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------


def test_config_seed_values_yaml_and_unknown_keys(tmp_path):
    cfg = WorldModelConfig()
    assert (cfg.reconstruction_threshold, cfg.prediction_threshold) == (0.0005, 0.0005)
    assert (cfg.pred_patch_w, cfg.pred_latent_w, cfg.pred_action_w) == (0.2, 0.8, 1.0)
    assert (cfg.mask_ratio_min, cfg.mask_ratio_max) == (0.30, 0.85)
    assert cfg.prediction_history_size == 0  # the original: 3 (docs/design.md, departures)
    assert (
        cfg.film_block_ids == (0, 2) and cfg.action_embed_dim == 64 and cfg.film_hidden_dim == 128
    )
    assert (cfg.log_interval, cfg.checkpoint_save_interval, cfg.max_history_size) == (
        100,
        500,
        1000,
    )
    assert cfg.tokens_per_frame == 197 and cfg.tokens_per_step == 198

    path = tmp_path / 'wm.yaml'
    path.write_text(
        'world_model:\n  LOG_INTERVAL: 7\n  film_block_ids: [0, 1]\n  predictor_depth: 3\n'
    )
    loaded = WorldModelConfig.from_yaml(path)
    assert loaded.log_interval == 7 and loaded.film_block_ids == (0, 1)
    assert WorldModelConfig.from_dict(loaded.to_dict()) == loaded
    with pytest.raises(ConfigError, match='unknown'):
        WorldModelConfig.from_dict({'log_intervall': 3})
    with pytest.raises(ConfigError, match='integer'):
        WorldModelConfig.from_dict({'log_interval': 2.5})
    path.write_text('world_model:\n  autoencoder_lr: 3e-4\n')  # YAML 1.1: a string, not a float
    assert WorldModelConfig.from_yaml(path).autoencoder_lr == 3e-4
    with pytest.raises(ConfigError, match='autoencoder_lr must be a number'):
        WorldModelConfig.from_dict({'autoencoder_lr': 'fast'})
    with pytest.raises(ConfigError, match='film_block_ids'):
        WorldModelConfig.from_dict({'film_block_ids': [7]})


@pytest.mark.parametrize('std', [0.0, 0.002, 0.02])
def test_head_init_std_sets_how_far_the_first_predictions_are_from_the_copy(std):
    cfg = WorldModelConfig.tiny()
    cfg.head_init_std = std
    pred = build_predictor(cfg, 1, 2, dropout=0.0).eval()
    assert float(pred.head_weight.detach().std()) == pytest.approx(std, rel=0.1, abs=1e-9)
    feats = torch.randn(2, 2, cfg.tokens_per_frame, cfg.embed_dim)
    with torch.no_grad():
        out = pred(feats, torch.zeros(2, 2, 1))
    delta = out.prediction - feats[:, -1]  # the mean over heads: priors cancel
    # the normed trunk output has unit variance, so each feature moves by ~std * sqrt(D / E)
    expected = std * (cfg.embed_dim / cfg.ensemble_heads) ** 0.5
    assert float(delta.std()) == pytest.approx(expected, rel=0.3, abs=1e-6)


def test_every_config_field_has_a_description_for_its_ros_parameter():
    import dataclasses

    descriptions = WorldModelConfig.descriptions()
    assert set(descriptions) == {f.name for f in dataclasses.fields(WorldModelConfig)}
    assert all(isinstance(d, str) and len(d) > 8 for d in descriptions.values())
    assert descriptions['residual_decay'].endswith(
        "(the predictive variance's residual part); 0: the last error only"
    )
    assert (
        descriptions['prediction_threshold']
        == 'train a level when its fresh prediction MSE is above this (see also '
        'prediction_variance_fraction)'
    )


def test_model_constructors_take_their_sizes_from_the_config_only():
    """The networks' constructors have no defaults that could disagree with the config:
    ``from_config`` / ``build_*`` pass every config-owned argument."""
    import inspect

    for cls in (TransformerActionConditionedPredictor, MaskedAutoencoderViT):
        params = inspect.signature(cls.__init__).parameters.values()
        with_default = {p.name for p in params if p.default is not inspect.Parameter.empty}
        assert with_default <= {'norm_eps'}, (cls.__name__, with_default)
    cfg = tiny(head_init_std=0.0, action_grad_scale=0.5, patch_rope=False)
    pred = build_predictor(cfg, 1, 2)
    assert pred.action_grad_scale == 0.5 and pred.patch_rope is False
    assert float(pred.head_weight.detach().abs().max()) == 0.0


def test_checkpoint_configs_drop_fields_that_no_longer_exist():
    old = {**tiny().to_dict(), 'action_delay': 0.0, 'recording_mode': False}
    del old['patch_rope']  # written before patch_rope existed
    del old['patch_rope_wrap']
    del old['macro_predictor_depth']  # levels >= 1 were as deep as level 0
    del old['decoder_hidden_layers']
    cfg = WorldModelConfig.from_checkpoint(old)
    assert cfg.patch_rope is False and not hasattr(cfg, 'action_delay')
    assert cfg.patch_rope_wrap is False
    assert cfg.macro_predictor_depth == 0 and cfg.level_depth(1) == cfg.predictor_depth
    assert cfg.decoder_hidden_layers == 1
    with pytest.raises(ConfigError, match='unknown'):
        WorldModelConfig.from_dict({'action_delay': 0.5})


# ---------------------------------------------------------------------------------------------
# D1: autoencoder
# ---------------------------------------------------------------------------------------------


def test_autoencoder_shapes_and_masking():
    cfg = tiny()
    torch.manual_seed(0)
    ae = MaskedAutoencoderViT(
        cfg.img_size,
        cfg.patch_size,
        3,
        cfg.embed_dim,
        cfg.depth,
        cfg.num_heads,
        4.0,
        cfg.decoder_embed_dim,
        1,
    )
    imgs = torch.rand(2, 3, 32, 32)
    n = cfg.num_patches
    assert ae.encode(imgs).shape == (2, n + 1, cfg.embed_dim)
    assert ae.decode(ae.encode(imgs)).shape == (2, n, 8 * 8 * 3)
    assert torch.equal(unpatchify(patchify(imgs, 8), 8), imgs)

    x = torch.randn(2, n, cfg.embed_dim)
    kept, mask, ids_restore = ae.random_masking(x, 0.7, torch.Generator().manual_seed(1))
    k = int(n * 0.3)
    assert kept.shape == (2, k, cfg.embed_dim)
    assert mask.sum(dim=1).tolist() == [n - k, n - k]
    # the kept tokens are exactly the un-masked positions
    for b in range(2):
        unmasked = torch.nonzero(mask[b] == 0).flatten()
        assert torch.equal(torch.sort(kept[b, :, 0]).values, torch.sort(x[b, unmasked, 0]).values)
    loss, pred, m = ae(imgs, 0.5, torch.Generator().manual_seed(0))
    assert pred.shape == (2, n, 192) and m.shape == (2, n)
    assert torch.allclose(loss, ((pred - patchify(imgs, 8)) ** 2).mean())  # MSE over ALL patches


def test_sincos_positions_use_integer_grid():
    from world_model_node.models import sincos_1d

    def mean_similarity(table):
        unit = table / table.norm(dim=1, keepdim=True)
        return (unit @ unit.T)[~torch.eye(table.shape[0], dtype=torch.bool)].mean()

    pos = sincos_2d(256, 14, cls_token=False)  # full-size table, integer grid
    assert pos.shape == (196, 256)
    rows, cols = torch.meshgrid(torch.arange(14), torch.arange(14), indexing='ij')
    normalised = torch.cat(
        [sincos_1d(128, rows.flatten() / 13.0), sincos_1d(128, cols.flatten() / 13.0)], 1
    )
    # the original's [0, 1] positions make all patch positions ~99% alike; integer positions do not
    assert mean_similarity(normalised) > 0.97
    assert mean_similarity(pos) < 0.85
    assert torch.allclose(sincos_2d(8, 2)[0], torch.zeros(8))  # CLS row


# ---------------------------------------------------------------------------------------------
# D2: predictor
# ---------------------------------------------------------------------------------------------


def test_film_is_identity_at_init_and_changes_once_trained():
    film = FiLM(16, 32)
    x, e = torch.randn(3, 5, 32), torch.randn(3, 16)
    assert torch.equal(film(x, e), x)
    cfg = tiny()
    with_film = make_predictor(cfg, seed=3)
    without = make_predictor(cfg, seed=3, film_block_ids=())
    without.load_state_dict(with_film.state_dict(), strict=False)
    feats, acts = torch.randn(1, 2, cfg.tokens_per_frame, cfg.embed_dim), torch.randn(1, 2, 1)
    assert torch.equal(with_film(feats, acts).prediction, without(feats, acts).prediction)
    with torch.no_grad():
        with_film.films['0'].gamma.bias.fill_(0.5)
    assert not torch.allclose(with_film(feats, acts).prediction, without(feats, acts).prediction)


def test_delta_latent_prediction_is_residual_on_last_frame():
    cfg = tiny()
    pred = make_predictor(cfg)
    feats, acts = torch.randn(2, 3, cfg.tokens_per_frame, cfg.embed_dim), torch.randn(2, 3, 1)
    with torch.no_grad():
        pred.head_weight.zero_()
        pred.head_bias.zero_()
    out = pred(feats, acts)
    assert out.head_predictions.shape == (
        cfg.ensemble_heads,
        2,
        cfg.tokens_per_frame,
        cfg.embed_dim,
    )
    # zero trainable delta -> each head is the last frame plus its fixed action prior; the priors
    # are centred over the heads, so the mean prediction is the last frame
    prior = pred.action_prior(acts[:, -1])  # [E, B, D]
    assert torch.allclose(out.head_predictions, feats[:, -1][None] + prior[:, :, None], atol=1e-6)
    assert torch.allclose(out.prediction, feats[:, -1], atol=1e-6)
    assert prior.abs().max() > 1e-3
    absolute = make_predictor(cfg, delta_latent=False, prior_scale=0.0)
    with torch.no_grad():
        absolute.head_weight.zero_()
        absolute.head_bias.fill_(0.25)
    assert torch.equal(absolute(feats, acts).prediction, torch.full_like(feats[:, -1], 0.25))


@pytest.mark.parametrize('patch_rope', [False, True])
def test_cached_context_matches_full_sequence_and_batches_candidates(patch_rope):
    cfg = tiny(patch_rope=patch_rope)
    pred = make_predictor(cfg, seed=1)
    with torch.no_grad():
        for f in pred.films.values():  # make FiLM matter
            f.gamma.weight.normal_(std=0.5)
    feats, hist_acts = torch.randn(1, 4, cfg.tokens_per_frame, cfg.embed_dim), torch.randn(1, 3, 1)
    cands = torch.tensor([[-1.0], [1.0], [0.3]])
    ctx = pred.build_context(feats[:, -1], feats[:, :-1], hist_acts)
    assert ctx.length == 4 * cfg.tokens_per_frame + 3  # 4 frames, 3 history action tokens
    batched = pred.predict(ctx, cands)
    for i in range(3):
        full = pred(feats, torch.cat([hist_acts, cands[i].view(1, 1, 1)], dim=1))
        assert torch.allclose(batched.prediction[i], full.prediction[0], atol=1e-5)
    assert (batched.prediction[0] - batched.prediction[1]).abs().max() > 1e-4


def rope_logit(
    angles: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    grid: int,
    qp: tuple[int, int],
    kp: tuple[int, int],
) -> float:
    """The attention logit of query q at patch qp (row, column) for key k at patch kp, both
    rotated by their patch's RoPE angles [T + 1, dh/2] (slot 0 is the CLS token)."""
    cos, sin = angles.cos(), angles.sin()
    i, j = 1 + qp[0] * grid + qp[1], 1 + kp[0] * grid + kp[1]
    return float(apply_rope(q, cos[i], sin[i]) @ apply_rope(k, cos[j], sin[j]))


def test_patch_rope_makes_attention_depend_on_relative_patch_offsets():
    cfg = tiny()
    grid = cfg.img_size // cfg.patch_size
    head_dim = cfg.embed_dim // cfg.predictor_heads
    angles = patch_rope_angles(cfg.tokens_per_frame, head_dim)
    assert angles.shape == (cfg.tokens_per_frame + 1, head_dim // 2)
    assert (
        angles[0].abs().max() == 0 and angles[-1].abs().max() == 0
    )  # CLS and action slots: no rotation
    q, k = torch.randn(head_dim), torch.randn(head_dim)

    def logit(qp: tuple[int, int], kp: tuple[int, int]) -> float:
        return rope_logit(angles, q, k, grid, qp, kp)

    # the same offset (one row down, two columns left) anywhere on the grid: the same logit
    same = [logit((r, c), (r + 1, c - 2)) for r, c in [(0, 2), (1, 3), (2, 2)]]
    assert max(same) - min(same) < 1e-4
    assert (
        abs(logit((0, 2), (1, 0)) - logit((0, 2), (1, 1))) > 1e-3
    )  # another offset: another logit
    # a predictor with patch RoPE is another function of the same weights
    plain = make_predictor(cfg.replace(patch_rope=False), seed=3)
    rope = make_predictor(cfg.replace(patch_rope=True), seed=3)
    with torch.no_grad():
        for layer in plain.layers:  # sharp attention (at init it is ~uniform)
            layer.qkv.weight.normal_(std=0.5)
    rope.load_state_dict(plain.state_dict())
    feats, acts = torch.randn(1, 2, cfg.tokens_per_frame, cfg.embed_dim), torch.randn(1, 2, 1)
    with torch.no_grad():
        assert (plain(feats, acts).features - rope(feats, acts).features).abs().max() > 1e-3


def test_attention_maps_returned_on_request():
    cfg = tiny()
    pred = make_predictor(cfg)
    feats, acts = torch.randn(1, 2, cfg.tokens_per_frame, cfg.embed_dim), torch.randn(1, 2, 1)
    out = pred(feats, acts, return_attn=True)
    length = 2 * cfg.tokens_per_step + cfg.tokens_per_frame
    assert out.attention.shape == (1, cfg.predictor_heads, length, length)
    assert torch.allclose(
        out.attention.sum(-1), torch.ones(1, cfg.predictor_heads, length), atol=1e-5
    )
    assert out.attention[0, :, 0, 1:].abs().max() == 0  # causal
    assert pred(feats, acts).attention is None
    t = cfg.tokens_per_frame
    types = torch.tensor(([FRAME_TOKEN] * t + [ACTION_TOKEN]) * 2 + [QUERY_TOKEN] * t)
    m = attention_metrics(out.attention[0], types, types == QUERY_TOKEN)
    assert 0 < float(m['attn/APA'].detach()) < 1 and 0 < float(m['attn/ALF'].detach()) < 1
    assert float(m['attn/entropy']) <= float(m['attn/entropy_uniform']) + 1e-5


def test_loss_weighting():
    cfg = tiny()
    pred = make_predictor(cfg)
    feats = torch.randn(1, 1, cfg.tokens_per_frame, cfg.embed_dim)
    out = pred(feats, torch.ones(1, 1, 1))
    pp, tp = torch.rand(1, cfg.num_patches, 192), torch.rand(1, cfg.num_patches, 192)
    last, nxt = torch.rand(1, cfg.num_patches, 192), torch.rand(1, cfg.num_patches, 192)
    target = torch.randn(1, cfg.tokens_per_frame, cfg.embed_dim)
    a = torch.tensor([1])
    parts = pred.forward_loss(out, pp, last, nxt, target, tp, a, (0.2, 0.8, 1.0))
    assert torch.allclose(
        parts['total'],
        0.2 * parts['patch']
        + 0.8 * parts['latent']
        + 1.0 * (parts['action'] + parts['classifier']),
    )
    assert torch.allclose(parts['patch'], ((pp - tp) ** 2).mean())
    heads = out.head_predictions[:, :, 1:]  # latent loss: every head, CLS excluded
    assert torch.allclose(parts['latent'], ((heads - target[None, :, 1:]) ** 2).mean())
    assert torch.allclose(parts['action'], F.cross_entropy(pred.classify_action(pp, last), a))
    assert torch.allclose(parts['classifier'], F.cross_entropy(pred.classify_action(nxt, last), a))
    only_action = pred.forward_loss(out, pp, last, nxt, target, tp, a, (0.0, 0.0, 1.0))
    assert torch.allclose(only_action['total'], parts['action'] + parts['classifier'])


def test_action_classifier_learns_from_real_changes_and_only_judges_predictions():
    # trained on the predictions themselves, classifier and predictor co-adapt towards any change
    # that tells the actions apart (exaggerated predictions, blow-ups of the fresh error)
    cfg = tiny(action_grad_scale=1.0)
    pred = make_predictor(cfg)
    classifier = list(pred.action_classifier.parameters())
    pp = torch.rand(1, cfg.num_patches, 192, requires_grad=True)
    last, nxt = torch.rand(1, cfg.num_patches, 192), torch.rand(1, cfg.num_patches, 192)
    out = pred(torch.randn(1, 1, cfg.tokens_per_frame, cfg.embed_dim), torch.ones(1, 1, 1))
    target, tp = (
        torch.randn(1, cfg.tokens_per_frame, cfg.embed_dim),
        torch.rand(1, cfg.num_patches, 192),
    )
    parts = pred.forward_loss(out, pp, last, nxt, target, tp, torch.tensor([1]))

    verdict_grads = torch.autograd.grad(parts['action'], [pp] + classifier, allow_unused=True)
    assert (
        verdict_grads[0] is not None and float(verdict_grads[0].abs().sum()) > 0
    )  # judges the prediction
    assert all(g is None for g in verdict_grads[1:])  # ... and learns nothing
    real_grads = torch.autograd.grad(parts['classifier'], [pp] + classifier, allow_unused=True)
    assert real_grads[0] is None  # the prediction is not in it
    assert all(
        g is not None and float(g.abs().sum()) > 0 for g in real_grads[1:]
    )  # the classifier learns

    # action_grad_scale scales only the gradient that reaches the prediction, not the loss
    pred = make_predictor(tiny(action_grad_scale=0.25))
    assert pred.action_grad_scale == 0.25
    scaled = pred.forward_loss(out, pp, last, nxt, target, tp, torch.tensor([1]))
    assert torch.allclose(scaled['action'], parts['action'])
    [g] = torch.autograd.grad(scaled['action'], [pp])
    assert torch.allclose(g, 0.25 * verdict_grads[0])


# ---------------------------------------------------------------------------------------------
# D3: online learner
# ---------------------------------------------------------------------------------------------


def test_gate_closed_trains_autoencoder_and_publishes_no_scores():
    learner = OnlineLearner(tiny(reconstruction_threshold=0.0), ACTIONS)
    env = dot_env()
    r = learner.observe(env.frame())
    assert not r.gate_open and r.scores is None and r.autoencoder_loss is not None
    assert 0.30 <= r.mask_ratio <= 0.85
    r2 = learner.train_gate()
    assert r2.consecutive_autoencoder_iterations == 2 and learner.autoencoder_steps == 2
    learner.config.reconstruction_threshold = 1.0
    r3 = learner.train_gate()
    assert r3.gate_open and r3.scores.shape == (2,) and r3.consecutive_autoencoder_iterations == 2
    assert [str(lab) for lab in r3.labels] == ['L0:0', 'L0:1']


def test_gate_opens_after_gate_patience_iterations_without_improvement():
    # a frame the autoencoder does not get better at (lr ~ 0): the lockstep robot would wait forever
    cfg = tiny(reconstruction_threshold=0.0, gate_patience=5)
    learner = OnlineLearner(cfg, ACTIONS, autoencoder_lr=1e-12)
    env = dot_env()
    # never before the gate has first opened (a plateau from scratch is no deadlock)
    assert not any(
        r.gate_open
        for r in [learner.observe(env.frame())] + [learner.train_gate() for _ in range(10)]
    )
    learner.config.reconstruction_threshold = 1.0
    assert learner.train_gate().gate_open
    learner.config.reconstruction_threshold = 0.0
    learner.record_action(0)
    results = [learner.observe(env.step(0))] + [learner.train_gate() for _ in range(5)]
    assert [r.gate_open for r in results] == [False] * 5 + [True]
    assert results[-1].gate_released and results[-1].scores.shape == (2,)
    assert learner.gate_releases == 1 and results[-1].consecutive_autoencoder_iterations == 5
    learner.record_action(1)
    nxt = learner.observe(env.step(1))  # a new streak starts on the next frame
    assert (
        not nxt.gate_open and not nxt.gate_released and nxt.consecutive_autoencoder_iterations == 1
    )
    never = OnlineLearner(
        tiny(reconstruction_threshold=1.0, gate_patience=0), ACTIONS, autoencoder_lr=1e-12
    )
    never.observe(env.frame())
    never.config.reconstruction_threshold = 0.0
    never.record_action(0)
    never.observe(env.step(0))
    assert not any(never.train_gate().gate_open for _ in range(30))


def test_observe_resizes_and_validates_frames():
    learner = OnlineLearner(tiny(reconstruction_threshold=1.0), ACTIONS)
    frame = np.zeros((48, 40, 3), np.uint8)
    frame[10:20, 10:20] = 255
    r = learner.observe(frame)
    assert r.gate_open and learner.current_frame().shape == (32, 32, 3)
    assert learner.current_frame().max() > 100  # the white square survived the resize
    with pytest.raises(ValueError, match='uint8'):
        learner.observe(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match='action_index'):
        learner.record_action(2)


def test_scoring_context_ends_with_current_frame_and_candidate_token():
    cfg = tiny(reconstruction_threshold=1.0, prediction_threshold=0.0)
    learner = OnlineLearner(cfg, ACTIONS)
    env = dot_env(seed=3)
    _, frame = run_steps(learner, env, [1, 0] * 15)
    r = learner.observe(frame)
    assert r.gate_open
    lvl = learner.levels[0]
    assert any(
        float(f.gamma.weight.detach().abs().max()) > 0 for f in lvl.predictor.films.values()
    )  # FiLM trained
    ctx = learner._pending.ctx
    t = cfg.tokens_per_frame
    assert ctx.length == 4 * t + 3  # 3 history frames + actions, then the current frame
    assert torch.equal(
        ctx.last_frame[0], learner.history[-1].features
    )  # ... which is the frame just observed
    with torch.no_grad():
        base = lvl.predictor.predict(ctx, lvl.actions).prediction
        # changing only the candidate action changes the prediction
        assert (base[0] - base[1]).abs().max() > 1e-3
        # changing only the current frame changes the prediction (the original dropped it)
        hist = list(learner.history)
        other = learner.autoencoder.encode(
            learner._frame_tensor(torch.from_numpy(dot_env(seed=9).frame()))
        )
        hist_f = torch.stack([e.features for e in hist[-4:-1]])[None]
        hist_a = torch.stack([lvl.actions[e.action] for e in hist[-4:-1]])[None]
        ctx2 = lvl.predictor.build_context(other, hist_f, hist_a)
        moved = lvl.predictor.predict(ctx2, lvl.actions).prediction
        assert (moved - base).abs().max() > 1e-3
    frames, labels = learner.predicted_frames()
    assert frames.shape == (2, 32, 32, 3) and frames.dtype == np.uint8 and len(labels) == 2
    assert learner.reconstruction_image().shape == (32, 32, 3)
    lay = panel_layout(32, 2)
    assert learner.visualization_panel().shape == (lay.height, lay.width, 3)
    maps = learner.attention_maps()
    assert maps['attention'].shape == (2, cfg.predictor_heads, 1 + t, 4 * t + 3 + 1 + t)
    assert set(maps['metrics']) >= {
        'attn/APA',
        'attn/ALF',
        'attn/TTAR',
        'attn/RI@16',
        'attn/entropy',
    }


def test_autoencoder_gets_exactly_one_update_per_step_and_is_not_in_predictor():
    cfg = tiny(reconstruction_threshold=1.0, prediction_threshold=0.0)
    learner = OnlineLearner(cfg, ACTIONS)
    ae_ids = {id(p) for p in learner.autoencoder.parameters()}
    pred = learner.levels[0].predictor
    assert not ae_ids & {id(p) for p in pred.parameters()}
    assert not ae_ids & {
        id(p) for g in learner.levels[0].optimizer.param_groups for p in g['params']
    }
    assert not any(
        k.startswith(('autoencoder', 'encoder', 'decoder', 'blocks')) for k in pred.state_dict()
    )
    calls = []
    orig = learner.ae_optimizer.step
    learner.ae_optimizer.step = lambda *a, **k: (calls.append(learner.step), orig(*a, **k))[1]
    env = dot_env()
    results, _ = run_steps(learner, env, [1, 0, 1, 1, 0, 1])
    trained = [r.step for r in results if 0 in r.trained_levels]
    assert len(trained) == 5  # every step after the first trains level 0
    assert calls == trained  # one autoencoder step per training step
    steps = {int(s['step']) for s in learner.ae_optimizer.state.values()}
    assert steps == {5}  # every AE parameter updated exactly 5 times


@pytest.mark.parametrize('grad_scale', [0.0, 0.1])
@pytest.mark.parametrize('recon_weight', [0.0, 1.0])
def test_prediction_losses_reach_the_encoder_as_scaled_and_never_the_decoder(
    recon_weight, grad_scale
):
    # the decoder learns from reconstruction only (trained on predicted latents and the action
    # classifier's loss it pushed the reconstruction over the gate after most predictor steps);
    # the encoder learns from the prediction losses only when encoder_prediction_grad_scale > 0
    cfg = tiny(
        reconstruction_threshold=1.0,
        prediction_threshold=0.0,
        joint_reconstruction_weight=recon_weight,
        encoder_prediction_grad_scale=grad_scale,
    )
    learner = OnlineLearner(cfg.replace(reconstruction_threshold=0.0), ACTIONS)
    env = dot_env()
    learner.observe(env.frame())
    learner.train_gate()  # gate-closed steps: the autoencoder has Adam moments now, which
    learner.config = cfg  # would move it on a zero gradient
    run_steps(learner, env, [1, 0])
    before = {k: v.detach().clone() for k, v in learner.autoencoder.named_parameters()}
    results, _ = run_steps(learner, env, [1])
    assert 0 in results[0].trained_levels
    changed = {
        k for k, v in learner.autoencoder.named_parameters() if not torch.equal(v, before[k])
    }
    decoder = {k for k in before if k.startswith('decoder.')}
    assert bool(changed - decoder) == bool(recon_weight or grad_scale), (
        'the encoder learns from the reconstruction term and the scaled prediction losses'
    )
    assert bool(changed & decoder) == bool(recon_weight), (
        'the decoder changes through the reconstruction term only'
    )


def test_a_trained_frame_reuses_the_scoring_pass_of_the_executed_candidate():
    # level 0 scores each candidate in a pass of its own, with graph; the next frame's training
    # step backpropagates through the executed candidate's pass instead of predicting it again
    cfg = tiny(reconstruction_threshold=1.0, prediction_threshold=0.0, context_dropout=0.0)
    learner = OnlineLearner(cfg, ACTIONS)
    env = dot_env()
    _, frame = run_steps(learner, env, [1, 0])
    predictor = learner.levels[0].predictor
    passes = []
    predict = predictor.predict

    def counted(ctx, actions, **kw):
        out = predict(ctx, actions, **kw)
        passes.append((actions.shape[0], out.prediction.requires_grad))
        return out

    predictor.predict = counted
    for a in [1, 0, 1, 1]:
        passes.clear()
        steps = learner.levels[0].training_steps
        r = learner.observe(frame)
        assert 0 in r.trained_levels and learner.levels[0].training_steps == steps + 1
        assert passes == [(1, True)] * len(ACTIONS)  # the scoring passes only
        learner.record_action(a)
        frame = env.step(a)


def test_history_is_bounded():
    cfg = tiny(
        reconstruction_threshold=1.0,
        prediction_threshold=1.0,
        prediction_variance_fraction=0.0,
        max_history_size=12,
        max_levels=1,
    )
    learner = OnlineLearner(cfg, ACTIONS)
    run_steps(learner, dot_env(), [1] * 20)
    assert len(learner.history) == 12 and learner.history[-1].step == 20


def test_thresholds_of_a_frame_follow_its_variance_only_where_the_absolute_one_is_too_strict():
    cfg = WorldModelConfig()  # 5e-4 both; 5% of the variance
    camera, dot = 0.04, 1.6e-3  # pixel variances of a room view and of a dot frame
    assert cfg.gate_threshold(camera) == pytest.approx(2e-3)  # EV 0.95, not 0.9875
    assert cfg.gate_threshold(dot) == 5e-4  # the absolute threshold is the looser one here
    assert cfg.miss_threshold(camera) == 5e-4  # the absolute threshold is the stricter one here
    assert cfg.miss_threshold(dot) == pytest.approx(8e-5)  # EV 0.95, not 0.69
    off = cfg.replace(reconstruction_variance_fraction=0.0, prediction_variance_fraction=0.0)
    assert off.gate_threshold(camera) == off.miss_threshold(dot) == 5e-4


def test_the_gate_opens_on_a_share_of_the_frames_variance():
    frame = dot_env().frame()
    cfg = tiny(reconstruction_threshold=1e-12)  # never reached by the absolute test
    closed = OnlineLearner(cfg.replace(reconstruction_variance_fraction=0.0), ACTIONS)
    assert not closed.observe(frame).gate_open
    opened = OnlineLearner(cfg.replace(reconstruction_variance_fraction=1e6), ACTIONS)
    assert opened.observe(frame).gate_open


def test_a_prediction_misses_by_a_share_of_the_frames_variance_too():
    """On a nearly uniform frame the absolute threshold alone calls a poor prediction accurate;
    PREDICTION_VARIANCE_FRACTION of the frame's variance still counts it as a miss."""

    def trained(fraction: float) -> tuple[list[int], float, float]:
        cfg = tiny(
            reconstruction_threshold=1.0,
            prediction_threshold=1.0,  # never missed by the absolute test
            prediction_variance_fraction=fraction,
        )
        learner = OnlineLearner(cfg, ACTIONS)
        results, _ = run_steps(learner, dot_env(), [1, 1, 0, 1])
        variance = float(learner.latest.target.var(unbiased=False))
        return (
            [lvl for r in results for lvl in r.trained_levels],
            learner.config.miss_threshold(learner.latest.variance),
            variance,
        )

    levels, threshold, variance = trained(0.05)
    assert threshold == pytest.approx(0.05 * variance) and threshold < 1.0
    assert levels == [0, 0, 0]  # every fresh prediction (steps 2-4) missed and trained
    levels, threshold, _ = trained(0.0)
    assert threshold == 1.0 and levels == []


@pytest.mark.parametrize(
    'prediction_threshold', [0.0, 1.0]
)  # trained every step / always "accurate"
def test_uncertainty_of_seen_transition_lower_than_unseen(prediction_threshold):
    cfg = tiny(
        reconstruction_threshold=1.0,
        prediction_threshold=prediction_threshold,
        prediction_variance_fraction=0.0,
    )
    learner = OnlineLearner(cfg, ACTIONS)
    env = dot_env(seed=4)
    frame = env.frame()
    first = learner.observe(frame)
    gap0 = first.scores[1] - first.scores[0]
    for _ in range(120):  # "stay" at the same place, again and again
        learner.record_action(0)
        r = learner.observe(env.step(0))
    seen, unseen = r.level_scores(0)[0]
    assert seen < unseen - 0.5 and (unseen - seen) > gap0 + 0.5
    assert r.most_uncertain(0) == ActionLabel(0, 1, (1,))


def _unpredictable_run(residual_decay: float) -> np.ndarray:
    """Alternate "stay" (the same frame again) and an action whose outcome is fresh noise."""
    cfg = tiny(reconstruction_threshold=1.0, residual_decay=residual_decay)
    learner = OnlineLearner(cfg, ACTIONS)
    rng = np.random.default_rng(0)
    still = dot_env(seed=6).frame()
    r = learner.observe(still)
    for i in range(80):
        a = i % 2
        learner.record_action(a)
        r = learner.observe(rng.integers(0, 256, still.shape, dtype=np.uint8) if a else still)
        if a:  # come back to the still frame before the next pair
            learner.record_action(0)
            r = learner.observe(still)
    return r.level_scores(0)[0]


def test_uncertainty_stays_high_for_an_action_the_model_keeps_getting_wrong():
    # the heads are trained on both actions' outcomes, so they agree on both; what is left of the
    # uncertainty of the noise action is its residual (the errors its predictions keep having)
    stay, noise = _unpredictable_run(residual_decay=0.9)
    assert noise > stay + 0.3
    # without the residual (decay 1: every action keeps its initial value) the ensemble alone
    # does not keep the unpredictable action ahead by that margin
    stay_e, noise_e = _unpredictable_run(residual_decay=1.0)
    assert noise_e - stay_e < (noise - stay) - 0.3


def test_new_hierarchy_level_appears_when_level_below_is_accurate():
    cfg = tiny(
        reconstruction_threshold=1.0,
        prediction_threshold=1.0,
        prediction_variance_fraction=0.0,
        level_creation_steps=4,
        max_levels=2,
    )
    learner = OnlineLearner(cfg, ACTIONS)
    results, frame = run_steps(learner, dot_env(), [1, 0, 1, 1, 0, 1, 1, 0, 0, 1])
    created = [r for r in results if r.new_level is not None]
    assert len(created) == 1 and created[0].new_level == 1
    assert created[0].step == 5  # 4 accurate fresh level-0 predictions (steps 2..5)
    r = learner.observe(frame)
    scores1, labels1 = r.level_scores(1)
    assert r.scores.shape == (2 + 4,) and [lab.primitives for lab in labels1] == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    ]
    assert 1 in r.prediction_errors  # level 1 checks its fresh prediction
    learner.config.prediction_threshold = 0.0  # now every level is "inaccurate": both train
    learner.record_action(1)
    r = learner.observe(dot_env(seed=5).frame())
    assert sorted(r.trained_levels) == [0, 1]
    # no level while the level below is not accurate
    strict = OnlineLearner(
        tiny(reconstruction_threshold=1.0, prediction_threshold=0.0, level_creation_steps=4),
        ACTIONS,
    )
    run_steps(strict, dot_env(), [1, 0] * 5)
    assert strict.num_levels == 1


def test_levels_above_0_have_shallower_predictors_and_add_level_forces_one(tmp_path):
    cfg = tiny(
        predictor_depth=3,
        film_block_ids=(0, 2),
        macro_predictor_depth=1,
        max_levels=2,
        reconstruction_threshold=1.0,
    )
    learner = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    assert learner.add_level() == 1 and learner.add_level() is None  # max_levels
    level0, level1 = (lvl.predictor for lvl in learner.levels)
    assert (len(level0.layers), len(level1.layers)) == (3, 1)
    assert sorted(level0.films) == ['0', '2'] and sorted(level1.films) == ['0']
    results, _ = run_steps(learner, dot_env(), [1, 0, 1, 1, 0])
    assert results[-1].scores.shape == (2 + 4,)  # level 1 scores its 4 macro-actions
    learner.save()
    assert OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path).num_levels == 2
    with pytest.raises(CheckpointError, match='macro_predictor_depth=1'):
        OnlineLearner(cfg.replace(macro_predictor_depth=2), ACTIONS, checkpoint_dir=tmp_path)


def test_tiny_model_overfits_a_fixed_toroidal_transition():
    """Sanity check "overfit one example": autoencoder + predictor with the real losses, the
    learner's optimizers and a fixed dot transition (f0, move) -> f1."""
    cfg = tiny(reconstruction_threshold=1.0)
    learner = OnlineLearner(cfg, ACTIONS)
    env = dot_env(seed=1, move=16)
    x0 = learner._frame_tensor(torch.from_numpy(env.frame()))
    x1 = learner._frame_tensor(torch.from_numpy(env.step(1)))
    for i in range(300):  # masked autoencoder steps on both frames
        learner._autoencoder_step(x0 if i % 2 else x1)
    ae, lvl = learner.autoencoder, learner.levels[0]
    with torch.no_grad():
        z0, z1 = ae.encode(x0), ae.encode(x1)
        r0, r1, p1 = ae.decode(z0), ae.decode(z1), ae.patchify(x1)
    history = []
    for _ in range(150):
        ctx = lvl.predictor.build_context(z0)
        out = lvl.predictor.predict(ctx, lvl.actions[1:2])  # candidate: move
        pp = ae.decode(out.prediction)
        parts = lvl.predictor.forward_loss(
            out, pp, r0, r1, z1, p1, torch.tensor([1]), learner.core.weights
        )
        lvl.optimizer.zero_grad()
        parts['total'].backward()
        lvl.optimizer.step()
        history.append({k: float(v.detach()) for k, v in parts.items()})
    first, last = history[0], history[-1]
    assert first['total'] > 10 * last['total']
    assert first['latent'] > 10 * last['latent']
    copy_error = float(((r0 - p1) ** 2).mean())  # predicting "nothing moves"
    assert last['patch'] < 0.5 * copy_error and last['patch'] < 0.5 * first['patch']


# ---------------------------------------------------------------------------------------------
# D4: checkpoints
# ---------------------------------------------------------------------------------------------


def _all_state(learner: OnlineLearner) -> dict[str, torch.Tensor]:
    out = {f'ae.{k}': v for k, v in learner.autoencoder.state_dict().items()}
    for lvl in learner.levels:
        out.update({f'p{lvl.index}.{k}': v for k, v in lvl.predictor.state_dict().items()})
        for i, st in enumerate(lvl.optimizer.state.values()):
            out.update({f'p{lvl.index}.opt{i}.{k}': v for k, v in st.items()})
    for i, st in enumerate(learner.ae_optimizer.state.values()):
        out.update({f'ae.opt{i}.{k}': v for k, v in st.items()})
    return out


def test_checkpoint_round_trip_resumes_bit_exactly(tmp_path):
    cfg = tiny(reconstruction_threshold=0.02, prediction_threshold=0.0, level_creation_steps=10_000)
    env = dot_env(seed=2)
    a = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    _, frame = run_steps(a, env, [1, 0, 1, 1, 0, 1, 0])
    a.observe(frame)
    a.record_action(1)
    assert a.save() == 1
    b = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    assert b.step == a.step and len(b.history) == len(a.history) and b.generation == 1
    sa, sb = _all_state(a), _all_state(b)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    frame = env.step(1)
    for act in [0, 1, 1, 0, 1]:
        ra, rb = a.observe(frame), b.observe(frame)
        assert ra.reconstruction_loss == rb.reconstruction_loss and ra.gate_open == rb.gate_open
        assert (
            ra.prediction_errors == rb.prediction_errors and ra.trained_levels == rb.trained_levels
        )
        if ra.scores is not None:
            assert np.array_equal(ra.scores, rb.scores)
        a.record_action(act)
        b.record_action(act)
        frame = env.step(act)
    assert any(0 in x.trained_levels for x in [ra]) or a.levels[0].training_steps > 0
    sa, sb = _all_state(a), _all_state(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa), [
        k for k in sa if not torch.equal(sa[k], sb[k])
    ][:5]
    assert torch.equal(a.generator.get_state(), b.generator.get_state())


def test_wrapping_patch_rope_makes_the_offset_across_the_seam_an_offset_like_any_other():
    cfg = tiny()
    grid = cfg.img_size // cfg.patch_size
    head_dim = cfg.embed_dim // cfg.predictor_heads
    q, k = torch.randn(head_dim), torch.randn(head_dim)

    def logit(angles: torch.Tensor, qp: tuple[int, int], kp: tuple[int, int]) -> float:
        return rope_logit(angles, q, k, grid, qp, kp)

    wrapped = patch_rope_angles(cfg.tokens_per_frame, head_dim, wrap=True)
    flat = patch_rope_angles(cfg.tokens_per_frame, head_dim)
    last = grid - 1
    # the key one column right of the last column is the first column (and one row below the
    # last row the first row): the same logit as one column right / one row down anywhere else
    for angles, wraps in ((wrapped, True), (flat, False)):
        inside = logit(angles, (1, 0), (2, 1))
        across = [logit(angles, (1, last), (2, 0)), logit(angles, (last, 0), (0, 1))]
        assert (max(abs(a - inside) for a in across) < 1e-4) == wraps
    assert wrapped[0].abs().max() == 0 and wrapped[-1].abs().max() == 0  # CLS, action: none
    with pytest.raises(ConfigError, match='patch_rope_wrap needs patch_rope'):
        tiny(patch_rope=False, patch_rope_wrap=True)
    # the predictor takes it from the config, and it changes what the same weights compute
    plain, wrap = (make_predictor(cfg.replace(patch_rope_wrap=w), seed=3) for w in (False, True))
    assert wrap.patch_rope_wrap and not plain.patch_rope_wrap
    with torch.no_grad():
        for layer in plain.layers:
            layer.qkv.weight.normal_(std=0.5)
    wrap.load_state_dict(plain.state_dict())
    feats, acts = torch.randn(1, 2, cfg.tokens_per_frame, cfg.embed_dim), torch.randn(1, 2, 1)
    with torch.no_grad():
        assert (plain(feats, acts).features - wrap(feats, acts).features).abs().max() > 1e-3


def test_a_checkpoint_from_before_patch_rope_loads_as_the_model_it_holds(tmp_path):
    # a checkpoint written before the patch_rope field existed holds a model without patch RoPE
    cfg = tiny(patch_rope=False, reconstruction_threshold=0.02)
    a = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    run_steps(a, dot_env(seed=1), [1, 0, 1])
    assert a.save() == 1
    path = CheckpointManager(tmp_path).path('learner_state')
    state = load_file(path)
    del state['config']['patch_rope']
    atomic_save(state, path)
    assert WorldModelConfig.from_checkpoint(state['config']).patch_rope is False
    b = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)  # the model it holds: loads
    assert b.step == a.step
    with pytest.raises(CheckpointError, match='patch_rope=False'):  # another model: refused
        OnlineLearner(cfg.replace(patch_rope=True), ACTIONS, checkpoint_dir=tmp_path)


def test_a_deeper_decoder_is_another_model_that_draws_the_same_patches(tmp_path):
    cfg = tiny(decoder_hidden_layers=2, reconstruction_threshold=0.02)
    deep, shallow = (
        MaskedAutoencoderViT.from_config(cfg.replace(decoder_hidden_layers=n)) for n in (2, 1)
    )
    linears = [m for m in deep.decoder.pred if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3 == len(deep.decoder.pred) - 2  # 2 x [Linear, ReLU], Linear
    imgs = torch.rand(2, 3, cfg.img_size, cfg.img_size)
    assert deep.decode(deep.encode(imgs)).shape == shallow.decode(shallow.encode(imgs)).shape
    a = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    run_steps(a, dot_env(seed=1), [1, 0])
    assert a.save() == 1
    assert OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path).step == a.step
    with pytest.raises(CheckpointError, match='decoder_hidden_layers=2'):
        OnlineLearner(cfg.replace(decoder_hidden_layers=1), ACTIONS, checkpoint_dir=tmp_path)


def test_corrupted_primary_falls_back_to_one_consistent_backup_generation(tmp_path, caplog):
    cfg = tiny(reconstruction_threshold=1.0, prediction_threshold=0.0)
    env = dot_env()
    a = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    _, frame = run_steps(a, env, [1, 0, 1])
    a.save()
    gen1 = {k: v.clone() for k, v in _all_state(a).items()}
    run_steps(a, env, [1, 1], frame)
    a.save()
    assert not all(torch.equal(gen1[k], v) for k, v in _all_state(a).items())
    (tmp_path / 'predictor_0.pth').write_bytes(b'garbage' * 100)
    with caplog.at_level(logging.WARNING):
        b = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    assert b.generation == 1
    sb = _all_state(b)
    # the autoencoder's primary (generation 2) is intact but must NOT be mixed with predictor
    # generation 1
    assert all(torch.equal(gen1[k], sb[k]) for k in gen1)
    assert 'predictor_0.pth' in caplog.text


def test_truncated_file_is_a_clear_error(tmp_path):
    cfg = tiny(reconstruction_threshold=1.0)
    a = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    run_steps(a, dot_env(), [1])
    a.save()
    path = tmp_path / 'autoencoder.pth'
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r'autoencoder\.pth.*truncated or corrupted'):
        load_file(path)
    # no intact copy anywhere (only one generation was saved): a clear error naming the file
    with pytest.raises(CheckpointError, match='autoencoder'):
        OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(CheckpointError, match='empty'):
        load_file(empty)


def test_checkpoint_written_from_cuda_tensors_loads_on_cpu(tmp_path):
    cfg = tiny(reconstruction_threshold=1.0)
    a = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    run_steps(a, dot_env(), [1, 0])

    def tag_as_cuda(storage):  # make torch.save record every storage as living on cuda:0
        return 'cuda:0' if storage.device.type == 'cpu' else None

    torch.serialization.register_package(0, tag_as_cuda, lambda storage, location: None)
    try:
        a.save()
    finally:
        torch.serialization._package_registry[:] = [
            p for p in torch.serialization._package_registry if p[1] is not tag_as_cuda
        ]
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match='CUDA'):
            torch.load(
                tmp_path / 'autoencoder.pth', weights_only=True
            )  # the file really says "cuda"
    b = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path, device='cpu')
    assert all(p.device.type == 'cpu' for p in b.autoencoder.parameters())
    sa, sb = _all_state(a), _all_state(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_lr_override_on_resume_keeps_optimizer_moments_and_is_logged_once(tmp_path, caplog):
    cfg = tiny(reconstruction_threshold=1.0, prediction_threshold=0.0)
    a = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    run_steps(a, dot_env(), [1, 0, 1])
    a.save()
    caplog.set_level(logging.INFO, logger='world_model_node')
    b = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path, autoencoder_lr=3e-5, predictor_lr=2e-5)
    assert b.ae_optimizer.param_groups[0]['lr'] == 3e-5
    assert all(g['lr'] == 2e-5 for lvl in b.levels for g in lvl.optimizer.param_groups)
    for opt_a, opt_b in [
        (a.ae_optimizer, b.ae_optimizer),
        (a.levels[0].optimizer, b.levels[0].optimizer),
    ]:
        assert len(opt_b.state) == len(opt_a.state) > 0
        for sa, sb in zip(opt_a.state.values(), opt_b.state.values()):
            assert torch.equal(sa['exp_avg'], sb['exp_avg'])
            assert torch.equal(sa['exp_avg_sq'], sb['exp_avg_sq'])
            assert torch.equal(sa['step'], sb['step']) and float(sa['step']) > 0
            assert float(sa['exp_avg_sq'].abs().sum()) > 0
    saved_ae, saved_pred = f'{cfg.autoencoder_lr:g}', f'{cfg.predictor_lr:g}'
    assert b.lr_changes == [
        f'autoencoder_lr 3e-05 (saved {saved_ae})',
        f'predictor_lr 2e-05 (saved {saved_pred})',
    ]
    resumed = [r.getMessage() for r in caplog.records if 'resumed with' in r.getMessage()]
    assert resumed == [
        f'resumed with autoencoder_lr 3e-05 (saved {saved_ae}), predictor_lr 2e-05 '
        f'(saved {saved_pred})'
    ]
    # the override is what the next generation saves, and training continues at that rate
    run_steps(b, dot_env(), [1, 1])
    b.save()
    state = torch.load(tmp_path / 'autoencoder.pth', weights_only=True)
    assert state['optimizer']['param_groups'][0]['lr'] == 3e-5

    caplog.clear()
    c = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)  # no override: the saved rates
    assert c.ae_optimizer.param_groups[0]['lr'] == 3e-5
    assert c.levels[0].optimizer.param_groups[0]['lr'] == 2e-5
    assert c.lr_changes == [] and not [r for r in caplog.records if 'resumed with' in r.message]
    d = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path, autoencoder_lr=1e-4)  # one of two
    assert d.ae_optimizer.param_groups[0]['lr'] == 1e-4
    assert d.levels[0].optimizer.param_groups[0]['lr'] == 2e-5
    assert d.lr_changes == ['autoencoder_lr 0.0001 (saved 3e-05)']
    with pytest.raises(ValueError, match='learning rate'):
        OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path, predictor_lr=-1.0)
    fresh = OnlineLearner(cfg, ACTIONS, autoencoder_lr=5e-5)  # a fresh start takes it too
    assert fresh.ae_optimizer.param_groups[0]['lr'] == 5e-5 and fresh.lr_changes == []


def _predictor_state(learner: OnlineLearner) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in learner.levels[0].predictor.state_dict().items()}


def test_untrainable_transitions_are_observed_but_never_train():
    """Stays recorded with trainable=False: level 0 trains only on moves; the stays' prediction
    error is still measured; the heads are not calibrated on a stay either."""
    actions = [0, 1, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0]
    for threshold in (0.0, 1.0):  # every transition misses / every transition is accurate
        cfg = tiny(
            reconstruction_threshold=1.0,
            prediction_threshold=threshold,
            prediction_variance_fraction=0.0,
        )
        learner = OnlineLearner(cfg, ACTIONS)
        env = dot_env()
        frame = env.frame()
        checked = {0: 0, 1: 0}
        for t, a in enumerate(actions + [0]):
            before = _predictor_state(learner)
            steps_before = learner.levels[0].training_steps
            r = learner.observe(frame)
            assert r.gate_open
            if t > 0:
                prev = actions[t - 1]
                assert 0 in r.prediction_errors, t  # measured for stays too
                assert np.isfinite(r.prediction_errors[0])
                checked[prev] += 1
                changed = any(
                    not torch.equal(v, learner.levels[0].predictor.state_dict()[k])
                    for k, v in before.items()
                )
                if prev == 0:
                    assert 0 in r.untrainable_levels and 0 not in r.trained_levels
                    assert not changed, f'a stay changed the predictor (threshold {threshold})'
                    assert learner.levels[0].training_steps == steps_before
                else:
                    assert 0 not in r.untrainable_levels and changed
                    assert (0 in r.trained_levels) == (threshold == 0.0)
            if t < len(actions):
                learner.record_action(a, trainable=a == 1)
                frame = env.step(a)
        assert checked[0] > 0 and checked[1] > 0
        expected = checked[1] if threshold == 0.0 else 0
        assert learner.levels[0].training_steps == expected
        assert learner.stats[0].last_error is not None


def test_a_checkpoint_keeps_which_transitions_may_train(tmp_path):
    cfg = tiny(reconstruction_threshold=1.0)
    a = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    env, frame = dot_env(), None
    frame = env.frame()
    for t, act in enumerate([0, 1, 1, 0]):
        a.observe(frame)
        a.record_action(act, trainable=t % 2 == 0)
        frame = env.step(act)
    a.save()
    b = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    assert [e.trainable for e in b.history] == [True, False, True, False]


def test_a_macro_transition_trains_only_when_all_its_primitives_may():
    cfg = tiny(
        reconstruction_threshold=1.0,
        prediction_threshold=1.0,  # level 0 is accurate: level 1 appears quickly
        prediction_variance_fraction=0.0,
        level_creation_steps=2,
        max_levels=2,
    )
    learner = OnlineLearner(cfg, ACTIONS)
    env = dot_env()
    frame = env.frame()
    seen = {True: 0, False: 0}
    trainable_log: list[bool] = []
    for t in range(24):
        r = learner.observe(frame)
        if 1 in r.prediction_errors:
            span = learner.levels[1].span
            may = all(trainable_log[-span:])
            seen[may] += 1
            assert (1 in r.untrainable_levels) == (not may)
            assert 1 not in r.trained_levels or may
        if len(learner.levels) > 1 and learner.config.prediction_threshold == 1.0:
            learner.config = learner.config.replace(prediction_threshold=0.0)  # level 1 misses
        a = t % 2
        ok = t % 3 != 0
        learner.record_action(a, trainable=ok)
        trainable_log.append(ok)
        frame = env.step(a)
    assert seen[True] > 0 and seen[False] > 0
    # level 1 misses from its first check on: each macro-transition that may train, trains
    assert learner.levels[1].training_steps == seen[True]


def test_checkpoint_manager_picks_newest_complete_generation(tmp_path):
    mgr = CheckpointManager(tmp_path)
    assert mgr.load() is None
    for gen in (1, 2):
        mgr.save(
            {
                'autoencoder': {'w': torch.full((2,), float(gen))},
                'learner_state': {'components': ['autoencoder']},
            },
            gen,
        )
    # a crash after the new state was written but before ... simulate: state gen 3 without its
    # autoencoder
    (tmp_path / 'learner_state.pth').rename(tmp_path / 'learner_state_backup.pth')
    mgr2 = CheckpointManager(tmp_path)
    got = mgr2.load()
    assert got['learner_state']['generation'] == 2 and torch.equal(
        got['autoencoder']['w'], torch.full((2,), 2.0)
    )
    assert not list(tmp_path.glob('*.tmp'))


# ---------------------------------------------------------------------------------------------
# D5: metrics and wandb
# ---------------------------------------------------------------------------------------------


def test_metrics_are_tensor_ops_with_known_values():
    target = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert float(explained_variance(target, target)) == 1.0
    assert abs(float(explained_variance(torch.full_like(target, 1.5), target))) < 1e-6
    lin = torch.nn.Linear(3, 2)
    lin.weight.grad = torch.ones(2, 3)
    lin.bias.grad = torch.zeros(2)
    g = grad_norm_stats(lin.named_parameters(), 'p')
    assert abs(float(g['p_grad_norm']) - 6**0.5) < 1e-6
    named = list(lin.named_parameters())
    before = snapshot(p for _, p in named)
    with torch.no_grad():
        lin.weight.mul_(1.1)
        lin.bias.fill_(1.0)
    u = update_ratio_stats(named, before, 'p')
    assert isinstance(u['p_uwr_95th'], torch.Tensor) and abs(float(u['uwr/p/weight']) - 0.1) < 1e-5
    s = interval_stats(torch.tensor([1.0, 2.0, 3.0]))
    assert (
        float(s['action_timing/mean_interval']) == 2.0
        and float(s['action_timing/max_interval']) == 3.0
    )


def test_learner_logs_d5_metrics_every_log_interval():
    cfg = tiny(reconstruction_threshold=1.0, prediction_threshold=0.0, log_interval=5)
    learner = OnlineLearner(cfg, ACTIONS)
    results, _ = run_steps(learner, dot_env(), [1, 0] * 5 + [1])
    logged = [r for r in results if r.metrics is not None]
    assert [r.step for r in logged] == [5, 10]
    m = logged[-1].metrics
    for key in [
        'reconstruction_loss',
        'predictor_training_loss',
        'predictor_patch_loss',
        'predictor_latent_loss',
        'predictor_action_loss',
        'prediction_errors/level_0',
        'predictor_training_iterations',
        'consecutive_autoencoder_iterations',
        'action_timing/median_interval',
        'step',
        'training_step',
        'predictor_grad_norm',
        'predictor_uwr_95th',
        'predictor_lr',
        'grad_norms/predictor/layers_0',
        'uwr/predictor/layers_0',
        'predictor_explained_variance',
    ]:
        assert key in m, key
    assert all(isinstance(v, float) for v in m.values())


def test_wandb_offline_writes_a_run_directory(tmp_path, monkeypatch):
    monkeypatch.setenv('WANDB_MODE', 'offline')
    monkeypatch.setenv('WANDB_DIR', str(tmp_path))
    monkeypatch.setenv('WANDB_SILENT', 'true')
    cfg = tiny(
        reconstruction_threshold=1.0,
        prediction_threshold=0.0,
        log_interval=2,
        visualization_upload_interval=2,
    )
    learner = OnlineLearner(cfg, ACTIONS, wandb_project='devbot-test', wandb_dir=tmp_path)
    assert learner.logger.enabled and learner.logger.mode == 'offline'
    run_steps(learner, dot_env(), [1, 0, 1, 1])
    learner.close()
    runs = list((tmp_path / 'wandb').glob('offline-run-*'))
    assert len(runs) == 1
    assert list(runs[0].glob('*.wandb')) and (runs[0] / 'files').is_dir()
    deadline = time.monotonic() + 20  # wandb-core may still be flushing on a loaded machine
    while (
        max(f.stat().st_size for f in runs[0].glob('*.wandb')) < 1000
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert max(f.stat().st_size for f in runs[0].glob('*.wandb')) > 1000  # the logged records
    assert list(runs[0].rglob('predictions_*.png'))  # the prediction figures


def test_wandb_failure_does_not_stop_learning(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv('WANDB_MODE', 'offline')
    cfg = tiny(reconstruction_threshold=1.0, prediction_threshold=0.0, log_interval=1)
    learner = OnlineLearner(cfg, ACTIONS, wandb_project='devbot-test', wandb_dir=tmp_path)

    def broken(*args, **kwargs):
        raise OSError('disk full')

    monkeypatch.setattr(learner.logger.run, 'log', broken)
    with caplog.at_level(logging.WARNING):
        results, _ = run_steps(learner, dot_env(), [1, 0, 1])
    assert learner.logger.failed and 'disk full' in caplog.text
    assert all(r.metrics is not None for r in results)  # metrics still computed and returned
    assert learner.levels[0].training_steps == 2
    learner.close()
    # a wandb.init that fails is a warning too
    monkeypatch.setattr('wandb.init', broken)
    logger = WandbLogger('devbot-test', directory=tmp_path)
    assert not logger.enabled
    logger.log({'x': 1.0})


def test_ensemble_entropy_grows_with_disagreement():
    same = torch.zeros(4, 2, 5, 3)
    spread = torch.randn(4, 2, 5, 3)
    assert (ensemble_entropy(same) < ensemble_entropy(spread)).all()
