"""The JetBot RPyC service over real loopback connections: protocol, safety, no classic mode."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import rpyc
from graphtest import wait_for

from jetbot_driver import protocol
from jetbot_driver.client import ConnectionLost, JetBotClient
from jetbot_driver.server import (
    HardwareError,
    JetbotLibraryHardware,
    JetBotServer,
    strip_ros_args,
)
from jetbot_driver.server import main as server_main
from jetbot_driver.sim_server import SimHardware, SimServer


def test_camera_frame_is_base64_jpeg_224_bgr_of_the_sim(sim):
    conn = protocol.connect('127.0.0.1', sim.port)
    try:
        text = conn.root.get_camera_frame()
        assert isinstance(text, str)
        bgr = protocol.decode_frame(text)
        assert bgr.shape == (224, 224, 3)
        truth = sim.hardware.world.render()  # BGR straight from the renderer
        assert np.abs(bgr.astype(int) - truth.astype(int)).mean() < 4
    finally:
        conn.close()


def test_set_motors_clamps_and_logs_and_refuses_nan(sim, inspector):
    conn = protocol.connect('127.0.0.1', sim.port)
    try:
        conn.root.set_motors(0.5, -0.25)
        conn.root.set_motors(3, -9)
        with pytest.raises(ValueError):
            conn.root.set_motors(math.nan, 0.1)
        with pytest.raises(ValueError):
            conn.root.set_motors('fast', 0.1)
    finally:
        conn.close()
    log = [(left, right) for _, left, right in inspector.call_extra('get_motor_log')]
    # a refused value stops the motors: the log ends with (0, 0)
    assert log[:3] == [(0.5, -0.25), (1.0, -1.0), (0.0, 0.0)]


def test_motors_stop_when_the_driving_client_disconnects(sim, inspector):
    driver = JetBotClient.connect('127.0.0.1', sim.port)
    driver.set_motors(0.3, 0.3)
    assert sim.hardware.world.motors == (0.3, 0.3)
    driver.close()
    assert wait_for(lambda: sim.hardware.world.motors == (0.0, 0.0))
    _, left, right = inspector.call_extra('get_motor_log')[-1]
    assert (left, right) == (0.0, 0.0)


def test_camera_stops_when_the_last_client_leaves(sim):
    a = JetBotClient.connect('127.0.0.1', sim.port)
    b = JetBotClient.connect('127.0.0.1', sim.port)
    a.get_frame()
    assert sim.hardware.camera_running
    a.close()
    time.sleep(0.3)
    assert sim.hardware.camera_running, 'b is still connected'
    b.close()
    assert wait_for(lambda: not sim.hardware.camera_running)


def test_classic_mode_and_non_exposed_attributes_are_refused(sim):
    # a classic client needs the server's getmodule/eval: the connection itself fails
    with pytest.raises(AttributeError):
        rpyc.classic.connect('127.0.0.1', sim.port)
    conn = protocol.connect('127.0.0.1', sim.port)
    try:
        assert not hasattr(conn, 'modules') and not hasattr(conn, 'eval')
        for name in (
            'modules',
            'eval',
            'execute',
            'getmodule',
            'namespace',
            'getconn',
            '_hardware',
            '_clients',
            'on_connect',
            'on_disconnect',
            '_die',
            '_drove_motors',
        ):
            with pytest.raises(AttributeError):
                getattr(conn.root, name)
        # ask the server directly (a netref answers some dunders locally): every way out is closed
        remote_getattr = rpyc.core.consts.HANDLE_GETATTR
        for obj, names in (
            (
                conn.root,
                (
                    '__class__',
                    '__dict__',
                    '__init__',
                    '__globals__',
                    '__subclasses__',
                    '__module__',
                    '_hardware',
                ),
            ),
            (
                conn.root.get_camera_frame,
                (
                    '__globals__',
                    '__code__',
                    '__self__',
                    '__func__',
                    '__class__',
                    '__closure__',
                    '__module__',
                ),
            ),
        ):
            for name in names:
                with pytest.raises(AttributeError):
                    conn.sync_request(remote_getattr, obj, name)
        with pytest.raises(AttributeError):
            setattr(conn.root, 'set_motors', None)
        with pytest.raises(AttributeError):
            delattr(conn.root, 'set_motors')
        conn.root.set_motors(0.1, 0.1)  # the exposed methods still work
        assert conn.root.get_camera_frame()
    finally:
        conn.close()


def test_die_drops_every_client():
    server = SimServer(port=0).start_in_thread()
    try:
        client = JetBotClient.connect('127.0.0.1', server.port)
        client.get_frame()
        client.call_extra('die')
        assert server.wait_closed(5)
        with pytest.raises(ConnectionLost):
            for _ in range(50):
                client.get_frame()
                time.sleep(0.02)
        with pytest.raises(ConnectionLost, match='no JetBot service'):
            JetBotClient.connect('127.0.0.1', server.port, connect_timeout=0.3)
    finally:
        server.close()


def test_a_stopping_server_waits_for_the_requests_in_flight():
    # jetbot_sim_server exits right after serving ends: a request thread still inside OpenCV's
    # encoder then would abort the process (SIGABRT) instead of exiting 0
    in_camera, release = threading.Event(), threading.Event()

    class SlowCamera(SimHardware):
        def camera_bgr(self):
            in_camera.set()
            release.wait(10)
            return super().camera_bgr()

    server = JetBotServer(SlowCamera(), port=0).start_in_thread()
    conn = protocol.connect('127.0.0.1', server.port)
    replies = []

    def request():
        try:
            replies.append(conn.root.get_camera_frame())
        except EOFError:
            replies.append('connection closed')

    caller = threading.Thread(target=request, daemon=True)
    caller.start()
    assert in_camera.wait(5)
    closer = threading.Thread(target=server.close, daemon=True)
    closer.start()
    closer.join(1.0)
    assert closer.is_alive(), 'the server stopped while a request was still being served'
    release.set()
    closer.join(10)
    caller.join(10)
    assert not closer.is_alive() and replies
    assert server.hardware.frames_served == 1


def test_real_hardware_backend_needs_the_jetbot_library(capsys):
    with pytest.raises(HardwareError, match='jetbot library is not importable'):
        JetbotLibraryHardware()
    assert server_main(['--port', '0']) == 2
    assert 'jetbot_sim_server' in capsys.readouterr().err


def test_strip_ros_args():
    assert strip_ros_args(
        ['--port', '5', '--ros-args', '-r', '__node:=x', '--', '--size', '9']
    ) == ['--port', '5', '--size', '9']
    assert strip_ros_args(['--ros-args', '-p', 'a:=1']) == []


@pytest.mark.skipif(
    shutil.which('openssl') is None, reason='needs the openssl command to make a certificate'
)
def test_ssl_authenticator_encrypts_and_plain_clients_are_turned_away(tmp_path):
    key, cert = tmp_path / 'robot.key', tmp_path / 'robot.crt'
    subprocess.run(
        [
            'openssl',
            'req',
            '-x509',
            '-newkey',
            'rsa:2048',
            '-nodes',
            '-keyout',
            str(key),
            '-out',
            str(cert),
            '-days',
            '1',
            '-subj',
            '/CN=jetbot',
        ],
        check=True,
        capture_output=True,
    )
    server = SimServer(
        port=0, authenticator=protocol.ssl_authenticator(str(key), str(cert))
    ).start_in_thread()
    try:
        client = JetBotClient.connect(
            '127.0.0.1', server.port, ssl_ca_certs=str(cert), connect_timeout=5
        )
        assert client.get_frame().shape == (224, 224, 3)
        client.set_motors(0.2, 0.2)
        client.close()
        with pytest.raises((ConnectionLost, EOFError, OSError)):
            plain = JetBotClient.connect('127.0.0.1', server.port, connect_timeout=0.5)
            plain.get_frame()
    finally:
        server.close()


def test_sim_server_process_serves_and_exits_cleanly_on_sigint():
    import signal
    import socket

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'jetbot_driver.sim_server',
            '--port',
            str(port),
            '--size',
            '160x120',
            '--ros-args',
            '-r',
            '__node:=sim',
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = JetBotClient.connect('127.0.0.1', port, connect_timeout=20)
        assert client.get_frame_bgr().shape == (120, 160, 3)
        assert client.get_frame().shape == (224, 224, 3)
        client.set_motors(0.1, 0.2)
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, out
    assert 'listening on 127.0.0.1' in out and 'served 2 frames' in out, out
