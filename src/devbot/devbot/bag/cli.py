"""``devbot bag``: list, inspect and repair recorded sessions.

devbot bag list [--root saved/sessions] [--robot toroidal_dot]
devbot bag info SESSION     (a bag directory, or <robot>/<session> under saved/sessions)
devbot bag reindex SESSION  (after a killed recording: close the MCAP files, rebuild metadata.yaml)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys

from devbot import topics
from devbot.bag.reindex import BagFormatError, reindex
from devbot.bag.session import BagError, Session, list_sessions, read_info, scan_problem
from devbot.bag.storage import DEFAULT_ROOT, resolve_session_path

#: one-line help of this ``devbot`` subcommand (``devbot --help`` lists it)
HELP = 'list, inspect and reindex recorded sessions'


def _when(ns: int) -> str:
    return _dt.datetime.fromtimestamp(ns / 1e9).strftime('%Y-%m-%d %H:%M:%S') if ns else '-'


def _size(n: int) -> str:
    for unit in ('B', 'kB', 'MB', 'GB'):
        if n < 1000 or unit == 'GB':
            return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
        n /= 1000
    return f'{n} B'


def cmd_list(opts) -> int:
    infos = list_sessions(opts.root, opts.robot)
    if not infos:
        print(f'no sessions under {opts.root}')
        return 0
    print(
        f'{"robot":<14} {"session":<24} {"type":<13} {"start":<19} '
        f'{"duration":>9} {"msgs":>8} {"size":>9}  state'
    )
    for i in infos:
        if i.error:
            print(
                f'{i.robot:<14} {i.name:<24} {"?":<13} {"-":<19} '
                f'{"-":>9} {"-":>8} {"-":>9}  unreadable: {i.error}'
            )
            continue
        state = 'ok' if i.complete else 'unfinished (devbot bag reindex)'
        print(
            f'{i.robot:<14} {i.name:<24} {i.robot_type or "?":<13} {_when(i.start_ns):<19} '
            f'{i.duration_ns / 1e9:>8.1f}s {i.message_count:>8} {_size(i.size_bytes):>9}  {state}'
        )
    return 0


def cmd_info(opts) -> int:
    path = resolve_session_path(opts.session)
    info = read_info(path)
    print(f'session:      {info.path}')
    print(f'robot:        {info.robot} (type {info.robot_type or "unknown"})')
    print(f'software:     {info.software_version or "-"}')
    print(f'start:        {_when(info.start_ns)}   duration {info.duration_ns / 1e9:.3f} s')
    print(
        f'messages:     {info.message_count}   size {_size(info.size_bytes)}   '
        f'files {", ".join(info.files)}'
    )
    print(
        f'state:        {"ok" if info.complete else "unfinished: " + (scan_problem(path) or "?")}'
    )
    print('topics:')
    for t in info.topics.values():
        print(f'  {t.name:<48} {t.msgtype:<38} {t.count:>8}')
    if info.action_space is not None:
        space = info.action_space
        print(
            f'action space: channels {list(space.channel_names)}; '
            f'{space.num_actions} actions {[space.values(i) for i in range(space.num_actions)]}'
        )
        if info.complete and info.topic(topics.MOTOR_EXECUTED) and info.topic(topics.CAMERA_IMAGE):
            with Session(path) as s:
                counts = s.action_counts()
                print(f'frames:       {s.num_frames}   transitions {len(s.transition_list())}')
                print('actions:      ' + ', '.join(f'{i}: {int(c)}' for i, c in enumerate(counts)))
                lost: dict[str, int] = {}
                for loss in s.losses():
                    lost[loss.topic] = lost.get(loss.topic, 0) + loss.count
                if lost:  # transitions around these were left out
                    print('lost:         ' + ', '.join(f'{n}: {c}' for n, c in lost.items()))
    return 0


def cmd_reindex(opts) -> int:
    path = resolve_session_path(opts.session)
    result = reindex(path)
    for scan in result.files:
        state = (
            'closed' if scan.complete else f'repaired ({scan.problem}; kept {scan.good_end} bytes)'
        )
        print(f'{scan.path.name}: {scan.messages} messages, {state}')
    print(f'wrote {path / "metadata.yaml"}: {result.message_count} messages')
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='devbot bag', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('list', help='sessions of every robot')
    p.add_argument('--root', default=str(DEFAULT_ROOT))
    p.add_argument('--robot', default=None)
    p.set_defaults(func=cmd_list)
    p = sub.add_parser('info', help='metadata, topics and action counts of a session')
    p.add_argument('session')
    p.set_defaults(func=cmd_info)
    p = sub.add_parser('reindex', help='make a killed recording readable (rebuild metadata.yaml)')
    p.add_argument('session')
    p.set_defaults(func=cmd_reindex)
    opts = parser.parse_args(argv)
    try:
        return opts.func(opts)
    except (BagError, BagFormatError, OSError) as exc:
        print(f'devbot bag {opts.command}: {exc}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
