"""The ``devbot`` command.

Subcommands are registered by the packages that own them, as entry points of the group
``devbot.commands`` (name = the command, value = ``module:function``; the function takes the
remaining arguments and returns an exit status). The owning module's ``HELP`` constant is the
command's one-line help.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import sys
from dataclasses import dataclass

#: entry-point group under which packages register ``devbot`` subcommands
GROUP = 'devbot.commands'

EXAMPLES = """\
usage: devbot <command> [arguments]

Examples:
    devbot launch launch/toroidal_dot_runner.launch.yaml \\
        selector:=sequence sequence:=ALTERNATE max_steps:=100
    devbot launch launch/toroidal_dot_runner.launch.yaml --show-args
    devbot view /toroidal_dot/camera/image_raw
    devbot <command> --help"""


@dataclass(frozen=True)
class Command:
    """One registered subcommand.

    Args:
        name: what follows ``devbot`` on the command line.
        target: ``module:function`` of its entry point.
        package: the distribution that registers it.
    """

    name: str
    target: str
    package: str

    @property
    def module(self) -> str:
        return self.target.partition(':')[0].strip()

    @property
    def function(self) -> str:
        return self.target.partition(':')[2].strip()


def commands() -> dict[str, list[Command]]:
    """Every registered command by name (a name registered twice, differently, keeps both)."""
    found: dict[str, list[Command]] = {}
    for ep in importlib.metadata.entry_points(group=GROUP):
        dist = getattr(ep, 'dist', None)
        command = Command(ep.name, ep.value, dist.name if dist is not None else '?')
        entries = found.setdefault(ep.name, [])
        if all(c.target != command.target for c in entries):
            entries.append(command)
    return found


def module_help(module_name: str) -> str:
    """The ``HELP`` string of a module, read from its source without importing it (heavy imports
    such as torch stay out of ``devbot --help``); '' when the module or the constant is missing."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return ''
    if spec is None or not spec.origin or not spec.origin.endswith('.py'):
        return ''
    try:
        with open(spec.origin, encoding='utf-8') as f:
            tree = ast.parse(f.read(), spec.origin)
    except (OSError, SyntaxError):
        return ''
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == 'HELP' for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    return ''


def usage(found: dict[str, list[Command]] | None = None) -> str:
    found = commands() if found is None else found
    lines = [EXAMPLES, '', 'Commands:']
    width = max((len(name) for name in found), default=0)
    for name in sorted(found):
        text = module_help(found[name][0].module) or f'(from {found[name][0].package})'
        lines.append(f'  {name:<{width}}  {text}')
    if not found:
        lines.append(f'  (none: no installed package registers entry points in {GROUP!r})')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    found = commands()
    if not argv or argv[0] in ('-h', '--help'):
        print(usage(found))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in found:
        print(f'devbot: unknown command {name!r}\n\n{usage(found)}', file=sys.stderr)
        return 2
    if len(found[name]) > 1:
        owners = ', '.join(f'{c.package} ({c.target})' for c in found[name])
        print(f'devbot {name}: registered by more than one package: {owners}', file=sys.stderr)
        return 2
    command = found[name][0]
    try:
        module = importlib.import_module(command.module)
    except ModuleNotFoundError as exc:
        if exc.name and command.module.startswith(exc.name):
            print(
                f'devbot {name}: not available in this install ({command.module} is missing)',
                file=sys.stderr,
            )
            return 2
        raise
    function = getattr(module, command.function, None)
    if not callable(function):
        print(
            f'devbot {name}: {command.package} registers {command.target}, which is not a function',
            file=sys.stderr,
        )
        return 2
    return function(rest)


if __name__ == '__main__':
    sys.exit(main())
