"""The world model's networks, optimizers and training steps: one implementation for every trainer.

``WorldModelCore`` holds the autoencoder, one ``Level`` per hierarchy level (its predictor, its
action table, its optimizer and counters), the autoencoder's optimizer and the step counters. The
online learner (one frame at a time), the offline trainer (``devbot train``: batches, DDP, AMP)
and the workbench (a notebook) all train through it:

* losses, as functions of the modules (so that a ``DistributedDataParallel`` forward can call
  them): ``autoencoder_loss`` (masked reconstruction of a batch of frames),
  ``prediction_losses`` (patch, latent and action losses of a batch of transitions given the
  predictor's output and the ``Transitions`` targets), ``joint_loss`` (a prediction loss plus the
  weighted reconstruction MSE of the current frame, which trains the encoder jointly);
* optimizer steps, as methods of the core: ``autoencoder_step`` (loss, backward, clip, step),
  ``predictor_step`` (backward of the given losses, then ``apply_gradients``),
  ``apply_gradients`` (clip each parameter set, step its optimizer, count; with an optional AMP
  ``GradScaler``) and ``head_step`` (the ensemble heads alone, on stored trunk features);
* with ``weight_average_decay`` > 0, an exponential moving average of every parameter set
  (``WeightAverage``), moved after each of its steps; ``WorldModelCore.averaged_weights()`` puts
  it in the networks' place for evaluation.

Models stay in eval mode in every trainer: the encoder has no dropout, and the predictor's
dropout is off online.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import diagnostics as D
from . import metrics as M
from .config import WorldModelConfig
from .models import (
    MaskedAutoencoderViT,
    PredictorOutput,
    TransformerActionConditionedPredictor,
    build_autoencoder,
    build_predictor,
    clip_gradients,
)

# ---------------------------------------------------------------------------------------------
# losses (functions of the modules: callable inside a DistributedDataParallel forward)
# ---------------------------------------------------------------------------------------------


@dataclass
class Transitions:
    """The targets of a batch of B transitions frame t -> frame t+1 of one level.

    Attributes:
        action_index: int64 [B] executed (macro-)action, index into the level's action table.
        last_patches: [B, N, P] decoded current frame (the action classifier's reference).
        next_patches: [B, N, P] decoded real next frame (the classifier learns from real changes).
        next_latent: [B, T, D] encoder features of the real next frame (no gradient taken).
        next_frame_patches: [B, N, P] patches of the real next frame.
    """

    action_index: torch.Tensor
    last_patches: torch.Tensor
    next_patches: torch.Tensor
    next_latent: torch.Tensor
    next_frame_patches: torch.Tensor


def draw_mask_ratio(config: WorldModelConfig, generator: torch.Generator) -> float:
    """A mask ratio r ~ U(MASK_RATIO_MIN, MASK_RATIO_MAX) from ``generator``."""
    u = float(torch.rand((), generator=generator))
    return config.mask_ratio_min + (config.mask_ratio_max - config.mask_ratio_min) * u


def history_to_keep(history: int, probability: float, generator: torch.Generator | None) -> int:
    """How many of a training context's ``history`` frames (the newest ones) to keep: with
    ``probability`` a uniform draw from 0 to history-1, else all (``context_dropout``).

    No random draw when ``probability`` is 0 or there is no history to drop."""
    if probability <= 0 or history < 1:
        return history
    device = generator.device if generator is not None else torch.device('cpu')
    if float(torch.rand((), generator=generator, device=device)) >= probability:
        return history
    return int(torch.randint(0, history, (), generator=generator, device=device))


def draw_training_context(
    history: int, config: WorldModelConfig, generator: torch.Generator | None
) -> tuple[bool, int]:
    """How a level-0 training transition whose context has ``history`` frames before its
    current one is trained: (rolled, history frames kept, the newest ones).

    With probability ``roll_augmentation`` it is rolled and predicted from its current frame
    alone: rolled history frames would have to be encoded afresh (+20 of ~43 GFLOP per frame at
    full size), and a roll teaches that the physics is the same everywhere without them.
    Otherwise ``history_to_keep`` with ``context_dropout``. Both trainers draw by this rule."""
    p = config.roll_augmentation
    if p > 0:
        device = generator.device if generator is not None else torch.device('cpu')
        if float(torch.rand((), generator=generator, device=device)) < p:
            return True, 0
    return False, history_to_keep(history, config.context_dropout, generator)


def roll_frames(
    frames: torch.Tensor, probability: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Each sequence of a batch, with ``probability``, rolled by one random (rows, columns) offset,
    wrapping around: a transition of a toroidal world seen elsewhere on the torus.

    Args:
        frames: [B, F, C, H, W]; every frame of a sequence gets the sequence's offset.
        probability: share of the sequences rolled (0: ``frames`` itself, no random draw).
        generator: draws which sequences and the offsets (None: the global RNG).
    Returns:
        [B, F, C, H, W].
    """
    if probability <= 0:
        return frames
    b, h, w = frames.shape[0], frames.shape[-2], frames.shape[-1]
    device = generator.device if generator is not None else torch.device('cpu')
    rolled = (torch.rand(b, generator=generator, device=device) < probability).tolist()
    rows = torch.randint(0, h, (b,), generator=generator, device=device).tolist()
    cols = torch.randint(0, w, (b,), generator=generator, device=device).tolist()
    if not any(rolled):
        return frames
    return torch.stack(
        [
            torch.roll(seq, (dy, dx), dims=(-2, -1)) if roll else seq
            for seq, roll, dy, dx in zip(frames, rolled, rows, cols)
        ]
    )


def autoencoder_loss(
    autoencoder: MaskedAutoencoderViT,
    frames: torch.Tensor,
    mask_ratio: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Masked reconstruction MSE over all patches of a batch of frames.

    Args:
        autoencoder: the MAE.
        frames: [B, C, S, S] in [0, 1].
        mask_ratio: share of patches hidden from the encoder.
        generator: draws the random masks (None: the global RNG).
    Returns:
        0-d loss (with graph).
    """
    loss, _, _ = autoencoder(frames, mask_ratio, generator)
    return loss


def loss_weights(config: WorldModelConfig) -> tuple[float, float, float]:
    """(PRED_PATCH_W, PRED_LATENT_W, PRED_ACTION_W)."""
    return (config.pred_patch_w, config.pred_latent_w, config.pred_action_w)


def prediction_losses(
    autoencoder: MaskedAutoencoderViT,
    predictor: TransformerActionConditionedPredictor,
    out: PredictorOutput,
    targets: Transitions,
    weights: tuple[float, float, float],
    pred_patches: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The predictor's losses of a batch of predictions.

    The prediction is decoded with the decoder held fixed (the decoder learns from
    reconstruction only); see ``TransformerActionConditionedPredictor.forward_loss``.

    Args:
        autoencoder: decodes the predicted features.
        predictor: the level's predictor (owns the action classifier).
        out: the predictor's output for the executed actions (prediction [B, T, D]).
        targets: the transitions' targets.
        weights: (PRED_PATCH_W, PRED_LATENT_W, PRED_ACTION_W).
        pred_patches: ``autoencoder.decode_frozen(out.prediction)`` when the caller has it already.
    Returns:
        (decoded prediction [B, N, P], {'total', 'patch', 'latent', 'action', 'classifier'}).
    """
    if pred_patches is None:
        pred_patches = autoencoder.decode_frozen(out.prediction)
    parts = predictor.forward_loss(
        out,
        pred_patches,
        targets.last_patches,
        targets.next_patches,
        targets.next_latent,
        targets.next_frame_patches,
        targets.action_index,
        weights,
    )
    return pred_patches, parts


def joint_loss(
    prediction_total: torch.Tensor, reconstruction: torch.Tensor, weight: float
) -> torch.Tensor:
    """Prediction loss + JOINT_RECONSTRUCTION_WEIGHT * the current frame's unmasked reconstruction
    MSE. At weight 0 the term is left out: a zero gradient on the decoder would still move it
    through Adam's moments."""
    if weight > 0:
        return prediction_total + weight * reconstruction
    return prediction_total


# ---------------------------------------------------------------------------------------------
# arithmetic
# ---------------------------------------------------------------------------------------------

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
ONLINE_PRECISIONS = ('auto', 'fp32', 'bf16')  # fp16 needs loss scaling: offline only


def cpu_computes_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX-512 BF16 or AMX); elsewhere
    oneDNN emulates bf16, ~15x slower than fp32 (2026-11-26, AVX2)."""
    probes = ('_is_avx512_bf16_supported', '_is_amx_tile_supported')
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """The forward passes' arithmetic: 'fp32', 'bf16' or 'fp16' as given, or for 'auto' bf16 on
    a CPU that computes it natively and fp32 everywhere else. On such a CPU (2-core Zen 4, AVX-512
    BF16) a bf16 matrix product runs 2.5x as fast and a trained acted frame of the online learner
    takes 12-15% less time, learning as much per frame (docs/design.md); on a GPU the online
    learner is bound by kernel launches, not arithmetic (an H100: 19.4 acted frames/s in fp32,
    18.1 in bf16).

    Raises:
        ValueError: an unknown precision, or fp16 off CUDA.
    """
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, got {precision!r}')
    if precision == 'fp16' and device.type != 'cuda':
        raise ValueError('precision fp16 needs a CUDA device (use bf16 or fp32 on the CPU)')
    if precision == 'auto':
        return 'bf16' if device.type == 'cpu' and cpu_computes_bf16() else 'fp32'
    return precision


def _backward(loss: torch.Tensor, device: torch.device) -> None:
    """``loss.backward()`` outside any autocast region: the backward ops take the dtypes of their
    forward ops anyway, and autocast is meant for forward passes only."""
    with torch.autocast(device.type, enabled=False):
        loss.backward()


# ---------------------------------------------------------------------------------------------
# optimizers
# ---------------------------------------------------------------------------------------------


def make_adamw(
    params: Iterable[torch.nn.Parameter], lr: float, cfg: WorldModelConfig
) -> torch.optim.AdamW:
    """The AdamW of every parameter set, with the fused kernel: on CPU it is ~4x faster than the
    foreach implementation (which on CPU loops over per-tensor ops) for the same update."""
    return torch.optim.AdamW(
        params, lr=lr, betas=cfg.adam_betas, weight_decay=cfg.weight_decay, fused=True
    )


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load saved optimizer state (moments, step, lr) but keep this optimizer's kernel choice:
    ``load_state_dict`` would otherwise restore a checkpoint's foreach/fused flags."""
    kernel = [{k: g.get(k) for k in ('fused', 'foreach')} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flags in zip(optimizer.param_groups, kernel):
        group.update(flags)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate.

    Raises:
        ValueError: ``lr`` is not a finite number > 0.
    """
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f'learning rate must be a finite number > 0, got {lr!r}')
    for group in optimizer.param_groups:
        group['lr'] = float(lr)


def autoencoder_lr_factor(config: WorldModelConfig, steps_done: int) -> float:
    """The multiple of ``autoencoder_lr`` the autoencoder's next step takes (``steps_done``
    counts the steps taken so far, a resumed run's included): ``autoencoder_initial_lr_factor``
    at the first step, falling linearly to 1 over the first ``autoencoder_lr_decay_steps``
    steps, times a warm-up rising linearly from 0 over the first ``autoencoder_warmup_steps``
    (Adam's first steps at the full rate set a fresh autoencoder back). Both trainers apply it."""
    n = config.autoencoder_warmup_steps
    warmup = 1.0 if n <= 0 else min(1.0, (steps_done + 1) / n)
    d = config.autoencoder_lr_decay_steps
    fall = 0.0 if d <= 0 else max(0.0, 1.0 - steps_done / d)
    return warmup * (1.0 + (config.autoencoder_initial_lr_factor - 1.0) * fall)


def predictor_lr_factor(config: WorldModelConfig, steps_done: int) -> float:
    """The multiple of ``predictor_lr`` a predictor level's next step takes:
    ``predictor_initial_lr_factor`` at its first step, falling linearly to 1 over its first
    ``predictor_lr_decay_steps`` steps (``steps_done`` counts that level's steps so far, a
    resumed run's included), then 1. Both trainers apply it."""
    n = config.predictor_lr_decay_steps
    if n <= 0:
        return 1.0
    return 1.0 + (config.predictor_initial_lr_factor - 1.0) * max(0.0, 1.0 - steps_done / n)


def clipped_step(
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    clip_norm: float,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """One optimizer step on ``module``'s gradients clipped to ``clip_norm``.

    Args:
        scaler: the AMP loss scaler the gradients were scaled by: they are unscaled before
            clipping and the step goes through it (it skips steps with inf/NaN gradients).
    """
    if scaler is not None:
        scaler.unscale_(optimizer)
    clip_gradients(module, clip_norm)
    scaler.step(optimizer) if scaler is not None else optimizer.step()


# ---------------------------------------------------------------------------------------------
# the networks and their state
# ---------------------------------------------------------------------------------------------


def macro_index(primitives: Sequence[int], num_actions: int) -> int:
    """Lexicographic index of a primitive sequence (matches itertools.product order)."""
    idx = 0
    for p in primitives:
        idx = idx * num_actions + p
    return idx


class WeightAverage:
    """An exponential moving average of a module's parameters (buffers are not averaged).

    The weights of a network trained one transition at a time jump with each step: its held-out
    predictions swing from one evaluation to the next. Their average over the last ~1 / (1 -
    decay) steps predicts more steadily. The decay ramps up as ``(1 + n) / (10 + n)`` over the
    first updates, so that the average does not remember the initial weights for long.

    Args:
        module: the network whose parameters are averaged (the average starts as their copy).
        decay: the weight of the old average at each update, in (0, 1).
    """

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f'decay must be in (0, 1), got {decay!r}')
        self.decay = decay
        self.names = [name for name, _ in module.named_parameters()]
        self.params = [p for _, p in module.named_parameters()]
        self.average = [p.detach().clone() for p in self.params]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        """Move the average toward the module's current parameters."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, p in zip(self.average, self.params):
            avg.lerp_(p, 1.0 - decay)

    @torch.no_grad()
    def restart(self) -> None:
        """Start the average afresh at the module's current parameters (e.g. just loaded)."""
        for avg, p in zip(self.average, self.params):
            avg.copy_(p)
        self.updates = 0

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the module's parameters and the average, in place (twice: as before).

        Through ``.data``, so that autograd's version counters stay: the online learner keeps
        a graph built before an evaluation for the next training step, and by then the swap
        back has restored every value bit for bit."""
        for avg, p in zip(self.average, self.params):
            live = p.data.clone()
            p.data.copy_(avg)
            avg.copy_(live)

    def state_dict(self) -> dict[str, Any]:
        return {'average': dict(zip(self.names, self.average)), 'updates': self.updates}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load a saved average.

        Raises:
            KeyError, RuntimeError: the saved average is not of this module's parameters.
        """
        saved = state['average']
        if sorted(saved) != sorted(self.names):
            raise KeyError('the saved weight average is of other parameters')
        for name, avg in zip(self.names, self.average):
            avg.copy_(saved[name])
        self.updates = int(state['updates'])


def weight_average(module: torch.nn.Module, cfg: WorldModelConfig) -> WeightAverage | None:
    """The module's ``WeightAverage`` with the config's decay; None when averaging is off."""
    decay = cfg.weight_average_decay
    return WeightAverage(module, decay) if decay > 0 else None


class Level:
    """One hierarchy level: its predictor, its (macro-)action table, optimizer and counters.

    Args:
        index: the level (0: primitive actions; level k: macro_length**k primitive steps).
        cfg: sizes and learning rate.
        base_actions: [A, C] normalised primitive actions.
        device: where the predictor lives.
    """

    def __init__(
        self, index: int, cfg: WorldModelConfig, base_actions: torch.Tensor, device: torch.device
    ) -> None:
        self.index = index
        self.span = cfg.macro_length**index  # primitive steps per action
        num_base, c = base_actions.shape
        # lexicographic
        self.primitives = list(itertools.product(range(num_base), repeat=self.span))
        self.actions = torch.stack(
            [base_actions[list(p)].reshape(-1) for p in self.primitives]
        )  # [A_k, span*C]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed * 7919 + 101 * (index + 1))
            self.predictor = build_predictor(cfg, self.span * c, len(self.primitives), index)
        self.predictor.to(device).eval()  # inference and every training step run in eval mode
        self.optimizer = make_adamw(self.predictor.parameters(), cfg.predictor_lr, cfg)
        self.average = weight_average(self.predictor, cfg)
        self.training_steps = 0  # optimizer steps of the whole predictor
        self.version = 0  # bumped by every optimizer step (heads-only steps included)

    @property
    def num_actions(self) -> int:
        return len(self.primitives)


class WorldModelCore:
    """The autoencoder, the hierarchy levels, their optimizers and counters, and their steps.

    Args:
        config: model sizes, learning rates, loss weights, clipping.
        action_space_normalized: [A, C] float32 discrete actions normalised to [-1, 1].
        device: torch device of the networks.
        precision: the arithmetic of the forward passes, ``autocast()`` (see
            ``resolve_precision``; the weights, optimizer states and losses stay float32).
    Raises:
        ValueError: the action space is not a finite [A, C] array, or an unknown precision.
    """

    def __init__(
        self,
        config: WorldModelConfig,
        action_space_normalized: np.ndarray,
        device: str | torch.device = 'cpu',
        precision: str = 'fp32',
    ) -> None:
        acts = np.asarray(action_space_normalized, dtype=np.float32)
        if acts.ndim != 2 or acts.shape[0] < 1 or acts.shape[1] < 1 or not np.isfinite(acts).all():
            raise ValueError(
                f'action_space_normalized must be a finite [A, C] array, got shape {acts.shape}'
            )
        self.config = config
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)
        self.base_actions = torch.from_numpy(acts).to(self.device)  # [A, C]
        self.num_actions = acts.shape[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed * 7919 + 1)
            self.autoencoder = build_autoencoder(config)
        # no dropout in the encoder: eval == train numerically
        self.autoencoder.to(self.device).eval()
        self.ae_optimizer = make_adamw(self.autoencoder.parameters(), config.autoencoder_lr, config)
        self.ae_average = weight_average(self.autoencoder, config)
        self.levels: list[Level] = [self.new_level(0)]
        self.autoencoder_steps = 0  # autoencoder optimizer steps (masked + joint)
        self.ae_version = 0  # bumped by every change of the autoencoder's weights

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context of every forward pass: autocast to the core's precision (nothing for
        fp32). The steps below run their backward passes outside it themselves."""
        if self.precision == 'fp32':
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == 'bf16' else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def new_level(self, index: int) -> Level:
        """A fresh level ``index`` (not added to ``levels``)."""
        return Level(index, self.config, self.base_actions, self.device)

    def reset_levels(self, count: int) -> None:
        """Fresh levels 0..count-1 (before loading their weights)."""
        self.levels = [self.new_level(i) for i in range(count)]

    @property
    def weights(self) -> tuple[float, float, float]:
        """The predictor loss weights (PRED_PATCH_W, PRED_LATENT_W, PRED_ACTION_W)."""
        return loss_weights(self.config)

    # ------------------------------------------------------------------ steps

    def zero_grad(self, levels: Sequence[Level] = (), autoencoder: bool = True) -> None:
        """Drop the gradients of the autoencoder (if asked) and of ``levels``."""
        if autoencoder:
            self.ae_optimizer.zero_grad(set_to_none=True)
        for lvl in levels:
            lvl.optimizer.zero_grad(set_to_none=True)

    def autoencoder_step(
        self,
        frames: torch.Tensor,
        mask_ratio: float,
        generator: torch.Generator | None,
        grad_metrics: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """One masked-autoencoder optimizer step on a batch of frames.

        Args:
            frames: [B, C, S, S] in [0, 1].
            mask_ratio, generator: the masking.
            grad_metrics: when given, the autoencoder's gradient norms are added to it.
        Returns:
            the masked loss (0-d, detached).
        """
        self.zero_grad()
        with self.autocast():
            loss = autoencoder_loss(self.autoencoder, frames, mask_ratio, generator)
        _backward(loss, self.device)
        self.apply_gradients((), autoencoder=True, grad_metrics=grad_metrics)
        return loss.detach()

    def predictor_step(
        self,
        losses: Sequence[torch.Tensor],
        levels: Sequence[Level],
        autoencoder: bool,
        grad_metrics: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """One backward over the summed losses, then one optimizer step per parameter set.

        Args:
            losses: 0-d losses (e.g. one per level; a joint level-0 loss includes the
                reconstruction term).
            levels: the levels whose predictors the losses train.
            autoencoder: the losses also train the autoencoder (a joint step); False drops
                whatever gradient reached it.
            grad_metrics: see ``apply_gradients``.
        """
        self.zero_grad(levels)
        _backward(torch.stack(list(losses)).sum(), self.device)
        self.apply_gradients(levels, autoencoder, grad_metrics=grad_metrics)
        if not autoencoder:
            self.ae_optimizer.zero_grad(set_to_none=True)

    def apply_gradients(
        self,
        levels: Sequence[Level],
        autoencoder: bool,
        scaler: torch.amp.GradScaler | None = None,
        grad_metrics: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Clip each parameter set to GRAD_CLIP_NORM and step its optimizer (levels first, then
        the autoencoder), counting the steps.

        Args:
            levels: levels whose predictors step.
            autoencoder: whether the autoencoder steps.
            scaler: an AMP loss scaler the gradients were scaled by (unscaled before clipping).
            grad_metrics: when given, filled with the gradient norms (before clipping) of the
                level-0 predictor and of the autoencoder, the action gradient ratio, and the
                level-0 update-to-weight ratios and learning rate.
        """
        cfg = self.config
        level0 = next((lvl for lvl in levels if lvl.index == 0), None)
        before = None
        if grad_metrics is not None:
            if level0 is not None:
                named0 = list(level0.predictor.named_parameters())
                grad_metrics.update(M.grad_norm_stats(named0, 'predictor'))
                grad_metrics['diagnostics/action_grad_ratio'] = D.action_grad_ratio(named0)
            if autoencoder:
                grad_metrics.update(
                    M.grad_norm_stats(self.autoencoder.named_parameters(), 'autoencoder')
                )
            if level0 is not None:
                before = M.snapshot(p for _, p in named0)
        for lvl in levels:
            clipped_step(lvl.predictor, lvl.optimizer, cfg.grad_clip_norm, scaler)
            lvl.training_steps += 1
            lvl.version += 1
            if lvl.average is not None:
                lvl.average.update()
        if autoencoder:
            clipped_step(self.autoencoder, self.ae_optimizer, cfg.grad_clip_norm, scaler)
            self.autoencoder_steps += 1
            self.ae_version += 1
            if self.ae_average is not None:
                self.ae_average.update()
        self._weights_changed()
        if before is not None:
            grad_metrics.update(M.update_ratio_stats(named0, before, 'predictor'))
            grad_metrics['predictor_lr'] = torch.tensor(level0.optimizer.param_groups[0]['lr'])

    def head_step(
        self,
        level: Level,
        features: torch.Tensor,
        base: torch.Tensor,
        actions: torch.Tensor,
        target: torch.Tensor,
    ) -> None:
        """One optimizer step of a level's ensemble heads alone: each head's latent MSE on stored
        trunk features (CLS excluded); no gradient reaches the trunk.

        Args:
            level: the level.
            features: [B, T, D] normalised query outputs the heads read.
            base: [B, T, D] the delta-latent base (the current frame's features).
            actions: [B, C] the executed actions.
            target: [B, T, D] the next frame's features.
        """
        level.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            out = level.predictor.heads_from_features(features, base, actions)
            heads = out.head_predictions[:, :, 1:]
            loss = F.mse_loss(heads, target[None, :, 1:].expand_as(heads))
        _backward(loss, self.device)
        level.optimizer.step()
        self._weights_changed()
        level.version += 1
        if level.average is not None:
            level.average.update()

    def _weights_changed(self) -> None:
        """After weights changed in place: autocast keeps its low-precision copies of the weights
        for its whole region (an online step runs inside the frame's region), and would
        otherwise compute the rest of the frame with the weights from before the step."""
        if self.precision != 'fp32':
            torch.clear_autocast_cache()

    @contextlib.contextmanager
    def averaged_weights(self) -> Iterator[bool]:
        """Within the block the networks hold their weight averages (``weight_average_decay``),
        e.g. to evaluate them; yields whether they do (False: averaging is off, nothing
        changes). Do not train inside it."""
        averages = [a for a in [self.ae_average, *(lvl.average for lvl in self.levels)] if a]
        for a in averages:
            a.swap()
        self._weights_changed()
        try:
            yield bool(averages)
        finally:
            for a in averages:
                a.swap()
            self._weights_changed()


__all__ = [
    'ONLINE_PRECISIONS',
    'PRECISIONS',
    'WorldModelCore',
    'Level',
    'WeightAverage',
    'Transitions',
    'autoencoder_loss',
    'prediction_losses',
    'joint_loss',
    'loss_weights',
    'draw_mask_ratio',
    'make_adamw',
    'load_optimizer_state',
    'cpu_computes_bf16',
    'resolve_precision',
    'set_lr',
    'macro_index',
]
