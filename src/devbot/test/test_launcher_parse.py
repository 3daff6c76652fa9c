"""devbot launch: YAML launch files -> processes (substitutions, args, includes, groups,
params, attribute types, package resolution, errors)."""

from __future__ import annotations

import os
import stat
import sys
import textwrap

import pytest
import yaml

from devbot.launcher import (
    LaunchError,
    build_command,
    format_arguments,
    launch_file_path,
    main,
    parse_cli_arguments,
    parse_launch_file,
    resolve,
)
from devbot.launcher.parse import InlineParams, ParamsFile, join_namespace, typed_param_value
from devbot.launcher.substitutions import Context, SubstitutionError, parse, substitute

PY = sys.executable


def write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def assert_parse_error(folder, name, text, match) -> str:
    """Parsing the launch file ``name`` holding ``text`` raises a LaunchError matching ``match``.

    Returns:
        the launch file's path.
    """
    path = write(folder, name, text)
    with pytest.raises(LaunchError, match=match):
        parse_launch_file(path)
    return path


def one(desc):
    assert len(desc.processes) == 1, [p.label for p in desc.processes]
    return desc.processes[0]


# ---------------------------------------------------------------------------------------------
# substitutions


def test_substitution_parse_and_nesting():
    ctx = Context({'which': 'left', 'left_topic': '/l', 'n': '3'})
    assert substitute('$(var $(var which)_topic)/image', ctx) == '/l/image'
    assert (
        substitute('plain text, a $ sign and (parens)', ctx) == 'plain text, a $ sign and (parens)'
    )
    assert substitute("$(env DEVBOT_SURELY_UNSET_VAR 'a default')", ctx) == 'a default'
    assert substitute('$(env DEVBOT_SURELY_UNSET_VAR "")x', ctx) == 'x'
    assert substitute("$(env DEVBOT_SURELY_UNSET_VAR '')", ctx) == ''
    assert substitute('$(var unset_arg fallback)', ctx) == 'fallback'
    assert substitute('$(var n fallback)', ctx) == '3'
    assert substitute('$(equals $(var n) 3)', ctx) == 'true'
    assert substitute('$(equals $(var n) 3.0)', ctx) == 'true'  # numbers compare by value
    assert substitute('$(equals True 1)', ctx) == 'true'  # true/false/1/0 compare as booleans
    assert substitute('$(equals abc ABC)', ctx) == 'false'
    assert substitute('$(not-equals $(var which) right)', ctx) == 'true'
    assert substitute('$(not $(equals a b))', ctx) == 'true'
    assert substitute('$(and true $(or false 1))', ctx) == 'true'
    assert substitute('$(or false yes)', ctx) == 'true'  # YAML booleans, as launch types them
    assert substitute('$(and 1 off)', ctx) == 'false'
    assert substitute('$(if $(equals $(var n) 3) three other)', ctx) == 'three'
    assert substitute('$(if false three)', ctx) == ''
    assert substitute('$(if false $(var not_evaluated) else)', ctx) == 'else'
    assert substitute(r'\$(var n) costs \\ $(var n)', ctx) == '$(var n) costs \\ 3'
    anon = substitute('$(anon cam)', ctx)
    assert anon.startswith('cam_') and substitute('$(anon cam)', ctx) == anon
    assert substitute('$(anon other)', ctx) != anon
    sub = parse("a$(var 'x y' $(env Z))b")
    assert sub[0] == 'a' and sub[2] == 'b'
    assert sub[1].name == 'var' and len(sub[1].args) == 2


def test_substitution_env(monkeypatch):
    monkeypatch.setenv('DEVBOT_TEST_ENV', 'set-value')
    assert substitute('$(env DEVBOT_TEST_ENV fallback)', Context()) == 'set-value'


