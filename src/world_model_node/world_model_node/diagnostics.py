"""Attention and action diagnostics of the world model. Plain PyTorch, no ROS.

What the predictor looks at and whether it uses the actions:

* ``attention_metrics``: APA, ALF, TTAR, RI@16 and the row entropy (with its uniform baseline)
  of the last layer's attention, averaged over heads and future-query rows;
  ``attention_breakdown`` (mass per context segment) and ``frame_attention_grids`` (mass per
  patch of each context frame) for heatmaps.
* ``action_sweep``: the predicted next frame for every action of the space from one context (one
  batched pass), their spread (``prediction_spread``) and per-action error (``action_errors``).
* ``counterfactual_losses``: the prediction loss with the context actions shuffled and zeroed vs
  the true loss, all in eval mode.
* ``action_grad_ratio`` / ``gradient_flow_ratio``: the share of the predictor's gradient norm that
  lies in its action parameters (action embedding, action token, FiLM).

``analyse_transition`` runs all of it on one transition given in pixels (for notebooks and the
session explorer); ``transition_metrics`` gives the logging dict from cached features (for the
online learner). Library functions return tensors; ``analyse_transition`` returns host values.

Shapes: F context frames, T = N + 1 tokens per frame (CLS first), D width, N patches,
P values per patch, C action channels, A candidate actions, H heads, L keys, S query rows.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from .models import (
    ACTION_TOKEN,
    FRAME_TOKEN,
    QUERY_TOKEN,
    MaskedAutoencoderViT,
    TransformerActionConditionedPredictor,
    ensemble_entropy,
)

#: parameter-name prefixes of the predictor's action pathway (for the gradient-flow ratio)
ACTION_PARAM_PREFIXES = ('action_embed.', 'action_token.', 'films.')


# ---------------------------------------------------------------------------------------------
# attention
# ---------------------------------------------------------------------------------------------


def _check_attention(attn: torch.Tensor, key_types: torch.Tensor, query_rows: torch.Tensor) -> None:
    if attn.ndim != 3:
        raise ValueError(f'attention must be [H, S, L], got shape {tuple(attn.shape)}')
    _, s, length = attn.shape
    if key_types.ndim != 1 or key_types.shape[0] != length:
        raise ValueError(f'key_types must be [L={length}], got shape {tuple(key_types.shape)}')
    if query_rows.ndim != 1 or query_rows.shape[0] != s or query_rows.dtype != torch.bool:
        raise ValueError(
            f'query_rows must be a bool tensor [S={s}], '
            f'got {query_rows.dtype} {tuple(query_rows.shape)}'
        )
    if s > length:
        raise ValueError(f'more attention rows ({s}) than keys ({length})')
    if not bool(query_rows.any()):
        raise ValueError('query_rows selects no row')


def _runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """[L] bool -> [(start, end)] of the runs of True (end exclusive), in order."""
    idx = torch.nonzero(mask).flatten().tolist()
    runs: list[tuple[int, int]] = []
    for i in idx:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _segments(key_types: torch.Tensor) -> list[tuple[int, int]]:
    """[L] token types -> [(start, end)] runs of equal type (end exclusive), in order."""
    bounds = (torch.nonzero(key_types[1:] != key_types[:-1]).flatten() + 1).tolist()
    starts = [0] + bounds
    return list(zip(starts, bounds + [int(key_types.shape[0])]))


def _query_mass(attn: torch.Tensor, query_rows: torch.Tensor) -> torch.Tensor:
    """[H, S, L] -> [L]: attention averaged over heads and the selected rows."""
    return attn[:, query_rows].float().mean(dim=(0, 1))


def attention_metrics(
    attn: torch.Tensor, key_types: torch.Tensor, query_rows: torch.Tensor, recent: int = 16
) -> dict[str, torch.Tensor]:
    """APA, ALF, TTAR, RI@k and row entropy of the last layer's attention.

    The attention rows are the LAST S tokens of the L-token sequence (row i sits at position
    L - S + i and may attend keys 0 .. L - S + i): the full square map of ``forward`` (S = L) and
    the candidate + query rows of ``predict`` (S = 1 + T) both have this form.

    Args:
        attn: [H, S, L] attention of one sample (rows sum to 1, zero outside the causal support).
        key_types: [L] token type of each key (models.FRAME_TOKEN / ACTION_TOKEN / QUERY_TOKEN).
        query_rows: [S] bool, the future-query rows; every metric averages over these rows and
            the heads.
        recent: k of RI@k: the k most recent HISTORY tokens (frame and action tokens before the
            queries; the future-query tokens themselves never count).
    Returns:
        0-d tensors: 'attn/APA' mass on the last action token (the candidate), 'attn/ALF' mass on
        the last (current) frame's tokens, 'attn/TTAR' action-token mass / frame-token mass,
        'attn/RI@<k>', 'attn/entropy' mean entropy (nats) of each row over its causal support and
        'attn/entropy_uniform' the same for uniform attention, log(support size).
    """
    _check_attention(attn, key_types, query_rows)
    if recent < 1:
        raise ValueError(f'recent must be >= 1, got {recent}')
    attn = attn.detach()
    mass = _query_mass(attn, query_rows)  # [L]
    zero = mass.new_zeros(())
    is_frame = key_types == FRAME_TOKEN
    is_action = key_types == ACTION_TOKEN
    history = torch.nonzero(is_frame | is_action).flatten()
    action_idx = torch.nonzero(is_action).flatten()
    frame_runs = _runs(is_frame)
    out: dict[str, torch.Tensor] = {}
    out['attn/APA'] = mass[action_idx[-1]] if action_idx.numel() else zero
    out['attn/ALF'] = mass[frame_runs[-1][0] : frame_runs[-1][1]].sum() if frame_runs else zero
    out['attn/TTAR'] = mass[is_action].sum() / mass[is_frame].sum().clamp_min(1e-12)
    out[f'attn/RI@{recent}'] = mass[history[-recent:]].sum() if history.numel() else zero
    # entropy of each selected row over its causal support
    s, length = attn.shape[1], attn.shape[2]
    rows = attn[:, query_rows].float()  # [H, Sq, L]
    support = (length - s + 1 + torch.nonzero(query_rows).flatten()).to(
        rows.dtype
    )  # [Sq] keys each row may see
    out['attn/entropy'] = -torch.special.xlogy(rows, rows).sum(dim=-1).mean()
    out['attn/entropy_uniform'] = support.log().mean()
    return out


def attention_breakdown(
    attn: torch.Tensor, key_types: torch.Tensor, query_rows: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Attention mass per context segment, averaged over heads and the query rows.

    Args:
        attn, key_types, query_rows: as for ``attention_metrics``.
    Returns:
        {'frame_0': .., 'action_0': .., ..., 'frame_<F-1>': .., 'candidate': .., 'queries': ..} in
        sequence order (frames oldest first; 'candidate' is the last action token); sums to 1.
    """
    _check_attention(attn, key_types, query_rows)
    mass = _query_mass(attn.detach(), query_rows)
    last_action = (
        int(torch.nonzero(key_types == ACTION_TOKEN).flatten()[-1])
        if bool((key_types == ACTION_TOKEN).any())
        else -1
    )
    out: dict[str, torch.Tensor] = {}
    frame = -1
    for a, b in _segments(key_types):
        kind = int(key_types[a])
        if kind == FRAME_TOKEN:
            frame += 1
            out[f'frame_{frame}'] = mass[a:b].sum()
        elif kind == ACTION_TOKEN:
            for k in range(a, b):
                out['candidate' if k == last_action else f'action_{frame}'] = mass[k]
    out['queries'] = mass[key_types == QUERY_TOKEN].sum()
    return out


