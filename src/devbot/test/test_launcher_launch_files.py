"""The shipped launch files (launch/*.launch.yaml) and their package, devbot_bringup.

Every launch file is read by ``devbot launch``'s parser, which checks what ``ros2 launch``
checks (tags, attribute types, substitution names), against an ament prefix laid out as
``colcon build`` lays out this repository: the index entries of its packages, the console
scripts each package's setup.py declares in ``lib/<pkg>/`` and devbot_bringup's share folder.
So every executable must be a console script of its package and every ``$(find-pkg-share)``
a package of this repository. devbot_bringup itself is installed for real (pip, into a
temporary prefix) and found through the ament index.
"""

from __future__ import annotations

import ast
import filecmp
import os
import re
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from devbot.launcher import declared_arguments, launch_file_path, parse_launch_file, resolve
from devbot.launcher.parse import InlineParams, ParamsFile

REPO = Path(__file__).resolve().parents[3]
LAUNCH_FILES = sorted((REPO / 'launch').glob('*.launch.yaml'))
BRINGUP = 'devbot_bringup'


def repository_packages() -> dict[str, Path]:
    """Package name -> its folder, for every src/<folder>/package.xml."""
    found = {}
    for xml in sorted((REPO / 'src').glob('*/package.xml')):
        found[ET.parse(xml).getroot().findtext('name')] = xml.parent
    return found


def console_scripts(setup_py: Path) -> list[str]:
    """The console script names a setup.py declares (its ``'name = module:func'`` strings)."""
    tree = ast.parse(setup_py.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == 'console_scripts':
                    return [ast.literal_eval(e).split('=')[0].strip() for e in value.elts]
    return []


@pytest.fixture
def workspace_prefix(tmp_path, monkeypatch):
    """AMENT_PREFIX_PATH = one prefix holding this repository's packages as colcon installs
    them: index entries, ``lib/<pkg>/<console script>`` and ``share/devbot_bringup``."""
    prefix = tmp_path / 'install'
    index = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    for name, folder in repository_packages().items():
        (index / name).write_text('')
        (prefix / 'share' / name).mkdir()
        for script in console_scripts(folder / 'setup.py'):
            exe = prefix / 'lib' / name / script
            exe.parent.mkdir(parents=True, exist_ok=True)
            exe.write_text('#!/bin/sh\n')
            exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    for folder in ('launch', 'config'):
        (prefix / 'share' / BRINGUP / folder).symlink_to(REPO / folder)
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(prefix))
    return prefix


def argument_sets(path: Path) -> list[dict[str, str]]:
    """Values for the required arguments, with record on and off where the file records."""
    required = {a.name: 'placeholder' for a in declared_arguments(str(path)) if a.default is None}
    names = {a.name for a in declared_arguments(str(path))}
    if 'record' not in names:
        return [required]
    return [{**required, 'record': 'false'}, {**required, 'record': 'true'}]


