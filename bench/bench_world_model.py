"""Benchmark of the world-model learning core, in-process with the toroidal dot world.

Drives ``world_model_node.learner.OnlineLearner`` (full seed-size model by default) with
``toroidal_sim.env.ToroidalDotEnv`` exactly as the node does (observe, retry the gate while it is
closed, act, record the action), once with the ALWAYS_MOVE sequence and once with
uncertainty-driven selection (``action_selectors.policies.UncertaintyPolicy``, the selector node's
policy, ``--random-choice-probability`` as its parameter), and reports:

* the per-frame cost split (encode, gate = autoencoder step while closed, predictor training
  step, scoring of all actions), separately for acted (gate-open) and gate-closed frames;
* frames until the gate first opens;
* frames and wall time until the fresh prediction error first falls below PREDICTION_THRESHOLD
  (and until the median of the last 20 does);
* prediction quality on held-out transitions (random x and history actions, never the training
  trajectory's RNG): explained variance in patch space and the dot position in the predicted
  frame (centroid of its bright pixels, toroidal-aware) vs the true next position, per action.
  No action changes the dot's row, so a run without resets only ever sees one row: the
  transitions are drawn once on that row (what the robot's world is) and once on random rows
  (generalisation to rows it never saw; ``--reset-every N`` starts a new episode at a random
  position every N acted frames, so that the run sees them).

Usage::

    .venv/bin/python bench/bench_world_model.py --time-budget 600     # both modes, 10 min each
    .venv/bin/python bench/bench_world_model.py --mode uncertainty --frames 3000
    .venv/bin/python bench/bench_world_model.py --preset tiny --time-budget 30   # smoke run
    .venv/bin/python bench/bench_world_model.py --mode uncertainty --time-budget 1200 \\
        --reset-every 50
    .venv/bin/python bench/bench_world_model.py --mode uncertainty --time-budget 900 \\
        --random-choice-probability 0 --set context_dropout=0 --set roll_augmentation=0
    .venv/bin/python bench/bench_world_model.py --timing-only --timing-frames 40 --levels 2
    python3 bench/bench_world_model.py --device cuda --mode uncertainty --frames 1500  # on a GPU

The model: the full size, the dot's params file (``config/toroidal_dot.world_model.params.yaml``,
as the dot's launch file reads it), then ``--set``.
Writes ``saved/reports/world_model_bench_<time>.json`` and PNG pictures of predictions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from compute import count_gflop, matmul_ceiling
from model_args import add_model_arguments, model_config

from action_selectors.policies import RANDOM_CHOICE_PROBABILITY, UncertaintyPolicy
from toroidal_sim.env import ToroidalDotConfig, ToroidalDotEnv
from world_model_node.checkpoint import CheckpointManager
from world_model_node.config import WorldModelConfig
from world_model_node.core import resolve_precision
from world_model_node.dot_heldout import DotHeldOut, evaluate_dot
from world_model_node.learner import OnlineLearner

ROOT = Path(__file__).resolve().parents[1]


def load_actions() -> np.ndarray:
    try:
        from devbot.action_space import ActionSpace

        return ActionSpace.from_yaml(ROOT / 'config' / 'toroidal_dot.yaml').normalized()
    except Exception as exc:  # noqa: BLE001 - the bench still runs with the known dot space
        print(f'(action space from config failed: {exc}; using [[-1], [1]])', file=sys.stderr)
        return np.array([[-1.0], [1.0]], np.float32)


# ---------------------------------------------------------------------------------------------
# held-out evaluation
# ---------------------------------------------------------------------------------------------


def evaluate(
    learner: OnlineLearner,
    env_cfg: ToroidalDotConfig,
    n: int,
    history_actions: str,
    seed: int,
    picture: Path | None = None,
    row: int | None = None,
    avoid_row: int | None = None,
    averaged: bool = True,
) -> dict:
    """``world_model_node.dot_heldout.evaluate_dot`` as JSON rows ``action_<a>``; the first four
    samples drawn into ``picture``."""
    held = evaluate_dot(
        learner,
        env_cfg,
        n,
        seed,
        history_actions,
        row=row,
        avoid_row=avoid_row,
        tile_rows=4 if picture is not None else 0,
        averaged=averaged,
    )
    if picture is not None and held.tiles:
        save_png(np.concatenate(held.tiles, axis=0), picture)
    return {f'action_{a}': d for a, d in held.per_action.items()}


def targets_reached(res: dict) -> dict[str, bool]:
    """The learning targets a held-out evaluation (one row kind) shows as reached."""
    return DotHeldOut(dict(enumerate(res.values()))).targets_reached()


TARGETS = {
    'ev_above_0.9': 'both actions EV > 0.9',
    'within_3px_all': 'both actions within 3 px in 100% of held-out transitions',
}


def measure_save(learner: OnlineLearner, directory: Path) -> dict:
    """The cost of one checkpoint save of the learner as it is now (in a scratch folder): ms the
    loop is blocked (the snapshot; the background writer does the rest), ms until the files are
    written, and the same for a synchronous save."""
    saved = learner.checkpoints
    learner.checkpoints = CheckpointManager(directory)
    try:
        t0 = time.perf_counter()
        learner.save(background=True)
        blocked = time.perf_counter() - t0
        error = learner.checkpoints.wait()
        if error is not None:
            raise error
        total = time.perf_counter() - t0
        size = learner.checkpoints.last_save['bytes']
        t0 = time.perf_counter()
        learner.save()
        sync = time.perf_counter() - t0
    finally:
        learner.checkpoints = saved
    return {
        'loop_blocked_ms': round(blocked * 1000, 1),
        'total_ms': round(total * 1000, 1),
        'synchronous_save_ms': round(sync * 1000, 1),
        'mb': round(size / 1e6, 1),
    }


def _reached(t: dict | None) -> str:
    if t is None:
        return 'not reached'
    return f"{t['wall_s']} s ({t.get('acted_frames', t.get('frames'))} frames)"


def _px(v: float | None) -> str:
    return 'no dot' if v is None else f'{v:.1f}'


def save_png(img: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


# ---------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------


def run(
    mode: str,
    args: argparse.Namespace,
    cfg: WorldModelConfig,
    actions: np.ndarray,
    out_dir: Path,
    stamp: str,
) -> dict:
    env_cfg = ToroidalDotConfig(seed=args.seed)
    env = ToroidalDotEnv(env_cfg)
    learner = OnlineLearner(
        cfg,
        actions,
        device=args.device,
        precision=args.precision,
        autoencoder_lr=args.ae_lr,
        predictor_lr=args.pred_lr,
        checkpoint_dir=None if args.checkpoint is None else args.checkpoint / mode,
    )
    policy = UncertaintyPolicy(learner.num_actions, args.seed + 1, args.random_choice_probability)
    history_mode = 'always_move' if mode == 'always_move' else 'random'
    training_row = env.y

    def heldout(picture: Path | None = None) -> dict:
        """Held-out predictions on the training trajectory's row (home row) and, separately, on
        rows the run never saw (with resets: on any row, all are seen); with a weight average,
        by it and also by the live weights (``<kind>_live``)."""
        kinds = (
            {'any_row': None}
            if args.reset_every
            else {'home_row': training_row, 'unseen_rows': None}
        )
        weights = {'': True, '_live': False} if cfg.weight_average_decay > 0 else {'': True}
        return {
            kind + suffix: evaluate(
                learner,
                env_cfg,
                args.eval_samples,
                history_mode,
                seed=12345 + i,
                row=row,
                avoid_row=None if args.reset_every else training_row,
                picture=None
                if picture is None or suffix
                else picture.with_name(f'{picture.stem}_{kind}.png'),
                averaged=averaged,
            )
            for suffix, averaged in weights.items()
            for i, (kind, row) in enumerate(kinds.items())
        }

    target_kind = 'any_row' if args.reset_every else 'home_row'
    targets: dict[str, dict | None] = dict.fromkeys(TARGETS)
    eval_s = 0.0  # held-out evaluations: not learning time

    def learning_s() -> float:
        return time.perf_counter() - t_start - eval_s

    def check_targets(ev: dict, learned_s: float) -> None:
        for name, reached in targets_reached(ev[target_kind]).items():
            if reached and targets[name] is None:
                targets[name] = {'acted_frames': n_acted, 'wall_s': round(learned_s, 1)}

    t_start = time.perf_counter()
    cpu_start = time.process_time()
    frame = env.frame()
    acted, closed = [], []  # per-frame timings
    first_gate_open = None
    first_below = None
    sustained_below = None
    recent_err: list[float] = []
    evals = []
    n_frames = 0  # observe() calls (new frames)
    n_acted = 0
    next_eval = args.eval_every
    last_print = 0.0
    resets = 0
    executed = [0] * learner.num_actions  # executed primitive actions
    while True:
        elapsed = learning_s()
        if (args.frames and n_acted >= args.frames) or elapsed >= args.time_budget:
            break
        r = learner.observe(frame)
        n_frames += 1
        while not r.gate_open:
            closed.append(r.timings)
            now = learning_s()
            if now >= args.time_budget:
                break
            if now - last_print >= args.print_every:
                last_print = now
                print(
                    f'[{mode}] {now:7.1f}s frames {n_frames} acted {n_acted} gate closed: recon '
                    f'{r.reconstruction_loss:.5f} (threshold {cfg.reconstruction_threshold}) '
                    f'ae_steps {learner.autoencoder_steps} '
                    f'({r.timings["total"] * 1000:.0f} ms/iteration)',
                    flush=True,
                )
            r = learner.train_gate()
        if not r.gate_open:
            break
        acted.append({**r.timings, 'trained': float(bool(r.trained_levels))})
        n_acted += 1
        if first_gate_open is None:
            first_gate_open = {
                'frames': n_frames,
                'learner_steps': r.step,
                'autoencoder_steps': learner.autoencoder_steps,
                'wall_s': round(learning_s(), 1),
            }
        if 0 in r.prediction_errors:
            err = r.prediction_errors[0]
            recent_err = (recent_err + [err])[-20:]
            if first_below is None and err < cfg.prediction_threshold:
                first_below = {
                    'acted_frames': n_acted,
                    'wall_s': round(learning_s(), 1),
                    'cpu_s': round(time.process_time() - cpu_start, 1),
                }
            if (
                sustained_below is None
                and len(recent_err) == 20
                and np.median(recent_err) < cfg.prediction_threshold
            ):
                sustained_below = {
                    'acted_frames': n_acted,
                    'wall_s': round(learning_s(), 1),
                    'cpu_s': round(time.process_time() - cpu_start, 1),
                }
        # ---- choose an action
        if mode == 'always_move':
            a = 1
        else:
            a = policy.choose({str(label): s for label, s in zip(r.labels, r.scores)})
        if args.reset_every and n_acted % args.reset_every == 0:
            # a new episode: the jump to a random position is no transition, so no action is
            # recorded for this frame and the learner's contexts stop here
            policy.drop_plan()
            resets += 1
            frame = env.reset()
        else:
            learner.record_action(a)
            executed[a] += 1
            frame = env.step(a)
        now = learning_s()
        if now - last_print >= args.print_every:
            last_print = now
            tail = acted[-50:]
            per = np.mean([t['total'] for t in tail]) if tail else float('nan')
            ev = r.explained_variance if r.explained_variance is not None else float('nan')
            print(
                f'[{mode}] {now:7.1f}s frames {n_frames} acted {n_acted} '
                f'ae_steps {learner.autoencoder_steps} recon {r.reconstruction_loss:.5f} '
                f'pred_err {r.prediction_errors.get(0, float("nan")):.5f} '
                f'EV {ev:.3f} '
                f'levels {learner.num_levels} acted-frame {per * 1000:.0f} ms',
                flush=True,
            )
        if args.eval_every and n_acted >= next_eval:
            next_eval += args.eval_every
            t_eval = time.perf_counter()
            ev = heldout()
            eval_s += time.perf_counter() - t_eval
            check_targets(ev, learning_s())
            evals.append({'acted_frames': n_acted, 'wall_s': round(learning_s(), 1), **ev})
            for kind, res in ev.items():
                print(
                    f'[{mode}] eval @ {n_acted} ({kind}): '
                    + ', '.join(
                        f'a{a}: EV {res[f"action_{a}"]["explained_variance_mean"]:.3f} dot '
                        f'{_px(res[f"action_{a}"]["dot_error_px_median"])} px, '
                        f'{100 * res[f"action_{a}"]["within_3px"]:.0f}% within 3'
                        for a in range(learner.num_actions)
                    ),
                    flush=True,
                )
    wall = time.perf_counter() - t_start
    learning_wall = learning_s()
    cpu = time.process_time() - cpu_start
    final = heldout(picture=out_dir / f'world_model_bench_{stamp}_{mode}_heldout.png')
    check_targets(final, learning_wall)  # the model of the end of learning, not of its evaluation
    if learner.checkpoints is not None:
        learner.save()
    with tempfile.TemporaryDirectory(dir=out_dir, prefix='.save_cost_') as scratch:
        save_cost = measure_save(learner, Path(scratch))
    # the arithmetic of one more frame at the run's final state (all levels scored)
    gflop, _ = count_gflop(lambda: learner.observe(frame))
    panel = learner.visualization_panel()
    if panel is not None:
        save_png(panel, out_dir / f'world_model_bench_{stamp}_{mode}_panel.png')

    def split(rows, keys, skip=0):
        rows = rows[skip:]
        if not rows:
            return {}
        out = {}
        for k in keys:
            v = np.array([t.get(k, 0.0) for t in rows]) * 1000
            out[k] = {
                'mean_ms': round(float(v.mean()), 1),
                'median_ms': round(float(np.median(v)), 1),
                'p90_ms': round(float(np.percentile(v, 90)), 1),
            }
        return out

    keys = ['encode', 'gate', 'train', 'score', 'save', 'total']
    trained_rows = [t for t in acted if t['trained']]  # a predictor training step happened
    return {
        'mode': mode,
        'wall_s': round(wall, 1),
        'learning_wall_s': round(learning_wall, 1),
        'eval_wall_s': round(eval_s, 1),
        'cpu_s': round(cpu, 1),
        'frames_observed': n_frames,
        'acted_frames': n_acted,
        'gate_closed_iterations': len(closed),
        'resets': resets,
        'executed_actions': executed,
        'training_row': None if args.reset_every else training_row,
        'learner_steps': learner.step,
        'autoencoder_steps': learner.autoencoder_steps,
        'predictor_training_steps': [lvl.training_steps for lvl in learner.levels],
        'levels': learner.num_levels,
        'gate_first_open': first_gate_open,
        'prediction_below_threshold_first': first_below,
        'prediction_below_threshold_median20': sustained_below,
        'targets_on': target_kind,
        'targets': targets,  # learning wall time (evaluations excluded) when first reached
        'eval_samples_per_action': args.eval_samples,
        'gflop_per_frame_at_end': round(gflop, 4),
        'gate_open_at_end': bool(learner.history[-1].checked),
        'checkpoint_period_s': cfg.checkpoint_period_s,
        'checkpoint_save_cost': save_cost,
        'acted_frame_cost': split(acted, keys, skip=min(5, len(acted) // 10)),
        'acted_frame_cost_with_training': split(
            trained_rows, keys, skip=min(5, len(trained_rows) // 10)
        ),
        'gate_closed_frame_cost': split(closed, keys),
        'evals': evals,
        'final_eval': final,
    }


def ceilings(args: argparse.Namespace) -> dict[str, float]:
    """GFLOP/s of a 2048x2048 matrix product here: in fp32 (the hour's speed, comparable across
    runs) and, for a bf16 learner, in bf16 (the bound of its arithmetic)."""
    out = {'matmul_ceiling_gflop_per_s': round(matmul_ceiling(device=args.device), 1)}
    if args.precision_used == 'bf16':
        bf16 = matmul_ceiling(device=args.device, dtype=torch.bfloat16)
        out['matmul_ceiling_bf16_gflop_per_s'] = round(bf16, 1)
    return out


def bound(ceiling: dict[str, float]) -> tuple[float, str]:
    """The ceiling that bounds the learner's arithmetic, and its name."""
    if 'matmul_ceiling_bf16_gflop_per_s' in ceiling:
        return ceiling['matmul_ceiling_bf16_gflop_per_s'], 'bf16'
    return ceiling['matmul_ceiling_gflop_per_s'], 'fp32'


