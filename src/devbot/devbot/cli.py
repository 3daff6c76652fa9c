"""The ``devbot`` command: ``devbot launch ...``, ``devbot view ...``.

Examples:
    devbot launch launch/toroidal_dot_runner.launch.yaml selector:=sequence sequence:=ALTERNATE max_steps:=100
    devbot launch launch/toroidal_dot_runner.launch.yaml --show-args
    devbot view /toroidal_dot/camera/image_raw
"""

from __future__ import annotations

import sys

USAGE = __doc__.strip() + '\n\nCommands:\n  launch   run a ROS 2 YAML launch file\n  view     show image topics (or save them headless)\n'


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == 'launch':
        from devbot.launcher import main as launch_main
        return launch_main(rest)
    if command == 'view':
        from devbot.viewer import main as view_main
        return view_main(rest)
    print(f'devbot: unknown command {command!r}\n\n{USAGE}', file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main())
