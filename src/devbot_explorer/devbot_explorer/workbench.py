"""The model side of the session explorer: inspect, analyse and train a world model from a notebook.

ROS-free. A ``ModelWorkbench`` holds an ``OnlineLearner`` (its autoencoder, its level-0
predictor and their optimizers) that is loaded read-only from a checkpoint or fresh::

    wb = ModelWorkbench.from_checkpoint('saved/checkpoints/toroidal_dot')   # never writes there
    recon, losses = wb.reconstruct(frames)                  # uint8 [N, S, S, 3], MSE [N]
    d = wb.analyse(frames, actions, index=10)               # sweep + attention + counterfactuals
    run = wb.train_autoencoder(frames, threshold=5e-4)      # runs until the threshold
    run = wb.train_predictor(frames, actions, steps=200, run=False)
    run.run(50); run.pause(); run.resume()                  # in chunks, with run.losses / run.evals
    wb.weight_change(), wb.weight_images()
    wb.save('saved/checkpoints/toroidal_dot_tuned')         # the node can resume from it

Frames are uint8 [N, H, W, 3] RGB (resized to the model's size like the online learner does);
``actions[i]`` is the index (into the action space) of the action executed after frame i, -1 for
unknown. The predictor trained here is level 0 (primitive actions); the encoder stays frozen
while the predictor trains.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from world_model_node import diagnostics as D
from world_model_node.checkpoint import STATE_NAME, CheckpointError, CheckpointManager, load_file
from world_model_node.config import WorldModelConfig
from world_model_node.core import Transitions, draw_mask_ratio, prediction_losses
from world_model_node.learner import OnlineLearner
from world_model_node.metrics import layer_key
from world_model_node.models import MaskedAutoencoderViT, TransformerActionConditionedPredictor


class LiveCheckpointError(FileExistsError):
    """Refused to write into a live checkpoint directory (pass overwrite_live=True to allow it)."""


# ---------------------------------------------------------------------------------------------
# interruptible training
# ---------------------------------------------------------------------------------------------


class Training:
    """A training run that advances in chunks and can be paused and resumed.

    It stops (``done``) after ``steps`` optimizer steps or when the evaluation loss (the
    unmasked reconstruction MSE, or the executed action's prediction MSE) is at or below
    ``threshold``, whichever comes first. ``pause()`` (from the callback, another thread or a
    notebook button) makes ``run`` return after the current step; ``resume()`` goes on.

    Args:
        kind: 'autoencoder' or 'predictor'.
        step_fn: one optimizer step -> training loss.
        eval_fn: the evaluation loss compared with the threshold.
        steps: stop after this many steps in total (None: no limit).
        threshold: stop when the evaluation loss <= threshold (None: never).
        callback: called as callback(training) after every step.
        eval_every: evaluate every this many steps (and when a ``run`` call ends).
    """

    def __init__(
        self,
        kind: str,
        step_fn: Callable[[], float],
        eval_fn: Callable[[], float],
        steps: int | None = None,
        threshold: float | None = None,
        callback: Callable[['Training'], Any] | None = None,
        eval_every: int = 10,
    ) -> None:
        if steps is not None and (
            isinstance(steps, bool) or not isinstance(steps, int) or steps < 0
        ):
            raise ValueError(f'steps must be an integer >= 0 or None, got {steps!r}')
        if threshold is not None and not (
            isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold >= 0
        ):
            raise ValueError(f'threshold must be a finite number >= 0 or None, got {threshold!r}')
        if not isinstance(eval_every, int) or eval_every < 1:
            raise ValueError(f'eval_every must be an integer >= 1, got {eval_every!r}')
        self.kind = kind
        self.max_steps = steps
        self.threshold = None if threshold is None else float(threshold)
        self.callback = callback
        self.eval_every = eval_every
        self.steps_done = 0
        self.losses: list[float] = []  # training loss of every step
        self.evals: list[tuple[int, float]] = []  # (steps_done, evaluation loss)
        self.reason: str | None = None  # why it is done: 'steps' or 'threshold'
        self._step_fn = step_fn
        self._eval_fn = eval_fn
        self._pause = threading.Event()
        self._evaluate()

    # ------------------------------------------------------------------ state

    @property
    def done(self) -> bool:
        return self.reason is not None

    @property
    def paused(self) -> bool:
        return self._pause.is_set()

    @property
    def last_eval(self) -> float:
        return self.evals[-1][1]

    def __repr__(self) -> str:
        state = f'done ({self.reason})' if self.done else ('paused' if self.paused else 'ready')
        return (
            f'Training({self.kind}, {self.steps_done} steps, '
            f'eval loss {self.last_eval:.6g}, {state}, '
            f'steps={self.max_steps}, threshold={self.threshold})'
        )

    # ------------------------------------------------------------------ control

    def pause(self) -> None:
        """Make ``run`` return after the current step (safe from another thread or the callback)."""
        self._pause.set()

    def resume(self, n: int | None = None) -> 'Training':
        """Go on after a pause: ``run(n)``."""
        return self.run(n)

    def run(self, n: int | None = None) -> 'Training':
        """Train for up to n more steps (None: until done), stopping early when done or when
        ``pause()`` is called during this call.

        Returns self. Raises ValueError when neither n, steps nor threshold bounds the run.
        """
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise ValueError(f'n must be an integer >= 0 or None, got {n!r}')
        if n is None and self.max_steps is None and self.threshold is None:
            raise ValueError(
                'this training has neither steps nor threshold: give run(n) a number of steps'
            )
        self._pause.clear()
        taken = 0
        while not self.done and not self.paused and (n is None or taken < n):
            self.losses.append(float(self._step_fn()))
            self.steps_done += 1
            taken += 1
            if self.steps_done % self.eval_every == 0:
                self._evaluate()
            if self.max_steps is not None and self.steps_done >= self.max_steps and not self.done:
                self.reason = 'steps'
            if self.callback is not None:
                self.callback(self)
        if taken and (not self.evals or self.evals[-1][0] != self.steps_done):
            self._evaluate()
        return self

    def _evaluate(self) -> None:
        loss = float(self._eval_fn())
        self.evals.append((self.steps_done, loss))
        if self.threshold is not None and loss <= self.threshold:
            self.reason = 'threshold'
        elif self.max_steps is not None and self.steps_done >= self.max_steps:
            self.reason = 'steps'


# ---------------------------------------------------------------------------------------------
# the workbench
# ---------------------------------------------------------------------------------------------


class ModelWorkbench:
    """A world model to inspect and train by hand (see the module docstring).

    Build it with ``from_checkpoint`` or ``fresh``.

    Args:
        learner: an ``OnlineLearner`` without persistence (checkpoint_dir None).
        source: the checkpoint directory it was loaded from (protected by ``save``), or None.
    """

    def __init__(self, learner: OnlineLearner, source: str | os.PathLike | None = None) -> None:
        if learner.checkpoints is not None:
            raise ValueError(
                'the workbench needs a learner without checkpoint_dir '
                '(it must never write by itself)'
            )
        self.learner = learner
        self.source = None if source is None else Path(source).resolve()
        self._generator = torch.Generator().manual_seed(learner.config.seed)
        self._reference: dict[str, torch.Tensor] = {}
        self.snapshot()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_checkpoint(
        cls, checkpoint_dir: str | os.PathLike, device: str | torch.device = 'cpu'
    ) -> 'ModelWorkbench':
        """Load the newest consistent checkpoint generation of a robot's directory, read-only.

        The config and the action space come from the checkpoint. Nothing is written to the
        directory (the learner is built without persistence and loaded from it once).

        Raises:
            CheckpointError: no checkpoint there, or one that cannot be read.
        """
        directory = Path(checkpoint_dir)
        manager = CheckpointManager(directory)
        if not manager.exists():
            raise CheckpointError(f'{directory}: no world-model checkpoint (no {STATE_NAME}.pth)')
        state = None
        for backup in (False, True):
            try:
                state = load_file(manager.path(STATE_NAME, backup), 'cpu')
                break
            except CheckpointError:
                continue
        if state is None:
            raise CheckpointError(
                f'{directory}: neither {STATE_NAME}.pth nor its backup can be read'
            )
        config = WorldModelConfig.from_checkpoint(state['config'])
        learner = OnlineLearner(config, state['action_space'].numpy(), device=device)
        learner.checkpoints = manager  # only for this load(), which reads and never writes
        try:
            if not learner.load():
                raise CheckpointError(f'{directory}: no world-model checkpoint')
        finally:
            learner.checkpoints = None
        return cls(learner, directory)

    @classmethod
    def fresh(
        cls,
        config: WorldModelConfig,
        action_space_normalized: np.ndarray,
        device: str | torch.device = 'cpu',
    ) -> 'ModelWorkbench':
        """A new, untrained model (as the online learner starts)."""
        return cls(OnlineLearner(config, action_space_normalized, device=device))

    # ------------------------------------------------------------------ parts

    @property
    def config(self) -> WorldModelConfig:
        return self.learner.config

    @property
    def device(self) -> torch.device:
        return self.learner.device

    @property
    def autoencoder(self) -> MaskedAutoencoderViT:
        return self.learner.autoencoder

    @property
    def predictor(self) -> TransformerActionConditionedPredictor:
        """The level-0 (primitive action) predictor."""
        return self.learner.levels[0].predictor

    @property
    def action_space(self) -> np.ndarray:
        """[A, C] float32 normalised actions."""
        return self.learner.base_actions.cpu().numpy()

    @property
    def num_actions(self) -> int:
        return self.learner.num_actions

    # ------------------------------------------------------------------ frames

    def frames_tensor(self, frames: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 [N, H, W, 3] (or one [H, W, 3], or a list) -> float [N, 3, S, S] in [0, 1] on the
        device, resized to img_size like the online learner (bilinear, antialiased)."""
        arr = np.asarray(frames) if not isinstance(frames, np.ndarray) else frames
        if arr.ndim == 3:
            arr = arr[None]
        c = self.config.in_chans
        if arr.ndim != 4 or arr.shape[-1] != c or arr.shape[0] < 1:
            raise ValueError(f'frames must be uint8 [N, H, W, {c}], got shape {arr.shape}')
        if arr.dtype != np.uint8:
            raise ValueError(f'frames must be uint8, got {arr.dtype}')
        x = torch.from_numpy(np.ascontiguousarray(arr)).to(self.device).permute(0, 3, 1, 2).float()
        s = self.config.img_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode='bilinear', antialias=True, align_corners=False)
            x = x.round().clamp(0, 255)
        return x.div(255.0)

    def _images(self, patches: torch.Tensor) -> np.ndarray:
        imgs = (
            self.autoencoder.unpatchify(patches.detach().float())
            .clamp(0, 1)
            .mul(255)
            .round()
            .to(torch.uint8)
        )
        return imgs.permute(0, 2, 3, 1).cpu().numpy()

    @torch.no_grad()
    def _encode_all(self, x: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """[N, 3, S, S] -> features [N, T, D] (eval mode, no gradient)."""
        with D.eval_mode(self.autoencoder):
            return torch.cat(
                [self.autoencoder.encode(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
            )

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def reconstruct(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unmasked autoencoder reconstruction (eval mode).

        Args:
            frames: uint8 [N, H, W, 3].
        Returns:
            (reconstructions uint8 [N, S, S, 3], MSE per frame float32 [N], pixels in [0, 1]).
        """
        x = self.frames_tensor(frames)
        recon, losses = [], []
        with D.eval_mode(self.autoencoder):
            for i in range(0, x.shape[0], 64):
                xb = x[i : i + 64]
                p = self.autoencoder.decode(self.autoencoder.encode(xb))
                recon.append(p)
                losses.append((p - self.autoencoder.patchify(xb)).pow(2).mean(dim=(1, 2)))
        p = torch.cat(recon)
        return self._images(p), torch.cat(losses).float().cpu().numpy()

    def _actions_array(self, actions: Sequence[int] | np.ndarray, n_frames: int) -> np.ndarray:
        acts = np.asarray(actions)
        if (
            acts.ndim != 1
            or acts.shape[0] not in (n_frames - 1, n_frames)
            or (acts.size and not np.issubdtype(acts.dtype, np.integer))
        ):
            raise ValueError(
                f'actions must be N-1={n_frames - 1} or N={n_frames} integer indices '
                f'(-1 for unknown), got {acts.dtype} {acts.shape}'
            )
        bad = acts[(acts < -1) | (acts >= self.num_actions)]
        if bad.size:
            raise ValueError(
                f'action indices must be in [0, {self.num_actions}) or -1, got {bad.tolist()}'
            )
        out = np.full(n_frames, -1, np.int64)
        out[: acts.shape[0]] = acts
        return out

    def _context_start(self, acts: np.ndarray, t: int) -> int:
        """First frame of the context ending at frame t.

        The context holds up to PREDICTION_HISTORY_SIZE earlier frames connected to t by known
        actions.
        """
        start = t
        while (
            start > 0 and t - start < self.config.prediction_history_size and acts[start - 1] >= 0
        ):
            start -= 1
        return start

    def analyse(
        self,
        frames: np.ndarray,
        actions: Sequence[int] | np.ndarray,
        index: int | None = None,
        with_attention: bool = True,
        with_counterfactuals: bool = True,
        num_shuffles: int = 4,
    ) -> D.TransitionDiagnostics:
        """Diagnostics of the transition from frame ``index`` of a window.

        They come from ``diagnostics.analyse_transition``.

        The context is frame ``index`` and up to PREDICTION_HISTORY_SIZE earlier frames joined to
        it by known actions; every action of the space is swept; the executed action is
        ``actions[index]`` (if known) and the true next frame ``frames[index + 1]`` (if present).

        Args:
            frames: uint8 [N, H, W, 3], a window of a session.
            actions: [N-1] or [N] action indices (action after each frame), -1 for unknown.
            index: the current frame (default: the last frame that has a next frame).
            with_attention, with_counterfactuals, num_shuffles: see ``analyse_transition``.
        """
        x = self.frames_tensor(frames)
        n = x.shape[0]
        acts = self._actions_array(actions, n)
        t = max(n - 2, 0) if index is None else index
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < n:
            raise ValueError(f'index must be in [0, {n}), got {index!r}')
        t = int(t)
        start = self._context_start(acts, t)
        base = self.learner.base_actions
        ctx_actions = base[torch.as_tensor(acts[start:t], device=self.device)]  # [F-1, C]
        executed = int(acts[t]) if acts[t] >= 0 else None
        next_frame = x[t + 1] if t + 1 < n else None
        return D.analyse_transition(
            self.autoencoder,
            self.predictor,
            x[start : t + 1],
            ctx_actions,
            base,
            executed,
            next_frame,
            generator=self._generator,
            with_attention=with_attention,
            with_counterfactuals=with_counterfactuals,
            num_shuffles=num_shuffles,
        )

    def sweep(
        self, frames: np.ndarray, actions: Sequence[int] | np.ndarray, index: int | None = None
    ) -> D.TransitionDiagnostics:
        """Only the action sweep of ``analyse``: cheaper.

        The sweep gives the predictions, errors, spread and uncertainty.
        """
        return self.analyse(
            frames, actions, index, with_attention=False, with_counterfactuals=False
        )

    # ------------------------------------------------------------------ training

    def train_autoencoder(
        self,
        frames: np.ndarray,
        steps: int | None = None,
        threshold: float | None = None,
        callback: Callable[[Training], Any] | None = None,
        batch_size: int = 16,
        eval_every: int = 10,
        run: bool = True,
    ) -> Training:
        """Masked-autoencoder training on chosen frames (the online learner's step, on minibatches).

        Each step: a random minibatch of up to ``batch_size`` frames, mask ratio ~ U(min, max),
        MSE over all patches, gradient clipping, one step of the learner's autoencoder optimizer.
        The evaluation loss is the mean unmasked reconstruction MSE over all the frames (the gate's
        measure).

        Args:
            frames: uint8 [N, H, W, 3].
            steps, threshold, callback, eval_every: see ``Training``.
            batch_size: frames per step.
            run: start right away (until done or paused); False returns the run unstarted.
        """
        x = self.frames_tensor(frames)
        cfg = self.config
        gen = self._generator
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')

        def step() -> float:
            idx = torch.randperm(x.shape[0], generator=gen)[:batch_size].to(self.device)
            ratio = draw_mask_ratio(cfg, gen)
            mask_gen = torch.Generator().manual_seed(int(torch.randint(2**62, (), generator=gen)))
            return float(self.learner.core.autoencoder_step(x[idx], ratio, mask_gen))

        def evaluate() -> float:
            return float(np.mean(self.reconstruct(frames)[1]))

        training = Training('autoencoder', step, evaluate, steps, threshold, callback, eval_every)
        return training.run() if run and (steps is not None or threshold is not None) else training

    def train_predictor(
        self,
        frames: np.ndarray,
        actions: Sequence[int] | np.ndarray,
        steps: int | None = None,
        threshold: float | None = None,
        callback: Callable[[Training], Any] | None = None,
        batch_size: int = 8,
        eval_every: int = 10,
        run: bool = True,
    ) -> Training:
        """Level-0 predictor training on the transitions of chosen frames; the encoder stays frozen.

        A transition is frame t -> frame t+1 with a known action; its context is frame t and up to
        PREDICTION_HISTORY_SIZE earlier frames joined by known actions. Each step: a random
        minibatch of transitions, the online learner's three losses (patch, latent, action),
        gradient clipping, one step of the level-0 optimizer (the decoder is not updated). The
        evaluation loss is the mean patch MSE of the executed action's prediction (the quantity
        the learner compares with PREDICTION_THRESHOLD). The frames are encoded once, when the run
        is created: train the autoencoder first, then create the predictor run.

        Args:
            frames: uint8 [N, H, W, 3].
            actions: [N-1] or [N] action index after each frame, -1 for unknown.
            steps, threshold, callback, eval_every: see ``Training``.
            batch_size: transitions per step.
            run: start right away (until done or paused); False returns the run unstarted.
        Raises:
            ValueError: no transition with a known action.
        """
        x = self.frames_tensor(frames)
        n = x.shape[0]
        acts = self._actions_array(actions, n)
        transitions = [t for t in range(n - 1) if acts[t] >= 0]
        if not transitions:
            raise ValueError('no transition with a known action among the frames')
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        feats = self._encode_all(x)  # [N, T, D] frozen encoder
        targets = self.autoencoder.patchify(x)  # [N, N_p, P]
        with torch.no_grad(), D.eval_mode(self.autoencoder):
            last_patches = torch.cat(
                [self.autoencoder.decode(feats[i : i + 64]) for i in range(0, n, 64)]
            )
        starts = {t: self._context_start(acts, t) for t in transitions}
        core = self.learner.core
        level = core.levels[0]
        pred, base = level.predictor, core.base_actions
        gen = self._generator

        def groups(batch: list[int]) -> list[list[int]]:
            by_len: dict[int, list[int]] = {}
            for t in batch:
                by_len.setdefault(t - starts[t], []).append(t)
            return list(by_len.values())

        def forward(group: list[int]):
            k = group[0] - starts[group[0]]
            idx = torch.tensor(
                [[t - k + j for j in range(k + 1)] for t in group], device=self.device
            )  # [B, F]
            a = torch.as_tensor(acts[idx.cpu().numpy()], device=self.device)  # [B, F]
            out = pred(feats[idx], base[a])
            return out, a[:, -1], idx[:, -1]

        def step() -> float:
            perm = torch.randperm(len(transitions), generator=gen)[:batch_size].tolist()
            batch = [transitions[i] for i in perm]
            core.zero_grad([level], autoencoder=False)
            total = 0.0
            for group in groups(batch):
                out, a_idx, cur = forward(group)
                truth = Transitions(
                    a_idx,
                    last_patches[cur],
                    last_patches[cur + 1],
                    feats[cur + 1],
                    targets[cur + 1],
                )
                _, parts = prediction_losses(self.autoencoder, pred, out, truth, core.weights)
                loss = parts['total'] * (len(group) / len(batch))
                loss.backward()
                total += float(loss.detach())
            core.apply_gradients([level], autoencoder=False)
            return total

        @torch.no_grad()
        def evaluate() -> float:
            errs = []
            with D.eval_mode(pred, self.autoencoder):
                for group in groups(transitions):
                    for i in range(0, len(group), 32):
                        out, _, cur = forward(group[i : i + 32])
                        pp = self.autoencoder.decode(out.prediction)
                        errs.append((pp - targets[cur + 1]).pow(2).mean(dim=(1, 2)))
            return float(torch.cat(errs).mean())

        training = Training('predictor', step, evaluate, steps, threshold, callback, eval_every)
        return training.run() if run and (steps is not None or threshold is not None) else training

    # ------------------------------------------------------------------ weights

    def _named(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(f'autoencoder/{k}', p) for k, p in self.autoencoder.named_parameters()] + [
            (f'predictor/{k}', p) for k, p in self.predictor.named_parameters()
        ]

    def snapshot(self) -> None:
        """Remember the current weights as the reference of ``weight_change`` (done at load)."""
        self._reference = {k: p.detach().clone() for k, p in self._named()}

    @torch.no_grad()
    def weight_change(self) -> dict[str, float]:
        """Relative change ||w - w_ref|| / ||w_ref|| per layer.

        The reference is the load (or the last ``snapshot``).

        Returns:
            {'autoencoder/<layer>': change, 'predictor/<layer>': change}, layers as in the metrics
            ('blocks_0', 'layers_3', 'patch_embed', 'action_embed', 'films', ...).
        """
        sq_diff: dict[str, torch.Tensor] = {}
        sq_ref: dict[str, torch.Tensor] = {}
        for name, p in self._named():
            net, rest = name.split('/', 1)
            key = f'{net}/{layer_key(rest)}'
            ref = self._reference[name]
            sq_diff[key] = sq_diff.get(key, 0) + (p.detach() - ref).float().pow(2).sum()
            sq_ref[key] = sq_ref.get(key, 0) + ref.float().pow(2).sum()
        keys = list(sq_diff)
        diff = torch.stack([sq_diff[k] for k in keys]).sqrt()
        ref = torch.stack([sq_ref[k] for k in keys]).sqrt()
        # a layer that starts at zero (FiLM) reports its absolute norm
        change = torch.where(ref > 0, diff / ref.clamp_min(1e-30), diff).cpu().tolist()
        return dict(zip(keys, change))

    @torch.no_grad()
    def weight_images(self, scale: int = 1) -> dict[str, np.ndarray]:
        """The weights as uint8 RGB images [H, W, 3].

        'autoencoder/patch_embed': the patch-embedding filters as a grid of RGB patches (each
        filter scaled to its own range); attention projections of every block of both networks
        ('autoencoder/blocks_<i>/qkv', '.../proj', 'predictor/layers_<i>/qkv', '.../proj') and the
        predictor's action pathway ('predictor/action_token', 'predictor/films_<i>/gamma',
        '.../beta') as matrices [out, in] in a diverging map (blue < 0 < red, white 0, scaled by
        max |w|).

        Args:
            scale: integer nearest-neighbour magnification.
        """
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValueError(f'scale must be an integer >= 1, got {scale!r}')
        out: dict[str, np.ndarray] = {
            'autoencoder/patch_embed': _filter_grid(self.autoencoder.patch_embed.weight)
        }
        for i, blk in enumerate(self.autoencoder.blocks):
            out[f'autoencoder/blocks_{i}/qkv'] = _matrix_image(blk.attn.qkv.weight)
            out[f'autoencoder/blocks_{i}/proj'] = _matrix_image(blk.attn.proj.weight)
        for i, layer in enumerate(self.predictor.layers):
            out[f'predictor/layers_{i}/qkv'] = _matrix_image(layer.qkv.weight)
            out[f'predictor/layers_{i}/proj'] = _matrix_image(layer.proj.weight)
        out['predictor/action_token'] = _matrix_image(self.predictor.action_token.weight)
        for k, film in self.predictor.films.items():
            out[f'predictor/films_{k}/gamma'] = _matrix_image(film.gamma.weight)
            out[f'predictor/films_{k}/beta'] = _matrix_image(film.beta.weight)
        if scale > 1:
            out = {k: v.repeat(scale, axis=0).repeat(scale, axis=1) for k, v in out.items()}
        return out

    # ------------------------------------------------------------------ persistence

    @torch.no_grad()
    def save(self, directory: str | os.PathLike, overwrite_live: bool = False) -> int:
        """Write the model in the checkpoint format (the online node can resume from it).

        The learner state (counters, levels, saved history) goes with it; the history's features
        are re-encoded with the current autoencoder first so a resumed learner sees consistent
        features.

        Args:
            directory: the target checkpoint directory (created if needed).
            overwrite_live: allow writing into the directory this model was loaded from, or into
                any directory that already holds a checkpoint (a live robot's).
        Returns:
            the generation written.
        Raises:
            LiveCheckpointError: the target is the source or holds a checkpoint and
                overwrite_live is False.
        """
        target = Path(directory).resolve()
        manager = CheckpointManager(target)
        if not overwrite_live:
            if self.source is not None and target == self.source:
                raise LiveCheckpointError(
                    f'{target} is the checkpoint this model was loaded from; '
                    'save elsewhere or pass overwrite_live=True'
                )
            if manager.exists():
                raise LiveCheckpointError(
                    f'{target} already holds a checkpoint (a live one?); save elsewhere '
                    'or pass overwrite_live=True'
                )
        self._refresh_history_features()
        learner = self.learner
        # the new generation must be the newest in the target, or a load would pick an older one
        learner.generation = max(learner.generation, _max_generation(manager))
        learner.checkpoints = manager
        try:
            return learner.save()
        finally:
            learner.checkpoints = None

    def _refresh_history_features(self) -> None:
        history = list(self.learner.history)
        if not history:
            return
        frames = (
            torch.stack([e.frame for e in history])
            .to(self.device)
            .permute(0, 3, 1, 2)
            .float()
            .div(255.0)
        )
        feats = self._encode_all(frames)
        for e, f in zip(history, feats):
            e.features = f


def _max_generation(manager: CheckpointManager) -> int:
    """The highest generation among the learner-state files of a directory.

    0 if none is readable.
    """
    gens = [0]
    for backup in (False, True):
        try:
            gens.append(int(load_file(manager.path(STATE_NAME, backup), 'cpu')['generation']))
        except CheckpointError:
            pass
    return max(gens)


def _matrix_image(w: torch.Tensor) -> np.ndarray:
    """A 2-D weight [out, in] -> uint8 [out, in, 3], diverging: -max blue, 0 white, +max red."""
    v = w.detach().float().cpu()
    v = v / v.abs().max().clamp_min(1e-12)
    pos, neg = v.clamp_min(0), (-v).clamp_min(0)
    img = torch.stack([1 - neg, 1 - pos - neg, 1 - pos], dim=-1)  # R, G, B
    return img.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()


def _filter_grid(w: torch.Tensor, gap: int = 1) -> np.ndarray:
    """Conv filters [K, 3, p, p] -> uint8 RGB grid, each filter min-max scaled, gray gaps."""
    v = w.detach().float().cpu()
    k, c, p, _ = v.shape
    lo = v.flatten(1).min(dim=1).values[:, None, None, None]
    hi = v.flatten(1).max(dim=1).values[:, None, None, None]
    v = ((v - lo) / (hi - lo).clamp_min(1e-12)).permute(0, 2, 3, 1)  # [K, p, p, C]
    if c == 1:
        v = v.expand(-1, -1, -1, 3)
    v = v[..., :3]
    cols = int(math.ceil(math.sqrt(k)))
    rows = int(math.ceil(k / cols))
    grid = torch.full((rows * (p + gap) + gap, cols * (p + gap) + gap, 3), 0.5)
    for i in range(k):
        r, q = divmod(i, cols)
        y, x = gap + r * (p + gap), gap + q * (p + gap)
        grid[y : y + p, x : x + p] = v[i]
    return grid.mul(255).round().to(torch.uint8).numpy()


__all__ = ['ModelWorkbench', 'Training', 'LiveCheckpointError']
