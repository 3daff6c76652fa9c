"""Batched offline training of the online world model from recorded sessions.

The models, their initialisation, optimizers, losses and optimizer steps are the online
learner's: the trainer holds an :class:`~world_model_node.learner.OnlineLearner` for its
:class:`~world_model_node.core.WorldModelCore` (networks, optimizers, counters) and as its
checkpoint writer; ``WorldModelStep`` computes the core's losses on a batch (one module, so that
DistributedDataParallel sees both parameter sets) and ``WorldModelCore.apply_gradients`` clips
and steps (through the AMP loss scaler). One optimizer step on a batch of samples (see
:mod:`.dataset`) mirrors one online step on a frame:

* **gate closed** (the reconstruction MSE of the latest batch > RECONSTRUCTION_THRESHOLD, or at
  the start): one masked autoencoder step (mask ratio r ~ U(min, max) per step, random masks per
  sample) on the batch's target frames; the predictor does not train.
* **gate open**: one joint step. The history frames and the target frame are encoded without
  gradient (the online learner uses stored features for both), the current frame with gradient;
  the predictor runs the batched context (``build_context`` + ``predict``: the history is a
  stop-gradient memory, as online) for the executed action; loss = PRED_PATCH_W * patch MSE +
  PRED_LATENT_W * latent MSE (every ensemble head) + PRED_ACTION_W * action CE on the decoded
  prediction, plus JOINT_RECONSTRUCTION_WEIGHT * the unmasked reconstruction MSE of the current
  frame; one backward; each parameter set clipped to GRAD_CLIP_NORM and stepped by its own AdamW.

``gate=False`` makes every step a joint step. The online loop's per-frame prediction-threshold
gate and its ensemble-head calibration are not applied: every sample of a batch trains. Models
stay in eval mode, as online (no dropout).

Distributed: under ``torchrun`` (WORLD_SIZE > 1) every process joins a process group (gloo on
CPU, nccl on GPU), reads its own shard of each global batch (``DistributedSampler``) and the
gradients are averaged by ``DistributedDataParallel``; ``batch_size`` is the global batch, so one
process and N processes take the same steps on the same samples. The gate decision, the stop
request and the logged numbers are averaged over the processes each step.

Files in the output directory: the online checkpoint (``autoencoder.pth``, ``predictor_0.pth``,
``learner_state.pth`` and their backups, :mod:`~world_model_node.checkpoint`), which the online
node resumes from, plus ``offline_state.pth`` (everything an interrupted offline run needs to
continue exactly: weights, optimizer moments, schedules, data position, gate state) and
``offline_summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import signal
import sys
import time
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from .. import metrics as M
from ..checkpoint import CheckpointError, CheckpointManager, atomic_save
from ..config import WorldModelConfig
from ..core import (
    Transitions,
    autoencoder_loss,
    autoencoder_lr_factor,
    draw_mask_ratio,
    draw_training_context,
    joint_loss,
    loss_weights,
    prediction_losses,
    predictor_lr_factor,
    roll_frames,
)
from ..learner import OnlineLearner
from ..models import (
    MaskedAutoencoderViT,
    TransformerActionConditionedPredictor,
    scale_gradient,
)
from .dataset import TransitionDataset, TransitionIndex, build_index, split_samples
from .evaluation import evaluate, flatten_metrics

log = logging.getLogger(__name__)

STATE_FILE = 'offline_state.pth'
SUMMARY_FILE = 'offline_summary.json'
STATE_FORMAT = 'devbot-offline-train'
STATE_VERSION = 1


class TrainError(RuntimeError):
    """An offline run that cannot start or continue (the message says why and what to do)."""


# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainSettings:
    """How an offline run trains (stored with the run; a resumed run uses the stored values)."""

    batch_size: int = 32  # global batch: samples per optimizer step over all processes
    steps: int = 0  # optimizer steps of the whole run (0: from epochs)
    epochs: float = 1.0  # passes over the training split (when steps == 0)
    lr_schedule: str = 'constant'  # constant | cosine (decay to min_lr_ratio * base after warm-up)
    warmup_steps: int = 0  # linear warm-up from 0 to the base learning rate
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of the base learning rate
    autoencoder_lr: float | None = (
        None  # base learning rates (None: the config's, or the checkpoint's)
    )
    predictor_lr: float | None = None
    gate: bool = True  # masked autoencoder steps while the reconstruction gate is closed
    gate_check_interval: int = 5  # while closed, measure the unmasked reconstruction every N steps
    precision: str = 'fp32'  # fp32 | bf16 | fp16 (autocast; fp16 on CUDA only, with loss scaling)
    compile: bool = False  # torch.compile the training step
    val_fraction: float = 0.05  # held-out share (blocks of consecutive samples)
    val_block: int = 64  # samples per held-out block
    seed: int = 0  # data order, held-out split, masks
    eval_every: int = 0  # held-out evaluation every N steps (0: at the end only)
    eval_samples: int = 512  # held-out samples per evaluation (evenly spaced; 0: all)
    save_every: int = 500  # checkpoint every N steps (0: at the end and on interruption only)
    log_every: int = 10  # metrics to wandb / the progress bar every N steps
    transition_filter: str = ''  # train only on samples whose predicted transition it keeps

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)

        need(
            isinstance(self.batch_size, int) and self.batch_size >= 1,
            f'batch_size must be >= 1, got {self.batch_size}',
        )
        need(self.steps >= 0, f'steps must be >= 0, got {self.steps}')
        need(
            math.isfinite(self.epochs) and self.epochs > 0, f'epochs must be > 0, got {self.epochs}'
        )
        need(
            self.lr_schedule in ('constant', 'cosine'),
            f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}",
        )
        need(self.warmup_steps >= 0, f'warmup_steps must be >= 0, got {self.warmup_steps}')
        need(
            0.0 <= self.min_lr_ratio <= 1.0,
            f'min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}',
        )
        for name in ('autoencoder_lr', 'predictor_lr'):
            v = getattr(self, name)
            need(v is None or (math.isfinite(v) and v > 0), f'{name} must be > 0, got {v}')
        need(
            self.gate_check_interval >= 1,
            f'gate_check_interval must be >= 1, got {self.gate_check_interval}',
        )
        need(
            self.precision in ('fp32', 'bf16', 'fp16'),
            f"precision must be fp32, bf16 or fp16, got {self.precision!r}",
        )
        need(
            0.0 <= self.val_fraction < 1.0,
            f'val_fraction must be in [0, 1), got {self.val_fraction}',
        )
        need(self.val_block >= 1, f'val_block must be >= 1, got {self.val_block}')
        for name in ('eval_every', 'eval_samples', 'save_every'):
            need(getattr(self, name) >= 0, f'{name} must be >= 0, got {getattr(self, name)}')
        need(self.log_every >= 1, f'log_every must be >= 1, got {self.log_every}')

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> 'TrainSettings':
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls) -> 'DistInfo':
        """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK (defaults: a single process)."""
        try:
            return cls(
                int(os.environ.get('RANK', 0)),
                int(os.environ.get('WORLD_SIZE', 1)),
                int(os.environ.get('LOCAL_RANK', 0)),
            )
        except ValueError as exc:
            raise TrainError(
                f'bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}'
            ) from exc


@dataclass
class RunState:
    """Where a run is (saved in offline_state.pth; restored exactly on resume)."""

    global_step: int = 0  # optimizer steps taken (any kind)
    epoch: int = 0  # current pass over the training split
    batch_in_epoch: int = 0  # batches of this epoch already trained on
    samples: int = 0  # samples trained on (all processes)
    autoencoder_only_steps: int = 0  # masked autoencoder steps (gate closed)
    joint_steps: int = 0  # joint predictor + autoencoder steps (gate open)
    gate_recon: float = math.inf  # last measured unmasked reconstruction MSE (mean over processes)
    gate_variance: float = 0.0  # the pixel variance of those frames (mean): the gate's threshold
    closed_since_check: int = 0  # gate-closed steps since that measurement
    base_counters: dict = field(default_factory=dict)  # the online counters the run started from
    last_eval: dict = field(default_factory=dict)


def _mean_frame_variance(patches: torch.Tensor) -> torch.Tensor:
    """Mean over a batch [B, N, P] of each frame's pixel variance (0-d, detached)."""
    return patches.detach().float().flatten(1).var(dim=1, unbiased=False).mean()