def frame_attention_grids(
    attn: torch.Tensor, key_types: torch.Tensor, query_rows: torch.Tensor
) -> torch.Tensor:
    """Attention mass on each patch of each context frame (for heatmap overlays).

    Args:
        attn, key_types, query_rows: as for ``attention_metrics``; every frame has T = g*g + 1
            tokens (CLS first, then the g x g patches row-major).
    Returns:
        [F, g, g] mass per patch (averaged over heads and query rows), frames oldest first.
    """
    _check_attention(attn, key_types, query_rows)
    mass = _query_mass(attn.detach(), query_rows)
    runs = _runs(key_types == FRAME_TOKEN)
    if not runs:
        raise ValueError('key_types holds no frame token')
    t = runs[-1][1] - runs[-1][0]
    g = int(round(math.sqrt(t - 1)))
    if g * g != t - 1 or any(b - a != t for a, b in runs):
        raise ValueError(
            f'frames must have g*g+1 tokens each, got runs of {[b - a for a, b in runs]}'
        )
    return torch.stack([mass[a + 1 : b].reshape(g, g) for a, b in runs])


# ---------------------------------------------------------------------------------------------
# action sweep
# ---------------------------------------------------------------------------------------------


@dataclass
class Sweep:
    """Predictions for every candidate action from one context (tensors on the model's device)."""

    prediction: torch.Tensor  # [A, T, D] mean predicted features
    head_predictions: torch.Tensor  # [E, A, T, D]
    pred_patches: torch.Tensor  # [A, N, P] decoded mean predictions
    attention: (
        torch.Tensor | None
    )  # [A, H, 1+T, L] last layer (rows: candidate token, then T queries)
    key_types: torch.Tensor  # [L] token types of the keys
    query_rows: torch.Tensor  # [1+T] bool, True for the future-query rows


