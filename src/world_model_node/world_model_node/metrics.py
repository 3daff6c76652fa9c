"""Training metrics (SPEC D5) and optional wandb logging (the D6 diagnostics are in ``diagnostics``).

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
from typing import Any

import numpy as np
import torch

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
# logging
# ---------------------------------------------------------------------------------------------


def to_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """{name: 0-d tensor | number} -> {name: float}, with one device->host transfer for the tensors."""
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
]
