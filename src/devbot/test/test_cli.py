"""The ``devbot`` command: subcommands discovered from the ``devbot.commands`` entry-point group
(a fake distribution on sys.path), and the workspace packages' real declarations in setup.py."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

from devbot import cli

SRC = Path(__file__).resolve().parents[2]

#: every subcommand and the package whose setup.py registers it
EXPECTED = {
    'bag': 'devbot',
    'foxglove': 'devbot',
    'import-original': 'devbot',
    'launch': 'devbot',
    'play': 'devbot',
    'record': 'devbot',
    'view': 'devbot',
    'replay': 'world_model_node',
    'train': 'world_model_node',
    'explore': 'devbot_explorer',
    'jetbot-feed': 'jetbot_driver',
}


def fake_distribution(root: Path, name: str, entry_points: dict[str, str]) -> None:
    """An installed distribution ``name`` under ``root`` (dist-info with METADATA and
    entry_points.txt) declaring ``entry_points`` (command -> module:function) in cli.GROUP."""
    info = root / f'{name}-1.0.dist-info'
    info.mkdir(parents=True)
    (info / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n')
    lines = [f'[{cli.GROUP}]'] + [f'{k} = {v}' for k, v in entry_points.items()]
    (info / 'entry_points.txt').write_text('\n'.join(lines) + '\n')


@pytest.fixture
def fake_commands(tmp_path, monkeypatch):
    """Two fake packages on sys.path: one registers ``zeta`` and ``alpha`` (a module with HELP that
    records its arguments), the other ``missing`` (a module that does not exist)."""
    (tmp_path / 'fake_devbot_cmds.py').write_text(
        'HELP = "the fake alpha command"\n'
        'CALLS = []\n'
        'def alpha(argv):\n'
        '    CALLS.append(list(argv))\n'
        '    return 7\n'
        'def zeta(argv):\n'
        '    return 0\n'
        'NOT_A_FUNCTION = 3\n'
    )
    fake_distribution(
        tmp_path,
        'fake_devbot_tools',
        {
            'zeta': 'fake_devbot_cmds:zeta',
            'alpha': 'fake_devbot_cmds:alpha',
            'broken': 'fake_devbot_cmds:NOT_A_FUNCTION',
        },
    )
    fake_distribution(tmp_path, 'fake_devbot_more', {'missing': 'no_such_module_xyz:main'})
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop('fake_devbot_cmds', None)
    yield tmp_path
    sys.modules.pop('fake_devbot_cmds', None)


def test_discovers_commands_of_installed_distributions_and_runs_them(fake_commands, capsys):
    found = cli.commands()
    assert found['alpha'][0].package == 'fake_devbot_tools'
    assert found['alpha'][0].target == 'fake_devbot_cmds:alpha'
    assert cli.main(['alpha', '--flag', 'x']) == 7
    assert importlib.import_module('fake_devbot_cmds').CALLS == [['--flag', 'x']]


def test_help_lists_commands_sorted_with_the_modules_help(fake_commands, capsys):
    assert cli.main(['--help']) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.split('Commands:')[1].splitlines() if line.strip()]
    assert listed == sorted(listed)
    assert {'alpha', 'zeta', 'missing', 'broken'} <= set(listed)
    alpha = next(line for line in out.splitlines() if line.strip().startswith('alpha '))
    assert alpha.split(None, 1)[1] == 'the fake alpha command'
    missing = next(line for line in out.splitlines() if line.strip().startswith('missing '))
    assert 'fake_devbot_more' in missing  # no module to read HELP from: names the package
    assert cli.main([]) == 2  # no command: usage, and an error status


def test_unknown_missing_and_broken_commands_are_clear_errors(fake_commands, capsys):
    assert cli.main(['no-such-command']) == 2
    err = capsys.readouterr().err
    assert "unknown command 'no-such-command'" in err and 'alpha' in err
    assert cli.main(['missing']) == 2
    assert 'not available in this install (no_such_module_xyz is missing)' in (
        capsys.readouterr().err
    )
    assert cli.main(['broken']) == 2
    assert 'not a function' in capsys.readouterr().err


def test_a_command_registered_twice_differently_is_an_error(fake_commands, capsys):
    fake_distribution(fake_commands, 'fake_devbot_rival', {'alpha': 'fake_devbot_cmds:zeta'})
    assert cli.main(['alpha']) == 2
    err = capsys.readouterr().err
    assert 'more than one package' in err
    assert 'fake_devbot_tools' in err and 'fake_devbot_rival' in err


def declared_commands() -> dict[str, tuple[str, str]]:
    """command -> (package, module:function) from every workspace setup.py's
    ``entry_points['devbot.commands']``, read with ast (no install needed)."""
    out: dict[str, tuple[str, str]] = {}
    for setup in sorted(SRC.glob('*/setup.py')):
        tree = ast.parse(setup.read_text())
        call = next(
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and getattr(n.func, 'id', None) == 'setup'
        )
        kw = {k.arg: k.value for k in call.keywords}
        if 'entry_points' not in kw:
            continue
        groups = ast.literal_eval(kw['entry_points'])
        for spec in groups.get(cli.GROUP, []):
            name, _, target = (part.strip() for part in spec.partition('='))
            assert name not in out, f'{name} declared by {out[name][0]} and {setup.parent.name}'
            out[name] = (setup.parent.name, target)
    return out


def test_setup_py_declarations_name_real_functions_with_help():
    declared = declared_commands()
    assert {name: package for name, (package, _) in declared.items()} == EXPECTED
    for name, (package, target) in declared.items():
        module_name, _, function = target.partition(':')
        assert module_name.split('.')[0] == package, f'{name}: {target} is not in {package}'
        module = importlib.import_module(module_name)
        assert callable(getattr(module, function)), f'{name}: {target}'
        assert isinstance(module.HELP, str) and module.HELP.strip(), f'{name}: no HELP'
        assert '\n' not in module.HELP and len(module.HELP) <= 80
        assert cli.module_help(module_name) == module.HELP  # read without importing
