"""Held-out evaluation of a world model on recorded samples (no learning).

The numbers are those of the world-model-core benchmark (``bench/bench_world_model.py``), computed
on transitions that were never trained on:

* explained variance in patch space, 1 - Var(pred - target) / Var(target), per sample, averaged
  (overall and per executed action), and the patch MSE;
* for the dot world, the distance between the dot in the predicted frame and the dot in the real
  next frame (intensity centroids on the torus), per action: median, mean, share within 3 px;
* the predictor's losses (patch, latent, action CE, weighted total), the unmasked
  reconstruction MSE of the current frames and the action classifier's accuracy.

A recorded sample only has the outcome of the action that was executed, so "per action" groups
samples by their executed action.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..core import Transitions, prediction_losses
from ..models import MaskedAutoencoderViT, TransformerActionConditionedPredictor
from ..visualization import patches_to_images


def dot_centroids(images: np.ndarray, min_peak: float = 64.0) -> np.ndarray:
    """Centre of the bright blob on a torus, per image.

    Only pixels at least half as bright as the image's brightest (above its median grey level)
    count, weighted by their brightness; each axis is averaged as an angle (circular mean), so a
    blob split by the border is found whole. The half-maximum cut matters for decoded predictions:
    their faint patch-grid haze covers ~600x more pixels than an 81-pixel dot and would otherwise
    pull the centroid towards the image centre.

    Args:
        images: uint8-scaled (0..255) [K, H, W, 3].
        min_peak: an image whose brightest pixel is less than this above its median has no dot.
    Returns:
        float64 [K, 2] (x, y) in pixels; NaN where an image has no dot.
    """
    grey = np.asarray(images, dtype=np.float64).mean(axis=3)  # [K, H, W]
    k, h, w = grey.shape
    weight = np.clip(grey - np.median(grey.reshape(k, -1), axis=1)[:, None, None], 0, None)
    peak = weight.reshape(k, -1).max(axis=1)  # [K]
    weight[weight < 0.5 * peak[:, None, None]] = 0.0
    out = np.full((k, 2), np.nan)
    for axis, size, col in ((1, w, 0), (2, h, 1)):  # x: sum over rows
        profile = weight.sum(axis=axis)  # [K, size]
        angle = 2 * np.pi * np.arange(size) / size
        c, s = profile @ np.cos(angle), profile @ np.sin(angle)
        out[:, col] = (np.arctan2(s, c) % (2 * np.pi)) * size / (2 * np.pi)
    out[peak < min_peak] = np.nan
    return out


def torus_distance(a: np.ndarray, b: np.ndarray, size: int) -> np.ndarray:
    """Distance between points [K, 2] on a size x size torus: [K]."""
    d = np.abs(a - b) % size
    d = np.minimum(d, size - d)
    return np.hypot(d[:, 0], d[:, 1])


def per_sample_explained_variance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - Var(pred - target) / Var(target) of each sample over all its values: [B, ...] -> [B]."""
    p, t = pred.float().flatten(1), target.float().flatten(1)
    return 1.0 - (p - t).var(dim=1, unbiased=False) / t.var(dim=1, unbiased=False).clamp_min(1e-12)