@pytest.mark.parametrize(
    'text, message',
    [
        ('$(var missing)', "launch argument 'missing' is not set"),
        ('$(env DEVBOT_SURELY_UNSET_VAR)', 'is not set and no default'),
        ('$(eval 1+1)', '$(eval ...) is not supported by devbot launch: it evaluates Python'),
        ('$(command ls)', '$(command ...) is not supported by devbot launch'),
        ('$(any a b c)', 'ros2 launch fails on $(any ...) in launch files; use $(or a b)'),
        ('$(equals "" $(var x))', "ros2 launch compares it as '[]'"),
        ('$(frobnicate x)', 'unknown substitution $(frobnicate ...); supported: var, env,'),
        ('$(var x', 'unterminated substitution'),
        ('$(var  x)', 'empty argument'),
        ('$(1var x)', 'a substitution name (starting with a letter)'),
        ('$(equals a)', 'takes 2 argument(s)'),
        ('$(var)', 'takes 1-2 argument(s)'),
        ('$(not maybe)', 'expected a boolean'),
        ('$(if maybe a b)', 'expected a boolean'),
        # names devbot launch once took that ROS 2 launch does not have
        ('$(equal a b)', 'not a ROS 2 launch substitution: use $(equals A B)'),
        ('$(not-equal a b)', 'not a ROS 2 launch substitution: use $(not-equals A B)'),
        ('$(optenv HOME)', 'not a ROS 2 launch substitution: use $(env NAME DEFAULT)'),
        ('$(var $(optenv HOME))', 'use $(env NAME DEFAULT)'),  # nested: checked too
    ],
)
def test_substitution_errors(text, message):
    with pytest.raises(SubstitutionError, match=None) as info:
        substitute(text, Context({'x': '1'}))
    assert message in str(info.value)


def test_join_namespace():
    assert join_namespace('', '') == ''
    assert join_namespace('', 'robot') == '/robot'
    assert join_namespace('/robot', 'cam') == '/robot/cam'
    assert join_namespace('/robot', '/abs') == '/abs'
    assert join_namespace('/robot/', 'a//b/') == '/robot/a/b'


def test_typed_param_value():
    assert typed_param_value('10') == 10
    assert typed_param_value('1.5') == 1.5
    assert typed_param_value('true') is True
    assert typed_param_value('hello') == 'hello'
    assert typed_param_value("'10'") == '10'  # quoted YAML string stays a string
    assert typed_param_value('[1, 2.5]') == [1.0, 2.5]
    assert typed_param_value('[1, a]') == '[1, a]'  # mixed list: kept as text
    assert typed_param_value('') == ''
    assert typed_param_value('{a: 1}') == '{a: 1}'


def test_parse_cli_arguments():
    assert parse_cli_arguments(['a:=1', 'b:=x:=y', 'c:=']) == {'a': '1', 'b': 'x:=y', 'c': ''}
    with pytest.raises(ValueError, match='name:=value'):
        parse_cli_arguments(['a=1'])


# ---------------------------------------------------------------------------------------------
# args, let, executable


def test_args_defaults_overrides_and_let(tmp_path):
    path = write(
        tmp_path,
        'a.launch.yaml',
        f"""\
        launch:
        - arg: {{name: robot, default: toroidal_dot, description: which robot}}
        - arg: {{name: steps, default: '5'}}
        - let: {{name: tag, value: '$(var robot)-$(var steps)'}}
        - executable:
            cmd: {PY} -c "print('$(var tag)')" extra
            name: show
        """,
    )
    desc = parse_launch_file(path)
    spec = one(desc)
    assert spec.cmd == [PY, '-c', "print('toroidal_dot-5')", 'extra']
    assert spec.label == 'show' and spec.kind == 'executable' and spec.output == 'log'
    assert [a.name for a in desc.arguments] == ['robot', 'steps']
    assert (
        desc.arguments[0].default == 'toroidal_dot'
        and desc.arguments[0].description == 'which robot'
    )
    desc = parse_launch_file(path, {'robot': 'jetbot', 'steps': '7'})
    assert one(desc).cmd[2] == "print('jetbot-7')"
    assert desc.configurations['tag'] == 'jetbot-7'


def test_substitution_value_with_spaces_stays_one_argument(tmp_path):
    path = write(
        tmp_path,
        'a.launch.yaml',
        f"""\
        launch:
        - arg: {{name: text, default: 'two words'}}
        - executable: {{cmd: '{PY} -c pass $(var text) x$(var text)y'}}
        """,
    )
    assert one(parse_launch_file(path)).cmd == [PY, '-c', 'pass', 'two words', 'xtwo wordsy']