def timing(args: argparse.Namespace, cfg: WorldModelConfig, actions: np.ndarray) -> dict:
    """Per-frame cost with the gate forced open and a predictor training step on EVERY frame
    (the worst case of an acted frame), alternating actions, after a few warm-up frames."""
    forced = cfg.replace(reconstruction_threshold=1e9, prediction_threshold=0.0)
    env = ToroidalDotEnv(ToroidalDotConfig(seed=args.seed))
    learner = OnlineLearner(forced, actions, device=args.device, precision=args.precision)
    while learner.num_levels < args.levels and learner.add_level() is not None:
        pass
    frame = env.frame()
    rows = []
    for i in range(args.timing_frames + 5):
        r = learner.observe(frame)
        if i >= 5:
            rows.append(r.timings)
        a = i % 2
        learner.record_action(a)
        frame = env.step(a)
    # the arithmetic of one more acted frame, and what this processor can do at best
    gflop, ops = count_gflop(lambda: learner.observe(frame))
    learner.record_action(0)
    out = {
        'gflop_per_acted_frame': round(gflop, 2),
        'gflop_by_op': {k: round(v, 2) for k, v in list(ops.items())[:6]},
        **ceilings(args),
    }
    for k in ['encode', 'gate', 'train', 'score', 'total']:
        v = np.array([t.get(k, 0.0) for t in rows]) * 1000
        out[k] = {
            'mean_ms': round(float(v.mean()), 1),
            'median_ms': round(float(np.median(v)), 1),
            'min_ms': round(float(v.min()), 1),
            'p90_ms': round(float(np.percentile(v, 90)), 1),
        }
    # gate-closed iteration: one masked autoencoder step + the gate's encoding
    closed = OnlineLearner(
        cfg.replace(reconstruction_threshold=0.0),
        actions,
        device=args.device,
        precision=args.precision,
    )
    r = closed.observe(env.frame())
    ts = []
    for _ in range(args.timing_frames):
        r = closed.train_gate()
        ts.append(r.timings['total'])
    v = np.array(ts) * 1000
    out['gate_closed_iteration'] = {
        'mean_ms': round(float(v.mean()), 1),
        'median_ms': round(float(np.median(v)), 1),
        'min_ms': round(float(v.min()), 1),
    }
    out['frames'] = args.timing_frames
    out['levels'] = learner.num_levels
    out['load_average'] = list(os.getloadavg())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument('--mode', choices=['always_move', 'uncertainty', 'both'], default='both')
    p.add_argument('--time-budget', type=float, default=600.0, help='wall seconds per mode')
    p.add_argument(
        '--frames',
        type=int,
        default=0,
        help='stop a mode after this many acted frames (0: no limit)',
    )
    add_model_arguments(p)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument(
        '--device',
        default='cpu',
        help="cpu | cuda (on cuda the per-phase timings are not synchronised: only the totals "
        "count)",
    )
    p.add_argument('--seed', type=int, default=0)
    p.add_argument(
        '--ae-lr',
        type=float,
        default=None,
        help="autoencoder lr override (default: the config's autoencoder_lr)",
    )
    p.add_argument(
        '--pred-lr',
        type=float,
        default=None,
        help="predictor lr override (default: the config's predictor_lr)",
    )
    p.add_argument(
        '--random-choice-probability',
        type=float,
        default=RANDOM_CHOICE_PROBABILITY,
        help='uncertainty mode: share of uniformly random choices, as the selector node\'s '
        'parameter (default %(default)s)',
    )
    p.add_argument(
        '--eval-every',
        type=int,
        default=500,
        help='held-out evaluation every N acted frames (0: end only)',
    )
    p.add_argument(
        '--eval-samples',
        type=int,
        default=64,
        help='held-out transitions per action and row kind in each evaluation',
    )
    p.add_argument('--print-every', type=float, default=15.0, help='progress line every N seconds')
    p.add_argument('--out', type=Path, default=ROOT / 'saved' / 'reports')
    p.add_argument(
        '--timing-frames',
        type=int,
        default=30,
        help='frames of the forced-open timing phase (gate open, training every frame); 0: skip',
    )
    p.add_argument('--timing-only', action='store_true', help='only the timing phase')
    p.add_argument(
        '--levels',
        type=int,
        default=1,
        help='timing phase: hierarchy levels present from the start (what levels above 0 cost)',
    )
    p.add_argument(
        '--reset-every',
        type=int,
        default=0,
        metavar='N',
        help='move the dot to a random position after every N acted frames (episodes; 0: never, '
        'the dot then stays on one row for the whole run)',
    )
    p.add_argument(
        '--checkpoint',
        type=Path,
        help='save the learner here at the end of each mode (<dir>/<mode>)',
    )
    args = p.parse_args(argv)
    args.precision_used = resolve_precision(args.precision, args.device)

    torch.set_num_threads(args.threads)
    cfg, overrides = model_config(args, ROOT / 'config' / 'toroidal_dot.world_model.params.yaml')
    actions = load_actions()
    stamp = datetime.now().strftime('%Y%m%d_%H%M%S')
    args.out.mkdir(parents=True, exist_ok=True)
    modes = ['always_move', 'uncertainty'] if args.mode == 'both' else [args.mode]
    report = {
        'started': stamp,
        'preset': args.preset,
        'threads': args.threads,
        'device': args.device,
        'precision': args.precision_used,
        'torch': torch.__version__,
        'cpu_count': os.cpu_count(),
        'load_average_start': list(os.getloadavg()),
        'config_overrides': overrides,
        'lr_overrides': {'autoencoder': args.ae_lr, 'predictor': args.pred_lr},
        'random_choice_probability': args.random_choice_probability,
        'thresholds': {
            'reconstruction': cfg.reconstruction_threshold,
            'prediction': cfg.prediction_threshold,
        },
        'config': cfg.to_dict(),
        'runs': [],
    }
    path = args.out / f'world_model_bench_{stamp}.json'
    if args.timing_frames:
        print(
            f'=== timing: gate forced open, training + scoring every frame, '
            f'{args.timing_frames} frames, {args.levels} hierarchy level(s), '
            f'{args.precision_used} ===',
            flush=True,
        )
        report['timing_forced_open'] = t = timing(args, cfg, actions)
        print(
            '  acted frame (ms, mean/median/min): '
            + ', '.join(
                f"{k} {t[k]['mean_ms']}/{t[k]['median_ms']}/{t[k]['min_ms']}"
                for k in ['encode', 'train', 'score', 'total']
            )
        )
        print(
            f"  gate-closed iteration (ms, mean/median/min): "
            f"{t['gate_closed_iteration']['mean_ms']}/"
            f"{t['gate_closed_iteration']['median_ms']}/{t['gate_closed_iteration']['min_ms']}",
            flush=True,
        )
        achieved = t['gflop_per_acted_frame'] / (t['total']['median_ms'] / 1000)
        ceiling, dtype = bound(t)
        print(
            f"  an acted frame is {t['gflop_per_acted_frame']} GFLOP: {achieved:.0f} GFLOP/s at "
            f"the median; a 2048x2048 {dtype} matrix product runs at {ceiling} GFLOP/s here "
            f"(fp32: {t['matmul_ceiling_gflop_per_s']}), so no kernel tuning can bring this "
            f"frame under {1000 * t['gflop_per_acted_frame'] / ceiling:.0f} ms",
            flush=True,
        )
        path.write_text(json.dumps(report, indent=2))
    if args.timing_only:
        modes = []
    elif 'timing_forced_open' in report:
        report.update({k: v for k, v in t.items() if k.startswith('matmul_ceiling')})
    else:
        report.update(ceilings(args))
    for mode in modes:
        print(
            f'=== {mode}: {args.preset} model, {args.threads} threads, {args.precision_used}, '
            f'budget {args.time_budget:.0f} s ===',
            flush=True,
        )
        report['runs'].append(run(mode, args, cfg, actions, args.out, stamp))
        report['load_average_end'] = list(os.getloadavg())
        path.write_text(json.dumps(report, indent=2))
    for r in report['runs']:
        c = r['acted_frame_cost']
        print(
            f"\n--- {r['mode']}: {r['acted_frames']} acted frames in {r['wall_s']} s "
            f"(cpu {r['cpu_s']} s), "
            f"executed actions {r['executed_actions']}"
        )
        if c:
            print(
                '  acted frame (ms, mean/median): '
                + ', '.join(f"{k} {c[k]['mean_ms']}/{c[k]['median_ms']}" for k in c)
            )
        c = r['acted_frame_cost_with_training']
        if c:
            print(
                '  acted frame with a training step (ms, mean/median): '
                + ', '.join(f"{k} {c[k]['mean_ms']}/{c[k]['median_ms']}" for k in c)
            )
        print(f"  predictor training steps {r['predictor_training_steps']}")
        g = r['gate_closed_frame_cost']
        if g:
            print(
                f"  gate-closed iteration: {g['total']['mean_ms']} ms mean, "
                f"{r['gate_closed_iterations']} iterations"
            )
        print(f"  gate first open: {r['gate_first_open']}")
        print(
            f"  fresh prediction error < threshold: first {r['prediction_below_threshold_first']}, "
            f"median of 20 {r['prediction_below_threshold_median20']}"
        )
        print(f"  wall time to targets ({r['targets_on']}, learning time, evaluations excluded):")
        gate = r['gate_first_open']
        print(f"    first gate open: {_reached(gate)}")
        for name, text in TARGETS.items():
            print(f'    {text}: {_reached(r["targets"][name])}')
        for kind, res in r['final_eval'].items():
            for a, d in res.items():
                print(
                    f"  held-out ({kind}, {d['samples']} transitions) {a}: EV "
                    f"{d['explained_variance_mean']:.3f}, dot error median "
                    f"{_px(d['dot_error_px_median'])} px, within 3 px {d['within_3px']:.2f} "
                    f"(the true frame reconstructed: EV {d['reconstruction_ev_mean']:.3f})"
                )
        ceiling, dtype = bound(report)
        print(
            f"  GFLOP per frame at the end: {r['gflop_per_frame_at_end']} "
            f"({'acted' if r['gate_open_at_end'] else 'gate closed'}); {dtype} matmul ceiling "
            f"{ceiling} GFLOP/s (fp32: {report['matmul_ceiling_gflop_per_s']}): at least "
            f"{1000 * r['gflop_per_frame_at_end'] / ceiling:.0f} ms"
        )
        s = r['checkpoint_save_cost']
        print(
            f"  checkpoint: every {r['checkpoint_period_s']:g} s (and every "
            f"{cfg.checkpoint_save_interval} predictor steps); one save {s['mb']} MB: loop "
            f"blocked {s['loop_blocked_ms']} ms, written after {s['total_ms']} ms "
            f"(synchronous save {s['synchronous_save_ms']} ms)"
        )
    print(f'\nreport: {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
