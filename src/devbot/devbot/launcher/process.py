"""Run the processes of a launch description and shut them down cleanly.

Each process runs in its own process group (so a Ctrl-C in the terminal reaches only the
launcher, which forwards SIGINT once) with stdin from /dev/null and its stdout/stderr read
through pipes by a single-threaded ``selectors`` loop that prints every line as ``[label] line``.
On Linux the child also gets ``PR_SET_PDEATHSIG`` = SIGTERM, so it goes away even if the
launcher is killed with SIGKILL.

Shutdown (on SIGINT/SIGTERM/SIGHUP to the launcher, a node's ``on_exit: shutdown``, or a
process that dies with an error): SIGINT to every running process group, SIGTERM after its
``sigterm_timeout``, SIGKILL ``sigkill_timeout`` later. A second signal to the launcher
escalates at once to SIGTERM, a third to SIGKILL. Finally every process group is SIGKILLed so
no grandchild survives the launcher.

Exit status: 0 when every process finished cleanly, the launch was shut down by a signal, or a
process with ``on_exit: shutdown`` exited 0; otherwise the status of the first process that
failed (128+N when it was killed by signal N). Exits during shutdown do not count.
"""

from __future__ import annotations

import ctypes
import datetime
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO

import yaml

from .parse import InlineParams, ParamsFile, ProcessSpec

LAUNCHER = '[devbot.launch]'
_PR_SET_PDEATHSIG = 1
_SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def write_params_file(values: dict, path: str) -> str:
    """A ROS 2 params file that applies ``values`` to any node (``/**: ros__parameters``)."""
    with open(path, 'w', encoding='utf-8') as f:
        yaml.safe_dump(
            {'/**': {'ros__parameters': values}}, f, default_flow_style=False, sort_keys=False
        )
    return path


def build_command(spec: ProcessSpec, params_dir: str) -> list[str]:
    """The argv that starts ``spec``, as ros2 launch builds it; inline params go to
    ``params_dir``."""
    cmd = list(spec.cmd)
    if spec.kind == 'node':
        ros: list[str] = []
        if spec.node_name:
            ros += ['-r', f'__node:={spec.node_name}']
        if spec.namespace:
            ros += ['-r', f'__ns:={spec.namespace}']
        safe = re.sub(r'[^A-Za-z0-9_.-]', '_', spec.label)
        for index, entry in enumerate(spec.params):
            if isinstance(entry, ParamsFile):
                ros += ['--params-file', entry.path]
            elif isinstance(entry, InlineParams):
                path = os.path.join(params_dir, f'{safe}_params_{index}.yaml')
                ros += ['--params-file', write_params_file(entry.values, path)]
        for source, target in spec.remaps:
            ros += ['-r', f'{source}:={target}']
        ros += spec.ros_args
        if ros:
            cmd += ['--ros-args'] + ros
    if spec.shell:
        cmd = ['/bin/sh', '-c', ' '.join(cmd)]
    return cmd


def default_log_dir() -> str:
    """Where ros2 launch writes logs: $ROS_LOG_DIR, $ROS_HOME/log or ~/.ros/log."""
    if os.environ.get('ROS_LOG_DIR'):
        return os.path.expanduser(os.environ['ROS_LOG_DIR'])
    if os.environ.get('ROS_HOME'):
        return os.path.join(os.path.expanduser(os.environ['ROS_HOME']), 'log')
    return os.path.expanduser(os.path.join('~', '.ros', 'log'))


def _load_libc():
    if not sys.platform.startswith('linux'):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


class _Child:
    def __init__(self, spec: ProcessSpec, cmd: list[str], popen: subprocess.Popen):
        self.spec = spec
        self.cmd = cmd
        self.popen = popen
        self.pid = popen.pid
        self.returncode: int | None = None
        self.partial: dict[int, bytes] = {}
        self.term_at: float | None = None
        self.kill_at: float | None = None
        self.term_sent = False
        self.kill_sent = False

    @property
    def running(self) -> bool:
        return self.returncode is None


