"""Runner statistics: action counts and distribution, interval timing, steps. ROS-free."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class RunnerStats:
    """Collects one entry per executed (sent) action; ``summary()`` gives the numbers."""

    num_actions: int
    counts: Counter = field(default_factory=Counter)
    times: list[float] = field(default_factory=list)  # monotonic seconds of each action

    def record(self, action: int, t: float) -> None:
        self.counts[action] += 1
        self.times.append(t)

    @property
    def steps(self) -> int:
        return len(self.times)

    def summary(self) -> dict:
        """Counts and %, interval mean/median/min/max/std (s), steps, steps/s."""
        intervals = np.diff(np.asarray(self.times, dtype=np.float64))
        steps = self.steps
        duration = self.times[-1] - self.times[0] if steps > 1 else 0.0
        out = {
            'steps': steps,
            'counts': {a: self.counts.get(a, 0) for a in range(self.num_actions)},
            'percent': {
                a: (100.0 * self.counts.get(a, 0) / steps if steps else 0.0)
                for a in range(self.num_actions)
            },
            'duration_s': duration,
            'steps_per_s': (steps - 1) / duration if duration > 0 else 0.0,
        }
        if intervals.size:
            out['interval_s'] = {
                'mean': float(intervals.mean()),
                'median': float(np.median(intervals)),
                'min': float(intervals.min()),
                'max': float(intervals.max()),
                'std': float(intervals.std()),
            }
        return out

    def format(self, labels: dict[int, str] | None = None) -> str:
        """The summary as a small table, printed at the end of a run."""
        s = self.summary()
        lines = [
            '=== runner statistics ===',
            f'steps: {s["steps"]}   steps/s: {s["steps_per_s"]:.1f}',
            'action  count      %',
        ]
        for a in range(self.num_actions):
            name = f'{a}' + (f' ({labels[a]})' if labels and a in labels else '')
            lines.append(f'{name:<6} {s["counts"][a]:>6} {s["percent"][a]:>6.1f}')
        if 'interval_s' in s:
            iv = s['interval_s']
            lines.append('interval (ms): ' + '  '.join(f'{k} {1e3 * v:.3f}' for k, v in iv.items()))
        return '\n'.join(lines)

    def finish(
        self, labels: dict[int, str] | None = None, report_dir: str | Path | None = None
    ) -> str:
        """The end-of-run text: the summary table and, if ``report_dir`` is given, where the
        statistics were written as ``runner_stats.json``."""
        text = self.format(labels)
        if report_dir:
            path = Path(report_dir) / 'runner_stats.json'
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.summary(), indent=2) + '\n')
            text += f'\nrunner statistics written to {path}'
        return text
