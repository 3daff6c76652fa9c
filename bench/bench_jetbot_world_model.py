"""Benchmark of the world model on the simulated JetBot's room, in-process (no ROS, no RPyC).

What ``jetbot_sim_world_model.launch.yaml selector:=uncertainty`` does, without the transport: the
learner sees the simulated camera (``jetbot_driver.sim_world.SimWorld``, 224x224), the robot stands
still while the quality gate is closed (the learner keeps training its autoencoder on that view),
and once the gate opens it executes the action the world model is least sure about
(``config/jetbot.yaml``: stay, or turn with the right motor at 0.12 for 0.2 s). Reports the wall
time to the first action, the actions executed, the gate-open share of learner steps, and each
action's explained variance of its fresh predictions (made before the frame was seen) over the
last 50 of that action, every 30 s, at each ``--report-at`` time and at the end.

Usage::

    .venv/bin/python bench/bench_jetbot_world_model.py --time-budget 420
    .venv/bin/python bench/bench_jetbot_world_model.py --time-budget 1800 --report-at 900
    .venv/bin/python bench/bench_jetbot_world_model.py --time-budget 420 \\
        --set reconstruction_variance_fraction=0        # the original's absolute gate
    .venv/bin/python bench/bench_jetbot_world_model.py --preset tiny --time-budget 20  # smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from model_args import add_model_arguments, model_config

from action_selectors.policies import RANDOM_CHOICE_PROBABILITY, UncertaintyPolicy
from devbot.action_space import ActionSpace
from jetbot_driver.sim_world import SimConfig, SimWorld
from world_model_node.learner import OnlineLearner
from world_model_node.report import RunReport

ROOT = Path(__file__).resolve().parents[1]
SETTLE_S = 0.05  # simulated time between the end of an action and the next frame


def run(args: argparse.Namespace) -> dict:
    cfg, overrides = model_config(args)
    space = ActionSpace.from_yaml(ROOT / 'config' / 'jetbot.yaml')
    channels = [c.name for c in space.channels]
    learner = OnlineLearner(cfg, space.normalized(), precision=args.precision)
    world = SimWorld(SimConfig())
    sim_t = 0.0
    # kept in memory only: the per-action fresh EV the node's run report gives
    report = RunReport(Path('.'), 'bench', cfg.reconstruction_threshold, cfg.prediction_threshold)
    executed = [0] * space.num_actions
    steps = gate_open_steps = 0
    first_act = None
    policy = UncertaintyPolicy(space.num_actions, 0, args.random_choice_probability)
    report_at = sorted(args.report_at)
    snapshots = {}
    t0 = time.perf_counter()
    next_print = 30.0

    def elapsed() -> float:
        return time.perf_counter() - t0

    frame = world.render(sim_t)[:, :, ::-1].copy()  # BGR -> RGB
    while elapsed() < args.time_budget:
        r = learner.observe(frame)
        report.add(r)
        steps += 1
        while not r.gate_open and elapsed() < args.time_budget:  # the robot waits
            r = learner.train_gate()
            report.add(r)
            steps += 1
        if not r.gate_open:
            break
        gate_open_steps += 1
        if first_act is None:
            first_act = elapsed()
        action = policy.choose({str(label): s for label, s in zip(r.labels, r.scores)})
        learner.record_action(action)
        executed[action] += 1
        values = dict(zip(channels, space.actions[action]))
        world.set_motors(values['motor_left'], values['motor_right'], sim_t)
        sim_t += values['duration']
        world.set_motors(0.0, 0.0, sim_t)
        sim_t += SETTLE_S
        frame = world.render(sim_t)[:, :, ::-1].copy()
        if report_at and elapsed() >= report_at[0]:
            snapshots[f'{report_at.pop(0):g}s'] = {
                'actions_executed': list(executed),
                'fresh_ev_last_50': _fresh_ev(report, space.num_actions),
            }
        if elapsed() >= next_print:
            next_print += 30.0
            print(
                f'{elapsed():6.0f} s: {sum(executed)} actions {executed}, recon '
                f'{r.reconstruction_loss:.5f}, fresh EV (last 50) '
                + ', '.join(f'a{a} {v}' for a, v in _fresh_ev(report, space.num_actions).items()),
                flush=True,
            )
    return {
        'time_budget_s': args.time_budget,
        'first_action_s': None if first_act is None else round(first_act, 1),
        'actions_executed': executed,
        'learner_steps': steps,
        'gate_open_share_of_steps': round(gate_open_steps / max(steps, 1), 4),
        'fresh_ev_last_50': _fresh_ev(report, space.num_actions),
        'at': snapshots,
        'random_choice_probability': args.random_choice_probability,
        'autoencoder_steps': learner.autoencoder_steps,
        'precision': learner.core.precision,
        'settings': overrides,
    }


def _fresh_ev(report: RunReport, num_actions: int) -> dict[int, float | None]:
    """Every action's mean EV of its last 50 fresh predictions (None before its first)."""
    ev = report.fresh_ev_per_action(50)
    return {a: round(ev[a], 3) if a in ev else None for a in range(num_actions)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('Usage::')[1],
    )
    p.add_argument('--time-budget', type=float, default=420.0, help='wall seconds')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument(
        '--report-at',
        type=float,
        nargs='*',
        default=[],
        metavar='S',
        help='also record the actions and fresh EV at these wall seconds',
    )
    p.add_argument(
        '--random-choice-probability',
        type=float,
        default=RANDOM_CHOICE_PROBABILITY,
        help="share of uniformly random choices, as the selector node's parameter "
        '(default %(default)s)',
    )
    add_model_arguments(p)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(json.dumps(run(args), indent=2))


if __name__ == '__main__':
    main()