def _context_tensors(
    predictor: TransformerActionConditionedPredictor,
    feats: torch.Tensor,
    context_actions: torch.Tensor,
    candidate_actions: torch.Tensor,
) -> None:
    """Validate the shapes of a context given as features."""
    if (
        feats.ndim != 3
        or feats.shape[0] < 1
        or feats.shape[1] != predictor.tokens_per_frame
        or feats.shape[2] != predictor.embed_dim
    ):
        raise ValueError(
            f'features must be [F, T={predictor.tokens_per_frame}, D={predictor.embed_dim}], '
            f'got {tuple(feats.shape)}'
        )
    c = predictor.action_dim
    if context_actions.ndim != 2 or context_actions.shape != (feats.shape[0] - 1, c):
        raise ValueError(
            f'context_actions must be [F-1={feats.shape[0] - 1}, C={c}], got '
            f'{tuple(context_actions.shape)}'
        )
    if (
        candidate_actions.ndim != 2
        or candidate_actions.shape[0] < 1
        or candidate_actions.shape[1] != c
    ):
        raise ValueError(
            f'candidate_actions must be [A>=1, C={c}], got {tuple(candidate_actions.shape)}'
        )


@torch.no_grad()
def action_sweep(
    autoencoder: MaskedAutoencoderViT,
    predictor: TransformerActionConditionedPredictor,
    feats: torch.Tensor,
    context_actions: torch.Tensor,
    candidate_actions: torch.Tensor,
    return_attn: bool = True,
) -> Sweep:
    """Predict the next frame for every candidate action from the same context, in ONE batched pass.

    Args:
        autoencoder: decodes the predicted features to patches.
        predictor: the (level's) predictor; run as it is (call inside ``eval_mode``).
        feats: [F, T, D] context frame features, oldest first, the last is the current frame.
        context_actions: [F-1, C] normalised action taken after each of the first F-1 frames.
        candidate_actions: [A, C] normalised candidate actions.
        return_attn: also return the last layer's attention per candidate.
    """
    _context_tensors(predictor, feats, context_actions, candidate_actions)
    hist_f = feats[None, :-1] if feats.shape[0] > 1 else None
    hist_a = context_actions[None] if feats.shape[0] > 1 else None
    ctx = predictor.build_context(feats[None, -1], hist_f, hist_a)
    out = predictor.predict(ctx, candidate_actions, return_attn=return_attn)
    t = predictor.tokens_per_frame
    tail = torch.tensor([ACTION_TOKEN] + [QUERY_TOKEN] * t, device=ctx.token_types.device)
    rows = torch.ones(1 + t, dtype=torch.bool, device=feats.device)
    rows[0] = False
    return Sweep(
        out.prediction,
        out.head_predictions,
        autoencoder.decode(out.prediction),
        out.attention,
        torch.cat([ctx.token_types, tail]),
        rows,
    )