def test_required_arg_and_choices(tmp_path):
    path = assert_parse_error(
        tmp_path,
        'a.launch.yaml',
        """\
        launch:
        - arg:
            name: selector
            description: the policy
            choice: [{value: constant}, {value: sequence}]
        """,
        match=r"a.launch.yaml:2: launch argument 'selector' is required.*pass selector:=VALUE",
    )
    assert (
        parse_launch_file(path, {'selector': 'sequence'}).configurations['selector'] == 'sequence'
    )
    with pytest.raises(LaunchError, match='expected one of: constant, sequence'):
        parse_launch_file(path, {'selector': 'random'})


def test_dirname_and_filename(tmp_path):
    path = write(
        tmp_path,
        'launch/a.launch.yaml',
        f"""\
        launch:
        - executable: {{cmd: '{PY} $(dirname)/../config/x.yaml $(filename)'}}
        """,
    )
    spec = one(parse_launch_file(path))
    assert spec.cmd[1] == str(tmp_path / 'launch') + '/../config/x.yaml'
    assert spec.cmd[2] == str(tmp_path / 'launch' / 'a.launch.yaml')


def test_if_unless(tmp_path):
    path = write(
        tmp_path,
        'a.launch.yaml',
        f"""\
        launch:
        - arg: {{name: mode, default: sim}}
        - executable: {{cmd: {PY}, name: always, if: 'true'}}
        - executable: {{cmd: {PY}, name: never, if: 'false'}}
        - executable: {{cmd: {PY}, name: sim_only, if: $(equals $(var mode) sim)}}
        - executable: {{cmd: {PY}, name: not_sim, unless: $(equals $(var mode) sim)}}
        - executable: {{cmd: {PY}, name: real_only, if: $(not-equals $(var mode) sim)}}
        - group:
            if: '0'
            children:
            - executable: {{cmd: {PY}, name: in_dead_group}}
            - arg: {{name: never_checked}}
        """,
    )
    assert [p.label for p in parse_launch_file(path).processes] == ['always', 'sim_only']
    assert [p.label for p in parse_launch_file(path, {'mode': 'real'}).processes] == [
        'always',
        'not_sim',
        'real_only',
    ]


def test_condition_errors(tmp_path):
    assert_parse_error(
        tmp_path,
        'a.launch.yaml',
        f"""\
        launch:
        - executable: {{cmd: {PY}, if: 'yes please'}}
        """,
        match=r"a.launch.yaml:2: executable if: expected true, false, 1 or 0, got 'yes please'",
    )
    assert_parse_error(
        tmp_path,
        'b.launch.yaml',
        f"""\
        launch:
        - executable: {{cmd: {PY}, if: 'true', unless: 'true'}}
        """,
        match='not both',
    )


# ---------------------------------------------------------------------------------------------
# groups, namespaces, includes


def test_group_push_ros_namespace_and_scope(tmp_path):
    path = write(
        tmp_path,
        'a.launch.yaml',
        f"""\
        launch:
        - arg: {{name: robot, default: toroidal_dot}}
        - group:
            children:
            - push-ros-namespace: {{namespace: $(var robot)}}
            - let: {{name: inner, value: set}}
            - node: {{exec: {PY}, name: plain}}
            - node: {{exec: {PY}, name: rel, namespace: sub}}
            - node: {{exec: {PY}, name: abs, namespace: /elsewhere}}
            - group:
                children:
                - push-ros-namespace: {{namespace: deeper}}
                - node: {{exec: {PY}, name: deep}}
        - node: {{exec: {PY}, name: outside}}
        - group:
            scoped: false
            children:
            - push-ros-namespace: {{namespace: leaked}}
        - node: {{exec: {PY}, name: after_unscoped}}
        """,
    )
    desc = parse_launch_file(path)
    spaces = {p.node_name: p.namespace for p in desc.processes}
    assert spaces == {
        'plain': '/toroidal_dot',
        'rel': '/toroidal_dot/sub',
        'abs': '/elsewhere',
        'deep': '/toroidal_dot/deeper',
        'outside': None,
        'after_unscoped': '/leaked',
    }
    assert 'inner' not in desc.configurations  # group scope
    cmd = build_command(desc.processes[1], str(tmp_path))
    assert cmd == [PY, '--ros-args', '-r', '__node:=rel', '-r', '__ns:=/toroidal_dot/sub']
    assert build_command(desc.processes[4], str(tmp_path)) == [
        PY,
        '--ros-args',
        '-r',
        '__node:=outside',
    ]


