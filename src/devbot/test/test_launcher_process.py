"""devbot launch: running processes (output prefixing, failures, on_exit, signals, escalation,
cleanup)."""

from __future__ import annotations

import ast
import io
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from devbot.launcher import ProcessRunner, parse_launch_file

PY = sys.executable


@pytest.fixture(autouse=True)
def _ros_log_dir(tmp_path, monkeypatch):
    """Launch logs (and those of launcher subprocesses) go to the test's folder, not ~/.ros."""
    monkeypatch.setenv('ROS_LOG_DIR', str(tmp_path / 'ros_log'))


def write(folder, name, text):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def dump(folder, *entities):
    """Write a launch file of ``executable`` entities given as dicts (YAML does the quoting)."""
    path = folder / 'gen.launch.yaml'
    path.write_text(
        yaml.safe_dump({'launch': [{'executable': e} for e in entities]}, sort_keys=False)
    )
    return str(path)


def py(code):
    return f'{PY} -c "{code}"'


def run_file(path, args=None, log_dir=None):
    out = io.StringIO()
    start = time.monotonic()
    status = ProcessRunner(parse_launch_file(path, args).processes, out=out, log_dir=log_dir).run()
    return status, out.getvalue(), time.monotonic() - start


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def wait_gone(pids, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.02)
    return [p for p in pids if alive(p)]


SLEEPER = "import os, time; print('pid', os.getpid(), flush=True); time.sleep(30)"


def test_output_is_prefixed_per_process(tmp_path):
    path = write(
        tmp_path,
        'a.launch.yaml',
        f"""\
        launch:
        - executable:
            cmd: {PY} -c "import sys; print('hello'); print('from stderr', file=sys.stderr);
              print('last', end='')"
            name: first
            output: screen
        - executable:
            cmd: {PY} -c "print('world')"
            name: second
            output: screen
        """,
    )
    status, out, _ = run_file(path)
    assert status == 0
    lines = out.splitlines()
    assert '[first] hello' in lines and '[first] from stderr' in lines and '[first] last' in lines
    assert '[second] world' in lines
    assert any(
        re.fullmatch(r'\[devbot.launch\] process\[first\] started with pid \d+', x) for x in lines
    )
    assert any(
        re.fullmatch(r'\[devbot.launch\] process\[second\] has finished cleanly \(pid \d+\)', x)
        for x in lines
    )
    # a process's last lines come before its exit line
    assert lines.index('[first] last') < next(
        i for i, x in enumerate(lines) if 'process[first] has finished' in x
    )


def test_output_log_mode_writes_stdout_to_the_log_file(tmp_path):
    path = write(
        tmp_path,
        'a.launch.yaml',
        f"""\
        launch:
        - executable:
            cmd: {PY} -c "import sys; print('to the log'); print('to both', file=sys.stderr)"
            name: quiet
        """,
    )
    status, out, _ = run_file(path, log_dir=str(tmp_path / 'logs'))
    assert status == 0
    assert '[quiet] to both' in out and 'to the log' not in out
    (folder,) = (tmp_path / 'logs').iterdir()
    log = (folder / 'launch.log').read_text()
    assert (
        '[quiet] to the log' in log and '[quiet] to both' in log and 'process[quiet] started' in log
    )


def run_beside_a_sleeper(tmp_path, other: dict) -> tuple[int, str, int]:
    """Launch a 30 s sleeper and ``other``; the launch must end within 5 s.

    Returns:
        the launch's exit status, its screen output, and the sleeper's pid.
    """
    path = dump(tmp_path, {'cmd': py(SLEEPER), 'name': 'sleeper', 'output': 'screen'}, other)
    status, out, elapsed = run_file(path)
    assert elapsed < 5
    return status, out, int(re.search(r'\[sleeper\] pid (\d+)', out).group(1))


def test_failing_process_stops_the_others_and_sets_the_status(tmp_path):
    status, out, sleeper = run_beside_a_sleeper(
        tmp_path,
        {
            'cmd': py("import time, sys; time.sleep(0.3); print('failing'); sys.exit(3)"),
            'name': 'failing',
            'output': 'screen',
        },
    )
    assert status == 3
    assert 'process[failing] has died: exited with code 3' in out
    assert 'process[sleeper] was killed by SIGINT' in out
    assert not alive(sleeper)


def test_on_exit_shutdown_ends_the_launch_with_zero(tmp_path):
    status, out, sleeper = run_beside_a_sleeper(
        tmp_path,
        {
            'cmd': py("import time; time.sleep(0.3); print('max_steps reached')"),
            'name': 'selector',
            'output': 'screen',
            'on_exit': 'shutdown',
        },
    )
    assert status == 0, out
    assert 'process[selector] has on_exit: shutdown' in out
    assert not alive(sleeper)


