"""Two variants of the online learner on the same real dot run, alternating frame by frame.

This machine's speed moves within an hour by more than most changes are worth (the same code: 214
and 243 ms a trained frame in two hours of one day), so runs one after the other compare hours,
not variants. Here learners A and B run in one process, each with its own dot world and
uncertainty-driven policy on the same seed, and take one iteration each in turn (an acted frame,
or an autoencoder step while the gate is closed): both see the same moments of the machine. It
prints the median time of a trained acted frame (split by phase) per window of them and
over the run, and the held-out EV and dot error of both on the dot's row at the end.

Usage::

    .venv/bin/python bench/bench_alternating.py --precision fp32 --b-precision bf16
    .venv/bin/python bench/bench_alternating.py --acted 1000 --b-set predictor_depth=6
    .venv/bin/python bench/bench_alternating.py --preset tiny --time-budget 30 \\
        --set reconstruction_threshold=1  # smoke run: the gate open from the first frame

Both start from the full size and the dot's params file (``config/toroidal_dot.world_model.
params.yaml``), then ``--set`` (both), then ``--a-set`` / ``--b-set``. Writes
``saved/reports/alternating_bench_<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from bench_world_model import ROOT, evaluate, load_actions
from model_args import add_model_arguments, model_config, parse_overrides

from action_selectors.policies import RANDOM_CHOICE_PROBABILITY, UncertaintyPolicy
from toroidal_sim.env import ToroidalDotConfig, ToroidalDotEnv
from world_model_node.config import WorldModelConfig
from world_model_node.core import ONLINE_PRECISIONS, resolve_precision
from world_model_node.learner import ObserveResult, OnlineLearner

PHASES = ('encode', 'train', 'score', 'total')


class Variant:
    """One learner with its own dot world and policy, advanced one iteration at a time."""

    def __init__(
        self,
        name: str,
        cfg: WorldModelConfig,
        actions: np.ndarray,
        precision: str,
        seed: int,
        device: str,
    ):
        self.name = name
        self.precision = resolve_precision(precision, device)
        self.env_cfg = ToroidalDotConfig(seed=seed)
        self.env = ToroidalDotEnv(self.env_cfg)
        self.row = self.env.y
        torch.manual_seed(seed)
        self.learner = OnlineLearner(cfg, actions, device=device, precision=precision)
        self.policy = UncertaintyPolicy(
            self.learner.num_actions, seed + 1, RANDOM_CHOICE_PROBABILITY
        )
        self.frame = self.env.frame()
        self.result: ObserveResult | None = None
        self.acted = 0
        self.trained: list[dict[str, float]] = []  # timings of acted frames with a training step
        self.closed: list[float] = []  # seconds of gate-closed iterations

    def iterate(self) -> None:
        """Observe the next frame (or, while the gate is closed, train the autoencoder once more
        on the latest one); act when the gate is open."""
        if self.result is None or self.result.gate_open:
            self.result = self.learner.observe(self.frame)
        else:
            self.result = self.learner.train_gate()
        r = self.result
        if not r.gate_open:
            self.closed.append(r.timings['total'])
            return
        self.acted += 1
        if r.trained_levels:
            self.trained.append(r.timings)
        a = self.policy.choose({str(label): s for label, s in zip(r.labels, r.scores)})
        self.learner.record_action(a)
        self.frame = self.env.step(a)


def median_ms(rows: list[dict[str, float]], phase: str) -> float:
    return round(float(np.median([t.get(phase, 0.0) for t in rows])) * 1000, 1)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('Usage::')[1],
    )
    add_model_arguments(p)  # --preset, --set (both variants), --precision (A's)
    p.add_argument(
        '--b-precision', choices=ONLINE_PRECISIONS, help="B's precision [A's, --precision]"
    )
    for v in 'ab':
        p.add_argument(
            f'--{v}-set',
            action='append',
            default=[],
            metavar='KEY=VALUE',
            help=f'override a WorldModelConfig field for {v.upper()} only (YAML value), repeatable',
        )
    p.add_argument('--acted', type=int, default=1500, help='acted frames of each learner')
    p.add_argument(
        '--time-budget', type=float, default=0.0, help='stop after this many seconds (0: never)'
    )
    p.add_argument('--window', type=int, default=250, help='trained frames per timing window')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=2, help='torch threads')
    p.add_argument('--device', default='cpu')
    p.add_argument('--eval-samples', type=int, default=64, help='held-out transitions per action')
    p.add_argument('--out', type=Path, default=ROOT / 'saved' / 'reports')
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    params = ROOT / 'config' / 'toroidal_dot.world_model.params.yaml'
    actions = load_actions()
    cfg, overrides = model_config(args, params)
    print(f'both: {overrides}')
    variants, own_overrides = [], {}
    for name, sets, precision in (
        ('A', args.a_set, args.precision),
        ('B', args.b_set, args.b_precision or args.precision),
    ):
        own = own_overrides[name] = parse_overrides(sets)
        own_cfg = WorldModelConfig.from_dict({**cfg.to_dict(), **own})
        variants.append(Variant(name, own_cfg, actions, precision, args.seed, args.device))
        print(f'{name}: {precision} ({variants[-1].precision}), {own}', flush=True)

    t0 = time.perf_counter()
    while any(v.acted < args.acted for v in variants):
        if args.time_budget and time.perf_counter() - t0 >= args.time_budget:
            break
        for v in variants:
            if v.acted < args.acted:
                v.iterate()
    wall = time.perf_counter() - t0

    report: dict = {
        'date': datetime.now().isoformat(timespec='seconds'),
        'seed': args.seed,
        'preset': args.preset,
        'threads': args.threads,
        'acted_frames': {v.name: v.acted for v in variants},
        'wall_s': round(wall, 1),
        'overrides_both': overrides,
        'windows': [],
        'variants': {},
    }
    acted = ' / '.join(str(v.acted) for v in variants)
    print(f'\n=== {acted} acted frames (A / B), alternating, {wall:.0f} s ===')
    print(f'trained acted frames, median ms by window of {args.window} of them (A / B):')
    a, b = variants
    for start in range(0, len(a.trained), args.window):
        wa, wb = a.trained[start : start + args.window], b.trained[start : start + args.window]
        if wa and wb:
            ma, mb = median_ms(wa, 'total'), median_ms(wb, 'total')
            report['windows'].append({'from': start, 'A_ms': ma, 'B_ms': mb})
            print(f'  {start:5d}+: {ma:7.1f} / {mb:7.1f}  ({100 * (mb / ma - 1):+.0f}%)')
    for v in variants:
        rows = v.trained[min(5, len(v.trained) // 10) :]  # the first frames warm caches up
        held = evaluate(v.learner, v.env_cfg, args.eval_samples, 'random', 12345, row=v.row)
        cost = {ph: median_ms(rows, ph) for ph in PHASES} if rows else {}
        report['variants'][v.name] = {
            'precision': v.precision,
            'overrides': own_overrides[v.name],
            'trained_frames': len(v.trained),
            'trained_frame_median_ms': cost,
            'gate_closed_iterations': len(v.closed),
            'gate_closed_median_ms': round(float(np.median(v.closed)) * 1000, 1)
            if v.closed
            else None,
            'home_row': held,
        }
        quality = ', '.join(
            f'a{i}: EV {d["explained_variance_mean"]:.3f}, {100 * d["within_3px"]:.0f}% within 3 px'
            for i, d in enumerate(held.values())
        )
        print(
            f'{v.name} ({v.precision}): {len(v.trained)} trained frames, median '
            + ' '.join(f'{ph} {ms}' for ph, ms in cost.items())
            + f' ms; {len(v.closed)} gate-closed iterations; home row {quality}'
        )
    ta = report['variants']['A']['trained_frame_median_ms'].get('total')
    tb = report['variants']['B']['trained_frame_median_ms'].get('total')
    if ta and tb:
        print(f'B / A, trained frame: {tb / ta:.3f}')
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f'alternating_bench_{datetime.now():%Y%m%d_%H%M%S}.json'
    path.write_text(json.dumps(report, indent=1))
    print(f'report: {path}')
    return report


if __name__ == '__main__':
    main()