def test_include_with_args_scope_and_dirname(tmp_path):
    write(
        tmp_path,
        'launch/inner.launch.yaml',
        f"""\
        launch:
        - arg: {{name: robot}}
        - arg: {{name: rate, default: '10'}}
        - let: {{name: from_inner, value: x}}
        - executable:
            cmd: {PY} $(dirname) $(var robot) $(var rate) $(var outer_only)
            name: inner_$(var robot)
        """,
    )
    path = write(
        tmp_path,
        'top.launch.yaml',
        """\
        launch:
        - arg: {name: outer_only, default: visible}
        - include:
            file: $(dirname)/launch/inner.launch.yaml
            arg:
            - {name: robot, value: jetbot}
        - group:
            children:
            - push-ros-namespace: {namespace: two}
            - include:
                file: $(dirname)/launch/inner.launch.yaml
                arg: [{name: robot, value: dot}, {name: rate, value: '$(var outer_only)2'}]
        """,
    )
    desc = parse_launch_file(path)
    first, second = desc.processes
    assert first.label == 'inner_jetbot'
    assert first.cmd[1:] == [str(tmp_path / 'launch'), 'jetbot', '10', 'visible']
    assert second.cmd[1:] == [str(tmp_path / 'launch'), 'dot', 'visible2', 'visible']
    assert 'from_inner' not in desc.configurations and 'robot' not in desc.configurations
    assert [a.name for a in desc.arguments] == ['outer_only', 'robot', 'rate']


def test_include_errors_name_file_line_and_chain(tmp_path):
    write(
        tmp_path,
        'inner.launch.yaml',
        """\
        launch:
        - arg: {name: x, default: '1'}
        - timer: {period: 1}
        """,
    )
    path = write(
        tmp_path,
        'top.launch.yaml',
        """\
        launch:
        - include: {file: $(dirname)/inner.launch.yaml}
        """,
    )
    with pytest.raises(LaunchError) as info:
        parse_launch_file(path)
    text = str(info.value)
    assert "inner.launch.yaml:3: unsupported tag 'timer'" in text
    assert 'included from ' + str(tmp_path / 'top.launch.yaml') + ':2' in text
    assert_parse_error(
        tmp_path,
        'missing.launch.yaml',
        """\
        launch:
        - include: {file: $(dirname)/nope.launch.yaml}
        """,
        match=r"missing.launch.yaml:2: include: launch file .*nope.launch.yaml' not found",
    )
    assert_parse_error(
        tmp_path,
        'cycle.launch.yaml',
        """\
        launch:
        - include: {file: $(dirname)/cycle.launch.yaml}
        """,
        match='include cycle',
    )


# ---------------------------------------------------------------------------------------------
# nodes: packages, params, remaps


def test_node_from_installed_python_package(tmp_path):
    path = write(
        tmp_path,
        'a.launch.yaml',
        """\
        launch:
        - node:
            pkg: devbot
            exec: devbot
            name: cli
            args: launch --help
            remap: [{from: image, to: /camera/image_raw}]
            ros_args: --log-level debug
        """,
    )
    spec = one(parse_launch_file(path))
    assert os.path.basename(spec.cmd[0]) == 'devbot' and os.access(spec.cmd[0], os.X_OK)
    assert build_command(spec, str(tmp_path))[1:] == [
        'launch',
        '--help',
        '--ros-args',
        '-r',
        '__node:=cli',
        '-r',
        'image:=/camera/image_raw',
        '--log-level',
        'debug',
    ]


