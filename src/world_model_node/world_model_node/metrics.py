"""Training metrics and optional wandb logging (the attention/action diagnostics are in
``diagnostics``; ``learner_metrics`` assembles the online learner's logged dict from both).

Every metric is computed with tensor ops on the tensors' device and returned as a dict of 0-d
tensors; ``to_floats`` moves a whole dict to the host in one transfer when it is logged. (The
original converted ~10M values to Python lists per logged step.)

wandb is optional: ``WandbLogger(project=None)`` does nothing. With a project it runs online
when an API key is configured, else ``mode='offline'`` (a local run directory, synced later
with ``wandb sync``). A failing wandb never stops learning: errors become one warning and the
logger switches itself off.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import diagnostics as D

if TYPE_CHECKING:
    from .learner import OnlineLearner

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# prediction quality
# ---------------------------------------------------------------------------------------------


def explained_variance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - Var(pred - target) / Var(target), over all elements (R^2 in patch space). 0-d tensor."""
    var_t = target.float().var(unbiased=False)
    return 1.0 - (pred.float() - target.float()).var(unbiased=False) / var_t.clamp_min(1e-12)


# ---------------------------------------------------------------------------------------------
# gradients and update-to-weight ratios
# ---------------------------------------------------------------------------------------------


def layer_key(name: str) -> str:
    """Group key of a parameter: 'layers.3.fc1.weight' -> 'layers_3', 'blocks.0.attn.qkv.bias' ->
    'blocks_0', 'action_embed.net.0.weight' -> 'action_embed', 'pos_embed' -> 'pos_embed'."""
    parts = name.split('.')
    if len(parts) > 2 and parts[1].isdigit():
        return f'{parts[0]}_{parts[1]}'
    if len(parts) > 1:
        return parts[0]
    return parts[0]


def _grouped(
    named: list[tuple[str, torch.Tensor]], values: torch.Tensor
) -> dict[str, torch.Tensor]:
    groups: dict[str, list[int]] = {}
    for i, (n, _) in enumerate(named):
        groups.setdefault(layer_key(n), []).append(i)
    return {
        k: values[idx].median()
        for k, idx in ((k, torch.tensor(ix, device=values.device)) for k, ix in groups.items())
    }


def grad_norm_stats(
    named_params: Iterable[tuple[str, torch.nn.Parameter]], prefix: str
) -> dict[str, torch.Tensor]:
    """Global L2 grad norm and per-layer median of per-tensor grad norms.

    Returns {'<prefix>_grad_norm': total, 'grad_norms/<prefix>/<layer>': median, ...}.
    """
    named = [(n, p) for n, p in named_params if p.grad is not None]
    if not named:
        return {}
    norms = torch.stack(torch._foreach_norm([p.grad.detach() for _, p in named]))  # [P]
    out = {f'{prefix}_grad_norm': torch.linalg.vector_norm(norms)}
    for k, v in _grouped(named, norms).items():
        out[f'grad_norms/{prefix}/{k}'] = v
    return out


def snapshot(params: Iterable[torch.nn.Parameter]) -> list[torch.Tensor]:
    """Copies of the parameters (before an optimizer step) for ``update_ratio_stats``."""
    return [p.detach().clone() for p in params]


def update_ratio_stats(
    named_params: list[tuple[str, torch.nn.Parameter]], before: list[torch.Tensor], prefix: str
) -> dict[str, torch.Tensor]:
    """Update-to-weight ratio |w_after - w_before| / |w_before| per parameter tensor:
    95th percentile over tensors and per-layer medians.

    Returns {'<prefix>_uwr_95th': q95, 'uwr/<prefix>/<layer>': median, ...}.
    """
    after = [p.detach() for _, p in named_params]
    diffs = torch._foreach_sub(after, before)
    ratio = torch.stack(torch._foreach_norm(diffs)) / torch.stack(
        torch._foreach_norm(before)
    ).clamp_min(1e-12)
    out = {f'{prefix}_uwr_95th': torch.quantile(ratio, 0.95)}
    for k, v in _grouped(named_params, ratio).items():
        out[f'uwr/{prefix}/{k}'] = v
    return out


