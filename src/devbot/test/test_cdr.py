import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PointStamped
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image, JointState

from devbot.action_space import ActionSpace
from devbot.cdr import action_cdr, header_stamp, image_cdr, point_cdr
from devbot.image import image_to_numpy
from devbot.messages import joint_state_to_action


@pytest.mark.parametrize('msg', [Image(), JointState()])
def test_header_stamp_matches_deserialized_value(msg):
    msg.header.stamp = Time(sec=1795632755, nanosec=894494687)
    msg.header.frame_id = 'camera'
    assert header_stamp(serialize_message(msg)) == (1795632755, 894494687)


def test_big_endian_and_bad_input():
    assert header_stamp(b'\x00\x00\x00\x00' + (7).to_bytes(4, 'big') + (9).to_bytes(4, 'big')) == (
        7,
        9,
    )
    with pytest.raises(ValueError, match='at least 12'):
        header_stamp(b'\x00\x01\x00\x00')
    with pytest.raises(ValueError, match='encapsulation'):
        header_stamp(b'\x00\x07' + bytes(10))


def test_written_messages_read_back_with_rclpy():
    """The session messages written without ROS deserialize with rclpy (an independent CDR
    implementation) to the same values, and their stamps read straight from the bytes."""
    stamp = 1_767_225_600_123_456_789
    frame = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data = image_cdr(frame, stamp)
    img = deserialize_message(data, Image)
    assert (img.height, img.width, img.encoding, img.header.frame_id) == (5, 7, 'rgb8', 'camera')
    assert np.array_equal(image_to_numpy(img), frame)
    assert header_stamp(data) == divmod(stamp, 1_000_000_000)

    space = ActionSpace.from_dict(
        {
            'channels': [
                {'name': 'left', 'min': -1.0, 'max': 1.0},
                {'name': 'right', 'min': -1.0, 'max': 1.0},
            ],
            'actions': [{'left': 0.0, 'right': 0.0}, {'left': -0.5, 'right': 0.25}],
        },
        robot_type='two_wheels',
    )
    msg = deserialize_message(action_cdr(space, 1, stamp), JointState)
    assert list(msg.name) == ['left', 'right'] and list(msg.position) == [-0.5, 0.25]
    assert list(msg.velocity) == [0.0, 0.0] and list(msg.effort) == [0.0, 0.0]
    assert joint_state_to_action(space, msg) == 1

    point = deserialize_message(point_cdr(3.0, 4.5, stamp), PointStamped)
    assert (point.point.x, point.point.y, point.point.z) == (3.0, 4.5, 0.0)
    assert point.header.frame_id == 'image' and point.header.stamp.nanosec == 123_456_789
    with pytest.raises(ValueError, match='uint8'):
        image_cdr(frame.astype(np.float32), stamp)