def test_node_params_inline_typed_and_from_file(tmp_path):
    write(tmp_path, 'config/p.yaml', '/**:\n  ros__parameters:\n    size: 224\n')
    path = write(
        tmp_path,
        'launch/a.launch.yaml',
        f"""\
        launch:
        - arg: {{name: steps, default: '100'}}
        - node:
            exec: {PY}
            name: n
            param:
            - {{name: max_steps, value: $(var steps)}}
            - {{name: rate, value: '2.5'}}
            - {{name: enabled, value: 'true'}}
            - {{name: label, value: hello}}
            - {{name: quoted, value: "'42'"}}
            - {{name: yaml_int, value: 3}}
            - {{name: values, value: [1.0, 2.5]}}
            - {{name: names, value: [a, b]}}
            - name: group
              param:
              - {{name: inner, value: 'x'}}
            - from: $(dirname)/../config/p.yaml
            - {{name: after_file, value: 1}}
        """,
    )
    spec = one(parse_launch_file(path))
    assert isinstance(spec.params[0], InlineParams) and isinstance(spec.params[1], ParamsFile)
    assert spec.params[0].values == {
        'max_steps': 100,
        'rate': 2.5,
        'enabled': True,
        'label': 'hello',
        'quoted': '42',
        'yaml_int': 3,
        'values': [1.0, 2.5],
        'names': ['a', 'b'],
        'group': {'inner': 'x'},
    }
    assert spec.params[1].path == os.path.abspath(str(tmp_path / 'launch' / '../config/p.yaml'))
    assert spec.params[2].values == {'after_file': 1}
    params_dir = tmp_path / 'params'
    params_dir.mkdir()
    cmd = build_command(spec, str(params_dir))
    files = [cmd[i + 1] for i, a in enumerate(cmd) if a == '--params-file']
    assert cmd[:4] == [PY, '--ros-args', '-r', '__node:=n'] and len(files) == 3
    assert files[1] == spec.params[1].path
    written = yaml.safe_load(open(files[0]))
    assert written == {'/**': {'ros__parameters': spec.params[0].values}}


def test_missing_params_file_package_and_executable(tmp_path):
    assert_parse_error(
        tmp_path,
        'a.launch.yaml',
        f"""\
        launch:
        - node:
            exec: {PY}
            param:
            - from: $(dirname)/missing.yaml
        """,
        match=r"a.launch.yaml:5: param: params file .*missing.yaml' not found",
    )
    assert_parse_error(
        tmp_path,
        'b.launch.yaml',
        """\
        launch:
        - node: {pkg: devbot_no_such_package, exec: x}
        """,
        match=r"b.launch.yaml:2: node: package 'devbot_no_such_package' not found",
    )
    assert_parse_error(
        tmp_path,
        'c.launch.yaml',
        """\
        launch:
        - node: {pkg: devbot, exec: no_such_exec}
        """,
        match=r"executable 'no_such_exec' not found in package 'devbot' "
        r"\(available: [^)]*devbot[^)]*\)",
    )
    assert_parse_error(
        tmp_path,
        'd.launch.yaml',
        """\
        launch:
        - executable: {cmd: devbot_no_such_program --flag}
        """,
        match="d.launch.yaml:2: executable: executable 'devbot_no_such_program' not found on PATH",
    )


def fake_prefix(root, pkg, executables=(), files=()):
    """An install prefix as colcon lays it out: the ament index entry of ``pkg``,
    ``share/<pkg>/<files>`` and ``lib/<pkg>/<executables>``."""
    index = root / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True, exist_ok=True)
    (index / pkg).write_text('')
    for name in files:
        target = root / 'share' / pkg / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text('launch: []\n')
    for name in executables:
        exe = root / 'lib' / pkg / name
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text('#!/bin/sh\necho hi\n')
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return root


def test_ament_prefix_package(tmp_path, monkeypatch):
    """On a colcon workspace or ROS install: <prefix>/lib/<pkg>/<exec> and <prefix>/share/<pkg>."""
    prefix = fake_prefix(tmp_path / 'install', 'fake_pkg', executables=['fake_node'])
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(prefix))
    path = write(
        tmp_path,
        'a.launch.yaml',
        """\
        launch:
        - node:
            pkg: fake_pkg
            exec: fake_node
            args: $(find-pkg-share fake_pkg) $(find-pkg-prefix fake_pkg)
        """,
    )
    exe = prefix / 'lib' / 'fake_pkg' / 'fake_node'
    share = prefix / 'share' / 'fake_pkg'
    assert one(parse_launch_file(path)).cmd == [str(exe), str(share), str(prefix)]


