"""Benchmark of offline training (``devbot train``) against the online learner, at full model size.

Measures, in one process and one after the other on the same machine:

* the online learner's acted-frame rate: ``OnlineLearner.observe`` + ``record_action`` on the dot
  world with the gate forced open and a predictor training step on every frame (the worst case
  of an acted frame, as ``bench/bench_world_model.py``'s timing phase measures it);
* the offline trainer's training samples/s (``OfflineTrainer.train_step``) for each batch size,
  joint steps (gate open: predictor + autoencoder, the work of an acted frame) and, with
  ``--closed``, masked autoencoder steps (gate closed);
* how fast the dataset alone delivers samples (decoding from the bag + the cache);
* the arithmetic of one acted frame and of one training sample (GFLOP, counted by PyTorch's FLOP
  counter), the GFLOP/s each reaches, and the GFLOP/s of a large matrix product on this machine
  (the ceiling): the speed-up that batching can give at all is bounded by
  (online GFLOP per frame / offline GFLOP per sample) x (ceiling / online GFLOP/s).

The first step of each configuration is a warm-up and is not timed. Wall time and process CPU
time are both reported: the machine may be shared, and CPU-s per sample shows the work itself.

Usage::

    .venv/bin/python bench/bench_offline_train.py  # full size, 2 threads, batch 1 and 32
    .venv/bin/python bench/bench_offline_train.py --batch-sizes 1,8,32 --steps 4 --closed
    .venv/bin/python bench/bench_offline_train.py --device cuda --batch-sizes 32,128 \\
        --precision bf16
    .venv/bin/python bench/bench_offline_train.py --preset tiny --steps 10     # smoke run

Writes ``saved/reports/offline_train_bench_<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from compute import count_gflop, matmul_ceiling

from toroidal_sim.env import ToroidalDotConfig
from toroidal_sim.session import write_dot_session
from world_model_node.config import WorldModelConfig
from world_model_node.learner import OnlineLearner
from world_model_node.offline.dataset import TransitionDataset
from world_model_node.offline.trainer import OfflineTrainer, TrainSettings

ROOT = Path(__file__).resolve().parents[1]
DOT_ACTIONS = np.array([[-1.0], [1.0]], np.float32)  # config/toroidal_dot.yaml normalised


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def online_rate(cfg: WorldModelConfig, frames: list[np.ndarray], n: int, device: str) -> dict:
    """Acted frames/s of the online learner.

    The gate is forced open and the learner trains on every frame.
    """
    forced = cfg.replace(reconstruction_threshold=1e9, prediction_threshold=0.0)
    learner = OnlineLearner(forced, DOT_ACTIONS, device=device)
    warm = 5
    times, cpus = [], []
    for i in range(n + warm):
        t0, c0 = time.perf_counter(), time.process_time()
        learner.observe(frames[i % len(frames)])
        learner.record_action(i % 2)
        sync(learner.device)
        if i >= warm:
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    wall = float(np.sum(times))
    gflop, ops = count_gflop(lambda: (learner.observe(frames[0]), learner.record_action(0)))
    median = float(np.median(times))
    return {
        'frames': n,
        'wall_s': round(wall, 2),
        'frames_per_s': round(n / wall, 3),
        'ms_per_frame_median': round(1000 * median, 1),
        'cpu_s_per_frame': round(float(np.mean(cpus)), 3),
        'gflop_per_frame': round(gflop, 2),
        'gflop_per_s': round(gflop / median, 1),
        'gflop_by_op': {k: round(v, 2) for k, v in list(ops.items())[:6]},
    }


def online_closed_rate(cfg: WorldModelConfig, frame: np.ndarray, n: int, device: str) -> dict:
    """Gate-closed iterations/s of the online learner (``train_gate``: the gate's encoding plus one
    masked autoencoder step on the latest frame)."""
    learner = OnlineLearner(cfg.replace(reconstruction_threshold=0.0), DOT_ACTIONS, device=device)
    learner.observe(frame)
    times = []
    for i in range(n + 3):
        t0 = time.perf_counter()
        learner.train_gate()
        sync(learner.device)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return {
        'iterations': n,
        'iterations_per_s': round(n / float(np.sum(times)), 3),
        'ms_per_iteration_median': round(1000 * float(np.median(times)), 1),
    }


def offline_rate(trainer: OfflineTrainer, steps: int, mode: str) -> dict:
    """Samples/s of train_step at the trainer's batch size.

    ``mode``: gate-open (joint) or gate-closed.
    """
    st = trainer.state
    st.closed_since_check = 0
    settings = trainer.settings
    batches = trainer._batches()
    times, cpus = [], []
    for i in range(steps + 1):
        # hold the gate in the mode being measured (a step updates the measured reconstruction)
        st.gate_recon = 0.0 if mode == 'joint' else 1e9
        batch = next(batches)
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train_step(batch)
        sync(trainer.device)
        if i > 0:  # the first step warms up (allocations, compilation)
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    wall = float(np.sum(times))
    b = settings.batch_size
    if mode == 'joint' and st.joint_steps < steps + 1:
        raise RuntimeError('the gate did not stay open: not every timed step was a joint step')
    st.gate_recon = 0.0 if mode == 'joint' else 1e9
    batch = next(batches)
    gflop, _ = count_gflop(lambda: trainer.train_step(batch))
    median = float(np.median(times))
    return {
        'batch_size': b,
        'mode': mode,
        'steps': steps,
        'wall_s': round(wall, 2),
        'samples_per_s': round(steps * b / wall, 3),
        's_per_step_median': round(median, 3),
        'cpu_s_per_sample': round(float(np.sum(cpus)) / (steps * b), 3),
        'gflop_per_sample': round(gflop / b, 2),
        'gflop_per_s': round(gflop / median, 1),
    }


def data_rate(trainer: OfflineTrainer, n: int) -> dict:
    """Samples/s of the dataset alone (cold cache: every frame decoded from the bag)."""
    ds = TransitionDataset(trainer.index, trainer.train_ids, trainer.config.img_size)
    n = min(n, len(ds))
    order = np.random.default_rng(0).permutation(len(ds))[:n]
    t0 = time.perf_counter()
    for i in order:
        ds[int(i)]
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in order:
        ds[int(i)]
    warm = time.perf_counter() - t0
    return {
        'samples': n,
        'cold_samples_per_s': round(n / cold, 1),
        'cached_samples_per_s': round(n / warm, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument('--preset', choices=['full', 'tiny'], default='full')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--device', default='cpu', help='cpu | cuda')
    p.add_argument('--batch-sizes', default='1,32', help='comma-separated batch sizes [1,32]')
    p.add_argument(
        '--steps', type=int, default=3, help='timed steps per batch size (after 1 warm-up) [3]'
    )
    p.add_argument('--batch1-steps', type=int, default=10, help='timed steps at batch size 1 [10]')
    p.add_argument('--online-frames', type=int, default=15, help='timed online acted frames [15]')
    p.add_argument(
        '--closed', action='store_true', help='also time gate-closed (masked autoencoder) steps'
    )
    p.add_argument('--precision', choices=['fp32', 'bf16', 'fp16'], default='fp32')
    p.add_argument('--compile', action='store_true')
    p.add_argument('--out', type=Path, default=ROOT / 'saved' / 'reports')
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    cfg = WorldModelConfig() if args.preset == 'full' else WorldModelConfig.tiny()
    sizes = [int(s) for s in args.batch_sizes.split(',') if s.strip()]
    device = torch.device(args.device)
    report = {
        'started': datetime.now().strftime('%Y%m%d_%H%M%S'),
        'preset': args.preset,
        'threads': args.threads,
        'device': str(device),
        'torch': torch.__version__,
        'cpu_count': os.cpu_count(),
        'precision': args.precision,
        'compile': args.compile,
        'load_average_start': list(os.getloadavg()),
    }
    if device.type == 'cuda':
        report['gpu'] = torch.cuda.get_device_name(device)
    tmp = Path(tempfile.mkdtemp(prefix='offline_bench_'))
    try:
        # ---- a dot session at the model's size, long enough for the largest batch
        n_actions = max(sizes) * (args.steps + 2) + 16
        rng = np.random.default_rng(0)
        session = tmp / 'sessions' / 'toroidal_dot' / 'bench'
        size = cfg.img_size
        frames = write_dot_session(
            session,
            rng.integers(0, 2, n_actions).tolist(),
            config=ToroidalDotConfig(
                size=size,
                dot_radius=max(1, round(5 * size / 224)),
                move_pixels=max(1, round(27 * size / 224)),
                seed=1,
            ),
        )
        print(
            f'session: {n_actions} transitions of {size}x{size} frames, {args.preset} model, '
            f'{args.threads} threads, {device}',
            flush=True,
        )

        print(
            f'online learner: {args.online_frames} acted frames, gate open, '
            'training every frame ...',
            flush=True,
        )
        report['online'] = on = online_rate(cfg, frames, args.online_frames, args.device)
        print(
            f"  {on['frames_per_s']:.2f} frames/s ({on['ms_per_frame_median']} ms median, "
            f"{on['cpu_s_per_frame']} CPU-s/frame); {on['gflop_per_frame']} GFLOP/frame = "
            f"{on['gflop_per_s']} GFLOP/s",
            flush=True,
        )
        report['matmul_ceiling_gflop_per_s'] = ceiling = round(
            matmul_ceiling(device=args.device), 1
        )
        print(
            f'  ceiling: a 2048x2048 fp32 matrix product runs at {ceiling} GFLOP/s here', flush=True
        )

        if args.closed:
            report['online_gate_closed'] = oc = online_closed_rate(
                cfg, frames[0], 3 * args.online_frames, args.device
            )
            print(
                f"  gate closed: {oc['iterations_per_s']:.2f} autoencoder iterations/s "
                f"({oc['ms_per_iteration_median']} ms median)",
                flush=True,
            )

        report['offline'] = []
        for b in sizes:
            settings = TrainSettings(
                batch_size=b,
                steps=10**6,
                gate=True,
                val_fraction=0.0,
                save_every=0,
                precision=args.precision,
                compile=args.compile,
            )
            trainer = OfflineTrainer(
                [session], tmp / f'out{b}', cfg, settings, device=args.device, progress=False
            )
            if b == sizes[0]:
                report['data'] = d = data_rate(trainer, 64)
                print(
                    f"dataset alone: {d['cold_samples_per_s']} samples/s from the bag, "
                    f"{d['cached_samples_per_s']} cached",
                    flush=True,
                )
            modes = ['joint', 'autoencoder'] if args.closed else ['joint']
            for mode in modes:
                steps = args.batch1_steps if b == 1 else args.steps
                print(f'offline batch {b}, {mode} steps: {steps} timed ...', flush=True)
                r = offline_rate(trainer, steps, mode)
                if mode == 'joint':  # from medians (robust to a shared machine) and from CPU time
                    r['vs_online'] = round(
                        b / r['s_per_step_median'] / (1000 / on['ms_per_frame_median']), 2
                    )
                    r['vs_online_cpu'] = round(on['cpu_s_per_frame'] / r['cpu_s_per_sample'], 2)
                else:
                    r['vs_online'] = None
                    if args.closed:
                        r['vs_online_gate_closed'] = round(
                            b
                            / r['s_per_step_median']
                            / (1000 / report['online_gate_closed']['ms_per_iteration_median']),
                            2,
                        )
                report['offline'].append(r)
                extra = (
                    f", {r['vs_online']}x the online learner "
                    f"(medians; {r['vs_online_cpu']}x by CPU time)"
                    if r['vs_online']
                    else ''
                )
                if r.get('vs_online_gate_closed'):
                    extra = (
                        f", {r['vs_online_gate_closed']}x the online gate-closed iterations "
                        '(medians)'
                    )
                print(
                    f"  {r['samples_per_s']:.2f} samples/s ({r['s_per_step_median']} s/step, "
                    f"{r['cpu_s_per_sample']} CPU-s/sample){extra}; "
                    f"{r['gflop_per_sample']} GFLOP/sample "
                    f"= {r['gflop_per_s']} GFLOP/s",
                    flush=True,
                )
            del trainer
        joint = [r for r in report['offline'] if r['mode'] == 'joint']
        if joint:  # what batching could give at all: the same work per sample at the ceiling
            work = on['gflop_per_frame'] / min(r['gflop_per_sample'] for r in joint)
            report['speedup_bound'] = bound = round(work * ceiling / on['gflop_per_s'], 2)
            print(
                f'\nbound on offline vs online at this model size: {work:.2f} (work per sample) x '
                f"{ceiling / on['gflop_per_s']:.2f} (ceiling / online GFLOP/s) = {bound}x",
                flush=True,
            )
        report['load_average_end'] = list(os.getloadavg())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"offline_train_bench_{report['started']}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nload average: start {report['load_average_start']}, end {report['load_average_end']}")
    print(f'report: {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
