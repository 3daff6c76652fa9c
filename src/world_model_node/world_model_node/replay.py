"""``devbot replay``: train the world model offline from recorded sessions, in order.

For each session a world-model node and a lockstep bag player run as two processes on a
private namespace: the player publishes each transition as soon as the world model has
processed the previous frame (faster than real time, no robot waits). The robot type and action
space come from each bag; the checkpoint is that robot's (resumed, and saved at the end of every
session, so each session leaves one checkpoint generation); each session gets a report.

``--filter`` trains only on the transitions a filter keeps (the language of ``devbot train
--filter``), while the world model still observes every frame and action, so its context is what
the robot really did; ``from=``/``to=`` count seconds since the session's first frame.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devbot import topics

#: one-line help of this ``devbot`` subcommand (``devbot --help`` lists it)
HELP = 'train the world model offline from recorded sessions'

EXAMPLES = '''examples:
  devbot replay --robot toroidal_dot         # every session of the robot, oldest first
  devbot replay saved/sessions/jetbot/20261125-101500-000001  # these sessions, in this order
  devbot replay --robot toroidal_dot --preset tiny --params-file config/world_model.params.yaml
  devbot replay --robot toroidal_dot --filter 'actions=1'  # learn only what moving does
'''


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='devbot replay',
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument('sessions', nargs='*', help='session folders (default: all of --robot)')
    parser.add_argument('--robot', help='train from every session of this robot type, oldest first')
    parser.add_argument(
        '--sessions-dir', default='saved/sessions', help='sessions root [saved/sessions]'
    )
    parser.add_argument(
        '--preset', default='full', choices=['full', 'tiny'], help='world model size [full]'
    )
    parser.add_argument(
        '--params-file', help='world-model ROS params file (thresholds, intervals, ...)'
    )
    parser.add_argument(
        '--checkpoint-dir', help="checkpoint folder (default saved/checkpoints/<robot type>)"
    )
    parser.add_argument(
        '--reports-dir', default='saved/reports', help='one report folder per session here'
    )
    parser.add_argument(
        '--num-threads', type=int, default=0, help="torch CPU threads (0 = torch's default)"
    )
    parser.add_argument(
        '--filter',
        default='',
        metavar='EXPR',
        help='train only on the transitions this filter keeps, e.g. "actions=1" or '
        '"motor_right>0; from=10" (every frame is still observed) [all]',
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from devbot.bag import BagError, FilterError, TransitionFilter, list_sessions, read_info

    if args.sessions:
        paths = [Path(p) for p in args.sessions]
    elif args.robot:
        infos = [i for i in list_sessions(args.sessions_dir, robot=args.robot) if not i.error]
        paths = [i.path for i in sorted(infos, key=lambda i: i.name)]
        if not paths:
            print(
                f'devbot replay: no readable session of {args.robot!r} under {args.sessions_dir}',
                file=sys.stderr,
            )
            return 2
    else:
        print('devbot replay: give session folders or --robot', file=sys.stderr)
        return 2
    try:
        infos = [read_info(p) for p in paths]  # every bag checked before any training
    except BagError as exc:
        print(f'devbot replay: {exc}', file=sys.stderr)
        return 2
    for info in infos:  # every session's action space, and the filter against it, too
        if info.action_space is None:
            print(
                f'devbot replay: {info.path}: no action space in the bag metadata', file=sys.stderr
            )
            return 2
        try:
            TransitionFilter.parse(args.filter, info.action_space)
        except FilterError as exc:
            print(f'devbot replay: {info.path}: --filter {args.filter!r}: {exc}', file=sys.stderr)
            return 2
    bin_dir = Path(sys.executable).parent
    total = time.monotonic()
    for n, info in enumerate(infos, 1):
        camera = info.topic(topics.CAMERA_IMAGE)
        frames = info.topics[camera].count if camera else 0
        print(
            f'[replay] session {n}/{len(infos)}: {info.path} ({info.robot_type}, {frames} frames)',
            flush=True,
        )
        status = train_session(bin_dir, info, args)
        if status != 0:
            print(
                f'[replay] stopped: session {info.path} ended with status {status}', file=sys.stderr
            )
            return status
    print(f'[replay] {len(infos)} session(s) in {time.monotonic() - total:.1f} s', flush=True)
    return 0


def train_session(bin_dir: Path, info, args) -> int:
    namespace = f'/replay_{os.getpid()}'
    common = ['--ros-args', '-r', f'__ns:={namespace}']
    report = Path(args.reports_dir) / f'{info.robot_type}_replay_{info.name}'
    wm_cmd = [
        str(bin_dir / 'world_model_node'),
        *common,
        '-p',
        f'session:={info.path}',
        '-p',
        f'preset:={args.preset}',
        '-p',
        f'report_dir:={report}',
        '-p',
        f'num_threads:={args.num_threads}',
    ]
    if args.params_file:
        wm_cmd[len(common) + 1 : len(common) + 1] = ['--params-file', args.params_file]
    if args.checkpoint_dir:
        wm_cmd += ['-p', f'checkpoint_dir:={args.checkpoint_dir}']
    if args.filter.strip():
        # quoted: the value is read as YAML and must stay a string (e.g. "actions=1")
        wm_cmd += ['-p', f'train_filter:={yaml_string(args.filter.strip())}']
    player_cmd = [
        str(bin_dir / 'player_node'),
        *common,
        '-p',
        f'session:={info.path}',
        '-p',
        f'namespace:={namespace}',
        '-p',
        f'topics:={topics.CAMERA_IMAGE},{topics.MOTOR_EXECUTED}',
        '-p',
        'lockstep:=true',
        '-p',
        'ack_timeout_s:=60.0',
        '-p',
        'wait_timeout_s:=300.0',
    ]
    world_model = subprocess.Popen(wm_cmd)
    try:
        player = subprocess.run(player_cmd)
    except KeyboardInterrupt:
        player = None
    finally:
        # the world model saves its checkpoint and writes the report on SIGINT
        world_model.send_signal(signal.SIGINT)
        try:
            wm_status = world_model.wait(300)
        except subprocess.TimeoutExpired:
            world_model.kill()
            wm_status = world_model.wait()
    if player is None:
        return 130
    return player.returncode or wm_status


def yaml_string(text: str) -> str:
    """``text`` as a single-quoted YAML scalar (a ROS ``-p name:=value`` value is YAML)."""
    return "'" + text.replace("'", "''") + "'"


if __name__ == '__main__':
    sys.exit(main())