def test_packages_resolve_through_the_ament_index_like_ament_index_python(tmp_path, monkeypatch):
    """The first prefix with the index entry wins; a share/<pkg> folder without the entry is no
    package (as for ament_index_python, which ros2 launch uses)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    first = fake_prefix(tmp_path / 'first', 'pkg_a', files=['launch/x.launch.yaml'])
    second = fake_prefix(tmp_path / 'second', 'pkg_a', files=['launch/y.launch.yaml'])
    fake_prefix(second, 'pkg_b', files=['deep/er/b.launch.yaml', 'other/b.launch.yaml'])
    (tmp_path / 'first' / 'share' / 'pkg_unindexed').mkdir()
    monkeypatch.setenv('AMENT_PREFIX_PATH', os.pathsep.join([str(first), str(second)]))
    for pkg in ('pkg_a', 'pkg_b'):
        assert resolve.find_package_share(pkg) == get_package_share_directory(pkg)
    assert resolve.find_package_prefix('pkg_b') == str(second)
    with pytest.raises(PackageNotFoundError):
        get_package_share_directory('pkg_unindexed')
    with pytest.raises(
        resolve.ResolveError, match="package 'pkg_unindexed' not found in the ament"
    ):
        resolve.find_package_share('pkg_unindexed')
    # the PACKAGE FILE form: a file anywhere in the share directory, found once
    found = resolve.find_package_file('pkg_a', 'x.launch.yaml')
    assert found == str(first / 'share' / 'pkg_a' / 'launch' / 'x.launch.yaml')
    with pytest.raises(resolve.ResolveError, match="file 'y.launch.yaml' not found in the share"):
        resolve.find_package_file('pkg_a', 'y.launch.yaml')  # pkg_a of the first prefix wins
    with pytest.raises(resolve.ResolveError, match='more than once'):
        resolve.find_package_file('pkg_b', 'b.launch.yaml')


def test_the_venv_prefix_is_on_the_search_path(tmp_path, monkeypatch):
    """This environment's prefix comes after AMENT_PREFIX_PATH when it holds an ament index."""
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path))
    venv_index = os.path.join(sys.prefix, resolve.PACKAGE_INDEX)
    expected = [str(tmp_path)] + ([sys.prefix] if os.path.isdir(venv_index) else [])
    assert resolve.ament_prefixes() == expected
    assert resolve.ament_prefix_path() == os.pathsep.join(expected)
    monkeypatch.setenv('AMENT_PREFIX_PATH', os.pathsep.join([sys.prefix, str(tmp_path)]))
    assert resolve.ament_prefixes() == [sys.prefix, str(tmp_path)]  # not twice


def test_find_pkg_share_names_a_missing_package(tmp_path, monkeypatch):
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path))
    path = write(
        tmp_path,
        'a.launch.yaml',
        f"""\
        launch:
        - executable: {{cmd: '{PY} $(find-pkg-share devbot_no_such_package)/config/x.yaml'}}
        """,
    )
    with pytest.raises(LaunchError) as info:
        parse_launch_file(path)
    text = str(info.value)
    assert "a.launch.yaml:2: executable cmd: $(find-pkg-share devbot_no_such_package)" in text
    assert "package 'devbot_no_such_package' not found in the ament index" in text
    assert str(tmp_path) in text  # what was searched


