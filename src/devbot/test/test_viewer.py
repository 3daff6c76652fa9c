"""devbot view: contact sheet composition (pure) and saving frames published by another process."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from devbot.viewer import CAPTION_HEIGHT, contact_sheet, format_stamp, main, topic_file_name


def test_topic_file_name_and_stamp():
    assert (
        topic_file_name('/toroidal_dot/camera/image_raw') == 'toroidal_dot__camera__image_raw.png'
    )
    assert topic_file_name('relative/img') == 'relative__img.png'
    assert format_stamp(42, 7) == '42.000000007'


def test_contact_sheet_layout_and_content():
    red = np.zeros((224, 224, 3), np.uint8)
    red[:, :, 2] = 255  # BGR red
    wide = np.full((50, 100), 128, np.uint8)  # grey, 2:1 -> letterboxed
    sheet = contact_sheet(
        [('/a', red, 'stamp 1.0'), ('/b', wide, 'stamp 2.0'), ('/c', None, '0 frames')], tile=224
    )
    # 3 entries -> 2 columns x 2 rows of (caption + tile)
    assert sheet.shape == (2 * (224 + CAPTION_HEIGHT), 2 * 224, 3) and sheet.dtype == np.uint8
    a = sheet[CAPTION_HEIGHT : CAPTION_HEIGHT + 223, :223]
    assert (a == [0, 0, 255]).all()
    b = sheet[CAPTION_HEIGHT : CAPTION_HEIGHT + 224, 224:448]
    assert (b[112, 1:222] == 128).all()  # the image band in the middle
    assert (b[10, 1:222] == 0).all()  # letterbox bars above it
    caption = sheet[:CAPTION_HEIGHT, :224]
    assert caption.max() > 100  # text drawn
    empty = sheet[224 + CAPTION_HEIGHT :, :224]
    assert empty.max() > 150  # "no frame yet" text on the grey background
    with pytest.raises(ValueError):
        contact_sheet([])


def test_help_shows_examples(capsys):
    assert main(['--help']) == 0
    assert 'examples:' in capsys.readouterr().out
    assert main([]) == 2


PUBLISHER = textwrap.dedent("""\
    import sys, time
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image
    from devbot.image import numpy_to_image

    rclpy.init()
    node = rclpy.create_node('test_view_publisher')
    pub_a = node.create_publisher(Image, '/test_view/rgb', 10)
    pub_b = node.create_publisher(Image, 'test_view/mono', 10)
    rgb = np.zeros((224, 224, 3), np.uint8)
    rgb[:, :112, 0] = 255  # left half red
    rgb[:, 112:, 2] = 200  # right half blue
    mono = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    print('publishing', flush=True)
    deadline = time.monotonic() + float(sys.argv[1])
    try:
        while time.monotonic() < deadline:
            for pub, img, enc in ((pub_a, rgb, 'rgb8'), (pub_b, mono, 'mono8')):
                msg = numpy_to_image(img, enc)
                msg.header.stamp.sec, msg.header.stamp.nanosec = 42, 7
                pub.publish(msg)
            time.sleep(0.05)
    finally:
        node.destroy_node()
        rclpy.shutdown()
""")


def test_view_saves_frames_published_by_another_process(tmp_path):
    env = dict(
        os.environ,
        ROS_DOMAIN_ID=str(random.randint(100, 200)),
        ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
        PYTHONUNBUFFERED='1',
        ROS_LOG_DIR=str(tmp_path / 'ros_log'),
    )
    env.pop('DISPLAY', None)
    env.pop('WAYLAND_DISPLAY', None)
    script = tmp_path / 'publisher.py'
    script.write_text(PUBLISHER)
    publisher = subprocess.Popen(
        [sys.executable, str(script), '40'],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out_dir = tmp_path / 'view'
    try:
        # the viewer's window is short: it starts once the publisher is up (imports take seconds
        # under load), and leaves time for discovery
        first = publisher.stdout.readline()
        assert first.strip() == 'publishing', first + publisher.stdout.read()
        viewer = subprocess.run(
            [
                sys.executable,
                '-m',
                'devbot.cli',
                'view',
                '/test_view/rgb',
                '/test_view/mono',
                '--out',
                str(out_dir),
                '--interval',
                '0.5',
                '--duration',
                '8',
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        publisher.terminate()
        publisher.wait(timeout=10)
    assert viewer.returncode == 0, viewer.stdout + viewer.stderr
    assert 'no window: no display' in viewer.stdout
    assert 'saved 3 file(s)' in viewer.stdout, viewer.stdout

    rgb = cv2.imread(str(out_dir / 'test_view__rgb.png'))  # BGR
    assert rgb.shape == (224, 224, 3)
    assert (rgb[:, :112] == [0, 0, 255]).all() and (rgb[:, 112:] == [200, 0, 0]).all()
    mono = cv2.imread(str(out_dir / 'test_view__mono.png'))
    assert mono.shape == (48, 64, 3)
    assert (mono[:, :, 0] == np.tile(np.arange(64) * 4, (48, 1))).all()
    sheet = cv2.imread(str(out_dir / 'contact_sheet.png'))
    assert sheet.shape == (224 + CAPTION_HEIGHT, 2 * 224, 3)
    assert (sheet[CAPTION_HEIGHT + 10, 10] == [0, 0, 255]).all()
    assert not list(out_dir.glob('*.tmp.png'))
    # the progress lines count frames per topic
    last = [line for line in viewer.stdout.splitlines() if line.startswith('[devbot.view] frames')][
        -1
    ]
    counts = [int(part.split()[0]) for part in last.split(': ')[1:]]
    assert len(counts) == 2 and min(counts) > 0, last