# ---------------------------------------------------------------------------------------------
# the training step as one module (so DistributedDataParallel sees both parameter sets)
# ---------------------------------------------------------------------------------------------


class WorldModelStep(nn.Module):
    """The autoencoder and the level-0 predictor together; ``forward`` is one step's loss, made of
    the core's losses (``core.autoencoder_loss``, ``core.prediction_losses``, ``core.joint_loss``).

    Args:
        autoencoder: the MAE (the online learner's).
        predictor: the level-0 predictor (the online learner's).
        action_table: [A, C] normalised actions of the level.
        config: weights of the losses and the encoder gradient scale.
    """

    def __init__(
        self,
        autoencoder: MaskedAutoencoderViT,
        predictor: TransformerActionConditionedPredictor,
        action_table: torch.Tensor,
        config: WorldModelConfig,
    ) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.predictor = predictor
        self.register_buffer('action_table', action_table.detach().clone(), persistent=False)
        self.weights = loss_weights(config)
        self.joint_reconstruction_weight = config.joint_reconstruction_weight
        self.grad_scale = config.encoder_prediction_grad_scale

    def forward(
        self,
        frames: torch.Tensor,
        actions: torch.Tensor,
        mode: str,
        mask_ratio: float = 0.5,
        generator: torch.Generator | None = None,
        check_gate: bool = False,
    ) -> dict[str, torch.Tensor]:
        """One step's losses.

        Args:
            frames: [B, F+1, 3, S, S] in [0, 1]: context frames, then the target frame.
            actions: int64 [B, F] executed action after each context frame.
            mode: 'autoencoder' (masked step on the target frames) or 'joint'.
            mask_ratio, generator: masking of the autoencoder step.
            check_gate: in autoencoder mode, also measure the unmasked reconstruction MSE.
        Returns:
            {'loss': scalar to backpropagate, 'reconstruction': unmasked MSE (detached, if
            measured), and in joint mode 'patch', 'latent', 'action', 'explained_variance'
            (detached)}.
        """
        ae, pred = self.autoencoder, self.predictor
        b, f1 = frames.shape[:2]
        f = f1 - 1
        if mode == 'autoencoder':
            target = frames[:, f]
            out = {}
            if check_gate:
                with torch.no_grad():
                    patches = ae.patchify(target)
                    out['reconstruction'] = F.mse_loss(
                        ae.decode(ae.encode(target)), patches
                    ).float()
                    out['frame_variance'] = _mean_frame_variance(patches)
            loss = autoencoder_loss(ae, target, mask_ratio, generator)
            out['loss'] = loss
            out['autoencoder'] = loss.detach().float()
            return out
        if mode != 'joint':
            raise ValueError(f"mode must be 'autoencoder' or 'joint', got {mode!r}")
        x_cur, x_next = frames[:, f - 1], frames[:, f]
        with torch.no_grad():
            z_hist = (
                ae.encode(frames[:, : f - 1].flatten(0, 1)).unflatten(0, (b, f - 1))
                if f > 1
                else None
            )
            z_next = ae.encode(x_next)  # [B, T, D] target features
            next_patches = ae.decode(z_next)  # the real change's end, decoded
        z_cur = ae.encode(x_cur)  # [B, T, D] with graph
        cur_patches = ae.patchify(x_cur)
        recon = ae.decode(z_cur)
        recon_loss = F.mse_loss(recon, cur_patches)
        table = self.action_table[actions]  # [B, F, C]
        ctx = pred.build_context(
            scale_gradient(z_cur, self.grad_scale), z_hist, table[:, :-1] if f > 1 else None
        )
        out = pred.predict(ctx, table[:, -1])  # prediction [B, T, D]
        target_patches = ae.patchify(x_next)
        targets = Transitions(actions[:, -1], recon, next_patches, z_next, target_patches)
        pred_patches, parts = prediction_losses(ae, pred, out, targets, self.weights)
        loss = joint_loss(parts['total'], recon_loss, self.joint_reconstruction_weight)
        return {
            'loss': loss,
            'reconstruction': recon_loss.detach().float(),
            'frame_variance': _mean_frame_variance(cur_patches),
            'patch': parts['patch'].detach().float(),
            'latent': parts['latent'].detach().float(),
            'action': parts['action'].detach().float(),
            'explained_variance': M.explained_variance(pred_patches.detach(), target_patches),
        }