def test_package_form_of_the_cli(tmp_path, monkeypatch, capsys):
    """devbot launch PACKAGE FILE [args] finds FILE in the package's share directory."""
    prefix = fake_prefix(tmp_path / 'install', 'fake_bringup')
    launch_dir = prefix / 'share' / 'fake_bringup' / 'launch'
    write(launch_dir, 'demo.launch.yaml', "launch:\n- arg: {name: n, default: '1'}\n")
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(prefix))
    assert launch_file_path('fake_bringup', ['demo.launch.yaml', 'n:=2']) == (
        str(launch_dir / 'demo.launch.yaml'),
        ['n:=2'],
    )
    file_path = str(launch_dir / 'demo.launch.yaml')
    assert launch_file_path(file_path, ['n:=2']) == (file_path, ['n:=2'])
    assert main(['fake_bringup', 'demo.launch.yaml', '--show-args']) == 0
    assert "'n':" in capsys.readouterr().out
    assert main(['fake_bringup', 'nope.launch.yaml']) == 1
    assert "file 'nope.launch.yaml' not found in the share directory of package 'fake_bringup'" in (
        capsys.readouterr().err
    )
    assert main(['devbot_no_such_package', 'demo.launch.yaml']) == 1
    assert "package 'devbot_no_such_package' not found in the ament index" in (
        capsys.readouterr().err
    )
    assert main(['missing.launch.yaml', 'n:=1']) == 1
    assert 'devbot launch PACKAGE FILE' in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# unsupported things are errors naming them


@pytest.mark.parametrize(
    'entity, message',
    [
        ('- node: {exec: PY, respawn: true}', "3: node: unsupported attribute 'respawn'"),
        (
            '- executable: {cmd: PY, emulate_tty: true}',
            "3: executable: unsupported attribute 'emulate_tty'",
        ),
        (
            '- group: {namespace: x, children: []}',
            "3: group: unsupported attribute 'namespace' (launch_yaml puts a namespace",
        ),
        ('- set_env: {name: A, value: b}', "3: unsupported tag 'set_env'"),
        ('- node: {exec: PY, on_exit: restart}', 'on_exit supports only "shutdown"'),
        ('- node: {exec: PY, output: loud}', 'output must be one of screen, log, both'),
        (
            '- node: {exec: PY, param: [{name: a, value: 1, type: int}]}',
            "3: param: unsupported attribute 'type'",
        ),
        ('- node: {exec: PY, remap: [{from: a}]}', "remap: missing required attribute 'to'"),
        ('- node: {pkg: devbot}', "node: missing required attribute 'exec'"),
        ('- node: {exec: PY, param: [{name: a, value: [1, x]}]}', 'must hold values of one type'),
        ('- arg: {name: a, default: "1"}\n- arg: {name: b}', "4: launch argument 'b' is required"),
        ('- include: x.launch.yaml', '3: include: expected a mapping of attributes'),
        ('- group: {scoped: true}', "3: group: missing required attribute 'children'"),
        ('- node: {exec: PY, sigterm_timeout: -1.0}', "'sigterm_timeout' must not be negative"),
        # attribute types, checked as launch_yaml checks them (it converts nothing)
        (
            '- executable: {cmd: PY, sigterm_timeout: "30"}',
            "3: executable: attribute 'sigterm_timeout' must be a YAML float such as 30.0, "
            "got the string '30' (launch_yaml converts no types: ros2 launch fails",
        ),
        (
            '- node: {exec: PY, sigkill_timeout: 5}',
            "3: node: attribute 'sigkill_timeout' must be a YAML float such as 30.0, got the "
            'integer 5 (launch_yaml wants a float here: write 5.0, not 5)',
        ),
        (
            '- executable: {cmd: PY, shell: "false"}',
            "3: executable: attribute 'shell' must be true or false (a YAML boolean), got the "
            'string \'false\' (launch_yaml converts no types: ros2 launch takes any string',
        ),
        (
            '- group: {scoped: "false", children: [{let: {name: a, value: b}}]}',
            "3: group: attribute 'scoped' must be true or false",
        ),
        (
            '- arg: {name: a, default: 5}',
            "3: arg: attribute 'default' must be a string, got the integer 5 "
            '(launch_yaml wants a string here: quote it, "5")',
        ),
        ('- executable: {cmd: PY, if: true}', "3: executable: attribute 'if' must be a string"),
        ('- node: {exec: PY, args: [a, b]}', "node: attribute 'args' must be a string, got a list"),
        ('- node: {exec: PY, env: []}', "node: attribute 'env' must be a list of mappings"),
        (
            '- node: {exec: PY, param: [{name: a, value: [1, 2.5]}]}',
            "3: param: attribute 'value' must be a YAML scalar or a list of scalars",
        ),
        (
            '- node: {exec: PY, remap: [{from: a, to: 5}]}',
            "3: remap: attribute 'to' must be a string, got the integer 5",
        ),
        (
            '- include: {file: x.launch.yaml, arg: [{name: n, value: 1}]}',
            "3: include arg: attribute 'value' must be a string, got the integer 1",
        ),
        # substitution names ROS 2 launch does not have
        (
            '- executable: {cmd: PY, if: $(equal a b)}',
            "3: executable if: $(equal ...) is not a ROS 2 launch substitution: use $(equals A B)",
        ),
        (
            "- arg: {name: home, default: '$(optenv HOME)'}",
            "3: arg 'home' default: $(optenv ...) is not a ROS 2 launch substitution: "
            'use $(env NAME DEFAULT)',
        ),
    ],
)
def test_unsupported_and_invalid_entities(tmp_path, entity, message):
    path = write(
        tmp_path, 'bad.launch.yaml', 'launch:\n# a comment\n' + entity.replace('PY', PY) + '\n'
    )
    with pytest.raises(LaunchError) as info:
        parse_launch_file(path)
    assert str(info.value).startswith(str(tmp_path / 'bad.launch.yaml') + ':')
    assert message in str(info.value)