class ProcessRunner:
    """Start ``specs`` in order, print their output, supervise them; :meth:`run` returns the
    status."""

    def __init__(
        self,
        specs: list[ProcessSpec],
        out: IO[str] | None = None,
        log_dir: str | None = None,
        verbose: bool = False,
        exit_grace: float = 0.5,
    ):
        self.specs = specs
        self.out = out if out is not None else sys.stdout
        self.log_dir = log_dir
        self.verbose = verbose
        self.exit_grace = exit_grace
        self.children: list[_Child] = []
        self.result = 0
        self.shutting_down = False
        self._signals: list[int] = []
        self._signal_count = 0
        self._selector: selectors.BaseSelector | None = None
        self._open_fds = 0
        self._out_broken = False
        self._log_file: IO[str] | None = None
        self._params_dir: str | None = None
        self._libc = _load_libc()

    # -- output ---------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        self._print(f'{LAUNCHER} {message}', log=True)

    def _print(self, text: str, screen: bool = True, log: bool = False) -> None:
        if log and self._log_file is not None:
            try:
                self._log_file.write(text + '\n')
                self._log_file.flush()
            except OSError:
                self._log_file = None
        if screen and not self._out_broken:
            try:
                self.out.write(text + '\n')
                self.out.flush()
            except (OSError, ValueError):
                # our stdout is gone (closed pipe/terminal): nobody can watch the nodes any more
                self._out_broken = True
                self._shutdown()

    def _emit(self, child: _Child, stream: str, raw: bytes) -> None:
        line = raw.decode('utf-8', errors='replace').rstrip('\r')
        mode = child.spec.output
        screen = mode in ('screen', 'both') or stream == 'stderr'
        self._print(f'[{child.spec.label}] {line}', screen=screen, log=mode in ('log', 'both'))

    def _open_log(self) -> None:
        if not any(spec.output in ('log', 'both') for spec in self.specs):
            return
        stamp = datetime.datetime.now().strftime('%Y-%m-%d-%H-%M-%S-%f')
        folder = os.path.join(
            self.log_dir or default_log_dir(), f'{stamp}-devbot-launch-{os.getpid()}'
        )
        try:
            os.makedirs(folder, exist_ok=True)
            self._log_file = open(os.path.join(folder, 'launch.log'), 'a', encoding='utf-8')
        except OSError as exc:
            self.say(f'cannot write the launch log in {folder}: {exc}; log-only output is lost')
            return
        self.say(f'all log files can be found below {folder}')

    # -- signals --------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        self._signals.append(signum)

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return None
        rfd, wfd = os.pipe()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        old_handlers = {sig: signal.signal(sig, self._on_signal) for sig in _SHUTDOWN_SIGNALS}
        old_wakeup = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        self._selector.register(rfd, selectors.EVENT_READ, None)
        return old_handlers, old_wakeup, rfd, wfd

    def _restore_signals(self, installed) -> None:
        if installed is None:
            return
        old_handlers, old_wakeup, rfd, wfd = installed
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        for fd in (rfd, wfd):
            os.close(fd)

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            self._signal_count += 1
            name = signal.Signals(signum).name
            if self._signal_count == 1:
                self.say(f'received {name}, shutting down')
                self._shutdown()
            elif self._signal_count == 2:
                self.say(f'received {name} again, escalating to SIGTERM')
                for child in self._running():
                    child.term_sent = True
                    self._signal(child, signal.SIGTERM)
            else:
                self.say(f'received {name} again, escalating to SIGKILL')
                for child in self._running():
                    child.kill_sent = True
                    self._signal(child, signal.SIGKILL)

    # -- processes ------------------------------------------------------------------------------
    def _running(self) -> list[_Child]:
        return [c for c in self.children if c.running]

    def _child_setup(self, parent_pid: int) -> None:
        """Runs in the forked child before exec: own process group, die with the launcher."""
        os.setpgid(0, 0)
        if self._libc is not None:
            self._libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
            if os.getppid() != parent_pid:  # the launcher died before prctl took effect
                os.kill(os.getpid(), signal.SIGTERM)

    def _start(self, spec: ProcessSpec) -> None:
        cmd = build_command(spec, self._params_dir)
        env = dict(os.environ)
        env['PYTHONUNBUFFERED'] = '1'
        env.update(spec.env)
        parent = os.getpid()
        try:
            popen = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=spec.cwd,
                close_fds=True,
                preexec_fn=lambda: self._child_setup(parent),
            )
        except OSError as exc:
            self.say(f'process[{spec.label}] failed to start: {exc} (cmd: {shlex.join(cmd)})')
            self._fail(1)
            return
        child = _Child(spec, cmd, popen)
        self.children.append(child)
        for stream, pipe in (('stdout', popen.stdout), ('stderr', popen.stderr)):
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            child.partial[fd] = b''
            self._selector.register(pipe, selectors.EVENT_READ, (child, stream))
            self._open_fds += 1
        self.say(f'process[{spec.label}] started with pid {popen.pid}')
        if self.verbose:
            self.say(f'process[{spec.label}] cmd: {shlex.join(cmd)}')

    def _read(self, key: selectors.SelectorKey) -> str:
        """Read what one pipe has: 'data', 'empty' (nothing now) or 'eof' (then it is closed)."""
        child, stream = key.data
        fd = key.fd
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return 'empty'
        except OSError:
            data = b''
        if not data:
            rest = child.partial.pop(fd, b'')
            if rest:
                self._emit(child, stream, rest)
            self._selector.unregister(key.fileobj)
            key.fileobj.close()
            self._open_fds -= 1
            return 'eof'
        buffer = child.partial[fd] + data
        *lines, rest = buffer.split(b'\n')
        if len(rest) > 65536:  # a very long line without newline: show it in pieces
            lines.append(rest)
            rest = b''
        child.partial[fd] = rest
        for line in lines:
            self._emit(child, stream, line)
        return 'data'

    def _drain(self, child: _Child) -> None:
        """Read what an exited child left in its pipes (so its last lines precede its exit line)."""
        keys = [
            k
            for k in self._selector.get_map().values()
            if k.data is not None and k.data[0] is child
        ]
        for key in keys:
            for _ in range(1000):  # bounded: a grandchild may hold the pipe and keep writing
                if self._read(key) != 'data':
                    break

    def _signal(self, child: _Child, sig: int) -> None:
        try:
            os.killpg(child.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _fail(self, status: int) -> None:
        if not self.shutting_down and self.result == 0:
            self.result = status
        self._shutdown()

    def _shutdown(self) -> None:
        if self.shutting_down:
            return
        self.shutting_down = True
        now = time.monotonic()
        for child in self._running():
            child.term_at = now + child.spec.sigterm_timeout
            child.kill_at = child.term_at + child.spec.sigkill_timeout
            self._signal(child, signal.SIGINT)

    def _on_exit(self, child: _Child) -> None:
        rc = child.returncode
        label = child.spec.label
        if rc == 0:
            self.say(f'process[{label}] has finished cleanly (pid {child.pid})')
            if child.spec.on_exit_shutdown and not self.shutting_down:
                self.say(f'process[{label}] has on_exit: shutdown, shutting the launch down')
                self._shutdown()
            return
        if rc > 0:
            what, status = f'exited with code {rc}', rc
        else:
            what, status = f'was killed by {signal.Signals(-rc).name}', 128 - rc
        if self.shutting_down:
            self.say(f'process[{label}] {what} (pid {child.pid}) while shutting down')
        else:
            self.say(
                f'process[{label}] has died: {what} (pid {child.pid}, cmd: {shlex.join(child.cmd)})'
            )
            self._fail(status)

    def _reap(self) -> None:
        for child in self._running():
            rc = child.popen.poll()
            if rc is not None:
                child.returncode = rc
                self._drain(child)
                self._on_exit(child)

    def _escalate(self) -> None:
        now = time.monotonic()
        for child in self._running():
            if child.term_at is not None and not child.term_sent and now >= child.term_at:
                child.term_sent = True
                self.say(
                    f'process[{child.spec.label}] failed to terminate '
                    f'{child.spec.sigterm_timeout:g} s after SIGINT, escalating to SIGTERM'
                )
                self._signal(child, signal.SIGTERM)
            if child.kill_at is not None and not child.kill_sent and now >= child.kill_at:
                child.kill_sent = True
                self.say(
                    f'process[{child.spec.label}] failed to terminate '
                    f'{child.spec.sigkill_timeout:g} s after SIGTERM, escalating to SIGKILL'
                )
                self._signal(child, signal.SIGKILL)

    def _pump(self, timeout: float) -> None:
        for key, _ in self._selector.select(timeout):
            if key.data is None:  # the signal wakeup pipe
                try:
                    while os.read(key.fd, 512):
                        pass
                except BlockingIOError:
                    pass
            elif not key.fileobj.closed:
                self._read(key)
        self._handle_signals()

    def _cleanup(self) -> None:
        for child in self.children:
            if child.running:
                self._signal(child, signal.SIGKILL)
                try:
                    child.returncode = child.popen.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            # grandchildren left in the group (e.g. daemons of a node): never outlive the launch
            try:
                os.killpg(child.pid, signal.SIGKILL)
                self.say(f'killed processes left behind by process[{child.spec.label}]')
            except (ProcessLookupError, PermissionError):
                pass
        for key in list(self._selector.get_map().values()):
            if key.data is not None:
                self._selector.unregister(key.fileobj)
                key.fileobj.close()

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> int:
        """Start everything, supervise until all processes ended; return the launch status."""
        self._selector = selectors.DefaultSelector()
        self._params_dir = tempfile.mkdtemp(prefix='devbot_launch_params_')
        installed = self._install_signals()
        try:
            self._open_log()
            for spec in self.specs:
                if self.shutting_down:
                    break
                self._start(spec)
                self._pump(0)
                self._reap()
            exited_at = None
            while True:
                if not self._running():
                    if self._open_fds == 0:
                        break
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > self.exit_grace:
                        break
                self._pump(0.05)
                self._reap()
                self._escalate()
        finally:
            self._cleanup()
            self._restore_signals(installed)
            shutil.rmtree(self._params_dir, ignore_errors=True)
            if self._log_file is not None:
                self._log_file.close()
            self._selector.close()
        return self.result