@torch.no_grad()
def evaluate(
    autoencoder: MaskedAutoencoderViT,
    predictor: TransformerActionConditionedPredictor,
    action_table: torch.Tensor,
    batches: Iterable[dict[str, torch.Tensor]],
    device: torch.device,
    weights: tuple[float, float, float] = (0.2, 0.8, 1.0),
    dot_metrics: bool = False,
) -> dict:
    """Evaluate the level-0 world model on samples it has not trained on.

    Args:
        autoencoder, predictor: the models (used in eval mode; their mode is restored afterwards).
        action_table: [A, C] normalised actions (the predictor's candidate table).
        batches: dicts with 'frames' uint8 [B, F+1, 3, S, S] and 'actions' int64 [B, F].
        device: where to run.
        weights: (PRED_PATCH_W, PRED_LATENT_W, PRED_ACTION_W).
        dot_metrics: also measure the dot position error (the toroidal dot world).
    Returns:
        {'samples', 'loss', 'patch_loss', 'latent_loss', 'action_loss', 'reconstruction_loss',
         'explained_variance', 'mse', 'action_accuracy', 'per_action': {a: {...}}}; an empty
        dict when there is no sample.
    """
    modes = (autoencoder.training, predictor.training)
    autoencoder.eval()
    predictor.eval()
    sums = {
        'loss': 0.0,
        'patch_loss': 0.0,
        'latent_loss': 0.0,
        'action_loss': 0.0,
        'reconstruction_loss': 0.0,
        'correct': 0.0,
    }
    ev_all, mse_all, act_all, dist_all = [], [], [], []
    n = 0
    try:
        for batch in batches:
            x = batch['frames'].to(device).float().div_(255.0)  # [B, F+1, 3, S, S]
            acts = batch['actions'].to(device)  # [B, F]
            b, f1 = x.shape[:2]
            f = f1 - 1
            z = autoencoder.encode(x.flatten(0, 1)).unflatten(0, (b, f1))  # [B, F+1, T, D]
            cur, nxt = x[:, f - 1], x[:, f]
            cur_patches, target = autoencoder.patchify(cur), autoencoder.patchify(nxt)
            recon = autoencoder.decode(z[:, f - 1])
            table = action_table[acts]  # [B, F, C]
            ctx = predictor.build_context(
                z[:, f - 1], z[:, : f - 1] if f > 1 else None, table[:, :-1] if f > 1 else None
            )
            out = predictor.predict(ctx, table[:, -1])
            pred = autoencoder.decode(out.prediction)  # [B, N, P]
            logits = predictor.classify_action(pred, recon)
            truth = Transitions(acts[:, -1], recon, autoencoder.decode(z[:, f]), z[:, f], target)
            _, parts = prediction_losses(autoencoder, predictor, out, truth, weights, pred)
            sums['loss'] += float(parts['total']) * b
            sums['patch_loss'] += float(parts['patch']) * b
            sums['latent_loss'] += float(parts['latent']) * b
            sums['action_loss'] += float(parts['action']) * b
            sums['reconstruction_loss'] += float(F.mse_loss(recon, cur_patches)) * b
            sums['correct'] += float((logits.argmax(dim=1) == acts[:, -1]).sum())
            ev_all.append(per_sample_explained_variance(pred, target).cpu().numpy())
            mse_all.append(
                ((pred.float() - target.float()) ** 2).flatten(1).mean(dim=1).cpu().numpy()
            )
            act_all.append(acts[:, -1].cpu().numpy())
            if dot_metrics:
                size = x.shape[-1]
                truth = nxt.mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
                dist_all.append(
                    torus_distance(
                        dot_centroids(patches_to_images(autoencoder, pred)),
                        dot_centroids(truth),
                        size,
                    )
                )
            n += b
    finally:
        autoencoder.train(modes[0])
        predictor.train(modes[1])
    if n == 0:
        return {}
    ev, mse, act = np.concatenate(ev_all), np.concatenate(mse_all), np.concatenate(act_all)
    dist = np.concatenate(dist_all) if dot_metrics else None
    res: dict = {k: v / n for k, v in sums.items() if k != 'correct'}
    res.update(
        samples=n,
        explained_variance=float(ev.mean()),
        mse=float(mse.mean()),
        action_accuracy=sums['correct'] / n,
    )
    per_action = {}
    for a in range(action_table.shape[0]):
        sel = act == a
        if not sel.any():
            continue
        entry = {
            'samples': int(sel.sum()),
            'explained_variance': float(ev[sel].mean()),
            'mse': float(mse[sel].mean()),
        }
        if dist is not None:
            d = dist[sel]
            found = np.isfinite(d)
            entry.update(
                dot_error_px_median=float(np.median(d[found])) if found.any() else math.nan,
                dot_error_px_mean=float(d[found].mean()) if found.any() else math.nan,
                within_3px=float(np.mean(d <= 3.0)),
            )
        per_action[a] = entry
    res['per_action'] = per_action
    return res


def flatten_metrics(result: dict, prefix: str = 'val') -> dict[str, float]:
    """An :func:`evaluate` result as flat scalar names.

    E.g. 'val/per_action_1/dot_error_px_median'.
    """
    out = {}
    for k, v in result.items():
        if k == 'per_action':
            for a, entry in v.items():
                for kk, vv in entry.items():
                    out[f'{prefix}/action_{a}/{kk}'] = float(vv)
        else:
            out[f'{prefix}/{k}'] = float(v)
    return out


__all__ = [
    'evaluate',
    'flatten_metrics',
    'dot_centroids',
    'torus_distance',
    'per_sample_explained_variance',
]
