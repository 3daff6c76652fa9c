"""The run report: learning curves, prediction panels and a summary. ROS-free.

``RunReport`` keeps one row of scalars per learner step (cheap: floats already computed by
the learner) and writes, into ``saved/reports/<run>/``:

    summary.md     the numbers, with the pictures below inline
    curves.png     reconstruction loss, fresh prediction error, explained variance over steps
    panels.png     the last live panel (``visualization.render_panel``, as published on
                   world_model/visualization): the frame, its reconstruction and each
                   candidate's prediction of it, with their errors and uncertainties
    metrics.csv    every recorded row
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

COLUMNS = (
    'step',
    'time_s',
    'learn_ms',
    'gate_open',
    'reconstruction_loss',
    'autoencoder_loss',
    'prediction_error',
    'explained_variance',
    'fresh_action',
    'predictor_loss',
    'num_levels',
)


@dataclass
class RunReport:
    """Collects per-step scalars of a run and writes the report folder.

    Args:
        directory: the report folder (created on write).
        title: heading of summary.md.
        reconstruction_threshold, prediction_threshold: drawn as reference lines.
    """

    directory: Path
    title: str
    reconstruction_threshold: float
    prediction_threshold: float
    rows: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add(self, result) -> None:
        """Record an ``ObserveResult``."""
        level0 = result.predictor_losses.get(0, {}) if result.predictor_losses else {}
        self.rows.append(
            {
                'step': result.step,
                'time_s': time.monotonic() - self.started,
                'learn_ms': 1000.0
                * (result.timings or {}).get('total', math.nan),  # the learner's own time
                'gate_open': int(result.gate_open),
                'reconstruction_loss': result.reconstruction_loss,
                'autoencoder_loss': _num(result.autoencoder_loss),
                'prediction_error': _num(result.prediction_errors.get(0))
                if result.prediction_errors
                else math.nan,
                'explained_variance': _num(result.explained_variance),
                'fresh_action': -1 if result.fresh_action is None else result.fresh_action,
                'predictor_loss': _num(level0.get('total')),
                'num_levels': result.num_levels,
            }
        )

    def summary(self) -> dict:
        """Headline numbers of the run."""
        if not self.rows:
            return {'steps': 0}
        last = self.rows[-1]
        opened = next((r for r in self.rows if r['gate_open']), None)
        pred = [r['prediction_error'] for r in self.rows if not math.isnan(r['prediction_error'])]
        ev = [r['explained_variance'] for r in self.rows if not math.isnan(r['explained_variance'])]
        below = next(
            (
                r
                for r in self.rows
                if not math.isnan(r['prediction_error'])
                and r['prediction_error'] < self.prediction_threshold
            ),
            None,
        )
        duration = last['time_s']
        return {
            'steps_recorded': len(self.rows),
            'first_step': self.rows[0]['step'],
            'last_step': last['step'],
            'duration_s': duration,
            'steps_per_s': len(self.rows) / duration if duration > 0 else 0.0,
            'gate_open_at_step': opened['step'] if opened else None,
            'gate_open_fraction': sum(r['gate_open'] for r in self.rows) / len(self.rows),
            'final_reconstruction_loss': last['reconstruction_loss'],
            'transitions_learned': len(pred),
            'final_prediction_error': pred[-1] if pred else None,
            'mean_prediction_error_last_50': float(np.mean(pred[-50:])) if pred else None,
            'prediction_below_threshold_at_step': below['step'] if below else None,
            'final_explained_variance': ev[-1] if ev else None,
            **{
                f'fresh_ev_action_{a}_last_50': ev for a, ev in self.fresh_ev_per_action(50).items()
            },
            'num_levels': last['num_levels'],
        }

    def fresh_ev_per_action(self, last: int = 50) -> dict[int, float]:
        """The mean explained variance of the last ``last`` fresh predictions made for each
        action (the prediction made before the frame was seen, for the action executed since),
        for each action that has any."""
        per_action: dict[int, list[float]] = {}
        for r in self.rows:
            if r['fresh_action'] >= 0 and not math.isnan(r['explained_variance']):
                per_action.setdefault(r['fresh_action'], []).append(r['explained_variance'])
        return {a: float(np.mean(per_action[a][-last:])) for a in sorted(per_action)}

    def write(
        self,
        panel: np.ndarray | None = None,
        extra: dict | None = None,
    ) -> Path:
        """Write summary.md, curves.png, panels.png (if ``panel``: a rendered live panel, uint8
        [H, W, 3] RGB, saved as it is) and metrics.csv."""
        out = Path(self.directory)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / 'metrics.csv', 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)
        self._plot_curves(out / 'curves.png')
        if panel is not None:
            _save_rgb(out / 'panels.png', panel)
        summary = self.summary() | (extra or {})
        lines = [f'# {self.title}', '', '| metric | value |', '|---|---|']
        lines += [f'| {k} | {_fmt(v)} |' for k, v in summary.items()]
        lines += ['', '## Learning curves', '', '![curves](curves.png)', '']
        if panel is not None:
            lines += [
                '## Predictions at the end',
                '',
                'The last live panel: the frame, its reconstruction, and each candidate\'s '
                'prediction of that frame with its error (err) and the uncertainty the selector '
                'saw (unc); the executed candidate framed green, the most uncertain one orange.',
                '',
                '![panels](panels.png)',
                '',
            ]
        (out / 'summary.md').write_text('\n'.join(lines))
        return out / 'summary.md'

    # ------------------------------------------------------------------ pictures

    def _plot_curves(self, path: Path) -> None:
        import matplotlib

        matplotlib.use('Agg')
        import matplotlib.pyplot as plt

        steps = np.array([r['step'] for r in self.rows], dtype=float)
        fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
        col = (
            {
                k: np.array([r[k] for r in self.rows], dtype=float)
                for k in COLUMNS
                if k not in ('step', 'time_s')
            }
            if self.rows
            else {}
        )
        ax = axes[0]
        if self.rows:
            ax.semilogy(
                steps, col['reconstruction_loss'], lw=0.8, label='reconstruction (unmasked)'
            )
            ax.semilogy(
                steps, col['autoencoder_loss'], '.', ms=2, label='autoencoder training (masked)'
            )
        ax.axhline(
            self.reconstruction_threshold, color='k', ls='--', lw=0.8, label='gate threshold'
        )
        ax.set(title='autoencoder', xlabel='step', ylabel='MSE')
        ax.legend(fontsize=8)
        ax = axes[1]
        if self.rows:
            ax.semilogy(
                steps, col['prediction_error'], '.', ms=2, label='fresh prediction error (level 0)'
            )
            ax.semilogy(
                steps, col['predictor_loss'], '.', ms=2, alpha=0.5, label='predictor training loss'
            )
        ax.axhline(
            self.prediction_threshold, color='k', ls='--', lw=0.8, label='prediction threshold'
        )
        ax.set(title='predictor', xlabel='step')
        ax.legend(fontsize=8)
        ax = axes[2]
        if self.rows:
            ax.plot(steps, col['explained_variance'], '.', ms=2)
        ax.set(title='explained variance of predictions', xlabel='step', ylim=(-0.5, 1.05))
        fig.savefig(path, dpi=90)
        plt.close(fig)


def _save_rgb(path: Path, image: np.ndarray) -> None:
    """Write a uint8 [H, W, 3] RGB image as PNG."""
    import cv2

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'a panel must be uint8 [H, W, 3], got {image.dtype} {image.shape}')
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f'could not write {path}')


def _num(value) -> float:
    return math.nan if value is None else float(value)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f'{value:.6g}'
    return str(value)