def test_not_a_launch_file(tmp_path):
    path = write(tmp_path, 'x.yaml', 'nodes: []\n')
    with pytest.raises(LaunchError, match='single key "launch"'):
        parse_launch_file(path)
    path = write(tmp_path, 'y.yaml', 'launch:\n- node: {exec: a\n')
    with pytest.raises(LaunchError, match='invalid YAML'):
        parse_launch_file(path)


# ---------------------------------------------------------------------------------------------
# the CLI


def test_show_args(tmp_path, capsys):
    path = write(
        tmp_path,
        'a.launch.yaml',
        """\
        launch:
        - arg: {name: robot, default: toroidal_dot, description: which robot to run}
        - group:
            children:
            - arg: {name: max_steps, description: stop after this many steps}
        """,
    )
    assert main([path, '--show-args']) == 0
    out = capsys.readouterr().out
    assert "'robot':\n        which robot to run\n        (default: 'toroidal_dot')" in out
    assert "'max_steps':\n        stop after this many steps\n        (required: no default)" in out
    assert format_arguments([]) == 'No arguments.'


def test_errors_are_reported_before_anything_starts(tmp_path, capsys):
    marker = tmp_path / 'started'
    path = write(
        tmp_path,
        'a.launch.yaml',
        f"""\
        launch:
        - executable:
            cmd: {PY} -c "open('{marker}', 'w')"
        - node: {{pkg: devbot, exec: missing_exec}}
        """,
    )
    assert main([path]) == 1
    err = capsys.readouterr().err
    assert "a.launch.yaml:4: node: executable 'missing_exec' not found in package 'devbot'" in err
    assert not marker.exists()


def test_typed_attribute_error_before_anything_starts(tmp_path, capsys):
    """The recorder's old ``sigterm_timeout: "30"``: an error naming file, line, tag and
    attribute, and no process has started."""
    marker = tmp_path / 'started'
    path = write(
        tmp_path,
        'a.launch.yaml',
        f"""\
        launch:
        - executable:
            cmd: {PY} -c "open('{marker}', 'w')"
        - node:
            exec: {PY}
            sigterm_timeout: "30"
        """,
    )
    assert main([path]) == 1
    err = capsys.readouterr().err
    assert "a.launch.yaml:6: node: attribute 'sigterm_timeout' must be a YAML float" in err
    assert not marker.exists()


def test_print_and_help(tmp_path, capsys):
    path = write(
        tmp_path,
        'a.launch.yaml',
        f"""\
        launch:
        - arg: {{name: n, default: '1'}}
        - node: {{exec: {PY}, name: x, param: [{{name: n, value: $(var n)}}]}}
        """,
    )
    assert main([path, '--print', 'n:=5']) == 0
    out = capsys.readouterr().out
    assert '[x] node from' in out and "inline params: {'n': 5}" in out
    assert main(['--help']) == 0
    assert 'examples:' in capsys.readouterr().out
    assert main([path, 'n=5']) == 2
    assert main([path, '--print', 'typo:=1']) == 0
    assert "warning: argument 'typo' is not declared" in capsys.readouterr().err