def test_the_repository_ships_launch_files_and_bringup():
    assert len(LAUNCH_FILES) >= 8
    packages = repository_packages()
    assert BRINGUP in packages
    for folder in ('launch', 'config'):
        link = packages[BRINGUP] / folder
        assert link.is_symlink() and link.resolve() == (REPO / folder).resolve()


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_passes_the_ros2_launch_rules(path, workspace_prefix):
    lib = workspace_prefix / 'lib'
    for cli_args in argument_sets(path):
        description = parse_launch_file(str(path), cli_args)
        assert description.processes, f'{path.name} {cli_args} starts nothing'
        for spec in description.processes:
            assert spec.kind == 'node', spec.label
            # the executable is a console script of its package (not a program of the venv)
            assert Path(spec.cmd[0]).parent.parent == lib, (spec.label, spec.cmd[0])
            for entry in spec.params:
                if isinstance(entry, ParamsFile):
                    assert Path(entry.path).resolve().is_relative_to(REPO / 'config')
        if cli_args.get('record') == 'true':
            assert 'recorder' in [s.node_name for s in description.processes]


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_names_only_repository_packages_and_no_checkout_paths(path):
    text = path.read_text()
    packages = repository_packages()
    for pkg in re.findall(r'\$\(find-pkg-(?:share|prefix) ([^) ]+)\)', text):
        assert pkg in packages, f'{path.name}: $(find-pkg-share {pkg}) is no package of this repo'
    for pkg in re.findall(r'^\s*pkg: *(\S+)', text, re.MULTILINE):
        assert pkg in packages, f'{path.name}: pkg {pkg} is no package of this repository'
    # config is found through the bringup package, never next to the checkout's launch folder
    assert '$(dirname)/..' not in text
    bringup_deps = {
        e.text for e in ET.parse(packages[BRINGUP] / 'package.xml').getroot().iter('exec_depend')
    }
    started = set(re.findall(r'^\s*pkg: *(\S+)', text, re.MULTILINE))
    assert started <= bringup_deps, (
        f'{BRINGUP}/package.xml lacks exec_depend {started - bringup_deps}'
    )


@pytest.fixture(scope='module')
def installed_bringup(tmp_path_factory):
    """devbot_bringup installed by pip (not editable) into a fresh prefix."""
    prefix = tmp_path_factory.mktemp('bringup_prefix')
    subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps', '--no-build-isolation']
        # --ignore-installed: leave an install of this environment in place (no uninstall)
        + ['--ignore-installed']
        + ['--no-index', '--prefix', str(prefix), str(repository_packages()[BRINGUP])],
        check=True,
        capture_output=True,
    )
    return prefix


def assert_same_files(share: Path) -> None:
    for folder in ('launch', 'config'):
        expected = sorted(p.name for p in (REPO / folder).iterdir() if p.is_file())
        installed = sorted(p.name for p in (share / folder).iterdir())
        assert installed == expected, folder
        match, mismatch, errors = filecmp.cmpfiles(
            REPO / folder, share / folder, expected, shallow=False
        )
        assert not mismatch and not errors, f'{share / folder} differs from {folder}/: {mismatch}'


def test_pip_installed_bringup_resolves_through_the_ament_index(installed_bringup, monkeypatch):
    prefix = installed_bringup
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(prefix))
    share = prefix / 'share' / BRINGUP
    assert (prefix / resolve.PACKAGE_INDEX / BRINGUP).is_file()
    assert resolve.find_package_share(BRINGUP) == str(share)
    assert_same_files(share)
    path, rest = launch_file_path(BRINGUP, ['toroidal_dot_world_model.launch.yaml', 'seed:=3'])
    assert path == str(share / 'launch' / 'toroidal_dot_world_model.launch.yaml') and rest == [
        'seed:=3'
    ]
    # the installed file finds the installed config
    description = parse_launch_file(path, {'record': 'true'})
    params_files = [
        e.path for s in description.processes for e in s.params if isinstance(e, ParamsFile)
    ]
    assert params_files == [
        str(share / 'config' / 'toroidal_dot.world_model.params.yaml'),  # first, then the general
        str(share / 'config' / 'world_model.params.yaml'),
    ]
    robot_configs = {
        e.values['robot_config']
        for s in description.processes
        for e in s.params
        if isinstance(e, InlineParams) and 'robot_config' in e.values
    }
    assert robot_configs == {str(share / 'config' / 'toroidal_dot.yaml')}


def test_bringup_of_this_environment_is_current():
    """`devbot launch devbot_bringup FILE` in this environment runs this checkout's files
    (make setup installs devbot_bringup, and installs it again after a change)."""
    try:
        share = Path(resolve.find_package_share(BRINGUP))
    except resolve.ResolveError as exc:
        pytest.fail(f'{exc} (make setup installs it)')
    assert_same_files(share)
    assert os.path.isfile(share / 'package.xml')