def interval_stats(
    intervals: torch.Tensor, prefix: str = 'action_timing'
) -> dict[str, torch.Tensor]:
    """Mean/median/min/max/std of time intervals [K] (seconds); empty dict when K < 1."""
    if intervals.numel() == 0:
        return {}
    x = intervals.double()
    std = x.std(unbiased=False) if x.numel() > 1 else torch.zeros((), dtype=x.dtype)
    return {
        f'{prefix}/mean_interval': x.mean(),
        f'{prefix}/median_interval': x.median(),
        f'{prefix}/min_interval': x.min(),
        f'{prefix}/max_interval': x.max(),
        f'{prefix}/std_interval': std,
    }


# ---------------------------------------------------------------------------------------------
# the online learner's logged metrics
# ---------------------------------------------------------------------------------------------


def learner_metrics(learner: 'OnlineLearner') -> dict[str, Any]:
    """The online learner's scalar metrics: counters, the last losses, fresh prediction errors and
    explained variance, action timing, and the diagnostics of the latest transition (0-d tensors
    or numbers; ``to_floats`` moves them to the host in one transfer)."""
    levels, stats = learner.levels, learner.stats
    m: dict[str, Any] = {
        'step': learner.step,
        'training_step': levels[0].training_steps,
        'reconstruction_loss': learner.last_reconstruction_loss,
        'consecutive_autoencoder_iterations': learner.consecutive_autoencoder_iterations,
        'predictor_training_iterations': sum(lvl.training_steps for lvl in levels),
        'autoencoder_steps': learner.autoencoder_steps,
        'num_levels': len(levels),
        'gate_releases': learner.gate_releases,
    }
    if learner.last_autoencoder_loss is not None:
        m['autoencoder_training_loss'] = learner.last_autoencoder_loss
        m['mask_ratio'] = learner.last_mask_ratio
    l0 = stats[0].last_losses
    if l0:
        m.update(
            {
                'predictor_training_loss': l0['total'],
                'predictor_patch_loss': l0['patch'],
                'predictor_latent_loss': l0['latent'],
                'predictor_action_loss': l0['action'],
            }
        )
    fresh = learner.last_fresh
    if fresh is not None and learner.last_scoring is not None:
        m['prediction_error_last'] = fresh['error']
    for lvl, st in zip(levels, stats):
        if st.last_error is not None:
            m[f'prediction_errors/level_{lvl.index}'] = st.last_error
    if fresh is not None:
        # explained variance of the last fresh level-0 prediction, if it is of the latest frame
        tgt = learner.latest.target[0] if learner.latest is not None else None
        if tgt is not None and fresh['step'] == learner.history[-1].step:
            m['predictor_explained_variance'] = explained_variance(fresh['patches'], tgt)
    times = learner.action_times
    if len(times) > 1:
        m.update(interval_stats(torch.diff(torch.tensor(list(times), dtype=torch.float64))))
    m.update(latest_transition_diagnostics(learner))
    return m


@torch.no_grad()
def latest_transition_diagnostics(learner: 'OnlineLearner') -> dict[str, torch.Tensor]:
    """The diagnostics of the latest known level-0 transition (frame t-1 -> frame t, its executed
    action): attention metrics of the executed candidate, action-sweep spread, counterfactual gaps
    (eval mode, cached features, two batched passes). Empty before a gate-open transition."""
    history = learner.history
    n = len(history)
    if n < 2 or history[-2].action < 0 or not history[-2].checked:
        return {}
    lvl = learner.levels[0]
    idx = [n - 2]
    while (
        len(idx) <= learner.config.prediction_history_size
        and idx[0] > 0
        and history[idx[0] - 1].action >= 0
    ):
        idx.insert(0, idx[0] - 1)
    feats = torch.stack([history[i].features for i in idx])  # [F, T, D]
    acts = lvl.actions[[history[i].action for i in idx]]  # [F, C]
    frame = history[-1].frame.to(learner.device).permute(2, 0, 1)[None].float().div(255.0)
    target = learner.autoencoder.patchify(frame)[0]  # [N, P]
    return D.transition_metrics(
        learner.autoencoder,
        lvl.predictor,
        feats,
        acts[:-1],
        lvl.actions,
        history[-2].action,
        target,
        num_shuffles=1,
        generator=torch.Generator().manual_seed(learner.step),
    )