# ---------------------------------------------------------------------------------------------
# learning-rate schedule
# ---------------------------------------------------------------------------------------------


def lr_factor(step: int, total: int, schedule: str, warmup: int, min_ratio: float) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based) of ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == 'constant':
        return 1.0
    span = max(1, total - warmup)
    progress = min(1.0, max(0.0, (step - warmup) / span))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What a ``train()`` call did."""

    out_dir: Path
    global_step: int
    total_steps: int
    steps_this_run: int
    samples_this_run: int
    wall_s: float
    samples_per_s: float  # after the first step of this call (warm-up, compilation)
    interrupted: bool
    train_metrics: dict[str, float]
    eval: dict
    data_wait_fraction: float = (
        math.nan
    )  # share of the time (after the first step) spent waiting for batches


DATA_BOUND_FRACTION = (
    0.5  # waiting for batches more than this share of the time: say how to feed faster
)
DATA_HINT_AFTER_STEPS = 10  # ... once, after this many measured steps


class OfflineTrainer:
    """Offline training of the world model from sessions.

    Args:
        sessions: session (bag) directories (ignored on resume: the run's own are used).
        out_dir: where the checkpoint goes. A new run refuses a directory that holds a
            checkpoint unless ``overwrite`` (new generations then rotate the old ones to backups).
        config: model config (ignored on resume; with ``init_dir`` its model sizes must match).
        settings: training settings (ignored on resume).
        init_dir: start from this online checkpoint (read only; its counters continue).
        resume: continue the interrupted offline run in ``out_dir`` exactly.
        device: 'auto' | 'cpu' | 'cuda' (under torchrun each process takes cuda:LOCAL_RANK).
        workers: DataLoader worker processes per training process.
        cache_mb: decoded-frame cache per process (MiB).
        wandb_project: log to Weights & Biases (offline without a key); None: off.
        progress: show a progress bar (rank 0).
        skip_bad: leave out unreadable or empty sessions instead of failing.
        dist_info: this process's rank (default: from torchrun's environment).
    """

    def __init__(
        self,
        sessions: Sequence[str | Path],
        out_dir: str | Path,
        config: WorldModelConfig | None = None,
        settings: TrainSettings | None = None,
        init_dir: str | Path | None = None,
        resume: bool = False,
        device: str = 'auto',
        workers: int = 0,
        cache_mb: float = 1024,
        wandb_project: str | None = None,
        progress: bool = True,
        overwrite: bool = False,
        skip_bad: bool = False,
        dist_info: DistInfo | None = None,
    ) -> None:
        self.dist = dist_info or DistInfo.from_env()
        self.out_dir = Path(out_dir)
        self.workers = int(workers)
        self.cache_mb = float(cache_mb)
        self.progress = progress
        self.device = self._pick_device(device)
        saved = self._read_state() if resume else None
        if saved is not None:
            config = WorldModelConfig.from_checkpoint(saved['config'])
            settings = TrainSettings.from_dict(saved['settings'])
            sessions = [Path(p) for p in saved['data']['sessions']]
            skip_bad = False
            init_dir = None
        else:
            self._check_out_dir(overwrite, init_dir)
            if init_dir is not None and not CheckpointManager(init_dir).exists():
                raise TrainError(f'--init {init_dir}: no checkpoint there')
        self.config = config or WorldModelConfig()
        self.settings = settings or TrainSettings()
        if self.settings.batch_size % self.dist.world_size:
            raise TrainError(
                f'batch size {self.settings.batch_size} is not a multiple of the '
                f'{self.dist.world_size} processes: '
                'every process must take the same share of a batch'
            )
        if self.settings.precision == 'fp16' and self.device.type != 'cuda':
            raise TrainError('precision fp16 needs a CUDA device (use bf16 or fp32 on the CPU)')

        self._setup_data(sessions, saved, skip_bad)
        self._setup_models(saved, init_dir)
        self.model = self._wrap_model()
        self.logger = M.WandbLogger(
            wandb_project if self.dist.is_main else None,
            {
                'config': self.config.to_dict(),
                'settings': self.settings.to_dict(),
                'world_size': self.dist.world_size,
                'robot': self.index.robot_type,
            },
            run_name=f'{self.index.robot_type}_offline_{self.out_dir.name}',
        )
        self._stop_signal = False  # set by a signal handler in this process
        self.stop_requested = False  # a stop all processes agreed on (after a step)
        self._bar = None
        self._wait_s = self._busy_s = 0.0  # this train() call: waiting for batches / training

    # ------------------------------------------------------------------ set-up helpers

    def _setup_data(
        self, sessions: Sequence[str | Path], saved: dict | None, skip_bad: bool
    ) -> None:
        """Index the sessions, split them, and size the run."""
        s = self.settings
        self.index: TransitionIndex = build_index(
            sessions,
            self.config.context_frames,
            skip_bad=skip_bad,
            transition_filter=s.transition_filter,
        )
        if saved is not None and saved['data'] != self.index.fingerprint():
            raise TrainError(
                f'{self.out_dir}: the sessions of this run changed since it was interrupted '
                f'(was {saved["data"]}, now {self.index.fingerprint()}); '
                'start a new run with --init'
            )
        self.train_ids, self.val_ids = split_samples(
            self.index, s.val_fraction, s.seed, s.val_block
        )
        cache = int(self.cache_mb * 2**20)
        self.train_set = TransitionDataset(self.index, self.train_ids, self.config.img_size, cache)
        self.val_set = TransitionDataset(
            self.index, self._eval_subset(), self.config.img_size, cache // 4
        )
        self.batches_per_epoch = len(self.train_ids) // s.batch_size
        if self.batches_per_epoch == 0:
            raise TrainError(
                f'{len(self.train_ids)} training samples (of {len(self.index)}; '
                f'{len(self.val_ids)} held out) are fewer than one batch of {s.batch_size}: '
                'record more or use a smaller --batch-size'
            )
        self.total_steps = s.steps or max(1, math.ceil(s.epochs * self.batches_per_epoch))

    def _setup_models(self, saved: dict | None, init_dir: str | Path | None) -> None:
        """The online learner's models and optimizers (from a checkpoint if asked), the step
        module, the schedules; on resume everything from the offline state."""
        s = self.settings
        acts = self.index.action_space.normalized()
        source = self.out_dir if saved is not None else init_dir
        try:
            self.learner = OnlineLearner(
                self.config,
                acts,
                device=self.device,
                precision=s.precision,
                checkpoint_dir=source,
                autoencoder_lr=s.autoencoder_lr if saved is None else None,
                predictor_lr=s.predictor_lr if saved is None else None,
            )
        except CheckpointError as exc:
            raise TrainError(f'cannot start from the checkpoint in {source}: {exc}') from exc
        # writes go to the output folder only
        self.learner.checkpoints = CheckpointManager(self.out_dir)
        self.core = self.learner.core
        self.level = self.core.levels[0]  # offline training trains the primitive-action level
        self.autoencoder = self.core.autoencoder
        self.predictor = self.level.predictor
        self.optimizers = [self.core.ae_optimizer, self.level.optimizer]
        self.step_module = WorldModelStep(
            self.autoencoder, self.predictor, self.level.actions, self.config
        )
        self.schedulers = [
            torch.optim.lr_scheduler.LambdaLR(self.optimizers[0], self._autoencoder_lr_lambda),
            torch.optim.lr_scheduler.LambdaLR(self.optimizers[1], self._predictor_lr_lambda),
        ]
        self.scaler = torch.amp.GradScaler('cuda', enabled=s.precision == 'fp16')
        self.state = RunState(base_counters=self._online_counters())
        if saved is not None:
            self._restore(saved)

    def _wrap_model(self) -> nn.Module:
        """The step module, inside DistributedDataParallel when there are several processes,
        compiled when asked."""
        model: nn.Module = self.step_module
        if self.dist.distributed:
            self._init_process_group()
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == 'cuda' else None
            # find_unused_parameters: a gate-closed step leaves the predictor out, a joint step the
            # mask token
            model = DDP(
                self.step_module,
                device_ids=ids,
                find_unused_parameters=True,
                broadcast_buffers=False,
            )
        if self.settings.compile:
            model = torch.compile(model)
        return model

    def _pick_device(self, device: str) -> torch.device:
        if device == 'auto':
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        dev = torch.device(device)
        if dev.type == 'cuda':
            if not torch.cuda.is_available():
                raise TrainError('device cuda asked for, but torch sees no CUDA device')
            if dev.index is None:
                dev = torch.device('cuda', self.dist.local_rank % torch.cuda.device_count())
            torch.cuda.set_device(dev)
        return dev

    def _init_process_group(self) -> None:
        if dist.is_initialized():
            return
        backend = 'nccl' if self.device.type == 'cuda' else 'gloo'
        dist.init_process_group(
            backend=backend, rank=self.dist.rank, world_size=self.dist.world_size
        )

    def _check_out_dir(self, overwrite: bool, init_dir: str | Path | None) -> None:
        if (self.out_dir / STATE_FILE).exists() and not overwrite:
            raise TrainError(
                f'{self.out_dir} holds an offline run: '
                f'continue it with --resume {self.out_dir}, or '
                f'choose another --out'
            )
        if CheckpointManager(self.out_dir).exists() and not overwrite:
            hint = (
                f'start from it with --init {self.out_dir} and a new --out'
                if init_dir is None
                else 'choose another --out'
            )
            raise TrainError(
                f'{self.out_dir} holds a checkpoint; '
                f'not overwriting it ({hint}, or give --overwrite)'
            )

    def _eval_subset(self) -> np.ndarray:
        ids = self.val_ids
        k = self.settings.eval_samples
        if k and ids.size > k:
            ids = ids[np.linspace(0, ids.size - 1, k).round().astype(np.int64)]
        return ids

    def _lr_lambda(self, step: int) -> float:
        s = self.settings
        return lr_factor(step, self.total_steps, s.lr_schedule, s.warmup_steps, s.min_lr_ratio)

    def _autoencoder_lr_lambda(self, step: int) -> float:
        """The run's schedule times the config's autoencoder warm-up and fall (over the
        autoencoder's steps, so a model started from a trained checkpoint is not warmed up or
        started high again)."""
        return self._lr_lambda(step) * autoencoder_lr_factor(
            self.config, self.core.autoencoder_steps
        )

    def _predictor_lr_lambda(self, step: int) -> float:
        """The run's schedule times the config's predictor rate fall (over the predictor's
        steps, so a trained predictor does not start high again)."""
        return self._lr_lambda(step) * predictor_lr_factor(self.config, self.level.training_steps)

    def _online_counters(self) -> dict:
        return {
            'step': self.learner.step,
            'autoencoder_steps': self.core.autoencoder_steps,
            'training_steps': self.level.training_steps,
        }

    # ------------------------------------------------------------------ training

    def request_stop(self, *_: Any) -> None:
        """Finish the current step, save and return from ``train`` (signal handlers call this).

        The request travels with the step's all-reduce, so every process stops after the same
        step.
        """
        self._stop_signal = True

    def _mode(self) -> tuple[str, bool]:
        """('autoencoder' | 'joint', measure the gate in this step)."""
        st = self.state
        if not self.settings.gate or st.gate_recon <= self.config.gate_threshold(st.gate_variance):
            return 'joint', False
        check = (
            not math.isfinite(st.gate_recon)
            or st.closed_since_check + 1 >= self.settings.gate_check_interval
        )
        return 'autoencoder', check

    def _generators(self) -> tuple[float, torch.Generator, torch.Generator]:
        """This step's mask ratio and context draw (equal on every process, so that all of
        them run the same graph) and its mask and roll-offset generator (per process), derived from
        (seed, step, rank): a resumed run draws exactly what it would have drawn."""
        cfg, s = self.config, self.settings
        g = torch.Generator().manual_seed(
            zlib.crc32(f'ratio:{s.seed}:{self.state.global_step}'.encode())
        )
        ratio = draw_mask_ratio(cfg, g)
        mg = torch.Generator()  # on the CPU: the same masks on any device
        mg.manual_seed(
            zlib.crc32(f'mask:{s.seed}:{self.state.global_step}:{self.dist.rank}'.encode())
        )
        return ratio, g, mg

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimizer step on this process's share of a global batch; returns the step's
        numbers averaged over the processes."""
        frames = batch['frames'].to(self.device, non_blocking=True).float().div_(255.0)
        actions = batch['actions'].to(self.device, non_blocking=True)
        mode, check = self._mode()
        ratio, shared, gen = self._generators()
        if mode == 'joint':  # frames [B, F+1]: F-1 history frames, the current one, the target
            history = frames.shape[1] - 2
            rolled, keep = draw_training_context(history, self.config, shared)
            frames, actions = frames[:, history - keep :], actions[:, history - keep :]
            if rolled:
                frames = roll_frames(frames, 1.0, gen)
        else:
            frames = roll_frames(frames, self.config.roll_augmentation, gen)
        self.core.zero_grad([self.level])
        with self.core.autocast():
            out = self.model(
                frames, actions, mode, mask_ratio=ratio, generator=gen, check_gate=check
            )
        self.scaler.scale(out['loss']).backward()
        levels = [self.level] if mode == 'joint' else []
        self.core.apply_gradients(levels, autoencoder=True, scaler=self.scaler)
        self.scaler.update()
        with (
            warnings.catch_warnings()
        ):  # the predictor's schedule also advances on gate-closed steps
            warnings.filterwarnings(
                'ignore', message=re.escape('Detected call of `lr_scheduler.step()`')
            )
            for sched in self.schedulers:
                sched.step()
        # ---- one all-reduce: the numbers, the gate measurement, a stop request
        names = [
            'loss',
            'reconstruction',
            'frame_variance',
            'patch',
            'latent',
            'action',
            'explained_variance',
        ]
        nan = torch.tensor(math.nan, device=self.device)
        vec = torch.stack(
            [out[k].detach().reshape(()).double() if k in out else nan.double() for k in names]
            + [torch.tensor(float(self._stop_signal), device=self.device, dtype=torch.float64)]
        )
        if self.dist.distributed:
            dist.all_reduce(vec, op=dist.ReduceOp.SUM)  # means below; the stop flag: any process
            vec = vec / self.dist.world_size
        vec = vec.cpu()
        values = dict(zip(names, vec[:-1].tolist()))
        self.stop_requested = bool(vec[-1] > 0)  # agreed by all processes
        st = self.state
        st.global_step += 1
        st.samples += self.settings.batch_size
        if mode == 'autoencoder':
            st.autoencoder_only_steps += 1
            st.closed_since_check = 0 if check else st.closed_since_check + 1
        else:
            st.joint_steps += 1
        if 'reconstruction' in out:
            st.gate_recon = values['reconstruction']
            st.gate_variance = values['frame_variance']
        metrics = {k: v for k, v in values.items() if math.isfinite(v)}
        metrics.update(
            mode_joint=float(mode == 'joint'),
            mask_ratio=ratio if mode == 'autoencoder' else math.nan,
            autoencoder_lr=self.optimizers[0].param_groups[0]['lr'],
            predictor_lr=self.optimizers[1].param_groups[0]['lr'],
        )
        return {k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))}

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """This process's batches of an epoch (indices into the training set). The order is a
        permutation seeded by (seed, epoch); process r takes every world_size-th index, so the
        processes' batches k together are exactly the single-process batch k."""
        sampler = DistributedSampler(
            self.train_set,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            shuffle=True,
            seed=self.settings.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        idx = list(sampler)
        per = self.settings.batch_size // self.dist.world_size
        n = min(len(idx) // per, self.batches_per_epoch)
        return [idx[k * per : (k + 1) * per] for k in range(n)]

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """Batches from the current data position on, across epochs, forever."""
        while True:
            st = self.state
            batches = self._epoch_batches(st.epoch)[st.batch_in_epoch :]
            loader = DataLoader(
                self.train_set,
                batch_sampler=batches,
                num_workers=self.workers,
                pin_memory=self.device.type == 'cuda',
                worker_init_fn=_worker_ignores_interrupts,
            )
            for batch in loader:
                st.batch_in_epoch += 1  # counted when handed out: a save after this step skips it
                yield batch
            st.epoch += 1
            st.batch_in_epoch = 0

    def train(self, stop_after: int | None = None) -> TrainResult:
        """Train until the run's total steps (or ``stop_after`` more steps, or a stop request);
        save; evaluate on the held-out samples (at the end of the run).

        Args:
            stop_after: end this call after this many steps (saved; a later ``--resume`` goes on).
        """
        s, st = self.settings, self.state
        t0 = time.perf_counter()
        t_first = None
        steps = 0
        metrics: dict[str, float] = {}
        self._stop_signal = self.stop_requested = False
        self._wait_s = self._busy_s = (
            0.0  # waiting for batches / in train_step, after the first step
        )
        hinted = False
        bar = self._bar = self._progress_bar()
        handlers = self._install_signal_handlers()
        try:
            batches = self._batches()
            while st.global_step < self.total_steps and not self.stop_requested:
                if stop_after is not None and steps >= stop_after:
                    break
                t_ask = time.perf_counter()
                batch = next(batches)
                t_got = time.perf_counter()
                metrics = self.train_step(
                    batch
                )  # ends with a device sync (the numbers go to the CPU)
                steps += 1
                if t_first is None:
                    t_first = time.perf_counter()
                else:
                    self._wait_s += t_got - t_ask
                    self._busy_s += time.perf_counter() - t_got
                    if not hinted and steps > DATA_HINT_AFTER_STEPS:
                        hinted = self._hint_if_data_bound()
                if bar is not None:
                    bar.update(1)
                if st.global_step % s.log_every == 0 or st.global_step == self.total_steps:
                    self._log(metrics, bar, t_first, steps)
                if (
                    s.eval_every
                    and st.global_step % s.eval_every == 0
                    and st.global_step < self.total_steps
                ):
                    self.run_evaluation()
                if (
                    s.save_every
                    and st.global_step % s.save_every == 0
                    and st.global_step < self.total_steps
                ):
                    self.save()
        finally:
            self._restore_signal_handlers(handlers)
            if bar is not None:
                bar.close()
            self._bar = None
        interrupted = st.global_step < self.total_steps
        final_eval = {} if interrupted else self.run_evaluation()
        self.save()
        wall = time.perf_counter() - t0
        rate_steps = steps - 1 if steps > 1 else steps
        rate_wall = time.perf_counter() - t_first if (t_first is not None and steps > 1) else wall
        result = TrainResult(
            self.out_dir,
            st.global_step,
            self.total_steps,
            steps,
            steps * s.batch_size,
            wall,
            rate_steps * s.batch_size / rate_wall if rate_wall > 0 else 0.0,
            interrupted,
            metrics,
            final_eval,
            self.data_wait_fraction(),
        )
        if self.dist.is_main:
            self._write_summary(result)
        self.logger.close()
        return result

    # ------------------------------------------------------------------ evaluation

    def evaluate_samples(
        self, sample_ids: Sequence[int], batch_size: int = 32, dot_metrics: bool = False
    ) -> dict:
        """The current models' numbers (:func:`evaluation.evaluate`) on these samples of the index.

        E.g. ``trainer.val_ids[:64]``: a look at the models from a notebook or a test, this
        process only.
        """
        data = TransitionDataset(
            self.index, np.asarray(sample_ids, dtype=np.int64), self.config.img_size
        )
        loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)
        return self._evaluate_loader(loader, dot_metrics)

    def _evaluate_loader(self, loader: DataLoader, dot_metrics: bool) -> dict:
        """The current models' scores on ``loader``'s transitions (see :func:`evaluate`), by
        their weight averages when the config keeps them."""
        with self.core.averaged_weights():
            return evaluate(
                self.autoencoder,
                self.predictor,
                self.level.actions,
                loader,
                self.device,
                self.step_module.weights,
                dot_metrics=dot_metrics,
            )

    def run_evaluation(self) -> dict:
        """Evaluate on the held-out samples (rank 0; the others wait). Returns the result there."""
        res: dict = {}
        if self.dist.is_main and len(self.val_set):
            loader = DataLoader(
                self.val_set,
                batch_size=max(1, self.settings.batch_size // self.dist.world_size),
                shuffle=False,
                num_workers=0,
            )
            res = self._evaluate_loader(loader, self.index.robot_type == 'toroidal_dot')
            self.state.last_eval = {'step': self.state.global_step, **res}
            self.logger.log({**flatten_metrics(res), 'step': self.state.global_step})
            self._print(f'[train] held-out @ step {self.state.global_step}: {format_eval(res)}')
        if self.dist.distributed:
            dist.barrier()
        return res

    # ------------------------------------------------------------------ logging

    def data_wait_fraction(self) -> float:
        """Share of this ``train`` call's time (after its first step) spent waiting for batches
        (NaN before the second step)."""
        total = self._wait_s + self._busy_s
        return self._wait_s / total if total > 0 else math.nan

    def _hint_if_data_bound(self) -> bool:
        """Say once how to feed the model faster when waiting for batches takes most of the time."""
        frac = self.data_wait_fraction()
        if not frac > DATA_BOUND_FRACTION:
            return False
        how = (
            'give --workers N (DataLoader processes decode frames in parallel)'
            if self.workers == 0
            else (
                f'more --workers than {self.workers}, '
                'or a larger --cache-mb if the frames would fit'
            )
        )
        self._print(f'[train] waiting for data takes {100 * frac:.0f}% of the time: {how}')
        return True

    def _progress_bar(self):
        if not (self.progress and self.dist.is_main):
            return None
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(
            total=self.total_steps,
            initial=self.state.global_step,
            unit='step',
            desc='train',
            dynamic_ncols=True,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
            file=sys.stderr,
        )

    def _log(self, metrics: dict[str, float], bar, t_first: float | None, steps: int) -> None:
        if not self.dist.is_main:
            return
        rate = None
        if t_first is not None and steps > 1:
            rate = (steps - 1) * self.settings.batch_size / max(1e-9, time.perf_counter() - t_first)
        wait = self.data_wait_fraction()
        if bar is not None:
            post = {
                'samples/s': f'{rate:.1f}' if rate else '-',
                'gate': 'open' if metrics.get('mode_joint') else 'closed',
                'recon': f'{self.state.gate_recon:.5f}',
            }
            if 'loss' in metrics:
                post['loss'] = f"{metrics['loss']:.4f}"
            if math.isfinite(wait):
                post['data wait'] = f'{100 * wait:.0f}%'
            bar.set_postfix(post, refresh=False)
        data = {f'train/{k}': v for k, v in metrics.items()}
        data.update(step=self.state.global_step, samples=self.state.samples)
        if rate:
            data['train/samples_per_s'] = rate
        if math.isfinite(wait):
            data['train/data_wait_fraction'] = wait
        self.logger.log(data)

    def _print(self, text: str) -> None:
        if not self.dist.is_main:
            return
        if self._bar is not None:
            self._bar.write(text)  # above the progress bar, not through it
        else:
            print(text, flush=True)

    def _write_summary(self, result: TrainResult) -> None:
        st = self.state
        doc = {
            'robot': self.index.robot_type,
            'out_dir': str(self.out_dir),
            'world_size': self.dist.world_size,
            'device': str(self.device),
            'global_step': st.global_step,
            'total_steps': self.total_steps,
            'epoch': st.epoch,
            'samples_trained': st.samples,
            'autoencoder_only_steps': st.autoencoder_only_steps,
            'joint_steps': st.joint_steps,
            'gate_reconstruction': st.gate_recon,
            'this_run': {
                'steps': result.steps_this_run,
                'wall_s': round(result.wall_s, 2),
                'samples_per_s': round(result.samples_per_s, 3),
                'interrupted': result.interrupted,
                'data_wait_fraction': (
                    round(result.data_wait_fraction, 3)
                    if math.isfinite(result.data_wait_fraction)
                    else None
                ),
            },
            'data': {
                'sessions': len(self.index.sessions),
                'samples': len(self.index),
                'train': int(self.train_ids.size),
                'held_out': int(self.val_ids.size),
                'evaluated': len(self.val_set),
            },
            'settings': self.settings.to_dict(),
            'last_eval': st.last_eval,
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.out_dir / (SUMMARY_FILE + '.tmp')
        tmp.write_text(json.dumps(doc, indent=2, default=_json_default))
        os.replace(tmp, self.out_dir / SUMMARY_FILE)

    # ------------------------------------------------------------------ signals

    def _install_signal_handlers(self) -> dict:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, self.request_stop)
        return old

    @staticmethod
    def _restore_signal_handlers(old: dict) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    # ------------------------------------------------------------------ persistence

    def save(self) -> None:
        """Write the offline state, then the online checkpoint generation.

        Rank 0 writes; the others wait.
        """
        if self.dist.is_main:
            learner = self.learner
            generation = learner.generation + 1
            st = self.state
            payload = {
                'format': STATE_FORMAT,
                'version': STATE_VERSION,
                'generation': generation,
                'config': self.config.to_dict(),
                'settings': self.settings.to_dict(),
                'data': self.index.fingerprint(),
                'world_size': self.dist.world_size,
                'run': {k: v for k, v in dataclasses.asdict(st).items() if k != 'last_eval'},
                'last_eval': json.loads(json.dumps(st.last_eval, default=_json_default)),
                'autoencoder': self.autoencoder.state_dict(),
                'predictor': self.predictor.state_dict(),
                'optimizers': [opt.state_dict() for opt in self.optimizers],
                'schedulers': [sch.state_dict() for sch in self.schedulers],
                'scaler': self.scaler.state_dict(),
            }
            self.out_dir.mkdir(parents=True, exist_ok=True)
            from ..checkpoint import to_cpu

            atomic_save(to_cpu(payload), self.out_dir / STATE_FILE)
            self._save_online()
            if learner.generation != generation:
                raise TrainError(
                    f'checkpoint generation mismatch ({learner.generation} vs {generation})'
                )
        if self.dist.distributed:
            dist.barrier()

    def _save_online(self) -> None:
        """The online checkpoint: counters advanced by what this run trained, no history (the
        robot is elsewhere by now), the learning rates at their base values (a decayed schedule
        must not leave the online learner with a learning rate near zero)."""
        learner, st, base = self.learner, self.state, self.state.base_counters
        learner.step = base['step'] + st.samples
        self.core.autoencoder_steps = base['autoencoder_steps'] + st.global_step
        self.level.training_steps = base['training_steps'] + st.joint_steps
        learner.stats[0].consecutive_accurate = 0
        learner.stats[0].last_error = None
        learner.consecutive_autoencoder_iterations = 0
        learner.history.clear()
        saved_lrs = [[g['lr'] for g in opt.param_groups] for opt in self.optimizers]
        try:
            for opt in self.optimizers:
                for g in opt.param_groups:
                    g['lr'] = g.get('initial_lr', g['lr'])
            learner.save()
        finally:
            for opt, lrs in zip(self.optimizers, saved_lrs):
                for g, lr in zip(opt.param_groups, lrs):
                    g['lr'] = lr

    def _read_state(self) -> dict:
        path = self.out_dir / STATE_FILE
        if not path.is_file():
            hint = (
                ' (it holds an online checkpoint: start an offline run from it with --init)'
                if CheckpointManager(self.out_dir).exists()
                else ''
            )
            raise TrainError(f'nothing to resume: {path} not found{hint}')
        try:
            state = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as exc:  # noqa: BLE001 - truncated, corrupt, or not ours
            raise TrainError(
                f'{path}: unreadable offline state ({type(exc).__name__}: {exc})'
            ) from exc
        if (
            not isinstance(state, dict)
            or state.get('format') != STATE_FORMAT
            or state.get('version') != STATE_VERSION
        ):
            raise TrainError(f'{path}: not an offline training state of version {STATE_VERSION}')
        if state.get('world_size') != self.dist.world_size:
            log.warning(
                'resuming a run of %s process(es) with %d: same global batches, different shards',
                state.get('world_size'),
                self.dist.world_size,
            )
        return state

    def _restore(self, saved: dict) -> None:
        gen = int(saved['generation'])
        online = self.learner.generation
        if online > gen:
            raise TrainError(
                f'{self.out_dir}: the checkpoint was trained further after this offline run was '
                f'saved (generation {online} > {gen}); continuing would lose that. '
                f'Start a new offline run from it with --init {self.out_dir} --out <new dir>'
            )
        try:
            self.autoencoder.load_state_dict(saved['autoencoder'])
            self.predictor.load_state_dict(saved['predictor'])
            for opt, sd in zip(self.optimizers, saved['optimizers']):
                opt.load_state_dict(sd)
            for sch, sd in zip(self.schedulers, saved['schedulers']):
                sch.load_state_dict(sd)
            self.scaler.load_state_dict(saved['scaler'])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise TrainError(f'{self.out_dir / STATE_FILE}: does not fit the model: {exc}') from exc
        run = dict(saved['run'])
        self.state = RunState(**run, last_eval=dict(saved.get('last_eval') or {}))
        self.learner.generation = gen


def _worker_ignores_interrupts(_: int) -> None:
    """DataLoader workers leave Ctrl-C / SIGTERM to the training process, which stops after the
    current step and saves (a worker killed by the signal would end the run with an error)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def format_eval(res: dict) -> str:
    """One line of held-out numbers."""
    if not res:
        return 'no held-out samples'
    parts = [
        f"{res['samples']} samples",
        f"EV {res['explained_variance']:.3f}",
        f"mse {res['mse']:.5f}",
        f"recon {res['reconstruction_loss']:.5f}",
        f"action acc {res['action_accuracy']:.2f}",
    ]
    for a, e in res.get('per_action', {}).items():
        text = f"a{a}: EV {e['explained_variance']:.3f}"
        if 'dot_error_px_median' in e:
            text += f", dot {e['dot_error_px_median']:.1f} px, within 3 px {e['within_3px']:.2f}"
        parts.append(text)
    return '; '.join(parts)


def init_distributed(device: str = 'auto') -> DistInfo:
    """Join torchrun's process group when there is one (WORLD_SIZE > 1): nccl when this process
    trains on CUDA, gloo on the CPU. Returns this process's rank information."""
    info = DistInfo.from_env()
    if not info.distributed or dist.is_initialized():
        return info
    cuda = device != 'cpu' and torch.cuda.is_available()
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise TrainError('device cuda asked for, but torch sees no CUDA device')
    if cuda:
        torch.cuda.set_device(info.local_rank % torch.cuda.device_count())
    dist.init_process_group(
        backend='nccl' if cuda else 'gloo', rank=info.rank, world_size=info.world_size
    )
    return info


def broadcast_text(text: str) -> str:
    """Rank 0's value of ``text`` on every process (unchanged without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return text
    box = [text]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def cleanup_distributed() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = [
    'OfflineTrainer',
    'TrainSettings',
    'TrainResult',
    'TrainError',
    'DistInfo',
    'RunState',
    'WorldModelStep',
    'lr_factor',
    'format_eval',
    'init_distributed',
    'broadcast_text',
    'cleanup_distributed',
    'STATE_FILE',
    'SUMMARY_FILE',
]
