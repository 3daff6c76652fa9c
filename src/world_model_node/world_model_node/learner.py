"""The online learner: one frame at a time, no ROS.

The node (or a benchmark, a replay trainer, a notebook) drives it like this::

    learner = OnlineLearner(config, action_space.normalized(), device='cpu',
                            checkpoint_dir='saved/checkpoints/toroidal_dot')
    result = learner.observe(frame)            # uint8 [H, W, 3]
    while not result.gate_open:                # no new frame comes while the robot waits:
        result = learner.train_gate()          #   one more autoencoder step on the same frame
    action = selector(result.scores, result.labels)
    learner.record_action(action)              # the executed primitive action index
                                               #   (trainable=False: observed, never trained on)
    ...
    learner.save()                             # on shutdown (and every 500 predictor steps)

One ``observe`` of a frame f_t after the action a_{t-1}:

1. encode f_t -> features [1, T, D] and the unmasked reconstruction MSE (the gate).
2. gate closed (MSE above ``config.gate_threshold``: RECONSTRUCTION_THRESHOLD, or a share of
   f_t's pixel variance when that is higher): one masked autoencoder step; no scores.
3. gate open: the fresh prediction of f_t, made at t-1 from the context ending with (f_{t-1},
   a_{t-1}), is compared with f_t; each level whose prediction missed (MSE above
   ``config.miss_threshold``: PREDICTION_THRESHOLD, or a share of f_t's pixel variance when that
   is lower) takes one training step. Level 0 trains jointly with the autoencoder (predictor
   losses + the reconstruction MSE, one backward, one step per optimizer); higher levels train
   their own predictor on cached features. A level that is accurate does not train, but its
   ensemble heads still take one cheap step on the transition (on stored trunk features), so
   that what has been seen becomes certain. A transition recorded as not trainable (a train
   filter) is checked and its error measured, but takes neither step; a macro-transition trains
   only when all its primitive transitions may.
4. score every candidate action of every level: the context
   ``[f_{t-3}, a_{t-3}, f_{t-2}, a_{t-2}, f_{t-1}, a_{t-1}, f_t, a_candidate, queries]`` is run
   once, then one predictor pass per candidate at level 0 (kept with graph for the next training
   step) and ONE batched pass at the levels above; the score is the entropy of the ensemble's
   predictive distribution.

Cost structure (why it is fast): history frames are never re-encoded (their features are
cached); the history part of a context is run once without gradient (a stop-gradient memory,
as in Transformer-XL) and its keys/values are shared by all candidates; the fresh prediction
used for the training decision is the one computed while scoring, so a frame whose prediction
is already good costs no predictor backward, and when it missed the training step backpropagates
through that same pass (level 0 scores each candidate in a pass of its own, with graph: a backward
through a batched pass would cost every candidate's); metrics are tensor ops every LOG_INTERVAL
steps.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from devbot.action_space import candidate_label

from . import metrics as M
from . import visualization as V
from .checkpoint import CheckpointManager, learner_components, restore_learner
from .config import WorldModelConfig
from .core import (
    Level,
    Transitions,
    WorldModelCore,
    autoencoder_lr_factor,
    draw_mask_ratio,
    draw_training_context,
    joint_loss,
    macro_index,
    prediction_losses,
    predictor_lr_factor,
    roll_frames,
    set_lr,
)
from .models import (
    MaskedAutoencoderViT,
    PredictorContext,
    PredictorOutput,
    ensemble_entropy,
    scale_gradient,
)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# public result types
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionLabel:
    """What a score is about."""

    level: int  # hierarchy level (0 = primitive actions)
    index: int  # index of the action within its level
    # the primitive action indices it executes, in order (length macro_length**level)
    primitives: tuple[int, ...]

    def __str__(self) -> str:
        return candidate_label(self.level, self.primitives)


@dataclass
class ObserveResult:
    """What one ``observe`` / ``train_gate`` call did and found."""

    step: int  # learner step counter (frames observed + gate retries)
    gate_open: bool  # reconstruction good enough to act (scores published)
    reconstruction_loss: float  # unmasked reconstruction MSE of the frame (pixels in [0, 1])
    consecutive_autoencoder_iterations: int  # autoencoder steps in the current/last closed streak
    # acting although the reconstruction is above the threshold (it stopped improving for
    # GATE_PATIENCE iterations)
    gate_released: bool = False
    autoencoder_loss: float | None = None  # masked training loss when the gate was closed
    mask_ratio: float | None = None  # its mask ratio
    scores: np.ndarray | None = None  # [K] float32 uncertainty (entropy, nats/feature)
    labels: list[ActionLabel] = field(default_factory=list)  # parallel to scores: level 0 first
    prediction_errors: dict[int, float] = field(default_factory=dict)  # level -> fresh MSE
    explained_variance: float | None = None  # level-0 fresh prediction, patch space
    fresh_action: int | None = None  # the level-0 action that fresh prediction was made for
    trained_levels: list[int] = field(default_factory=list)  # levels that took a training step
    # levels whose transition was checked but may not train (``record_action(trainable=False)``)
    untrainable_levels: list[int] = field(default_factory=list)
    # level -> total/patch/latent/action/classifier
    predictor_losses: dict[int, dict[str, float]] = field(default_factory=dict)
    num_levels: int = 1  # levels that exist after this step
    new_level: int | None = None  # a level created in this step
    timings: dict[str, float] = field(
        default_factory=dict
    )  # s: encode, gate, train, score, save, total
    metrics: dict[str, float] | None = None  # the metrics logged in this step, if any

    def level_scores(self, level: int) -> tuple[np.ndarray, list[ActionLabel]]:
        """Scores and labels of one level."""
        if self.scores is None:
            return np.zeros(0, np.float32), []
        idx = [i for i, lab in enumerate(self.labels) if lab.level == level]
        return self.scores[idx], [self.labels[i] for i in idx]

    def most_uncertain(self, level: int | None = None) -> ActionLabel | None:
        """The label with the highest uncertainty (of one level, or of all)."""
        if self.scores is None:
            return None
        scores, labels = (self.scores, self.labels) if level is None else self.level_scores(level)
        return labels[int(np.argmax(scores))] if len(labels) else None


# ---------------------------------------------------------------------------------------------
# internal state
# ---------------------------------------------------------------------------------------------


@dataclass
class HistoryEntry:
    """One observed frame of the learner's memory."""

    frame: torch.Tensor  # uint8 [S, S, 3] on CPU (resized to img_size)
    features: torch.Tensor  # [T, D] on device, detached: features from the latest encoding
    step: int  # learner step that observed it
    action: int = -1  # primitive action executed after it (-1: none)
    checked: bool = False  # gate opened on this frame (fresh check + scoring done)
    # the transition (this frame, action, next frame) may train the predictors
    trainable: bool = True


