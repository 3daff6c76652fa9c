"""Cost of the attention and action diagnostics.

What the learner adds every LOG_INTERVAL steps, and one ``analyse_transition`` / workbench call as
the session explorer makes it.

Drives ``OnlineLearner`` (full size by default, gate forced open) with the toroidal dot for
a few frames so that a full context exists, then times:

* ``metrics.latest_transition_diagnostics`` (attention metrics, sweep spread and
  counterfactual gaps on the latest transition; runs once per LOG_INTERVAL steps) against one
  acted ``observe`` step;
* ``diagnostics.analyse_transition`` (encode the context + sweep + attention + counterfactuals
  with 4 shuffles) from pixels.

Usage::

    .venv/bin/python bench/bench_diagnostics.py                 # full size, 2 threads
    .venv/bin/python bench/bench_diagnostics.py --preset tiny --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from toroidal_sim.env import ToroidalDotConfig, ToroidalDotEnv
from world_model_node import diagnostics as D
from world_model_node.config import WorldModelConfig
from world_model_node.learner import OnlineLearner
from world_model_node.metrics import latest_transition_diagnostics


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--preset', choices=['full', 'tiny'], default='full')
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--device', default='cpu')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = WorldModelConfig() if args.preset == 'full' else WorldModelConfig.tiny()
    cfg = base.replace(reconstruction_threshold=1.0, prediction_threshold=0.0, log_interval=10**6)
    learner = OnlineLearner(cfg, np.array([[-1.0], [1.0]], np.float32), device=args.device)
    env = ToroidalDotEnv(ToroidalDotConfig(size=cfg.img_size, seed=0))
    frame = env.frame()
    steps = []
    for i in range(6 + args.repeats):
        t0 = time.perf_counter()
        learner.observe(frame)
        steps.append(time.perf_counter() - t0)
        learner.record_action(i % 2)
        frame = env.step(i % 2)
    learner.observe(frame)
    step_s = statistics.median(steps[6:])
    diag_s = timed(lambda: latest_transition_diagnostics(learner), args.repeats)
    lvl = learner.levels[0]
    hist = list(learner.history)
    frames = torch.stack([e.frame for e in hist[-5:-1]]).permute(0, 3, 1, 2).float().div(255)
    nxt = hist[-1].frame.permute(2, 0, 1).float().div(255)
    acts = lvl.actions[[e.action for e in hist[-5:-2]]]
    analyse_s = timed(
        lambda: D.analyse_transition(
            learner.autoencoder, lvl.predictor, frames, acts, lvl.actions, hist[-2].action, nxt
        ),
        args.repeats,
    )
    d = statistics.median(diag_s)
    print(
        f'preset {args.preset}, {args.threads} threads, device {args.device}, '
        f'{args.repeats} repeats (medians)'
    )
    print(f'  acted observe step (trains + scores):   {1000 * step_s:8.1f} ms')
    print(
        f'  latest_transition_diagnostics (per log): {1000 * d:8.1f} ms  '
        f'(min {1000 * min(diag_s):.1f})'
    )
    print(
        f'  added per step at LOG_INTERVAL={base.log_interval}:      '
        f'{1000 * d / base.log_interval:8.2f} ms '
        f'({100 * d / base.log_interval / step_s:.2f}% of a step)'
    )
    print(
        f'  analyse_transition from pixels:         {1000 * statistics.median(analyse_s):8.1f} ms'
    )


if __name__ == '__main__':
    main()
