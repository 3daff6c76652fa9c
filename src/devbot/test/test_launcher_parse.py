"""devbot launch: YAML launch files -> processes (substitutions, args, includes, groups, params, errors)."""

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
    main,
    parse_cli_arguments,
    parse_launch_file,
)
from devbot.launcher.parse import InlineParams, ParamsFile, join_namespace, typed_param_value
from devbot.launcher.substitutions import Context, SubstitutionError, parse, substitute

PY = sys.executable


def write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


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
    assert substitute('$(optenv DEVBOT_SURELY_UNSET_VAR)', ctx) == ''
    assert substitute('$(equal $(var n) 3)', ctx) == 'true'
    assert substitute('$(equal $(var n) 3.0)', ctx) == 'true'  # numbers compare by value
    assert substitute('$(equal True true)', ctx) == 'true'
    assert substitute('$(not-equal $(var which) right)', ctx) == 'true'
    assert substitute('$(not $(equal a b))', ctx) == 'true'
    assert substitute('$(and true $(or false 1))', ctx) == 'true'
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
        ('$(eval 1+1)', 'never evaluates Python'),
        ('$(command ls)', 'unsupported substitution $(command'),
        ('$(var x', 'unterminated substitution'),
        ('$(equal a)', 'takes 2 argument(s)'),
        ('$(not maybe)', 'expected true, false, 1 or 0'),
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
        - arg: {{name: steps, default: 5}}
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
    path = write(
        tmp_path,
        'a.launch.yaml',
        """\
        launch:
        - arg: {name: selector, description: the policy, choice: [{value: constant}, {value: sequence}]}
        """,
    )
    with pytest.raises(
        LaunchError,
        match=r"a.launch.yaml:2: launch argument 'selector' is required.*pass selector:=VALUE",
    ):
        parse_launch_file(path)
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
        - executable: {{cmd: {PY}, name: sim_only, if: $(equal $(var mode) sim)}}
        - executable: {{cmd: {PY}, name: not_sim, unless: $(equal $(var mode) sim)}}
        - executable: {{cmd: {PY}, name: real_only, if: $(not-equal $(var mode) sim)}}
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
    path = write(
        tmp_path,
        'a.launch.yaml',
        f"""\
        launch:
        - executable: {{cmd: {PY}, if: 'yes please'}}
        """,
    )
    with pytest.raises(
        LaunchError,
        match=r"a.launch.yaml:2: executable if: expected true, false, 1 or 0, got 'yes please'",
    ):
        parse_launch_file(path)
    path = write(
        tmp_path,
        'b.launch.yaml',
        f"""\
        launch:
        - executable: {{cmd: {PY}, if: 'true', unless: 'true'}}
        """,
    )
    with pytest.raises(LaunchError, match='not both'):
        parse_launch_file(path)


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
    path = write(
        tmp_path,
        'missing.launch.yaml',
        """\
        launch:
        - include: {file: $(dirname)/nope.launch.yaml}
        """,
    )
    with pytest.raises(
        LaunchError,
        match=r"missing.launch.yaml:2: include: launch file .*nope.launch.yaml' not found",
    ):
        parse_launch_file(path)
    path = write(
        tmp_path,
        'cycle.launch.yaml',
        """\
        launch:
        - include: {file: $(dirname)/cycle.launch.yaml}
        """,
    )
    with pytest.raises(LaunchError, match='include cycle'):
        parse_launch_file(path)


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
            - {{name: values, value: [1, 2.5]}}
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
    path = write(
        tmp_path,
        'a.launch.yaml',
        f"""\
        launch:
        - node:
            exec: {PY}
            param:
            - from: $(dirname)/missing.yaml
        """,
    )
    with pytest.raises(
        LaunchError, match=r"a.launch.yaml:5: param: params file .*missing.yaml' not found"
    ):
        parse_launch_file(path)
    path = write(
        tmp_path,
        'b.launch.yaml',
        """\
        launch:
        - node: {pkg: devbot_no_such_package, exec: x}
        """,
    )
    with pytest.raises(
        LaunchError, match=r"b.launch.yaml:2: node: package 'devbot_no_such_package' not found"
    ):
        parse_launch_file(path)
    path = write(
        tmp_path,
        'c.launch.yaml',
        """\
        launch:
        - node: {pkg: devbot, exec: no_such_exec}
        """,
    )
    with pytest.raises(
        LaunchError,
        match=r"executable 'no_such_exec' not found in package 'devbot' \(available: [^)]*devbot[^)]*\)",
    ):
        parse_launch_file(path)
    path = write(
        tmp_path,
        'd.launch.yaml',
        """\
        launch:
        - executable: {cmd: devbot_no_such_program --flag}
        """,
    )
    with pytest.raises(
        LaunchError,
        match="d.launch.yaml:2: executable: executable 'devbot_no_such_program' not found on PATH",
    ):
        parse_launch_file(path)


def test_ament_prefix_package(tmp_path, monkeypatch):
    """On a full ROS install: <prefix>/lib/<pkg>/<exec> and <prefix>/share/<pkg>."""
    prefix = tmp_path / 'install'
    exe = prefix / 'lib' / 'fake_pkg' / 'fake_node'
    exe.parent.mkdir(parents=True)
    exe.write_text('#!/bin/sh\necho hi\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    share = prefix / 'share' / 'fake_pkg'
    share.mkdir(parents=True)
    (share / 'package.xml').write_text('<package/>')
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(prefix))
    path = write(
        tmp_path,
        'a.launch.yaml',
        """\
        launch:
        - node: {pkg: fake_pkg, exec: fake_node, args: $(find-pkg-share fake_pkg) $(find-pkg-prefix fake_pkg)}
        """,
    )
    assert one(parse_launch_file(path)).cmd == [str(exe), str(share), str(prefix)]


def test_find_pkg_share_of_editable_install(tmp_path):
    path = write(
        tmp_path,
        'a.launch.yaml',
        f"""\
        launch:
        - executable: {{cmd: '{PY} $(find-pkg-share devbot)'}}
        """,
    )
    share = one(parse_launch_file(path)).cmd[1]
    assert os.path.isfile(os.path.join(share, 'package.xml'))


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
        ('- arg: {name: a, default: 1}\n- arg: {name: b}', "4: launch argument 'b' is required"),
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