@dataclass
class EncodedFrame:
    """A frame encoded with graph: the features and reconstruction the steps train on."""

    x: torch.Tensor  # [1, C, S, S] in [0, 1]
    z: torch.Tensor  # [1, T, D] features (with graph)
    recon: torch.Tensor  # [1, N, P] reconstruction (with graph)
    target: torch.Tensor  # [1, N, P] the frame's patches
    loss: torch.Tensor  # 0-d reconstruction MSE (with graph)
    variance: float  # the frame's pixel variance: what the gate and the miss thresholds scale with


@dataclass
class _Pending:
    """The level-0 scoring pass of the last gate-open frame, reused to train on the next frame."""

    entry_step: int
    ctx: PredictorContext  # keys/values; the current-frame part carries the graph
    enc: EncodedFrame  # encoding of that frame (graph to the autoencoder)
    outputs: list[PredictorOutput]  # per candidate, [1, ...] with graph to ctx and the predictor
    decoded: list[torch.Tensor]  # per candidate [1, N, P]: decode_frozen of its prediction (graph)
    pred_patches: torch.Tensor  # [A, N, P] the decoded predictions, detached
    features: torch.Tensor  # [A, T, D] trunk outputs the ensemble heads read, detached
    ae_version: int
    pred_version: int


@dataclass
class ScoringPass:
    """One scoring pass over every candidate of every level. The learner keeps the recent ones
    until the frames their predictions are about have been observed: the live panel compares
    them with those frames."""

    entry_step: int  # step of the history entry (frame) that was scored
    pred_patches: list[torch.Tensor | None]  # per level [A_k, N, P] predictions (None: dropped)
    scores: list[np.ndarray]  # per level [A_k] the scores the selector saw
    labels: list[ActionLabel]  # all levels, parallel to the concatenated scores