def test_on_exit_shutdown_with_error_is_an_error(tmp_path):
    path = write(
        tmp_path,
        'a.launch.yaml',
        f"""\
        launch:
        - executable: {{cmd: {PY} -c "import sys; sys.exit(2)", on_exit: shutdown}}
        """,
    )
    status, out, _ = run_file(path)
    assert status == 2


def test_escalation_sigterm_then_sigkill(tmp_path):
    ignore_int = (
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(30)"
    )
    ignore_both = (
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(30)"
    )
    path = dump(
        tmp_path,
        {'cmd': py(ignore_int), 'name': 'stubborn', 'output': 'screen', 'sigterm_timeout': 0.3},
        {
            'cmd': py(ignore_both),
            'name': 'very_stubborn',
            'output': 'screen',
            'sigterm_timeout': 0.3,
            'sigkill_timeout': 0.3,
        },
        {'cmd': py('import time; time.sleep(0.8)'), 'on_exit': 'shutdown'},
    )
    status, out, elapsed = run_file(path)
    assert status == 0, out
    assert elapsed < 4
    assert 'process[stubborn] failed to terminate 0.3 s after SIGINT, escalating to SIGTERM' in out
    assert 'process[stubborn] was killed by SIGTERM' in out
    assert (
        'process[very_stubborn] failed to terminate 0.3 s after SIGTERM, escalating to SIGKILL'
        in out
    )
    assert 'process[very_stubborn] was killed by SIGKILL' in out


def test_node_command_line_and_inline_params_file_cleanup(tmp_path, monkeypatch):
    """A node of an ament prefix gets the ros2 launch command line; its temp params file is
    removed."""
    prefix = tmp_path / 'install'
    exe = prefix / 'lib' / 'fake_pkg' / 'echo_node'
    exe.parent.mkdir(parents=True)
    exe.write_text(
        f'#!{PY}\n'
        + textwrap.dedent("""\
        import sys
        args = sys.argv[1:]
        print('ARGS', args)
        params = args[args.index('--params-file') + 1]
        print('PARAMS_FILE', params)
        print('PARAMS', open(params).read().replace(chr(10), ' | '))
        """)
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    index = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    (index / 'fake_pkg').write_text('')
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(prefix))
    path = write(
        tmp_path,
        'a.launch.yaml',
        """\
        launch:
        - group:
            children:
            - push-ros-namespace: {namespace: robot}
            - node:
                pkg: fake_pkg
                exec: echo_node
                name: echo
                output: screen
                param: [{name: rate, value: '2.5'}, {name: label, value: dot}]
                remap: [{from: image, to: camera/image_raw}]
        """,
    )
    status, out, _ = run_file(path)
    assert status == 0, out
    args = ast.literal_eval(re.search(r"\[echo\] ARGS (.*)", out).group(1))
    params_file = re.search(r'\[echo\] PARAMS_FILE (.*)', out).group(1)
    assert args == [
        '--ros-args',
        '-r',
        '__node:=echo',
        '-r',
        '__ns:=/robot',
        '--params-file',
        params_file,
        '-r',
        'image:=camera/image_raw',
    ]
    content = re.search(r'\[echo\] PARAMS (.*)', out).group(1).replace(' | ', '\n')
    assert yaml.safe_load(content) == {'/**': {'ros__parameters': {'rate': 2.5, 'label': 'dot'}}}
    assert not os.path.exists(params_file)
    assert not os.path.exists(os.path.dirname(params_file))


def _start_launcher(path, *args):
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    return subprocess.Popen(
        [PY, '-m', 'devbot.cli', 'launch', path, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _read_pids(proc, count, timeout=10.0):
    pids, lines = [], []
    deadline = time.monotonic() + timeout
    while len(pids) < count and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r'\] pid (\d+)', line)
        if match:
            pids.append(int(match.group(1)))
    assert len(pids) == count, ''.join(lines)
    return pids


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_signal_to_launcher_stops_every_child(tmp_path, sig):
    child_of_shell = "sleep 30 & echo pid $!; wait"
    path = dump(
        tmp_path,
        {'cmd': py(SLEEPER), 'name': 'one', 'output': 'screen'},
        {'cmd': py(SLEEPER), 'name': 'two', 'output': 'screen'},
        {'cmd': child_of_shell, 'shell': True, 'name': 'shell', 'output': 'screen'},
    )
    proc = _start_launcher(path)
    try:
        pids = _read_pids(proc, 3)
        proc.send_signal(sig)
        proc.wait(timeout=10)
        out = proc.stdout.read()  # not communicate(): it would skip what readline buffered
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert f'received {signal.Signals(sig).name}, shutting down' in out
    assert wait_gone(pids) == []


def test_children_die_with_a_killed_launcher(tmp_path):
    path = dump(tmp_path, {'cmd': py(SLEEPER), 'name': 'one', 'output': 'screen'})
    proc = _start_launcher(path)
    try:
        pids = _read_pids(proc, 1)
        proc.kill()
        proc.wait(timeout=5)
    finally:
        proc.kill()
    assert wait_gone(pids) == []
