"""The ``devbot`` command.

Examples:
    devbot launch launch/toroidal_dot_runner.launch.yaml selector:=sequence sequence:=ALTERNATE max_steps:=100
    devbot launch launch/toroidal_dot_runner.launch.yaml --show-args
    devbot view /toroidal_dot/camera/image_raw
    devbot <command> --help
"""

from __future__ import annotations

import importlib
import sys

# command -> (module:function taking argv and returning an exit status, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    'launch': ('devbot.launcher:main', 'run a ROS 2 YAML launch file'),
    'view': ('devbot.viewer:main', 'show image topics in a window (or save them headless)'),
    'record': ('devbot.bag.record:main', 'record robot topics into a rosbag2 (MCAP) session'),
    'play': ('devbot.bag.play:main', 'play a rosbag2 session back (rate, loop, lockstep)'),
    'bag': ('devbot.bag.cli:main', 'list, inspect and reindex recorded sessions'),
    'import-original': ('devbot.bag.import_original:main', 'import sessions of the original code'),
    'replay': (
        'world_model_node.replay:main',
        'train the world model offline from recorded sessions',
    ),
    'train': (
        'world_model_node.offline.cli:main',
        'batched, resumable offline training from sessions (torchrun-ready)',
    ),
    'explore': (
        'world_model_node.explore_cli:main',
        'session explorer: sessions and a world model as tables/figures',
    ),
    'foxglove': ('devbot.foxglove_bridge:main', 'serve topics to the Foxglove app over WebSocket'),
    'jetbot-feed': ('jetbot_driver.feed:main', 'live camera feed of a JetBot over RPyC'),
}


def usage() -> str:
    lines = [__doc__.strip(), '', 'Commands:']
    lines += [f'  {name:<12} {text}' for name, (_, text) in COMMANDS.items()]
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f'devbot: unknown command {command!r}\n\n{usage()}', file=sys.stderr)
        return 2
    module_name, function = COMMANDS[command][0].split(':')
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(
                f'devbot {command}: not available in this install ({module_name} is missing)',
                file=sys.stderr,
            )
            return 2
        raise
    return getattr(module, function)(rest)


if __name__ == '__main__':
    sys.exit(main())