class LevelStats:
    """What the online policy tracks per hierarchy level (next to the core's ``Level``).

    Args:
        num_actions: the level's (macro-)actions.
        cfg: INITIAL_RESIDUAL and RESIDUAL_DECAY.
        device: where the residuals live.
    """

    def __init__(self, num_actions: int, cfg: WorldModelConfig, device: torch.device) -> None:
        # per action: EMA of the latent MSE of its fresh predictions, the residual part of the
        # predictive variance (untried actions start high)
        self.residual = torch.full((num_actions,), float(cfg.initial_residual), device=device)
        self.residual_decay = float(cfg.residual_decay)
        self.consecutive_accurate = 0  # fresh predictions in a row that did not miss
        self.last_error: float | None = None
        self.last_losses: dict[str, torch.Tensor] = {}

    def observe_residual(self, action: int, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Fold the error of a fresh prediction [1, T, D] of ``action`` vs the target features
        [1, T, D] (CLS excluded) into that action's residual."""
        err = F.mse_loss(prediction.detach()[:, 1:], target.detach()[:, 1:])
        self.residual[action] = (
            self.residual_decay * self.residual[action] + (1 - self.residual_decay) * err
        )


@dataclass
class _FreshCheck:
    """A level's fresh-prediction check of the frame just observed."""

    level: Level
    error: float  # patch MSE of the fresh prediction of the executed (macro-)action
    # the training loss (with graph) when the prediction missed and the transition may train
    loss: torch.Tensor | None
    trainable: bool  # every primitive transition of the checked (macro-)transition may train
    joint: bool  # the loss also trains the autoencoder (level 0)
    head_input: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # features, base, action
    target: torch.Tensor  # [1, T, D] the observed frame's features


# ---------------------------------------------------------------------------------------------
# the learner
# ---------------------------------------------------------------------------------------------


class OnlineLearner:
    """Online world-model learner over a discrete action space.

    The networks, their optimizers and training steps are a ``WorldModelCore`` (``core``); this
    class adds the online policy: the quality gate, the fresh-prediction check, the heads'
    calibration, scoring, and the growth of the hierarchy. Persistence is in ``checkpoint``,
    pictures in ``visualization``, logged metrics in ``metrics``.

    Args:
        config: model and learning parameters.
        action_space_normalized: [A, C] float32 discrete actions normalised to [-1, 1]
            (``devbot.action_space.ActionSpace.normalized()``).
        device: torch device for the networks ('cpu', 'cuda', ...).
        precision: the arithmetic of the learner's forward passes: fp32, bf16, or auto (bf16 on
            a CPU that computes it natively, else fp32; ``core.resolve_precision``). The
            weights, optimizer states, losses and checkpoints are float32 in every case. (fp16
            is for the offline trainer, which scales its losses; online steps do not.)
        checkpoint_dir: the robot's checkpoint directory; loaded at start if it holds a
            checkpoint, saved every CHECKPOINT_SAVE_INTERVAL level-0 predictor steps, at least
            every CHECKPOINT_PERIOD_S seconds in every phase (gate closed included; both written
            by a background thread, see ``_maybe_save``) and by ``save()``. None: no
            persistence.
        autoencoder_lr, predictor_lr: explicit learning rates (the autoencoder's; every
            predictor level's, also of levels created later). On a resume they replace the saved
            rates, the optimizer moments kept, and ``lr_changes`` says what changed. None: the
            config's value for a fresh start, the saved value when resuming.
        wandb_project: enables wandb logging (offline when there is no API key); None: off.
        wandb_dir: wandb's directory (default $WANDB_DIR / cwd).
        run_name: wandb run name.
    """

    def __init__(
        self,
        config: WorldModelConfig,
        action_space_normalized: np.ndarray,
        device: str | torch.device = 'cpu',
        precision: str = 'fp32',
        checkpoint_dir: str | os.PathLike | None = None,
        autoencoder_lr: float | None = None,
        predictor_lr: float | None = None,
        wandb_project: str | None = None,
        wandb_dir: str | os.PathLike | None = None,
        run_name: str | None = None,
    ) -> None:
        self.core = WorldModelCore(config, action_space_normalized, device, precision)
        self.device = self.core.device
        self.stats: list[LevelStats] = [self._new_stats(lvl) for lvl in self.core.levels]
        # on the CPU whatever the device: its state is then the same kind everywhere, so a
        # checkpoint written on a GPU resumes on the CPU (a CUDA generator's state does not fit)
        self.generator = torch.Generator()
        self.generator.manual_seed(config.seed)

        self.history: deque[HistoryEntry] = deque(maxlen=config.max_history_size)
        self.step = 0  # observe + train_gate calls
        self.consecutive_autoencoder_iterations = 0
        self.gate_releases = 0  # gate-closed streaks ended by GATE_PATIENCE
        self._gate_best = math.inf  # best reconstruction MSE of the current closed streak
        self._gate_stalled = 0  # closed iterations since it last improved by 2%
        self._gate_opened = False  # the gate has opened in this process
        self.generation = 0  # checkpoint generation counter
        self.clock: Callable[[], float] = time.monotonic  # the checkpoint period's clock
        self._save_due = False  # a periodic save is due and waits for the writer to be free
        self._pending: _Pending | None = None
        self._last_result: ObserveResult | None = None
        self._grad_metrics: dict[str, torch.Tensor] = {}
        # the latest state, read by the logged metrics and the pictures
        self.latest: EncodedFrame | None = None  # the latest frame's encoding
        # the recent scoring passes, newest last: a level-k prediction is about the frame
        # macro_length**k entries later, and is dropped once that frame has been seen
        self.scoring_passes: deque[ScoringPass] = deque(
            maxlen=config.macro_length ** (config.max_levels - 1) + 1
        )
        self.last_fresh: dict[str, Any] | None = None  # last level-0 fresh prediction vs truth
        self.action_times: deque[float] = deque(maxlen=1000)  # when actions were recorded
        self.last_reconstruction_loss = torch.zeros((), device=self.device)  # unmasked MSE
        self.last_autoencoder_loss: torch.Tensor | None = None  # masked loss of the last AE step
        self.last_mask_ratio: float | None = None  # and its mask ratio

        self._lr_override = (autoencoder_lr, predictor_lr)
        # the saved learning rates the last load() replaced, e.g. 'autoencoder_lr 0.0001 (saved
        # 0.0003)'
        self.lr_changes: list[str] = []
        self.checkpoints = CheckpointManager(checkpoint_dir) if checkpoint_dir is not None else None
        if not (self.checkpoints is not None and self.checkpoints.exists() and self.load()):
            if autoencoder_lr is not None:
                set_lr(self.ae_optimizer, autoencoder_lr)
            if predictor_lr is not None:
                for lvl in self.levels:
                    set_lr(lvl.optimizer, predictor_lr)
        self._last_save_time = self.clock()
        self.logger = M.WandbLogger(
            wandb_project, config.to_dict(), run_name=run_name, directory=wandb_dir
        )

    # ------------------------------------------------------------------ the core's parts

    @property
    def config(self) -> WorldModelConfig:
        return self.core.config

    @config.setter
    def config(self, value: WorldModelConfig) -> None:
        self.core.config = value

    @property
    def autoencoder(self) -> MaskedAutoencoderViT:
        return self.core.autoencoder

    @property
    def ae_optimizer(self) -> torch.optim.Optimizer:
        return self.core.ae_optimizer

    @property
    def levels(self) -> list[Level]:
        return self.core.levels

    @property
    def base_actions(self) -> torch.Tensor:
        """[A, C] normalised primitive actions."""
        return self.core.base_actions

    @property
    def num_actions(self) -> int:
        return self.core.num_actions

    @property
    def autoencoder_steps(self) -> int:
        """Autoencoder optimizer steps (masked + joint)."""
        return self.core.autoencoder_steps

    @autoencoder_steps.setter
    def autoencoder_steps(self, value: int) -> None:
        self.core.autoencoder_steps = int(value)

    @property
    def last_scoring(self) -> ScoringPass | None:
        """The latest scoring pass (None before the gate first opened)."""
        return self.scoring_passes[-1] if self.scoring_passes else None

    def _new_stats(self, level: Level) -> LevelStats:
        return LevelStats(level.num_actions, self.config, self.device)

    # =========================================================================================
    # public API
    # =========================================================================================

    def observe(self, frame: np.ndarray) -> ObserveResult:
        """Take a new camera frame (uint8 [H, W, 3], RGB; resized to img_size if needed), learn from
        it and, when the gate is open, score every candidate action of every level."""
        t0 = time.perf_counter()
        x, frame_u8 = self._prepare(frame)
        self.step += 1
        with self.core.autocast():
            enc = self._encode(x)
            self.history.append(HistoryEntry(frame_u8, enc.z.detach()[0], self.step))
            self.latest = enc
            timings = {'encode': time.perf_counter() - t0}
            return self._process(enc, timings, t0)

    def train_gate(self) -> ObserveResult:
        """No new frame: one more autoencoder step on the latest frame, then re-check the gate.

        The node calls this while the gate is closed and the (lockstep) robot sends no new frame.
        If the gate is already open on the latest frame this returns that result and does nothing.
        """
        if not self.history:
            raise RuntimeError('train_gate() before any observe()')
        if self.history[-1].checked and self._last_result is not None:
            return self._last_result
        t0 = time.perf_counter()
        self.step += 1
        x = self.latest.x if self.latest is not None else self._frame_tensor(self.history[-1].frame)
        with self.core.autocast():
            enc = self._encode(x)
            self.history[-1].features = enc.z.detach()[0]
            self.latest = enc
            timings = {'encode': time.perf_counter() - t0}
            return self._process(enc, timings, t0)

    def record_action(self, action_index: int, trainable: bool = True) -> None:
        """The primitive action (index into the action space) executed after the latest frame.

        Args:
            action_index: the executed action.
            trainable: whether the transition it starts (latest frame, action, next frame) may
                train the predictors. False: it is observed (context, prediction error, residual)
                but no predictor or head step learns from it; a macro-transition trains only when
                all its primitive transitions may.
        """
        if (
            isinstance(action_index, bool)
            or not isinstance(action_index, (int, np.integer))
            or not 0 <= action_index < self.num_actions
        ):
            raise ValueError(
                f'action_index must be an integer in [0, {self.num_actions}), got {action_index!r}'
            )
        if not self.history:
            raise RuntimeError('record_action() before any observe()')
        entry = self.history[-1]
        if entry.action >= 0:
            raise RuntimeError(
                f'an action ({entry.action}) is already recorded for the latest frame '
                f'(step {entry.step}); observe the next frame first'
            )
        entry.action = int(action_index)
        entry.trainable = bool(trainable)
        self.action_times.append(time.perf_counter())

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def labels(self) -> list[ActionLabel]:
        """Labels of all candidate actions, in score order (level 0 first)."""
        return [
            ActionLabel(lvl.index, i, p)
            for lvl in self.levels
            for i, p in enumerate(lvl.primitives)
        ]

    # ------------------------------------------------------------------ pictures

    def current_frame(self) -> np.ndarray | None:
        """The latest frame as the model sees it, uint8 [S, S, 3]."""
        return None if not self.history else self.history[-1].frame.numpy().copy()

    def reconstruction_image(self) -> np.ndarray | None:
        """The autoencoder's reconstruction of the latest frame, uint8 [S, S, 3]."""
        if self.latest is None:
            return None
        return V.patches_to_images(self.autoencoder, self.latest.recon)[0]

    def predicted_frames(self) -> tuple[np.ndarray, list[ActionLabel]] | None:
        """The last scoring pass: the predicted next frame for every candidate of every level,
        uint8 [K, S, S, 3], with labels parallel to the scores."""
        if self.last_scoring is None:
            return None
        patches = torch.cat(self.last_scoring.pred_patches, dim=0)
        return V.patches_to_images(self.autoencoder, patches), list(self.last_scoring.labels)

    def last_prediction(self) -> dict[str, Any] | None:
        """The last level-0 fresh prediction of an observed frame: {'image': uint8 [S, S, 3],
        'error': MSE, 'action': executed action, 'step': step of the predicted frame}."""
        if self.last_fresh is None:
            return None
        out = dict(self.last_fresh)
        out['image'] = V.patches_to_images(self.autoencoder, out.pop('patches')[None])[0]
        return out

    def visualization_panel(self) -> np.ndarray | None:
        """The live panel (``visualization.render_panel`` of ``panel_content``): uint8
        [H, W, 3] RGB, or None before the first frame."""
        content = self.panel_content()
        return None if content is None else V.render_panel(content)

    @torch.no_grad()
    def panel_content(self) -> V.PanelContent | None:
        """What the live panel shows: the latest frame, its reconstruction and MSE, and each
        candidate's prediction of that frame (level k's made macro_length**k frames earlier, when
        that frame was scored) with its MSE against the frame, the score the selector saw, the
        executed (macro-)action and the most uncertain candidate of each level. At most
        ``visualization.MAX_CANDIDATES`` candidates: all of level 0, then per higher level the
        executed, the most uncertain and the next most uncertain ones. None before any frame."""
        if not self.history:
            return None
        n = len(self.history)
        latest = self.latest
        if latest is None:  # resumed: no encoding of the latest frame yet
            target = self.autoencoder.patchify(self._frame_tensor(self.history[-1].frame))
        else:
            target = latest.target
        passes = {p.entry_step: p for p in self.scoring_passes}
        rows = []  # (level, index, prediction [N, P] or None, error, score, executed)
        for lvl in self.levels:
            e = n - 1 - lvl.span
            found = passes.get(self.history[e].step) if e >= 0 else None
            if found is not None and lvl.index < len(found.pred_patches):
                patches = found.pred_patches[lvl.index]
            else:  # that frame was not scored, or the level is younger than the pass
                patches = None
            if patches is None:
                rows += [(lvl.index, i, None, None, None, False) for i in range(lvl.num_actions)]
                continue
            errors = (patches - target).square().mean(dim=(1, 2)).float().cpu().numpy()
            macro = [self.history[e + j].action for j in range(lvl.span)]
            executed = macro_index(macro, self.num_actions) if min(macro) >= 0 else -1
            scores = found.scores[lvl.index]
            rows += [
                (lvl.index, i, patches[i], float(errors[i]), float(scores[i]), i == executed)
                for i in range(lvl.num_actions)
            ]
        most = {}  # level -> index of its most uncertain candidate
        for level, i, _, _, score, _ in rows:
            if score is not None and (level not in most or score > most[level][1]):
                most[level] = (i, score)
        shown = _panel_candidates(rows, {k: v[0] for k, v in most.items()}, V.MAX_CANDIDATES)
        labels = self.labels()
        offsets = np.cumsum([0] + [lvl.num_actions for lvl in self.levels])
        predicted = [row[2] for row in shown if row[2] is not None]
        images = iter(
            V.patches_to_images(self.autoencoder, torch.stack(predicted)) if predicted else []
        )  # one conversion and host transfer for all shown predictions
        tiles = []
        for level, i, patches, error, score, executed in shown:
            image = None if patches is None else next(images)
            tiles.append(
                V.CandidateTile(
                    str(labels[offsets[level] + i]),
                    image,
                    error,
                    score,
                    executed,
                    level in most and most[level][0] == i,
                )
            )
        before = self.history[-2].action if n > 1 else -1
        result = self._last_result
        return V.PanelContent(
            step=self.step,
            gate_open=bool(result is not None and result.gate_open),
            level_spans=tuple(lvl.span for lvl in self.levels),
            current=self.current_frame(),
            reconstruction=self.reconstruction_image(),
            reconstruction_loss=None if latest is None else float(latest.loss),
            reconstruction_threshold=float(
                self.config.reconstruction_threshold
                if latest is None
                else self.config.gate_threshold(latest.variance)
            ),
            previous_action=candidate_label(0, (before,)) if before >= 0 else None,
            candidates=tiles,
            total_candidates=len(rows),
        )

    @torch.no_grad()
    def attention_maps(self, level: int = 0) -> dict[str, Any] | None:
        """Last-layer attention of the latest context for every candidate of ``level``.

        Returns {'attention': [A, H, 1+T, L] tensor (rows: candidate action token then the T
        future queries; keys: the whole sequence), 'key_types': [L] token types,
        'query_rows': [1+T] bool (True for future queries), 'metrics': APA/ALF/TTAR/RI@16/entropy
        of candidate 0}, or None before the first gate-open frame."""
        if not self.history or not self.history[-1].checked or level >= len(self.levels):
            return None
        lvl = self.levels[level]
        ctx = self._context(lvl, len(self.history) - 1, grad=False)
        if ctx is None:
            return None
        return V.attention_maps(lvl.predictor, ctx, lvl.actions)

    # ------------------------------------------------------------------ persistence

    def save(self, background: bool = False) -> int | None:
        """Write a checkpoint generation (no-op without checkpoint_dir); returns the generation.

        Args:
            background: snapshot the state here and write the files on the checkpoint writer
                thread (``CheckpointManager.save_in_background``); returns None without saving
                while the previous background write is still in flight. False: wait for any
                write in flight, then write on this thread.
        """
        if self.checkpoints is None:
            return None
        if background and self.checkpoints.writing:
            return None
        comps = learner_components(self)
        self.generation += 1
        if background:
            self.checkpoints.save_in_background(comps, self.generation)
        else:
            self.checkpoints.save(comps, self.generation)
        self._save_due = False
        self._last_save_time = self.clock()
        log.info(
            'checkpoint generation %d %s %s',
            self.generation,
            'being written to' if background else 'saved to',
            self.checkpoints.directory,
        )
        return self.generation

    def load(self) -> bool:
        """Load the newest consistent checkpoint generation; False when there is none."""
        if self.checkpoints is None:
            return False
        self.checkpoints.wait()
        comps = self.checkpoints.load(map_location=self.device)
        if comps is None:
            return False
        restored = restore_learner(self.core, comps, self.checkpoints.directory, *self._lr_override)
        self.lr_changes = restored.lr_changes
        self.stats = [self._new_stats(lvl) for lvl in self.levels]
        for stats, saved in zip(self.stats, restored.levels):
            stats.consecutive_accurate = int(saved['consecutive_accurate'])
            stats.last_error = None if saved['last_error'] is None else float(saved['last_error'])
            if 'residual' in saved:  # checkpoints before the residual: untried-level values
                stats.residual.copy_(saved['residual'].to(self.device))
        self.step = restored.step
        self.consecutive_autoencoder_iterations = restored.consecutive_autoencoder_iterations
        self.generation = restored.generation
        self.generator.set_state(restored.generator_state)
        self.history.clear()
        self.history.extend(
            HistoryEntry(frame, features.to(self.device), step, action, checked, trainable)
            for frame, features, step, action, checked, trainable in restored.history
        )
        self._pending = None
        self.latest = None
        self._last_result = None
        log.info(
            'resumed generation %d from %s: step %d, %d levels, %d history entries',
            self.generation,
            self.checkpoints.directory,
            self.step,
            len(self.levels),
            len(self.history),
        )
        if self.lr_changes:
            log.info('resumed with %s', ', '.join(self.lr_changes))
        return True

    def close(self) -> None:
        """Finish the background checkpoint write in flight, save the final generation (if
        persistent) and finish the wandb run."""
        if self.checkpoints is not None:
            self.save()  # waits for the write in flight first
        self.logger.close()

    # =========================================================================================
    # one step
    # =========================================================================================

    def _process(self, enc: EncodedFrame, timings: dict[str, float], t0: float) -> ObserveResult:
        cfg = self.config
        recon_loss = float(enc.loss.detach())
        gate_threshold = cfg.gate_threshold(enc.variance)
        self.last_reconstruction_loss = enc.loss.detach()
        entry = self.history[-1]

        # ---- 2. quality gate
        released = False
        if recon_loss > gate_threshold:
            if recon_loss < 0.98 * self._gate_best:
                self._gate_best, self._gate_stalled = recon_loss, 0
            else:
                self._gate_stalled += 1
            # never before the gate has first opened: from scratch the loss plateaus for hundreds
            # of iterations (background learned, dot not yet) and that is no deadlock
            opened_before = self._gate_opened or any(lvl.training_steps for lvl in self.levels)
            released = opened_before and 0 < cfg.gate_patience <= self._gate_stalled
            if released:
                self.gate_releases += 1
                log.warning(
                    'reconstruction MSE %.5f has not improved for %d autoencoder iterations: '
                    'acting on this frame anyway (threshold %g)',
                    recon_loss,
                    self._gate_stalled,
                    gate_threshold,
                )
        if recon_loss > gate_threshold and not released:
            t1 = time.perf_counter()
            ae_loss, ratio = self._autoencoder_step(enc.x)
            self.consecutive_autoencoder_iterations += 1
            timings['gate'] = time.perf_counter() - t1
            timings['total'] = time.perf_counter() - t0
            result = ObserveResult(
                self.step,
                False,
                recon_loss,
                self.consecutive_autoencoder_iterations,
                autoencoder_loss=float(ae_loss),
                mask_ratio=ratio,
                num_levels=len(self.levels),
                timings=timings,
            )
            result.metrics = self._maybe_log()
            self._maybe_save(False, timings)
            self._last_result = result
            return result
        timings['gate'] = 0.0
        streak = self.consecutive_autoencoder_iterations
        self.consecutive_autoencoder_iterations = 0
        self._gate_best, self._gate_stalled = math.inf, 0
        self._gate_opened = True

        # ---- 3. fresh predictions and gated training
        t1 = time.perf_counter()
        result = ObserveResult(
            self.step, True, recon_loss, streak, gate_released=released, num_levels=len(self.levels)
        )
        ae_changed = self._check_and_train(result)
        if ae_changed:  # the features must come from the updated encoder
            enc = self._encode(enc.x)
            entry.features = enc.z.detach()[0]
            self.latest = enc
        timings['train'] = time.perf_counter() - t1

        # ---- 4. score every candidate of every level
        t1 = time.perf_counter()
        result.scores, result.labels = self._score(enc)
        entry.checked = True
        timings['score'] = time.perf_counter() - t1
        result.new_level = self._maybe_add_level()
        result.num_levels = len(self.levels)
        timings['total'] = time.perf_counter() - t0
        result.timings = timings
        result.metrics = self._maybe_log()
        self._maybe_save(0 in result.trained_levels, timings)
        self._last_result = result
        return result

    def _maybe_save(self, trained_level0: bool, timings: dict[str, float]) -> None:
        """Save in the background when due: every CHECKPOINT_SAVE_INTERVAL level-0 predictor
        steps, and CHECKPOINT_PERIOD_S seconds after the last save whatever the phase (a run
        killed at any moment loses at most one period). A save that falls due while the previous
        write is still in flight stays due and starts at the first iteration after it: never
        dropped, and the loop never waits for the disk. The seconds the loop spent on it (the
        snapshot) go into ``timings['save']`` and ``timings['total']``."""
        if self.checkpoints is None:
            return
        cfg = self.config
        if trained_level0 and self.levels[0].training_steps % cfg.checkpoint_save_interval == 0:
            self._save_due = True
        period = cfg.checkpoint_period_s
        if period > 0 and self.clock() - self._last_save_time >= period:
            self._save_due = True
        if self._save_due:
            t0 = time.perf_counter()
            if self.save(background=True) is not None:
                timings['save'] = time.perf_counter() - t0
                timings['total'] += timings['save']

    # ------------------------------------------------------------------ 1. encoding

    def _prepare(self, frame: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 [H, W, 3] -> (x [1, 3, S, S] float in [0, 1] on device, uint8 [S, S, 3] on CPU)."""
        arr = np.asarray(frame)
        if arr.ndim != 3 or arr.shape[2] != self.config.in_chans:
            raise ValueError(f'frame must be [H, W, {self.config.in_chans}], got shape {arr.shape}')
        if arr.dtype != np.uint8:
            raise ValueError(f'frame must be uint8, got {arr.dtype}')
        u8 = torch.from_numpy(np.ascontiguousarray(arr))
        s = self.config.img_size
        if u8.shape[0] != s or u8.shape[1] != s:
            img = u8.permute(2, 0, 1)[None].float()
            img = F.interpolate(
                img, size=(s, s), mode='bilinear', antialias=True, align_corners=False
            )
            u8 = img.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).contiguous()
        return self._frame_tensor(u8), u8

    def _frame_tensor(self, u8: torch.Tensor) -> torch.Tensor:
        return u8.to(self.device).permute(2, 0, 1)[None].float().div(255.0)

    def _encode(self, x: torch.Tensor) -> EncodedFrame:
        """Encode with graph (eval mode): features, reconstruction and its MSE."""
        z = self.autoencoder.encode(x)
        recon = self.autoencoder.decode(z)
        target = self.autoencoder.patchify(x)
        variance = float(target.var(unbiased=False))
        return EncodedFrame(x, z, recon, target, F.mse_loss(recon, target), variance)

    # ------------------------------------------------------------------ 2. autoencoder step

    def _autoencoder_step(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        x = roll_frames(x[:, None], self.config.roll_augmentation, self.generator)[:, 0]
        ratio = draw_mask_ratio(self.config, self.generator)
        capture = self._metrics_due(self.autoencoder_steps + 1)
        self._schedule_autoencoder_lr()
        loss = self.core.autoencoder_step(
            x, ratio, self.generator, self._grad_metrics if capture else None
        )
        self.last_autoencoder_loss = loss
        self.last_mask_ratio = ratio
        return loss, ratio

    def _schedule_autoencoder_lr(self) -> None:
        """Before an autoencoder step: its learning rate (the explicit one, else the config's)
        times ``autoencoder_lr_factor`` of the autoencoder's steps so far (warm-up, then a fall
        from ``autoencoder_initial_lr_factor``), counted over the run, a resumed one included."""
        cfg = self.config
        done = self.core.autoencoder_steps
        if done > max(cfg.autoencoder_warmup_steps, cfg.autoencoder_lr_decay_steps):
            return
        base = self._lr_override[0] if self._lr_override[0] is not None else cfg.autoencoder_lr
        set_lr(self.ae_optimizer, base * autoencoder_lr_factor(cfg, done))

    def _schedule_predictor_lr(self, levels: list[Level]) -> None:
        """Before a predictor step: each level's learning rate (the explicit one, else the
        config's) times ``predictor_lr_factor`` of that level's steps so far."""
        cfg = self.config
        base = self._lr_override[1] if self._lr_override[1] is not None else cfg.predictor_lr
        for lvl in levels:
            if lvl.training_steps <= cfg.predictor_lr_decay_steps:
                set_lr(lvl.optimizer, base * predictor_lr_factor(cfg, lvl.training_steps))

    # ------------------------------------------------------------------ 3. fresh check + training

    def _check_and_train(self, result: ObserveResult) -> bool:
        """Fresh-prediction check of every level for the frame just observed, then one training
        step over the levels whose prediction missed and a heads-only step for the others.
        Returns whether the autoencoder changed."""
        threshold = self.config.miss_threshold(self.latest.variance)
        checks = [
            c for lvl in self.levels if (c := self._fresh_check(lvl, result, threshold)) is not None
        ]
        # calibrating the heads is learning too: on a transition that may not train it would
        # make it "known" (low uncertainty) although the predictor never learned it
        self._calibrate_heads([c for c in checks if c.loss is None and c.trainable])
        return self._train_levels([c for c in checks if c.loss is not None], result)

    def _fresh_check(
        self, lvl: Level, result: ObserveResult, threshold: float
    ) -> _FreshCheck | None:
        """Compare the level's fresh prediction of the frame just observed (made from the context
        that ended ``span`` frames earlier, for the (macro-)action executed since) with that
        frame; when it missed (error above ``threshold``), build the training loss. None
        when the level has no such prediction (too little history, unknown actions). A
        transition that may not train is checked (error, residual) but builds no loss."""
        n = len(self.history)
        e = n - 1 - lvl.span  # last frame of the context
        if e < 0:
            return None
        macro = [self.history[e + j].action for j in range(lvl.span)]
        if min(macro) < 0:
            return None
        trainable = all(self.history[e + j].trainable for j in range(lvl.span))
        a_idx = macro_index(macro, self.num_actions)
        stats = self.stats[lvl.index]
        z_target = self.history[-1].features[None]  # [1, T, D] detached target
        target_patches = self.latest.target  # [1, N, P]
        action = lvl.actions[a_idx : a_idx + 1]
        index = torch.tensor([a_idx], device=self.device)
        loss = parts = None
        if lvl.index == 0:
            pend = self._pending_for(e)
            if pend is None:
                return None
            pred_p = pend.pred_patches[a_idx : a_idx + 1]  # the prediction made when scoring
            err = float(F.mse_loss(pred_p, target_patches))
            self.last_fresh = {
                'patches': pred_p[0],
                'error': err,
                'action': a_idx,
                'step': self.history[-1].step,
            }
            result.explained_variance = float(M.explained_variance(pred_p, target_patches))
            result.fresh_action = a_idx
            head_input = (pend.features[a_idx : a_idx + 1], pend.ctx.last_frame, action)
            with torch.no_grad():
                stats.observe_residual(
                    a_idx, lvl.predictor.heads_from_features(*head_input).prediction, z_target
                )
            if err > threshold and trainable:
                loss, parts = self._level0_loss(lvl, e, pend, a_idx, action, index)
            self._pending = None
        else:
            ctx = self._context(lvl, e, grad=trainable)
            if ctx is None:
                return None
            with torch.set_grad_enabled(trainable):
                out = lvl.predictor.predict(ctx, action)
            head_input = (out.features.detach(), ctx.last_frame, action)
            stats.observe_residual(a_idx, out.prediction, z_target)
            pp = self.autoencoder.decode_frozen(out.prediction)
            err = float(F.mse_loss(pp.detach(), target_patches))
            if err > threshold and trainable:
                with torch.no_grad():
                    last_p = self.autoencoder.decode(ctx.last_frame)
                targets = Transitions(index, last_p, self.latest.recon, z_target, target_patches)
                _, parts = prediction_losses(
                    self.autoencoder, lvl.predictor, out, targets, self.core.weights, pp
                )
                loss = parts['total']
        stats.last_error = err
        result.prediction_errors[lvl.index] = err
        if not trainable:
            result.untrainable_levels.append(lvl.index)
        if loss is not None:
            stats.last_losses = {k: v.detach() for k, v in parts.items()}
        if err > threshold:
            stats.consecutive_accurate = 0
        else:
            stats.consecutive_accurate += 1
        return _FreshCheck(lvl, err, loss, trainable, lvl.index == 0, head_input, z_target)

    def _level0_loss(
        self,
        lvl: Level,
        e: int,
        pend: _Pending,
        a_idx: int,
        action: torch.Tensor,
        index: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The joint training loss of the level-0 transition from the context ending with entry
        e to the newest frame by action ``a_idx``, and its parts: through the scoring pass of
        that candidate as it was, on a shortened context (``context_dropout``) or rolled, from
        its current frame alone (``roll_augmentation``).
        """
        cfg = self.config
        entries, shortened, rolled = self._training_entries(lvl, e)
        if rolled:
            out, targets, reconstruction = self._single_frame_transition(
                lvl, e, -1, action, index, roll=True
            )
            decoded = None
        else:
            out, decoded = pend.outputs[a_idx], pend.decoded[a_idx]  # with graph
            if shortened:
                current = scale_gradient(pend.enc.z, cfg.encoder_prediction_grad_scale)
                ctx = self._context(lvl, e, grad=True, current=current, entries=entries)
                out, decoded = lvl.predictor.predict(ctx, action), None
            latest = self.latest
            targets = Transitions(
                index, pend.enc.recon, latest.recon, self.history[-1].features[None], latest.target
            )
            reconstruction = pend.enc.loss
        _, parts = prediction_losses(
            self.autoencoder, lvl.predictor, out, targets, self.core.weights, decoded
        )
        loss = joint_loss(parts['total'], reconstruction, cfg.joint_reconstruction_weight)
        replayed = [self._replay_loss(lvl) for _ in range(cfg.predictor_replay)]
        replayed = [r for r in replayed if r is not None]
        if replayed:
            loss = torch.stack([loss, *replayed]).mean()
        return loss, parts

    def _replay_loss(self, lvl: Level) -> torch.Tensor | None:
        """The joint loss of one past level-0 transition of the history, drawn uniformly
        among the trainable ones before the current one, predicted from its frame alone (rolled
        with probability ``roll_augmentation``); None when there is none yet."""
        n = len(self.history) - 2  # transitions e -> e + 1 before the current one
        if n <= 0:
            return None
        device = self.generator.device
        for _ in range(8):  # a few draws: untrainable or unknown transitions are rare
            e = int(torch.randint(n, (), generator=self.generator, device=device))
            entry = self.history[e]
            if entry.action >= 0 and entry.trainable:
                break
        else:
            return None
        index = torch.tensor([entry.action], device=self.device)
        roll = float(torch.rand((), generator=self.generator, device=device)) < (
            self.config.roll_augmentation
        )
        out, targets, reconstruction = self._single_frame_transition(
            lvl, e, e + 1, lvl.actions[entry.action : entry.action + 1], index, roll
        )
        _, parts = prediction_losses(
            self.autoencoder, lvl.predictor, out, targets, self.core.weights
        )
        return joint_loss(parts['total'], reconstruction, self.config.joint_reconstruction_weight)

    def _calibrate_heads(self, accurate: list[_FreshCheck]) -> None:
        """Levels whose prediction was accurate update only their ensemble heads on this
        transition, so that the uncertainty of a transition falls once it has been seen (without
        it, a transition predicted well by chance would never become "known" and would keep its
        score)."""
        for check in accurate:
            self.core.head_step(check.level, *check.head_input, check.target)

    def _train_levels(self, missed: list[_FreshCheck], result: ObserveResult) -> bool:
        """One backward over the missed levels' losses, one step per parameter set (level 0's
        loss is joint: the autoencoder steps too). Returns whether the autoencoder changed."""
        if not missed:
            return False
        levels = [c.level for c in missed]
        joint = any(c.joint for c in missed)
        capture = self._metrics_due(self.levels[0].training_steps + 1) and self.levels[0] in levels
        if joint:
            self._schedule_autoencoder_lr()
        self._schedule_predictor_lr(levels)
        self.core.predictor_step(
            [c.loss for c in missed], levels, joint, self._grad_metrics if capture else None
        )
        for lvl in levels:
            result.trained_levels.append(lvl.index)
            result.predictor_losses[lvl.index] = M.to_floats(self.stats[lvl.index].last_losses)
        return joint

    def _pending_for(self, e: int) -> _Pending | None:
        """The level-0 scoring pass for history entry e, rebuilt if stale (autoencoder or
        predictor changed since, or after a resume)."""
        entry = self.history[e]
        lvl = self.levels[0]
        p = self._pending
        if (
            p is not None
            and p.entry_step == entry.step
            and p.ae_version == self.core.ae_version
            and p.pred_version == lvl.version
        ):
            return p
        # rebuild: re-encode that frame with graph, context from cached history features
        enc = self._encode(self._frame_tensor(entry.frame))
        current = scale_gradient(enc.z, self.config.encoder_prediction_grad_scale)
        ctx = self._context(lvl, e, grad=True, current=current)
        if ctx is None:
            return None
        return self._level0_pass(lvl, entry.step, ctx, enc)

    def _level0_pass(
        self, lvl: Level, entry_step: int, ctx: PredictorContext, enc: EncodedFrame
    ) -> _Pending:
        """Level 0's prediction of every candidate from ``ctx``, one pass each with graph, and
        decoded with the decoder held fixed: a training step on the executed candidate
        backpropagates through its pass instead of predicting it again (~1.6 of ~20 GFLOP a
        trained dot frame). One pass per candidate, not one batched: a backward through a
        batched pass would cost every candidate's."""
        outputs = [
            lvl.predictor.predict(ctx, lvl.actions[a : a + 1]) for a in range(len(lvl.actions))
        ]
        decoded = [self.autoencoder.decode_frozen(o.prediction) for o in outputs]
        return _Pending(
            entry_step,
            ctx,
            enc,
            outputs,
            decoded,
            torch.cat(decoded).detach(),
            torch.cat([o.features for o in outputs]).detach(),
            self.core.ae_version,
            lvl.version,
        )

    # ------------------------------------------------------------------ 4. scoring

    def _score(self, enc: EncodedFrame) -> tuple[np.ndarray, list[ActionLabel]]:
        e = len(self.history) - 1
        scores, labels, patches = [], [], []
        for lvl in self.levels:
            grad = lvl.index == 0
            current = (
                scale_gradient(enc.z, self.config.encoder_prediction_grad_scale) if grad else None
            )
            ctx = self._context(lvl, e, grad=grad, current=current)
            if grad:
                self._pending = pend = self._level0_pass(lvl, self.history[e].step, ctx, enc)
                heads = torch.cat([o.head_predictions.detach() for o in pend.outputs], dim=1)
                pred_patches = pend.pred_patches
            else:
                with torch.no_grad():
                    out = lvl.predictor.predict(ctx, lvl.actions)  # ONE pass, all candidates
                    heads = out.head_predictions
                    pred_patches = self.autoencoder.decode(out.prediction)  # [A_k, N, P]
            with torch.no_grad():
                ent = ensemble_entropy(
                    heads, self.config.uncertainty_eps, self.stats[lvl.index].residual
                )  # [A_k]
            scores.append(ent)
            patches.append(pred_patches)
            labels += [ActionLabel(lvl.index, i, p) for i, p in enumerate(lvl.primitives)]
        level_scores = [s.float().cpu().numpy() for s in scores]
        self._keep_pass(ScoringPass(self.history[e].step, patches, level_scores, labels))
        return np.concatenate(level_scores), labels

    def _keep_pass(self, new: ScoringPass) -> None:
        """Keep a scoring pass for the panel; drop the predictions of the kept ones whose frame
        has been observed already (a level-k prediction made at entry e is about entry e+span)."""
        position = {entry.step: i for i, entry in enumerate(self.history)}
        last = len(self.history) - 1
        for old in self.scoring_passes:
            e = position.get(old.entry_step, -1)
            for lvl in self.levels[: len(old.pred_patches)]:
                if e < 0 or e + lvl.span < last:
                    old.pred_patches[lvl.index] = None
        self.scoring_passes.append(new)

    def _context(
        self,
        lvl: Level,
        e: int,
        grad: bool,
        current: torch.Tensor | None = None,
        entries: list[int] | None = None,
    ) -> PredictorContext | None:
        """Context of level ``lvl`` ending with history entry e: up to PREDICTION_HISTORY_SIZE
        earlier frames spaced by the level's span, each followed by its (macro-)action
        (``entries``: these history indices instead, e.g. a shortened context)."""
        if e < 0 or e >= len(self.history):
            return None
        idx = self._context_entries(lvl, e) if entries is None else entries
        cur = current if current is not None else self.history[e].features[None]
        hist_f = None
        if len(idx) > 1:
            hist_f = torch.stack([self.history[i].features for i in idx[:-1]])[None]
        with torch.set_grad_enabled(grad):
            return lvl.predictor.build_context(cur, hist_f, self._context_actions(lvl, idx))

    def _context_entries(self, lvl: Level, e: int) -> list[int]:
        """History indices of the context ending with entry e, oldest first."""
        idx = [e]
        for _ in range(self.config.prediction_history_size):
            i = idx[0] - lvl.span
            if i < 0 or min(self.history[i + j].action for j in range(lvl.span)) < 0:
                break
            idx.insert(0, i)
        return idx

    def _training_entries(self, lvl: Level, e: int) -> tuple[list[int], bool, bool]:
        """The context entries a training transition uses (``core.draw_training_context``):
        all, only the newest few (``context_dropout``) or, for a rolled transition, the current
        frame alone; whether the context was shortened; whether the transition is rolled."""
        idx = self._context_entries(lvl, e)
        rolled, keep = draw_training_context(len(idx) - 1, self.config, self.generator)
        return idx[len(idx) - 1 - keep :], keep < len(idx) - 1, rolled

    def _context_actions(self, lvl: Level, idx: list[int]) -> torch.Tensor | None:
        """[1, F-1, C] the (macro-)action after each history frame of a context; None for a
        context of the current frame alone."""
        if len(idx) < 2:
            return None
        return torch.stack(
            [
                lvl.actions[
                    macro_index(
                        [self.history[i + j].action for j in range(lvl.span)], self.num_actions
                    )
                ]
                for i in idx[:-1]
            ]
        )[None]

    def _single_frame_transition(
        self,
        lvl: Level,
        e: int,
        nxt: int,
        action: torch.Tensor,
        index: torch.Tensor,
        roll: bool,
    ) -> tuple[PredictorOutput, Transitions, torch.Tensor]:
        """The level's transition from history entry e to entry ``nxt``, both frames encoded
        afresh (rolled by one random offset if ``roll``), predicted from the first frame alone
        (no history): (prediction with graph, targets, that frame's reconstruction MSE with
        graph)."""
        x = torch.cat([self._frame_tensor(self.history[i].frame) for i in (e, nxt)])
        frames = roll_frames(x[None], 1.0, self.generator)[0] if roll else x  # [2, C, S, S]
        with torch.no_grad():
            target = self._encode(frames[1:])
        current = self._encode(frames[:1])  # with graph: the joint encoder objective
        ctx = lvl.predictor.build_context(
            scale_gradient(current.z, self.config.encoder_prediction_grad_scale)
        )
        out = lvl.predictor.predict(ctx, action)
        targets = Transitions(index, current.recon, target.recon, target.z, target.target)
        return out, targets, current.loss

    # ------------------------------------------------------------------ hierarchy

    def _maybe_add_level(self) -> int | None:
        if self.stats[-1].consecutive_accurate < self.config.level_creation_steps:
            return None
        return self.add_level()

    def add_level(self) -> int | None:
        """Create the next hierarchy level now, as after LEVEL_CREATION_STEPS accurate
        predictions of the top level in a row (e.g. to measure what a level costs). Returns its
        index; None when MAX_LEVELS or MAX_MACRO_ACTIONS forbid one."""
        cfg = self.config
        k = len(self.levels)
        if k >= cfg.max_levels or self.num_actions ** (cfg.macro_length**k) > cfg.max_macro_actions:
            return None
        top = self.stats[-1]
        level = self.core.new_level(k)
        self.levels.append(level)
        self.stats.append(self._new_stats(level))
        if self._lr_override[1] is not None:
            set_lr(level.optimizer, self._lr_override[1])
        log.info(
            'hierarchy: level %d created (%d macro-actions of %d primitive steps) after %d '
            'accurate level-%d predictions',
            k,
            level.num_actions,
            level.span,
            top.consecutive_accurate,
            k - 1,
        )
        return k

    # ------------------------------------------------------------------ metrics

    def _metrics_due(self, count: int) -> bool:
        return count % self.config.log_interval == 0

    def _maybe_log(self) -> dict[str, float] | None:
        """Every LOG_INTERVAL steps: the scalar metrics (``metrics.learner_metrics``) plus the
        gradient metrics captured on the last LOG_INTERVAL-th training step, logged to wandb
        (with a prediction panel every VISUALIZATION_UPLOAD_INTERVAL steps); one host transfer."""
        cfg = self.config
        if self.step % cfg.log_interval != 0:
            return None
        m = M.learner_metrics(self)
        m.update(self._grad_metrics)
        self._grad_metrics = {}
        out = M.to_floats(m)
        images = None
        if self.logger.enabled and self.step % cfg.visualization_upload_interval == 0:
            panel = self.visualization_panel()
            images = {'predictions': panel} if panel is not None else None
        self.logger.log(out, images)
        return out


__all__ = [
    'OnlineLearner',
    'ObserveResult',
    'ActionLabel',
    'HistoryEntry',
    'LevelStats',
    'ScoringPass',
]


def _panel_candidates(rows: list[tuple], most: dict[int, int], cap: int) -> list[tuple]:
    """The candidates a panel shows, in label order: all when there are at most ``cap``, else all
    of level 0, then of the higher levels the executed ones, the most uncertain ones (``most``:
    level -> index) and the others by descending score.

    Args:
        rows: (level, index, patches, error, score, executed) per candidate, in label order.
        most: the most uncertain candidate's index per level.
        cap: how many to show at most.
    """
    if len(rows) <= cap:
        return rows

    def priority(item: tuple[int, tuple]) -> tuple:
        order, (level, i, _, _, score, executed) = item
        return (
            level > 0,
            not executed,
            most.get(level) != i,
            -(score if score is not None else -math.inf),
            order,
        )

    chosen = sorted(sorted(enumerate(rows), key=priority)[:cap])
    return [row for _, row in chosen]
