"""How well a learner predicts the toroidal dot world, on transitions it never trained on. ROS-free.

Each sample: a dot at a random x (drawn from its own RNG, never the run's), PREDICTION_HISTORY_SIZE
history steps, then every candidate action from the current frame, each compared with the true next
frame: explained variance in patch space, patch MSE, and the distance between the dot in the
predicted frame and the true dot (``offline.evaluation.dot_centroids``, on the torus).

No action changes the dot's row, so a run without resets only ever sees one row: ``row`` puts
every sample on the row the robot lived on; ``avoid_row`` draws rows at least a dot diameter away
from it (rows whose pixels the robot never saw). Used by the world-model node's end-of-run report
for the dot robot and by ``bench/bench_world_model.py``.

Example:
    >>> row = dot_row(learner.current_frame())
    >>> home = evaluate_dot(learner, ToroidalDotConfig(), samples=64, seed=1, row=row)
    >>> home.per_action[1]['within_3px']
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch

from toroidal_sim.env import ToroidalDotConfig, ToroidalDotEnv

from .metrics import explained_variance
from .offline.evaluation import dot_centroids, torus_distance
from .visualization import patches_to_images

#: a prediction's dot this close to the true dot counts as right
WITHIN_PX = 3.0


@dataclass
class DotHeldOut:
    """Per action: ``explained_variance_mean``, ``mse_mean``, ``dot_error_px_median`` and
    ``dot_error_px_mean`` (None when no prediction shows a dot), ``within_3px`` (share of
    samples), ``samples``, and ``reconstruction_ev_mean``: the autoencoder's reconstruction of
    the true next frame, the most a prediction decoded by it can reach. ``tiles``: a few rows of
    [current | (truth, prediction) per action]."""

    per_action: dict[int, dict]
    tiles: list[np.ndarray] = field(default_factory=list)

    def targets_reached(self) -> dict[str, bool]:
        """EV > 0.9 for every action; the dot within 3 px in every sample of every action."""
        acts = self.per_action.values()
        return {
            'ev_above_0.9': all(d['explained_variance_mean'] > 0.9 for d in acts),
            'within_3px_all': all(d['within_3px'] == 1.0 for d in acts),
        }

    def describe(self) -> str:
        """One line: per action, EV, median dot error and the share within 3 px."""
        parts = []
        for a, d in self.per_action.items():
            px = d['dot_error_px_median']
            parts.append(
                f"action {a}: EV {d['explained_variance_mean']:.3f}, dot "
                f"{'not found' if px is None else f'{px:.1f} px'}, "
                f"{100 * d['within_3px']:.0f}% within {WITHIN_PX:g} px"
            )
        return f"{'; '.join(parts)} ({d['samples']} transitions each)"

    def flat(self, prefix: str) -> dict[str, float | None]:
        """``{prefix}_action_{a}_ev``, ``..._dot_px`` (median) and ``..._within_3px``."""
        out: dict[str, float | None] = {}
        for a, d in self.per_action.items():
            out[f'{prefix}_action_{a}_ev'] = round(d['explained_variance_mean'], 4)
            px = d['dot_error_px_median']
            out[f'{prefix}_action_{a}_dot_px'] = None if px is None else round(px, 2)
            out[f'{prefix}_action_{a}_within_3px'] = round(d['within_3px'], 4)
        return out


def dot_row(frame: np.ndarray, env_size: int | None = None) -> int:
    """The dot's row in a uint8 [H, W, 3] frame, in the env's pixels (``env_size``; default the
    frame's own height).

    Raises:
        ValueError: the frame shows no dot.
    """
    y = float(dot_centroids(np.asarray(frame)[None])[0, 1])
    if not np.isfinite(y):
        raise ValueError('the frame shows no dot')
    h = frame.shape[0]
    size = env_size or h
    return int(round(y * size / h)) % size


def _row_distance(a: int, b: int, size: int) -> int:
    d = abs(a - b) % size
    return min(d, size - d)


@torch.no_grad()
def evaluate_dot(
    learner,
    env_config: ToroidalDotConfig,
    samples: int,
    seed: int,
    history_actions: str = 'random',
    row: int | None = None,
    avoid_row: int | None = None,
    tile_rows: int = 0,
    averaged: bool = True,
) -> DotHeldOut:
    """Predict ``samples`` held-out transitions per action with the learner's level 0 as it is
    now (no learning; the learner's state is not touched).

    Args:
        learner: an ``OnlineLearner`` (its autoencoder, level-0 predictor and actions are used).
        env_config: the dot world (size, dot radius, move); its seed is not used.
        samples: transitions per action.
        seed: the samples' RNG.
        history_actions: ``'random'`` (each history action uniform) or ``'always_move'``.
        row: put every start on this row (the robot's); None: random rows.
        avoid_row: with ``row`` None, keep rows more than a dot diameter away from this one.
        tile_rows: keep pictures of the first this many samples in ``tiles``.
        averaged: evaluate the learner's weight average when it keeps one
            (``weight_average_decay``); False: its live weights.
    """
    if samples < 1:
        raise ValueError(f'samples must be >= 1, got {samples}')
    if history_actions not in ('random', 'always_move'):
        raise ValueError(
            f"history_actions must be 'random' or 'always_move', got {history_actions!r}"
        )
    rng = np.random.default_rng(seed)
    cfg = learner.config
    lvl = learner.levels[0]
    ae = learner.autoencoder
    size = env_config.size
    num_actions = learner.num_actions
    per_action: dict[int, dict[str, list]] = {
        a: {'ev': [], 'mse': [], 'dist': [], 'recon_ev': []} for a in range(num_actions)
    }
    tiles = []
    was_training = ae.training, lvl.predictor.training
    ae.eval()
    lvl.predictor.eval()
    weights = learner.core.averaged_weights() if averaged else contextlib.nullcontext()
    try:
        with weights:
            for i in range(samples):
                env = ToroidalDotEnv(
                    ToroidalDotConfig(
                        size=size,
                        dot_radius=env_config.dot_radius,
                        move_pixels=env_config.move_pixels,
                        seed=int(rng.integers(1 << 30)),
                    )
                )
                if row is not None:
                    env.y = row
                elif avoid_row is not None:
                    while _row_distance(env.y, avoid_row, size) <= 2 * env_config.dot_radius:
                        env.y = int(rng.integers(size))
                frames, acts = [env.frame()], []
                for _ in range(cfg.prediction_history_size):
                    a = (
                        1
                        if history_actions == 'always_move'
                        else int(rng.integers(learner.num_actions))
                    )
                    acts.append(a)
                    frames.append(env.step(a))
                prepared = [learner._prepare(f) for f in frames]
                x = torch.cat([p[0] for p in prepared])  # [F, 3, S, S]
                z = ae.encode(x)  # [F, T, D]
                ctx = lvl.predictor.build_context(z[-1:], z[None, :-1], lvl.actions[acts][None])
                pred_patches = ae.decode(lvl.predictor.predict(ctx, lvl.actions).prediction)
                imgs = patches_to_images(ae, pred_patches)  # [A, S, S, 3]
                state = (env.x, env.y)
                tile = [prepared[-1][1].numpy()]
                for a in range(learner.num_actions):
                    env.x, env.y = state
                    truth_x, truth_u8 = learner._prepare(env.step(a))
                    target = ae.patchify(truth_x)
                    pred = pred_patches[a : a + 1]
                    d = per_action[a]
                    d['ev'].append(float(explained_variance(pred, target)))
                    recon = ae.decode(ae.encode(truth_x))
                    d['recon_ev'].append(float(explained_variance(recon, target)))
                    d['mse'].append(float(((pred - target) ** 2).mean()))
                    truth_xy = np.array([[env.x, env.y]], np.float64) * cfg.img_size / size
                    found = dot_centroids(imgs[a : a + 1])
                    d['dist'].append(float(torus_distance(found, truth_xy, cfg.img_size)[0]))
                    tile += [truth_u8.numpy(), imgs[a]]
                if i < tile_rows:
                    tiles.append(np.concatenate(tile, axis=1))
    finally:
        ae.train(was_training[0])
        lvl.predictor.train(was_training[1])
    result = {}
    for a, d in per_action.items():
        dist = np.array(d['dist'])
        seen = np.isfinite(dist).any()
        result[a] = {
            'explained_variance_mean': float(np.mean(d['ev'])),
            'mse_mean': float(np.mean(d['mse'])),
            'dot_error_px_median': float(np.nanmedian(dist)) if seen else None,
            'dot_error_px_mean': float(np.nanmean(dist)) if seen else None,
            'within_3px': float(np.mean(dist <= WITHIN_PX)),
            'samples': samples,
            'reconstruction_ev_mean': float(np.mean(d['recon_ev'])),
        }
    return DotHeldOut(result, tiles)


__all__ = ['DotHeldOut', 'WITHIN_PX', 'dot_row', 'evaluate_dot']