def prediction_spread(pred_patches: torch.Tensor) -> dict[str, torch.Tensor]:
    """How different the predictions for different actions are (patch space, pixels in [0, 1]).

    Args:
        pred_patches: [A, N, P] one prediction per action.
    Returns:
        'spread': mean over action pairs of their MSE (0 for one action); 'spread_std': the
        standard deviation over actions, averaged over all patch values.
    """
    x = pred_patches.detach().float().flatten(1)  # [A, N*P]
    if x.shape[0] < 2:
        zero = x.new_zeros(())
        return {'spread': zero, 'spread_std': zero}
    pair = torch.pdist(x).pow(2).mean() / x.shape[1]
    return {'spread': pair, 'spread_std': x.std(dim=0, unbiased=False).mean()}


def action_errors(pred_patches: torch.Tensor, target_patches: torch.Tensor) -> torch.Tensor:
    """MSE of each action's prediction [A, N, P] against the true next frame [N, P] -> [A]."""
    if target_patches.shape != pred_patches.shape[1:]:
        raise ValueError(
            f'target patches {tuple(target_patches.shape)} do not match predictions '
            f'{tuple(pred_patches.shape[1:])}'
        )
    return (pred_patches.detach().float() - target_patches.float()[None]).pow(2).mean(dim=(1, 2))


