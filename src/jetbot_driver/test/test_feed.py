"""``devbot jetbot-feed``: headless frames saved and read back, frame rate, clean errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from jetbot_driver.feed import main as feed_main


def test_headless_feed_saves_frames_for_the_duration(sim, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv('DISPLAY', raising=False)
    monkeypatch.delenv('WAYLAND_DISPLAY', raising=False)
    out = tmp_path / 'feed'
    assert (
        feed_main(
            [
                '--ip',
                '127.0.0.1',
                '--port',
                str(sim.port),
                '--duration',
                '1.0',
                '--out',
                str(out),
                '--save-every',
                '2',
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert 'headless (no display' in text and 'frames/s' in text
    files = sorted(out.glob('frame_*.png'))
    assert len(files) >= 3
    img = cv2.imread(str(files[0]))  # written as BGR; the sim's first view = the renderer's BGR
    assert img.shape == (224, 224, 3)
    assert np.abs(img.astype(int) - sim.hardware.world.render().astype(int)).mean() < 6
    assert sim.hardware.motor_log() == (), 'the feed never moves the robot'


def test_feed_reports_an_unreachable_robot(tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    assert (
        feed_main(
            [
                '--ip',
                '127.0.0.1',
                '--port',
                str(port),
                '--connect-timeout',
                '0.3',
                '--out',
                str(tmp_path),
            ]
        )
        == 1
    )
    assert 'no JetBot service at 127.0.0.1' in capsys.readouterr().err


def test_devbot_jetbot_feed_command(sim, tmp_path):
    devbot = Path(sys.executable).parent / 'devbot'
    proc = subprocess.run(
        [
            str(devbot),
            'jetbot-feed',
            '--ip',
            '127.0.0.1',
            '--port',
            str(sim.port),
            '--duration',
            '0.5',
            '--headless',
            '--out',
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert 'frames/s' in proc.stdout and list(tmp_path.glob('frame_*.png'))
