import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image, JointState

from devbot.cdr import header_stamp


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
