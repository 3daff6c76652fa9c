"""config/devbot.rviz: its displays show devbot topics, with a QoS our publishers match.

The file is checked as rviz2 reads it (YAML: each display's class and ``Topic`` property), and
then against the real graph: the toroidal dot world model runs, and a subscription with exactly
the QoS each display asks for receives its messages (an incompatible QoS receives nothing).
"""

from __future__ import annotations

import yaml
from graphtest import REPO
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from devbot import topics
from world_model_node.visualization import panel_layout

RVIZ = REPO / 'config' / 'devbot.rviz'
NS = '/toroidal_dot/'
LAUNCH = 'launch/toroidal_dot_world_model.launch.yaml'

# rviz2's names of the QoS choices in a topic property
RELIABILITY = {'Reliable': ReliabilityPolicy.RELIABLE, 'Best Effort': ReliabilityPolicy.BEST_EFFORT}
DURABILITY = {
    'Volatile': DurabilityPolicy.VOLATILE,
    'Transient Local': DurabilityPolicy.TRANSIENT_LOCAL,
}
HISTORY = {'Keep Last': HistoryPolicy.KEEP_LAST, 'Keep All': HistoryPolicy.KEEP_ALL}
# the devbot topics that carry sensor_msgs/Image (what an Image display can show)
IMAGE_TOPICS = {topics.CAMERA_IMAGE, topics.WM_VISUALIZATION}


def displays(tree: list[dict]) -> list[dict]:
    """Every display of a Displays list, groups opened."""
    found = []
    for display in tree:
        found.append(display)
        found.extend(displays(display.get('Displays', [])))
    return found


def topic_displays() -> list[dict]:
    config = yaml.safe_load(RVIZ.read_text())
    return [d for d in displays(config['Visualization Manager']['Displays']) if 'Topic' in d]


def requested_qos(display: dict) -> QoSProfile:
    topic = display['Topic']
    return QoSProfile(
        history=HISTORY[topic['History Policy']],
        depth=int(topic['Depth']),
        reliability=RELIABILITY[topic['Reliability Policy']],
        durability=DURABILITY[topic['Durability Policy']],
    )


def test_every_display_shows_a_devbot_topic_of_the_dot_robot():
    known = {v for k, v in vars(topics).items() if k.isupper() and isinstance(v, str)}
    shown = topic_displays()
    assert {d['Topic']['Value'] for d in shown} == {NS + t for t in IMAGE_TOPICS}
    for display in shown:
        name = display['Topic']['Value']
        assert name.startswith(NS) and name[len(NS) :] in known, (display['Name'], name)
        assert display['Class'] == 'rviz_default_plugins/Image', display['Class']
        assert name[len(NS) :] in IMAGE_TOPICS, f'{display["Name"]}: {name} is not an Image'
        assert display['Enabled'] is True
        requested_qos(display)  # every QoS field is one rviz2 knows


def test_each_display_receives_from_the_running_world_model(launch, probe, tmp_path):
    shown = topic_displays()
    received = {}
    for display in shown:
        name = display['Topic']['Value']
        received[name] = []
        probe.node.create_subscription(Image, name, received[name].append, requested_qos(display))
    run = launch(
        LAUNCH,
        'preset:=tiny',
        'duration:=0.0',
        f'checkpoint_dir:={tmp_path / "ckpt"}',
        f'report_dir:={tmp_path / "report"}',
        'num_threads:=1',
        'seed:=2',
    )
    got_all = probe.spin_until(
        lambda: all(len(msgs) >= 2 for msgs in received.values()) or run.proc.poll() is not None,
        timeout=90,
    )
    assert got_all and run.proc.poll() is None, (
        {k: len(v) for k, v in received.items()},
        run.output,
    )
    for display in shown:
        name = display['Topic']['Value']
        offered = probe.node.get_publishers_info_by_topic(name)
        assert offered, name
        reliability = RELIABILITY[display['Topic']['Reliability Policy']]
        durability = DURABILITY[display['Topic']['Durability Policy']]
        for info in offered:
            # what a subscription with the display's QoS needs from a publisher
            if reliability == ReliabilityPolicy.RELIABLE:
                assert info.qos_profile.reliability == ReliabilityPolicy.RELIABLE, info
            if durability == DurabilityPolicy.TRANSIENT_LOCAL:
                assert info.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL, info
    frame = received[NS + topics.CAMERA_IMAGE][-1]
    assert (frame.width, frame.height, frame.encoding) == (224, 224, 'rgb8')
    panel = received[NS + topics.WM_VISUALIZATION][-1]
    # the live panel of the tiny model: the frame, its reconstruction and the candidates of 1, 2
    # or 3 levels (2 actions: 2, 6 or 22 candidates)
    sizes = {(lay.width, lay.height) for lay in (panel_layout(32, n) for n in (2, 6, 22))}
    assert (panel.width, panel.height) in sizes and panel.encoding == 'rgb8'