# ---------------------------------------------------------------------------------------------
# counterfactuals
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def counterfactual_losses(
    autoencoder: MaskedAutoencoderViT,
    predictor: TransformerActionConditionedPredictor,
    feats: torch.Tensor,
    context_actions: torch.Tensor,
    executed_action: torch.Tensor,
    target_patches: torch.Tensor,
    num_shuffles: int = 4,
    generator: torch.Generator | None = None,
    true_loss: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Prediction loss with the true, shuffled and zeroed action sequence (one batched pass).

    The action sequence of the context is [a_0 .. a_{F-2}, executed]: the actions after the
    history frames and the candidate (the executed action). 'shuffled' permutes it over time
    (``num_shuffles`` random permutations, mean loss); 'zeroed' replaces every action with 0
    (the middle of each normalised channel). The loss is the patch MSE of the decoded mean
    prediction against the true next frame. A predictor that uses the actions has gaps > 0; one
    that ignores them has gaps of exactly 0.

    Args:
        autoencoder, predictor: run as they are (call inside ``eval_mode``).
        feats: [F, T, D] context features, oldest first.
        context_actions: [F-1, C] normalised history actions.
        executed_action: [C] the normalised action executed after the last frame.
        target_patches: [N, P] patches of the true next frame.
        num_shuffles: shuffled variants (>= 1); with one action in the sequence a shuffle is the
            identity.
        generator: CPU generator for the permutations (None: torch's global RNG).
        true_loss: the loss of the true sequence when already known (e.g. the sweep's error of the
            executed action, ``action_errors``): saves one sequence of the batch.
    Returns:
        0-d tensors 'true', 'shuffled', 'zeroed', 'shuffled_gap' (= shuffled - true), 'zeroed_gap'.
    """
    _context_tensors(predictor, feats, context_actions, executed_action.reshape(1, -1))
    if num_shuffles < 1:
        raise ValueError(f'num_shuffles must be >= 1, got {num_shuffles}')
    seq = torch.cat([context_actions, executed_action.reshape(1, -1)])  # [F, C]
    n = seq.shape[0]
    perms = torch.stack([torch.randperm(n, generator=generator) for _ in range(num_shuffles)]).to(
        seq.device
    )
    variants = [seq[perms], torch.zeros_like(seq)[None]]
    if true_loss is None:
        variants.insert(0, seq[None])
    variants = torch.cat(variants)  # [(1+)K+1, F, C]
    b = variants.shape[0]
    out = predictor(feats[None].expand(b, -1, -1, -1), variants)
    losses = action_errors(autoencoder.decode(out.prediction), target_patches)  # [(1+)K+1]
    if true_loss is not None:
        losses = torch.cat([true_loss.reshape(1).to(losses), losses])
    true, shuffled, zeroed = losses[0], losses[1:-1].mean(), losses[-1]
    return {
        'true': true,
        'shuffled': shuffled,
        'zeroed': zeroed,
        'shuffled_gap': shuffled - true,
        'zeroed_gap': zeroed - true,
    }


# ---------------------------------------------------------------------------------------------
# gradient flow
# ---------------------------------------------------------------------------------------------


def is_action_parameter(name: str) -> bool:
    """Whether a predictor parameter belongs to the action pathway.

    The action pathway is the action embedding, the action token and the FiLM layers.
    """
    return name.startswith(ACTION_PARAM_PREFIXES)


def action_grad_ratio(named_params: Iterable[tuple[str, torch.nn.Parameter]]) -> torch.Tensor:
    """||grad of action parameters||_2 / ||grad of all parameters||_2.

    A 0-d tensor (no host sync).

    Parameters without a gradient count as zero. Raises ValueError when no parameter has a gradient.
    """
    named = [(n, p.grad.detach()) for n, p in named_params if p.grad is not None]
    if not named:
        raise ValueError('no parameter has a gradient: call this after a backward pass')
    norms = torch.stack(torch._foreach_norm([g for _, g in named])).float()  # [P]
    is_action = torch.tensor([is_action_parameter(n) for n, _ in named], device=norms.device)
    total = torch.linalg.vector_norm(norms)
    action = torch.linalg.vector_norm(norms * is_action)
    return torch.where(total > 0, action / total.clamp_min(1e-30), torch.zeros_like(total))


def gradient_flow_ratio(predictor: torch.nn.Module) -> float:
    """Share of the predictor's gradient L2 norm in its action parameters, in [0, 1].

    Call it after a backward pass.

    Args:
        predictor: a ``TransformerActionConditionedPredictor`` whose parameters hold gradients.
    """
    return float(action_grad_ratio(predictor.named_parameters()))


# ---------------------------------------------------------------------------------------------
# one transition
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    """Put modules in eval mode for the block, then restore each one's previous mode."""
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


def patches_to_images(autoencoder: MaskedAutoencoderViT, patches: torch.Tensor) -> np.ndarray:
    """Patches [K, N, P] in [0, 1] -> uint8 images [K, S, S, 3]."""
    imgs = (
        autoencoder.unpatchify(patches.detach().float())
        .clamp(0, 1)
        .mul(255)
        .round()
        .to(torch.uint8)
    )
    return imgs.permute(0, 2, 3, 1).cpu().numpy()


@dataclass
class TransitionDiagnostics:
    """Everything ``analyse_transition`` found, as host values (numpy / float)."""

    predictions: np.ndarray  # uint8 [A, S, S, 3] predicted next frame per candidate
    uncertainty: np.ndarray  # float32 [A] ensemble entropy per candidate (nats/feature)
    spread: float  # mean pairwise MSE between the candidates' predictions
    spread_std: float  # std over candidates, mean over patch values
    errors: np.ndarray | None = None  # float32 [A] MSE against the true next frame (if given)
    executed: int | None = None  # the executed candidate (if given)
    attention_index: int | None = None  # candidate whose attention is reported (executed, else 0)
    attention: np.ndarray | None = (
        None  # float32 [H, 1+T, L] its last-layer attention (row 0: candidate token)
    )
    key_types: np.ndarray | None = None  # int [L] token type of each key
    query_rows: np.ndarray | None = None  # bool [1+T] the future-query rows
    attention_metrics: dict[str, float] = field(
        default_factory=dict
    )  # APA, ALF, TTAR, RI@16, entropy (+ uniform)
    attention_breakdown: dict[str, float] = field(
        default_factory=dict
    )  # mass per segment, sequence order
    attention_grids: np.ndarray | None = (
        None  # float32 [F, g, g] mass per patch of each context frame
    )
    counterfactual: dict[str, float] | None = (
        None  # true/shuffled/zeroed losses and gaps (needs executed + next frame)
    )

    @property
    def best_action(self) -> int | None:
        """The candidate whose prediction is closest to the true next frame."""
        return None if self.errors is None else int(np.argmin(self.errors))


def _floats(d: dict[str, torch.Tensor]) -> dict[str, float]:
    if not d:
        return {}
    vals = torch.stack([v.detach().double().reshape(()) for v in d.values()]).cpu().tolist()
    return dict(zip(d.keys(), vals))


def _check_frames(frames: torch.Tensor, autoencoder: MaskedAutoencoderViT, what: str) -> None:
    s, c = autoencoder.img_size, autoencoder.in_chans
    if frames.shape[-3:] != (c, s, s) or not frames.is_floating_point():
        raise ValueError(
            f'{what} must be float [.., {c}, {s}, {s}] in [0, 1], '
            f'got {frames.dtype} {tuple(frames.shape)}'
        )
    if frames.numel() and (float(frames.min()) < 0 or float(frames.max()) > 1):
        raise ValueError(
            f'{what} must be in [0, 1] '
            f'(got values in [{float(frames.min())}, {float(frames.max())}])'
        )


@torch.no_grad()
def analyse_transition(
    autoencoder: MaskedAutoencoderViT,
    predictor: TransformerActionConditionedPredictor,
    frames: torch.Tensor,
    context_actions: torch.Tensor,
    candidate_actions: torch.Tensor,
    executed: int | None = None,
    next_frame: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    with_attention: bool = True,
    with_counterfactuals: bool = True,
    num_shuffles: int = 4,
) -> TransitionDiagnostics:
    """Action sweep, attention and counterfactuals of one transition, in eval mode.

    Args:
        autoencoder: encodes the frames and decodes the predictions.
        predictor: the primitive-action (level-0) predictor.
        frames: [F, 3, S, S] float in [0, 1], the context frames oldest first (the last is the
            current frame).
        context_actions: [F-1, C] normalised action after each of the first F-1 frames.
        candidate_actions: [A, C] normalised actions to sweep (usually the whole action space).
        executed: index into candidate_actions of the action executed after the current frame.
        next_frame: [3, S, S] float in [0, 1], the true next frame (errors and counterfactuals).
        generator: CPU generator for the counterfactual shuffles.
        with_attention: compute the attention of the executed (else the first) candidate.
        with_counterfactuals: compute the shuffled/zeroed losses (needs executed and next_frame).
        num_shuffles: shuffled variants averaged in the counterfactual.
    Returns:
        TransitionDiagnostics (host values).
    """
    if frames.ndim != 4 or frames.shape[0] < 1:
        raise ValueError(f'frames must be [F>=1, 3, S, S], got {tuple(frames.shape)}')
    _check_frames(frames, autoencoder, 'frames')
    if next_frame is not None:
        _check_frames(next_frame[None], autoencoder, 'next_frame')
    a = candidate_actions.shape[0] if candidate_actions.ndim == 2 else 0
    if executed is not None and (
        isinstance(executed, bool)
        or not isinstance(executed, (int, np.integer))
        or not 0 <= executed < a
    ):
        raise ValueError(f'executed must be an index in [0, {a}), got {executed!r}')
    device = next(predictor.parameters()).device
    frames, context_actions = frames.to(device), context_actions.to(device).float()
    candidate_actions = candidate_actions.to(device).float()
    with eval_mode(autoencoder, predictor):
        feats = autoencoder.encode(frames)  # [F, T, D]
        sweep = action_sweep(
            autoencoder, predictor, feats, context_actions, candidate_actions, with_attention
        )
        tensors: dict[str, torch.Tensor] = dict(prediction_spread(sweep.pred_patches))
        result = TransitionDiagnostics(
            predictions=patches_to_images(autoencoder, sweep.pred_patches),
            uncertainty=ensemble_entropy(sweep.head_predictions).float().cpu().numpy(),
            spread=0.0,
            spread_std=0.0,
            executed=None if executed is None else int(executed),
        )
        target = None
        if next_frame is not None:
            target = autoencoder.patchify(next_frame.to(device)[None].float())[0]  # [N, P]
            result.errors = action_errors(sweep.pred_patches, target).cpu().numpy()
        if with_attention:
            i = int(executed) if executed is not None else 0
            att = sweep.attention[i]
            result.attention_index = i
            result.attention = att.float().cpu().numpy()
            result.key_types = sweep.key_types.cpu().numpy()
            result.query_rows = sweep.query_rows.cpu().numpy()
            result.attention_metrics = _floats(
                attention_metrics(att, sweep.key_types, sweep.query_rows)
            )
            result.attention_breakdown = _floats(
                attention_breakdown(att, sweep.key_types, sweep.query_rows)
            )
            result.attention_grids = (
                frame_attention_grids(att, sweep.key_types, sweep.query_rows).cpu().numpy()
            )
        if with_counterfactuals and executed is not None and target is not None:
            result.counterfactual = _floats(
                counterfactual_losses(
                    autoencoder,
                    predictor,
                    feats,
                    context_actions,
                    candidate_actions[int(executed)],
                    target,
                    num_shuffles,
                    generator,
                )
            )
    spread = _floats(tensors)
    result.spread, result.spread_std = spread['spread'], spread['spread_std']
    return result


@torch.no_grad()
def transition_metrics(
    autoencoder: MaskedAutoencoderViT,
    predictor: TransformerActionConditionedPredictor,
    feats: torch.Tensor,
    context_actions: torch.Tensor,
    candidate_actions: torch.Tensor,
    executed: int,
    target_patches: torch.Tensor,
    num_shuffles: int = 1,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """The attention and action logging metrics of one known transition from cached features.

    The metrics are 0-d tensors (no host sync).

    Args:
        feats: [F, T, D] context features (oldest first); context_actions [F-1, C];
            candidate_actions [A, C] the action space; executed: index of the executed candidate;
            target_patches [N, P] the true next frame.
        num_shuffles, generator: for the counterfactual.
    Cost: one context pass with all candidates (sweep + attention) and one batched full pass of
    num_shuffles + 1 sequences (the true loss is the sweep's).
    Returns:
        'attn/APA', 'attn/ALF', 'attn/TTAR', 'attn/RI@16', 'attn/entropy',
        'attn/entropy_uniform' (of the executed candidate), 'diagnostics/action_spread',
        'diagnostics/action_spread_std',
        'diagnostics/executed_error', 'diagnostics/best_action_error' (the lowest error over the
        candidates), 'diagnostics/counterfactual_{true,shuffled,zeroed}',
        'diagnostics/counterfactual_{shuffled,zeroed}_gap'.
    """
    with eval_mode(autoencoder, predictor):
        sweep = action_sweep(
            autoencoder, predictor, feats, context_actions, candidate_actions, return_attn=True
        )
        out = attention_metrics(sweep.attention[executed], sweep.key_types, sweep.query_rows)
        spread = prediction_spread(sweep.pred_patches)
        out['diagnostics/action_spread'] = spread['spread']
        out['diagnostics/action_spread_std'] = spread['spread_std']
        errors = action_errors(sweep.pred_patches, target_patches)  # [A]
        out['diagnostics/executed_error'] = errors[executed]
        out['diagnostics/best_action_error'] = errors.min()
        cf = counterfactual_losses(
            autoencoder,
            predictor,
            feats,
            context_actions,
            candidate_actions[executed],
            target_patches,
            num_shuffles,
            generator,
            true_loss=errors[executed],
        )
    out.update({f'diagnostics/counterfactual_{k}': v for k, v in cf.items()})
    return out


__all__ = [
    'attention_metrics',
    'attention_breakdown',
    'frame_attention_grids',
    'Sweep',
    'action_sweep',
    'prediction_spread',
    'action_errors',
    'counterfactual_losses',
    'is_action_parameter',
    'action_grad_ratio',
    'gradient_flow_ratio',
    'eval_mode',
    'patches_to_images',
    'TransitionDiagnostics',
    'analyse_transition',
    'transition_metrics',
    'ACTION_PARAM_PREFIXES',
]