# ---------------------------------------------------------------------------------------------
# logging
# ---------------------------------------------------------------------------------------------


def to_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """{name: 0-d tensor | number} -> {name: float}, one device->host transfer for the tensors."""
    out = {
        k: float(v) for k, v in metrics.items() if not isinstance(v, torch.Tensor) and v is not None
    }
    by_device: dict[torch.device, list[str]] = {}
    for k, v in metrics.items():
        if isinstance(v, torch.Tensor):
            by_device.setdefault(v.device, []).append(k)
    for names in by_device.values():  # one transfer per device
        vals = torch.stack([metrics[k].detach().double().reshape(()) for k in names]).cpu().tolist()
        out.update(zip(names, vals))
    return out


class WandbLogger:
    """Optional Weights & Biases logging that never blocks or crashes learning.

    Args:
        project: wandb project; None disables logging entirely.
        config: run config (e.g. ``WorldModelConfig.to_dict()``).
        run_name: optional run name.
        mode: 'online', 'offline' or 'disabled'; default: $WANDB_MODE, else 'online' when an API key
            is configured ($WANDB_API_KEY or ~/.netrc), else 'offline'.
        directory: where wandb writes its run directory (default $WANDB_DIR or cwd).
    """

    def __init__(
        self,
        project: str | None,
        config: Mapping[str, Any] | None = None,
        run_name: str | None = None,
        mode: str | None = None,
        directory: str | os.PathLike | None = None,
    ) -> None:
        self.run = None
        self.failed = False
        self.mode = None
        if not project:
            return
        try:
            import wandb  # optional dependency

            self._wandb = wandb
            mode = (
                mode
                or os.environ.get('WANDB_MODE')
                or ('online' if _has_wandb_key() else 'offline')
            )
            self.mode = mode
            kwargs: dict[str, Any] = dict(
                project=project,
                config=dict(config or {}),
                name=run_name,
                mode=mode,
                reinit='finish_previous',
            )
            if directory is not None:
                kwargs['dir'] = str(directory)
            try:
                kwargs['settings'] = wandb.Settings(init_timeout=30, silent=True)
            except Exception:  # older/newer wandb without these settings
                pass
            self.run = wandb.init(**kwargs)
        except Exception as exc:  # noqa: BLE001 - logging must never stop learning
            self._fail('wandb.init', exc)

    @property
    def enabled(self) -> bool:
        return self.run is not None and not self.failed

    @property
    def run_dir(self) -> str | None:
        """The local run directory (offline runs: .../wandb/offline-run-*), or None."""
        try:
            return None if self.run is None else str(self.run.dir)
        except Exception:  # noqa: BLE001
            return None

    def log(
        self, metrics: Mapping[str, Any], images: Mapping[str, np.ndarray] | None = None
    ) -> None:
        """Log scalar metrics (tensors or numbers) and optional uint8 images [H, W, 3]."""
        if not self.enabled:
            return
        try:
            data: dict[str, Any] = {k: v for k, v in to_floats(metrics).items() if math.isfinite(v)}
            for k, img in (images or {}).items():
                data[k] = self._wandb.Image(img)
            self.run.log(data)
        except Exception as exc:  # noqa: BLE001
            self._fail('wandb.log', exc)

    def close(self) -> None:
        if self.run is None:
            return
        try:
            self.run.finish()
        except Exception as exc:  # noqa: BLE001
            log.warning('wandb finish failed: %s', exc)
        self.run = None

    def _fail(self, where: str, exc: BaseException) -> None:
        self.failed = True
        log.warning(
            '%s failed (%s: %s); wandb logging is off for this run, learning continues',
            where,
            type(exc).__name__,
            exc,
        )


def _has_wandb_key() -> bool:
    if os.environ.get('WANDB_API_KEY'):
        return True
    netrc = os.path.expanduser('~/.netrc')
    try:
        with open(netrc, encoding='utf-8') as fh:
            return 'api.wandb.ai' in fh.read()
    except OSError:
        return False


__all__ = [
    'explained_variance',
    'grad_norm_stats',
    'snapshot',
    'update_ratio_stats',
    'interval_stats',
    'to_floats',
    'WandbLogger',
    'layer_key',
    'learner_metrics',
    'latest_transition_diagnostics',
]
