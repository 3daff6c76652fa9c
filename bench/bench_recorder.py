"""Recorder benchmark: 224x224 rgb8 frames from a publisher process into the recorder process.

For each case a publisher process sends N frames (pre-serialized Image bytes with a fresh stamp
each, reliable QoS) at a target rate or as fast as it can; the recorder (``recorder_node``, raw
subscription, MCAP + zstd) writes them; then the bag is read back and the frames in it counted.

Prints per case: frames sent, frames in the bag (drops = the difference), the publisher's rate,
the end-to-end recording rate (frames in the bag / receive-time span in the bag) and bytes per
frame on disk (dot frames: the simulated robot's; noise: incompressible worst case).

    .venv/bin/python bench/bench_recorder.py [--frames 3000]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

BIN = Path(sys.executable).parent

PUBLISHER = textwrap.dedent('''
    import struct, sys, time
    import numpy as np
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image
    from devbot.image import numpy_to_image
    from toroidal_sim.env import ToroidalDotEnv, ToroidalDotConfig

    frames, rate, kind = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    rng = np.random.default_rng(0)
    if kind == 'dot':
        env = ToroidalDotEnv(ToroidalDotConfig(seed=1))
        images = [env.reset() for _ in range(64)]
    else:
        images = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(16)]
    blobs = [bytearray(serialize_message(numpy_to_image(img, 'rgb8'))) for img in images]
    rclpy.init()
    node = rclpy.create_node('bench_publisher', namespace='/bench')
    pub = node.create_publisher(Image, 'camera/image_raw',
                                QoSProfile(depth=1000, history=HistoryPolicy.KEEP_LAST,
                                           reliability=ReliabilityPolicy.RELIABLE))
    deadline = time.monotonic() + 30
    while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)
    period = 1.0 / rate if rate > 0 else 0.0
    t0 = time.monotonic()
    blocked = 0
    for k in range(frames):
        if period and k % 10 == 0:   # paced in bursts of 10, sleeping in between (no busy wait)
            left = t0 + k * period - time.monotonic()
            if left > 0:
                time.sleep(left)
        blob = blobs[k % len(blobs)]
        ns = time.time_ns()
        struct.pack_into('<iI', blob, 4, ns // 1_000_000_000, ns % 1_000_000_000)
        for attempt in range(1000):   # reliable back-pressure: the DDS writer is full, retry
            try:
                pub.publish(bytes(blob))
                break
            except Exception:
                blocked += 1
                time.sleep(0.001)
    elapsed = time.monotonic() - t0
    print(f'PUBLISHED {frames} {elapsed:.6f} {blocked}', flush=True)
    time.sleep(1.0)
    node.destroy_node()
    rclpy.shutdown()
''')


def run_case(frames: int, rate: float, kind: str, compression: str = 'zstd') -> dict:
    from devbot.bag import Session, list_sessions

    env = dict(
        os.environ,
        ROS_DOMAIN_ID=str(random.randint(100, 230)),
        ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
        PYTHONUNBUFFERED='1',
    )
    with tempfile.TemporaryDirectory() as tmp:
        rec = subprocess.Popen(
            [
                str(BIN / 'recorder_node'),
                '--ros-args',
                '-r',
                '__ns:=/bench',
                '-p',
                'topics:=camera/image_raw',
                '-p',
                f'output_dir:={tmp}',
                '-p',
                'robot:=bench',
                '-p',
                'qos_depth:=5000',
                '-p',
                f'compression:={compression}',
                '-p',
                'disk_limit_gb:=0',
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(1.0)
        pub = subprocess.run(
            [sys.executable, '-c', PUBLISHER, str(frames), str(rate), kind],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        line = [ln for ln in pub.stdout.splitlines() if ln.startswith('PUBLISHED')]
        if not line:
            rec.kill()
            raise RuntimeError(f'publisher failed: {pub.stdout}{pub.stderr}')
        sent, pub_s, blocked = (
            int(line[0].split()[1]),
            float(line[0].split()[2]),
            int(line[0].split()[3]),
        )
        time.sleep(1.0)
        rec.send_signal(signal.SIGINT)
        out, _ = rec.communicate(timeout=120)
        [info] = list_sessions(tmp)
        with Session(info.path) as s:
            logs = [m.log_time_ns for m in s.messages(['camera/image_raw'])]
            unique = s.num_frames
        mcap_bytes = sum(p.stat().st_size for p in Path(info.path).glob('*.mcap'))
    span = (logs[-1] - logs[0]) / 1e9 if len(logs) > 1 else float('nan')
    return dict(
        kind=kind,
        target=rate,
        sent=sent,
        blocked=blocked,
        recorded=len(logs),
        unique=unique,
        drops=sent - len(logs),
        publish_fps=sent / pub_s,
        record_fps=(len(logs) - 1) / span if span else float('nan'),
        bytes_per_frame=mcap_bytes / max(1, len(logs)),
        compression=compression,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--frames', type=int, default=3000)
    opts = parser.parse_args()
    cases = [
        (opts.frames, 1000.0, 'dot', 'zstd'),
        (opts.frames, 2000.0, 'dot', 'zstd'),
        (opts.frames, 0.0, 'dot', 'zstd'),
        (opts.frames // 3, 1000.0, 'noise', 'zstd'),
        (opts.frames // 3, 1000.0, 'dot', 'none'),
    ]
    print(
        f'{"frames":<7} {"compr.":<6} {"target/s":>8} {"sent":>6} {"in bag":>7} {"drops":>6} '
        f'{"pub/s":>8} {"rec/s":>8} {"B/frame":>9} {"pub. blocked":>12}'
    )
    for n, rate, kind, comp in cases:
        r = run_case(n, rate, kind, comp)
        target = f'{rate:.0f}' if rate else 'max'
        print(
            f'{kind:<7} {comp:<6} {target:>8} {r["sent"]:>6} {r["recorded"]:>7} {r["drops"]:>6} '
            f'{r["publish_fps"]:>8.0f} {r["record_fps"]:>8.0f} {r["bytes_per_frame"]:>9.0f} '
            f'{r["blocked"]:>12}',
            flush=True,
        )
    print(
        '\nrec/s: frames in the bag over their receive-time span (end to end: publisher -> DDS -> '
        'recorder -> MCAP file). B/frame: MCAP bytes on disk per frame (224x224 rgb8 = 150,528 B '
        'raw). pub. blocked: publish calls refused by reliable back-pressure (retried, so the '
        'frame was still sent).'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
