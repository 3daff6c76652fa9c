"""Pictures of the online learner's state: frames, reconstructions, predictions, attention.

The learner's ``current_frame``, ``reconstruction_image``, ``predicted_frames``,
``last_prediction``, ``visualization_panel`` and ``attention_maps`` are built from these.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import diagnostics as D
from . import metrics as M
from .models import (
    ACTION_TOKEN,
    QUERY_TOKEN,
    MaskedAutoencoderViT,
    PredictorContext,
    TransformerActionConditionedPredictor,
)


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


def panel(
    current: np.ndarray,
    reconstruction: np.ndarray | None,
    last_prediction: np.ndarray | None,
    predictions: np.ndarray | None,
) -> np.ndarray:
    """One uint8 image: current | reconstruction | last prediction (black when none) | one
    prediction per candidate action, side by side, 2 px grey gaps.

    Args:
        current: uint8 [S, S, 3].
        reconstruction: uint8 [S, S, 3] or None.
        last_prediction: uint8 [S, S, 3] or None.
        predictions: uint8 [K, S, S, 3] or None.
    Returns:
        uint8 [S, W, 3].
    """
    tiles = [current, reconstruction]
    tiles.append(last_prediction if last_prediction is not None else np.zeros_like(current))
    if predictions is not None:
        tiles.extend(list(predictions))
    sep = np.full((current.shape[0], 2, 3), 128, np.uint8)
    row = []
    for t in tiles:
        row += [t, sep]
    return np.concatenate(row[:-1], axis=1)


@torch.no_grad()
def attention_maps(
    predictor: TransformerActionConditionedPredictor,
    ctx: PredictorContext,
    actions: torch.Tensor,
) -> dict[str, Any]:
    """Last-layer attention of a context for every candidate action.

    Args:
        predictor: the level's predictor.
        ctx: the context (from ``build_context``).
        actions: [A, C] the candidates.
    Returns:
        {'attention': [A, H, 1+T, L] (rows: candidate action token then the T future queries;
        keys: the whole sequence), 'key_types': [L] token types, 'query_rows': [1+T] bool (True
        for future queries), 'metrics': APA/ALF/TTAR/RI@16/entropy of candidate 0}.
    """
    out = predictor.predict(ctx, actions, return_attn=True)
    t = predictor.tokens_per_frame
    device = ctx.token_types.device
    key_types = torch.cat(
        [ctx.token_types, torch.tensor([ACTION_TOKEN] + [QUERY_TOKEN] * t, device=device)]
    )
    rows = torch.zeros(1 + t, dtype=torch.bool, device=device)
    rows[1:] = True
    return {
        'attention': out.attention,
        'key_types': key_types,
        'query_rows': rows,
        'metrics': M.to_floats(D.attention_metrics(out.attention[0], key_types, rows)),
    }


__all__ = ['patches_to_images', 'panel', 'attention_maps']
