"""Tests of the attention and action diagnostics.

Hand-built attention with values computed by hand, action sweeps, counterfactuals, gradient flow,
and the learner's logging.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from toroidal_sim.env import ToroidalDotConfig, ToroidalDotEnv
from world_model_node import diagnostics as D
from world_model_node.config import WorldModelConfig
from world_model_node.learner import OnlineLearner
from world_model_node.models import (
    ACTION_TOKEN,
    FRAME_TOKEN,
    QUERY_TOKEN,
    MaskedAutoencoderViT,
    TransformerActionConditionedPredictor,
    build_autoencoder,
    build_predictor,
)

torch.set_num_threads(1)
ACTIONS = np.array([[-1.0], [1.0]], np.float32)

# the attention metrics a transition's diagnostics report
ATTENTION_METRICS = (
    'attn/APA',
    'attn/ALF',
    'attn/TTAR',
    'attn/RI@16',
    'attn/entropy',
    'attn/entropy_uniform',
)


def tiny(**kw) -> WorldModelConfig:
    return WorldModelConfig.tiny(**kw)


def models(
    cfg: WorldModelConfig, seed: int = 0, **kw
) -> tuple[MaskedAutoencoderViT, TransformerActionConditionedPredictor]:
    torch.manual_seed(seed)
    ae = build_autoencoder(cfg).eval()
    return ae, build_predictor(cfg, action_dim=1, num_actions=2, **{'dropout': 0.0, **kw}).eval()


# ---------------------------------------------------------------------------------------------
# attention metrics on a hand-built attention tensor
# ---------------------------------------------------------------------------------------------

T = 5  # CLS + a 2x2 patch grid
# 3 history frames, each followed by its action token (the last one is the candidate), then T
# queries
TYPES = torch.tensor(([FRAME_TOKEN] * T + [ACTION_TOKEN]) * 3 + [QUERY_TOKEN] * T)  # L = 23
L = TYPES.shape[0]
ROWS = torch.tensor(
    [False] + [True] * T
)  # rows as ``predict`` returns them: candidate token, T queries
S = ROWS.shape[0]  # row i sits at position L - S + i


def hand_built_attention() -> torch.Tensor:
    """[3, S, L]: head 0 puts 1/2 on the candidate (17) and 1/2 on patch 0 of the last frame (13);
    head 1 puts everything on patch 0 of the oldest frame (1); head 2 attends each query to itself.
    The candidate-token row (row 0) is uniform over its support and must not count."""
    attn = torch.zeros(3, S, L)
    for h in range(3):
        attn[h, 0, : L - S + 1] = 1.0 / (L - S + 1)
    for i in range(1, S):
        attn[0, i, 17] = 0.5
        attn[0, i, 13] = 0.5
        attn[1, i, 1] = 1.0
        attn[2, i, L - S + i] = 1.0
    return attn


def test_attention_metrics_of_a_hand_built_map():
    m = {k: float(v) for k, v in D.attention_metrics(hand_built_attention(), TYPES, ROWS).items()}
    # mean over heads and query rows: candidate 1/6, last-frame patch 1/6, oldest-frame patch 1/3,
    # queries 1/3
    assert m['attn/APA'] == pytest.approx(1 / 6)
    assert m['attn/ALF'] == pytest.approx(1 / 6)
    assert m['attn/TTAR'] == pytest.approx((1 / 6) / (1 / 6 + 1 / 3))
    # the 16 most recent HISTORY tokens are keys 2..17: the candidate and the last-frame patch, not
    # the oldest frame's patch (key 1), and never the query tokens themselves
    assert m['attn/RI@16'] == pytest.approx(1 / 3)
    assert m['attn/entropy'] == pytest.approx(math.log(2) / 3)  # head 0: log 2, heads 1, 2: 0
    supports = [L - S + i + 1 for i in range(1, S)]  # 19 .. 23 keys
    assert m['attn/entropy_uniform'] == pytest.approx(float(np.mean(np.log(supports))))
    assert float(
        D.attention_metrics(hand_built_attention(), TYPES, ROWS, recent=3)['attn/RI@3']
    ) == pytest.approx(1 / 6)  # keys 15, 16, 17


def test_uniform_causal_attention_has_the_uniform_entropy():
    attn = torch.zeros(2, S, L)
    for i in range(S):
        attn[:, i, : L - S + i + 1] = 1.0 / (L - S + i + 1)
    m = D.attention_metrics(attn, TYPES, ROWS)
    assert float(m['attn/entropy']) == pytest.approx(float(m['attn/entropy_uniform']), abs=1e-6)
    rows_pos = np.arange(L - S + 1, L)  # positions of the query rows
    assert float(m['attn/APA']) == pytest.approx(float(np.mean(1.0 / (rows_pos + 1))))


def test_attention_breakdown_and_frame_grids():
    attn = hand_built_attention()
    b = {k: float(v) for k, v in D.attention_breakdown(attn, TYPES, ROWS).items()}
    assert list(b) == [
        'frame_0',
        'action_0',
        'frame_1',
        'action_1',
        'frame_2',
        'candidate',
        'queries',
    ]
    assert b == pytest.approx(
        {
            'frame_0': 1 / 3,
            'action_0': 0.0,
            'frame_1': 0.0,
            'action_1': 0.0,
            'frame_2': 1 / 6,
            'candidate': 1 / 6,
            'queries': 1 / 3,
        }
    )
    grids = D.frame_attention_grids(attn, TYPES, ROWS)
    assert grids.shape == (3, 2, 2)
    expected = torch.zeros(3, 2, 2)
    expected[0, 0, 0], expected[2, 0, 0] = 1 / 3, 1 / 6
    assert torch.allclose(grids, expected)


def test_attention_metrics_reject_bad_shapes():
    attn = hand_built_attention()
    with pytest.raises(ValueError, match='key_types'):
        D.attention_metrics(attn, TYPES[:-1], ROWS)
    with pytest.raises(ValueError, match='query_rows'):
        D.attention_metrics(attn, TYPES, ROWS.long())
    with pytest.raises(ValueError, match=r'\[H, S, L\]'):
        D.attention_metrics(attn[0], TYPES, ROWS)


# ---------------------------------------------------------------------------------------------
# sweep, spread, counterfactuals
# ---------------------------------------------------------------------------------------------


def test_spread_and_errors_have_known_values():
    base = torch.rand(1, 4, 6)
    preds = torch.cat([base, base + 0.1])  # two actions, 0.1 apart everywhere
    s = D.prediction_spread(preds)
    assert float(s['spread']) == pytest.approx(0.01, rel=1e-4)
    assert float(s['spread_std']) == pytest.approx(0.05, rel=1e-4)
    assert float(D.prediction_spread(base)['spread']) == 0.0
    errs = D.action_errors(preds, base[0])
    assert errs.tolist() == pytest.approx([0.0, 0.01], abs=1e-6)


def test_action_sweep_matches_one_forward_per_action():
    cfg = tiny()
    ae, pred = models(cfg)
    with torch.no_grad():
        for film in pred.films.values():  # make the actions matter
            film.beta.weight.normal_(0, 0.5)
    feats = torch.randn(3, cfg.tokens_per_frame, cfg.embed_dim)
    hist = torch.tensor([[1.0], [-1.0]])
    cands = torch.tensor([[-1.0], [1.0]])
    sw = D.action_sweep(ae, pred, feats, hist, cands)
    assert sw.pred_patches.shape == (2, cfg.num_patches, 3 * cfg.patch_size**2)
    t = cfg.tokens_per_frame
    assert sw.attention.shape == (2, cfg.predictor_heads, 1 + t, 3 * t + 2 + 1 + t)
    assert sw.key_types.tolist() == ([FRAME_TOKEN] * t + [ACTION_TOKEN]) * 3 + [QUERY_TOKEN] * t
    with torch.no_grad():
        for i in range(2):
            full = pred(feats[None], torch.cat([hist, cands[i : i + 1]])[None])
            assert torch.allclose(sw.prediction[i], full.prediction[0], atol=1e-5)
    assert float(D.prediction_spread(sw.pred_patches)['spread']) > 0
    with pytest.raises(ValueError, match='context_actions'):
        D.action_sweep(ae, pred, feats, hist[:1], cands)


def test_counterfactual_gaps_are_zero_when_the_predictor_ignores_actions():
    cfg = tiny()
    ae, pred = models(cfg, prior_scale=0.0)
    with torch.no_grad():  # no path from the actions: action token and FiLM are zero
        pred.action_token.weight.zero_()
        pred.action_token.bias.zero_()
    feats = torch.randn(4, cfg.tokens_per_frame, cfg.embed_dim)
    hist = torch.tensor([[1.0], [-1.0], [1.0]])
    target = torch.rand(cfg.num_patches, 3 * cfg.patch_size**2)
    cf = D.counterfactual_losses(
        ae,
        pred,
        feats,
        hist,
        torch.tensor([-1.0]),
        target,
        generator=torch.Generator().manual_seed(0),
    )
    assert set(cf) == {'true', 'shuffled', 'zeroed', 'shuffled_gap', 'zeroed_gap'}
    assert float(cf['true']) > 0
    assert abs(float(cf['shuffled_gap'])) < 1e-7 and abs(float(cf['zeroed_gap'])) < 1e-7


def test_counterfactual_gaps_are_nonzero_when_actions_matter_and_true_matches_the_sweep():
    cfg = tiny()
    ae, pred = models(cfg)
    with torch.no_grad():
        for film in pred.films.values():
            film.beta.weight.normal_(0, 0.5)
    feats = torch.randn(4, cfg.tokens_per_frame, cfg.embed_dim)
    hist = torch.tensor([[1.0], [-1.0], [1.0]])
    target = torch.rand(cfg.num_patches, 3 * cfg.patch_size**2)
    cands = torch.tensor([[-1.0], [1.0]])

    def counterfactuals(**kw) -> dict:
        """The counterfactual losses of taking candidate 1, with the same shuffles each call."""
        return D.counterfactual_losses(
            ae,
            pred,
            feats,
            hist,
            cands[1],
            target,
            num_shuffles=4,
            generator=torch.Generator().manual_seed(0),
            **kw,
        )

    cf = counterfactuals()
    vals = {k: float(v) for k, v in cf.items()}
    assert all(math.isfinite(v) for v in vals.values())
    assert abs(vals['zeroed_gap']) > 1e-6
    assert vals['zeroed_gap'] == pytest.approx(vals['zeroed'] - vals['true'])
    sweep_err = D.action_errors(
        D.action_sweep(ae, pred, feats, hist, cands, return_attn=False).pred_patches, target
    )
    assert vals['true'] == pytest.approx(float(sweep_err[1]), rel=1e-4)
    # a known true loss (the sweep's) skips the true sequence and gives the same counterfactuals
    known = counterfactuals(true_loss=sweep_err[1])
    assert float(known['true']) == float(sweep_err[1])
    assert float(known['shuffled']) == pytest.approx(vals['shuffled'], rel=1e-5)
    assert float(known['zeroed']) == pytest.approx(vals['zeroed'], rel=1e-5)
    # one frame: the only permutation is the identity, shuffling changes nothing
    one = D.counterfactual_losses(ae, pred, feats[-1:], hist[:0], cands[1], target)
    assert abs(float(one['shuffled_gap'])) < 1e-7


# ---------------------------------------------------------------------------------------------
# gradient flow
# ---------------------------------------------------------------------------------------------


def test_gradient_flow_ratio():
    cfg = tiny()
    ae, pred = models(cfg)
    feats = torch.randn(1, 2, cfg.tokens_per_frame, cfg.embed_dim)
    out = pred(feats, torch.tensor([[[1.0], [-1.0]]]))
    out.prediction.pow(2).mean().backward()
    r = D.gradient_flow_ratio(pred)
    assert 0.0 < r < 1.0
    # hand-set gradients: ones everywhere -> sqrt(action elements / all elements)
    n_action = sum(p.numel() for n, p in pred.named_parameters() if D.is_action_parameter(n))
    n_all = sum(p.numel() for p in pred.parameters())
    for p in pred.parameters():
        p.grad = torch.ones_like(p)
    assert D.gradient_flow_ratio(pred) == pytest.approx(math.sqrt(n_action / n_all), rel=1e-5)
    # a loss that does not reach the action parameters
    pred.zero_grad(set_to_none=True)
    pred.head_bias.sum().backward()
    assert D.gradient_flow_ratio(pred) == 0.0
    pred.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match='backward'):
        D.gradient_flow_ratio(pred)
    assert {n.split('.')[0] for n, _ in pred.named_parameters() if D.is_action_parameter(n)} == {
        'action_embed',
        'action_token',
        'films',
    }


# ---------------------------------------------------------------------------------------------
# one transition in pixels
# ---------------------------------------------------------------------------------------------


def test_analyse_transition_end_to_end_restores_train_mode():
    cfg = tiny()
    ae, pred = models(cfg)
    pred.train()
    frames = torch.rand(4, 3, cfg.img_size, cfg.img_size)
    nxt = torch.rand(3, cfg.img_size, cfg.img_size)
    cands = torch.tensor([[-1.0], [1.0]])
    d = D.analyse_transition(
        ae,
        pred,
        frames,
        torch.tensor([[1.0], [-1.0], [1.0]]),
        cands,
        executed=1,
        next_frame=nxt,
        generator=torch.Generator().manual_seed(0),
    )
    assert pred.training and not ae.training  # modes restored
    s, t = cfg.img_size, cfg.tokens_per_frame
    assert d.predictions.shape == (2, s, s, 3) and d.predictions.dtype == np.uint8
    assert d.errors.shape == (2,) and d.uncertainty.shape == (2,) and d.best_action in (0, 1)
    assert (
        d.attention.shape == (cfg.predictor_heads, 1 + t, 4 * t + 3 + 1 + t)
        and d.attention_index == 1
    )
    g = cfg.img_size // cfg.patch_size
    assert d.attention_grids.shape == (4, g, g)
    assert set(d.attention_metrics) == set(ATTENTION_METRICS)
    assert sum(d.attention_breakdown.values()) == pytest.approx(1.0, abs=1e-5)
    assert d.counterfactual['true'] == pytest.approx(float(d.errors[1]), rel=1e-4)
    assert isinstance(d.spread, float) and d.spread >= 0
    # no next frame / no executed action: no errors, no counterfactual, attention of candidate 0
    d0 = D.analyse_transition(ae, pred, frames[-1:], torch.zeros(0, 1), cands)
    assert d0.errors is None and d0.counterfactual is None and d0.attention_index == 0
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        D.analyse_transition(ae, pred, frames * 2, torch.zeros(3, 1), cands)
    with pytest.raises(ValueError, match='executed'):
        D.analyse_transition(ae, pred, frames, torch.zeros(3, 1), cands, executed=2)


# ---------------------------------------------------------------------------------------------
# the online learner logs them
# ---------------------------------------------------------------------------------------------


def test_learner_logs_the_diagnostics_every_log_interval():
    cfg = tiny(reconstruction_threshold=1.0, prediction_threshold=0.0, log_interval=5)
    learner = OnlineLearner(cfg, ACTIONS)
    env = ToroidalDotEnv(ToroidalDotConfig(size=32, dot_radius=2, move_pixels=5, seed=0))
    frame = env.frame()
    logged = []
    for i in range(16):
        r = learner.observe(frame)
        learner.record_action(i % 2)
        frame = env.step(i % 2)
        if r.metrics is not None:
            logged.append(r)
    assert [r.step for r in logged] == [5, 10, 15]
    keys = [
        *ATTENTION_METRICS,
        'diagnostics/action_spread',
        'diagnostics/counterfactual_true',
        'diagnostics/counterfactual_shuffled_gap',
        'diagnostics/counterfactual_zeroed_gap',
        'diagnostics/executed_error',
    ]
    for r in logged:
        for k in keys:
            assert k in r.metrics and math.isfinite(r.metrics[k]), k
        assert r.metrics['diagnostics/best_action_error'] <= r.metrics['diagnostics/executed_error']
        assert r.metrics['diagnostics/counterfactual_zeroed_gap'] == pytest.approx(
            r.metrics['diagnostics/counterfactual_zeroed']
            - r.metrics['diagnostics/counterfactual_true'],
            abs=1e-7,
        )
    ratios = [
        r.metrics['diagnostics/action_grad_ratio']
        for r in logged
        if 'diagnostics/action_grad_ratio' in r.metrics
    ]
    assert ratios and all(0.0 < x < 1.0 for x in ratios)
