"""``devbot launch``: run ROS 2 YAML launch files without the ``ros2`` CLI.

The same files run under ``ros2 launch``: only standard launch_yaml tags, attribute types and
substitution names are accepted (see :mod:`devbot.launcher.parse` for the subset), and anything
else is an error naming the tag/attribute and its file and line. Everything is resolved before
the first process starts. As with ``ros2 launch``, a launch file is given by its path or as
``PACKAGE FILE`` (the file found in the package's share directory through the ament index).

Modules: :mod:`.substitutions` (``$(...)``), :mod:`.resolve` (packages, executables),
:mod:`.parse` (YAML -> list of processes), :mod:`.process` (running and shutting down).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile

from . import resolve
from .parse import (
    ArgInfo,
    InlineParams,
    LaunchDescription,
    LaunchError,
    ProcessSpec,
    declared_arguments,
    parse_launch_file,
)
from .process import ProcessRunner, build_command

#: one-line help of this ``devbot`` subcommand (``devbot --help`` lists it)
HELP = 'run a ROS 2 YAML launch file'

__all__ = [
    'main',
    'parse_launch_file',
    'declared_arguments',
    'LaunchError',
    'LaunchDescription',
    'ProcessSpec',
    'ProcessRunner',
    'build_command',
    'format_arguments',
    'parse_cli_arguments',
    'launch_file_path',
]

EXAMPLES = """\
examples:
  devbot launch devbot_bringup toroidal_dot_runner.launch.yaml
  devbot launch devbot_bringup toroidal_dot_runner.launch.yaml selector:=sequence max_steps:=100
  devbot launch launch/toroidal_dot_runner.launch.yaml --show-args    # a file by its path
  devbot launch launch/toroidal_dot_runner.launch.yaml --print        # resolve, start nothing

Ctrl-C (or SIGTERM) stops every process: SIGINT first, SIGTERM and SIGKILL after each
process's sigterm_timeout/sigkill_timeout (default 5 s each); press Ctrl-C again to escalate.
The status is non-zero when a process died with an error; a node with `on_exit: shutdown`
that exits 0 ends the launch with 0.
"""


def parse_cli_arguments(items: list[str]) -> dict[str, str]:
    """``['a:=1', 'b:=x']`` -> ``{'a': '1', 'b': 'x'}``; ValueError on a malformed item."""
    result: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(':=')
        if not sep or not name or any(c.isspace() for c in name):
            raise ValueError(f'launch arguments are written name:=value, got {item!r}')
        result[name] = value
    return result


def format_arguments(arguments: list[ArgInfo]) -> str:
    """The ``--show-args`` listing (like ``ros2 launch --show-args``)."""
    if not arguments:
        return 'No arguments.'
    lines = ["Arguments (pass arguments as '<name>:=<value>'):", '']
    for arg in arguments:
        lines.append(f"    '{arg.name}':")
        lines.append(f'        {arg.description or "no description given"}')
        if arg.choices:
            lines.append(f'        Valid choices are: {", ".join(arg.choices)}')
        lines.append(
            f"        (default: '{arg.default}')"
            if arg.default is not None
            else '        (required: no default)'
        )
        lines.append('')
    return '\n'.join(lines).rstrip()


def launch_file_path(target: str, arguments: list[str]) -> tuple[str, list[str]]:
    """The launch file and the remaining ``name:=value`` items, as ``ros2 launch`` reads them:
    ``FILE [args]`` when ``target`` is a file, else ``PACKAGE FILE [args]``."""
    if os.path.isfile(target):
        return target, arguments
    if arguments and ':=' not in arguments[0]:
        try:
            return resolve.find_package_file(target, arguments[0]), arguments[1:]
        except resolve.ResolveError as exc:
            raise LaunchError(str(exc)) from None
    raise LaunchError(
        f'launch file {target!r} not found (a package\'s launch file: devbot launch PACKAGE FILE)'
    )


def _print_description(description: LaunchDescription) -> None:
    with tempfile.TemporaryDirectory(prefix='devbot_launch_print_') as params_dir:
        for spec in description.processes:
            cmd = build_command(spec, params_dir)
            extras = []
            if spec.on_exit_shutdown:
                extras.append('on_exit: shutdown')
            extras.append(f'output: {spec.output}')
            print(f'[{spec.label}] {spec.kind} from {spec.where} ({", ".join(extras)})')
            print(f'    {shlex.join(cmd)}')
            for key, value in spec.env.items():
                print(f'    env {key}={value}')
            for entry in spec.params:
                if isinstance(entry, InlineParams):
                    print(f'    inline params: {entry.values}')


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog='devbot launch',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Run a ROS 2 YAML launch file (launch_yaml format): every node is its own '
        'process, its output prefixed with its name.',
        epilog=EXAMPLES,
    )
    parser.add_argument(
        'target', metavar='FILE | PACKAGE', help='the .launch.yaml file, or a package'
    )
    parser.add_argument(
        'launch_arguments',
        nargs='*',
        metavar='[FILE] name:=value',
        help="after a package: the launch file's name in its share directory; "
        'then the launch arguments (see --show-args)',
    )
    parser.add_argument(
        '-s',
        '--show-args',
        action='store_true',
        help='list the arguments of the launch file (name, default, description) and exit',
    )
    parser.add_argument(
        '-p',
        '--print',
        dest='print_only',
        action='store_true',
        help='resolve everything and print the processes with their command lines; start nothing',
    )
    parser.add_argument(
        '-v', '--verbose', action='store_true', help='also print each command line when started'
    )
    try:
        options = parser.parse_intermixed_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    # the processes started see the packages this launcher sees
    prefix_path = resolve.ament_prefix_path()
    if prefix_path:
        os.environ['AMENT_PREFIX_PATH'] = prefix_path
    try:
        path, items = launch_file_path(options.target, options.launch_arguments)
    except LaunchError as exc:
        print(f'devbot launch: error: {exc}', file=sys.stderr)
        return 1
    try:
        cli_args = parse_cli_arguments(items)
    except ValueError as exc:
        print(f'devbot launch: error: {exc}', file=sys.stderr)
        return 2
    try:
        if options.show_args:
            print(format_arguments(declared_arguments(path)))
            return 0
        description = parse_launch_file(path, cli_args)
    except LaunchError as exc:
        print(f'devbot launch: error: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    declared = {a.name for a in description.arguments}
    for name in cli_args:
        if name not in declared:
            print(
                f'[devbot.launch] warning: argument {name!r} is not declared by {path} '
                'or its includes',
                file=sys.stderr,
            )
    if options.print_only:
        _print_description(description)
        return 0
    if not description.processes:
        print(f'[devbot.launch] {path} starts no processes', file=sys.stderr)
        return 0
    status = ProcessRunner(description.processes, verbose=options.verbose).run()
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        # stdout went away (closed pipe): keep the interpreter from failing at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return status
