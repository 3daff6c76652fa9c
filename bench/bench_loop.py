"""Closed-loop speed of the dot robot + selector, and of the environment core alone.

Prints three numbers (steps per second):
  env core          ToroidalDotEnv.step in-process (render included)
  bare lockstep     two minimal rclpy processes: JointState action -> 224x224 rgb8 Image reply,
                    reliable QoS; the floor set by rclpy + Fast DDS on this machine
  sim + selector    toroidal_sim_node and selector_node as separate processes over DDS,
                    exactly as the runner launch file starts them

Usage:
    .venv/bin/python bench/bench_loop.py [--steps 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# A minimal lockstep pair: the "robot" answers every action with a 224x224 rgb8 frame.
BARE_ROBOT = textwrap.dedent('''
    import numpy as np, rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, JointState
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    rclpy.init()
    node = Node('bare_robot')
    img = Image(height=224, width=224, encoding='rgb8', step=672)
    data = np.zeros((224, 224, 3), np.uint8).tobytes()
    pub = node.create_publisher(Image, 'camera/image_raw', qos)
    def on_action(msg):
        img.data = data
        pub.publish(img)
    node.create_subscription(JointState, 'motor_command', on_action, qos)
    try:
        rclpy.spin(node)
    except BaseException:
        pass
''')
BARE_SELECTOR = textwrap.dedent('''
    import sys, time, rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, JointState
    steps = int(sys.argv[1])
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    rclpy.init()
    node = Node('bare_selector')
    pub = node.create_publisher(JointState, 'motor_command', qos)
    cmd = JointState(name=['action'], position=[1.0], velocity=[0.0], effort=[0.0])
    count = [0, None]
    def on_frame(msg):
        count[0] += 1
        if count[0] == 1:
            count[1] = time.perf_counter()
        pub.publish(cmd)
    node.create_subscription(Image, 'camera/image_raw', on_frame, qos)
    while pub.get_subscription_count() == 0 or node.count_publishers('camera/image_raw') == 0:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)
    pub.publish(cmd)
    while count[0] <= steps:
        rclpy.spin_once(node, timeout_sec=1.0)
    print((count[0] - 1) / (time.perf_counter() - count[1]))
''')


def ros_env() -> dict[str, str]:
    env = dict(os.environ)
    env['ROS_DOMAIN_ID'] = str(random.randint(120, 200))
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    return env


def bench_env_core(steps: int) -> float:
    from toroidal_sim.env import ToroidalDotConfig, ToroidalDotEnv

    env = ToroidalDotEnv(ToroidalDotConfig(seed=0))
    start = time.perf_counter()
    for i in range(steps):
        env.step(i & 1)
    return steps / (time.perf_counter() - start)


def bench_bare(steps: int) -> float:
    env = ros_env()
    robot = subprocess.Popen([sys.executable, '-c', BARE_ROBOT], env=env)
    try:
        out = subprocess.run(
            [sys.executable, '-c', BARE_SELECTOR, str(steps)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return float(out.stdout.strip().splitlines()[-1])
    finally:
        robot.terminate()
        robot.wait(10)


def bench_nodes(steps: int) -> float:
    env = ros_env()
    config = REPO / 'config' / 'toroidal_dot.yaml'
    with tempfile.TemporaryDirectory() as report:
        sim = subprocess.Popen(
            [
                str(BIN / 'toroidal_sim_node'),
                '--ros-args',
                '-p',
                f'robot_config:={config}',
                '-p',
                'seed:=0',
                '--log-level',
                'warn',
            ],
            env=env,
        )
        try:
            # warm-up steps are excluded: the stats below use the selector's own interval timing
            subprocess.run(
                [
                    str(BIN / 'selector_node'),
                    '--ros-args',
                    '-p',
                    f'robot_config:={config}',
                    '-p',
                    'sequence:=ALTERNATE',
                    '-p',
                    f'max_steps:={steps}',
                    '-p',
                    f'report_dir:={report}',
                    '--log-level',
                    'warn',
                ],
                env=env,
                check=True,
                timeout=300,
                stdout=subprocess.DEVNULL,
            )
            summary = json.loads((Path(report) / 'runner_stats.json').read_text())
        finally:
            sim.terminate()
            sim.wait(10)
    return 1.0 / summary['interval_s']['median'], summary['steps_per_s']


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--steps', type=int, default=5000, help='steps per closed-loop run')
    parser.add_argument(
        '--repeats', type=int, default=3, help='runs per measurement (best and all shown)'
    )
    args = parser.parse_args()
    print(f'env core:        {bench_env_core(20000):10.0f} steps/s')
    bare = [bench_bare(args.steps) for _ in range(args.repeats)]
    print(
        f'bare lockstep:   {max(bare):10.0f} steps/s   runs: {", ".join(f"{b:.0f}" for b in bare)}'
    )
    nodes = [bench_nodes(args.steps) for _ in range(args.repeats)]
    best = max(n[1] for n in nodes)
    print(
        f'sim + selector:  {best:10.0f} steps/s   runs (mean rate / 1/median interval): '
        + ', '.join(f'{n[1]:.0f}/{n[0]:.0f}' for n in nodes)
    )
    print(
        f'sim + selector keeps {100 * best / max(bare):.0f}% of the bare lockstep rate '
        '(target >= 1000 steps/s)'
    )


if __name__ == '__main__':
    main()
