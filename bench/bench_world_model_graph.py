"""ROS overhead of the world model in the graph: acted frames/s of sim + world model + selector
as separate processes vs the same learner driven in-process with the environment core.

Both sides use the same model config with the gate forced open (reconstruction_threshold=1),
so every frame is an acted frame: encode, fresh-prediction check, a predictor training step
when needed, scoring of every action, an action. The difference is the cost of DDS, message
conversion, the worker-thread hand-off and publishing panels/metrics.

Usage:
    .venv/bin/python bench/bench_world_model_graph.py
        [--preset full|tiny] [--seconds 120] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def in_process(preset: str, seconds: float, threads: int) -> tuple[float, float]:
    """(acted frames/s, mean ms of the learner's own work per frame)."""
    import numpy as np
    import torch

    from toroidal_sim.env import ToroidalDotConfig, ToroidalDotEnv
    from world_model_node.config import WorldModelConfig
    from world_model_node.learner import OnlineLearner

    torch.set_num_threads(threads)
    base = WorldModelConfig() if preset == 'full' else WorldModelConfig.tiny()
    learner = OnlineLearner(
        base.replace(reconstruction_threshold=1.0),
        np.array([[-1.0], [1.0]], np.float32),
        precision='auto',  # as the node
    )
    env = ToroidalDotEnv(ToroidalDotConfig(seed=0))
    frame = env.frame()
    for _ in range(3):  # warm-up
        learner.observe(frame)
        learner.record_action(1)
        frame = env.step(1)
    count, learn, start = 0, 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        learn += learner.observe(frame).timings['total']
        learner.record_action(1)
        frame = env.step(1)
        count += 1
    return count / (time.perf_counter() - start), 1000 * learn / count


def in_graph(preset: str, seconds: float, threads: int) -> tuple[float, float]:
    """(acted frames/s, mean ms of the learner's own work per frame) from the node's report."""
    env = dict(
        os.environ,
        ROS_DOMAIN_ID=str(random.randint(120, 200)),
        ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
    )
    with tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / 'wm.yaml'
        params.write_text('/**:\n  ros__parameters:\n    reconstruction_threshold: 1.0\n')
        subprocess.run(
            [
                str(BIN / 'devbot'),
                'launch',
                'launch/toroidal_dot_world_model.launch.yaml',
                f'preset:={preset}',
                f'duration:={seconds}',
                f'num_threads:={threads}',
                f'params_file:={params}',
                f'checkpoint_dir:={tmp}/ckpt',
                f'report_dir:={tmp}/report',
            ],
            cwd=REPO,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=seconds + 300,
        )
        import csv

        rows = list(csv.DictReader(open(Path(tmp) / 'report' / 'metrics.csv')))
    # skip the first rows (start-up, discovery); rate over the rest
    rows = rows[3:]
    t = [float(r['time_s']) for r in rows]
    learn = sum(float(r['learn_ms']) for r in rows[1:]) / (len(rows) - 1)
    return (len(rows) - 1) / (t[-1] - t[0]), learn


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--preset', default='full', choices=['full', 'tiny'])
    parser.add_argument('--seconds', type=float, default=120.0, help='measuring time of each side')
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    args = parser.parse_args()
    alone, alone_learn = in_process(args.preset, args.seconds, args.threads)
    print(
        f'learner in-process:           {alone:7.2f} acted frames/s  '
        f'({1000 / alone:7.1f} ms/frame, learner {alone_learn:6.1f} ms)',
        flush=True,
    )
    graph, graph_learn = in_graph(args.preset, args.seconds, args.threads)
    print(
        f'sim + world model + selector: {graph:7.2f} acted frames/s  '
        f'({1000 / graph:7.1f} ms/frame, learner {graph_learn:6.1f} ms, '
        f'outside the learner {1000 / graph - graph_learn:6.1f} ms)'
    )
    overhead = (1 / graph - 1 / alone) / (1 / alone)
    print(f'ROS overhead: {100 * overhead:+.1f}% of the per-frame time (target < 10%)')
    print(
        json.dumps(
            {
                'preset': args.preset,
                'threads': args.threads,
                'in_process_fps': alone,
                'graph_fps': graph,
                'overhead': overhead,
                'in_process_learner_ms': alone_learn,
                'graph_learner_ms': graph_learn,
            }
        )
    )


if __name__ == '__main__':
    main()
