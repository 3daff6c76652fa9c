"""Pure parts of ``devbot foxglove``: topic specs and ROS -> Foxglove conversions (no DDS)."""

import json

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped
from graphtest import read_fields
from sensor_msgs.msg import JointState

from devbot.foxglove_bridge import (
    DEFAULT_TOPICS,
    DIAGNOSTICS,
    IMAGE,
    JOINT_STATE,
    JSON_SCHEMAS,
    POINT,
    _parse,
    diagnostics_json,
    image_fields,
    joint_state_json,
    normalize_type,
    parse_topic_spec,
    point_json,
    raw_image,
    resolve_topic,
)
from devbot.image import ImageError, numpy_to_image


def message_field_numbers(descriptor_set: bytes, message: str) -> dict[str, int]:
    """Field name -> number of ``message`` in a serialized google.protobuf.FileDescriptorSet."""
    for file in read_fields(descriptor_set).get(1, []):  # FileDescriptorSet.file
        for msg in read_fields(file).get(4, []):  # FileDescriptorProto.message_type
            desc = read_fields(msg)
            if desc[1][0].decode() == message:  # DescriptorProto.name
                return {
                    read_fields(f)[1][0].decode(): read_fields(f)[3][0] for f in desc.get(2, [])
                }
    raise KeyError(message)


def make_image(pixels, encoding='rgb8', sec=12, nanosec=345, frame_id='camera', pad=0):
    msg = numpy_to_image(pixels, encoding)
    if pad:
        rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
        padded = np.concatenate([rows, np.full((msg.height, pad), 99, np.uint8)], axis=1)
        msg.step += pad
        msg.data = padded.tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    msg.header.frame_id = frame_id
    return msg


# ------------------------------------------------------------------------------ topics


def test_topics_resolve_under_the_namespace_with_known_types():
    assert resolve_topic('camera/image_raw', '/toroidal_dot') == '/toroidal_dot/camera/image_raw'
    assert resolve_topic('camera/image_raw', 'jetbot/') == '/jetbot/camera/image_raw'
    assert resolve_topic('/abs/topic', '/toroidal_dot') == '/abs/topic'
    assert resolve_topic('x', '/') == '/x'
    assert parse_topic_spec('motor_command/executed', '/toroidal_dot') == (
        '/toroidal_dot/motor_command/executed',
        JOINT_STATE,
    )
    assert parse_topic_spec('/jetbot/camera/image_raw', '/toroidal_dot') == (
        '/jetbot/camera/image_raw',
        IMAGE,
    )
    assert parse_topic_spec('world_model/metrics', 'r') == ('/r/world_model/metrics', DIAGNOSTICS)
    assert parse_topic_spec('/cam:sensor_msgs/Image', '/t') == ('/cam', IMAGE)
    assert parse_topic_spec('pos:geometry_msgs/msg/PointStamped', '/t') == ('/t/pos', POINT)
    assert parse_topic_spec('js:JointState', '/t') == ('/t/js', JOINT_STATE)
    assert normalize_type('diagnostic_msgs/DiagnosticArray') == DIAGNOSTICS


@pytest.mark.parametrize(
    'spec, message',
    [
        ('/some/thing', 'type of /some/thing is not known'),
        ('cam:sensor_msgs/CompressedImage', 'unsupported message type'),
        ('cam:', 'unsupported message type'),
        ('bad//name', 'invalid topic name'),
        ('', 'invalid topic name'),
    ],
)
def test_bad_topic_specs_are_explained(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_topic_spec(spec, '/toroidal_dot')


def test_command_line(capsys):
    options = _parse([])
    assert [t for t, _ in options.specs] == ['/toroidal_dot/' + t for t in DEFAULT_TOPICS]
    assert (options.host, options.port) == ('127.0.0.1', 8765)
    options = _parse(['--namespace', '/jetbot', '--port', '0', 'camera/image_raw', '/x:JointState'])
    assert options.specs == [('/jetbot/camera/image_raw', IMAGE), ('/x', JOINT_STATE)]
    for bad in (
        ['--port', '70000'],
        ['/unknown'],
        ['motor_command', '/toroidal_dot/motor_command'],
    ):
        with pytest.raises(SystemExit):
            _parse(bad)
    assert 'given twice' in capsys.readouterr().err


# ------------------------------------------------------------------------------ images


@pytest.mark.parametrize(
    'encoding, shape', [('rgb8', (3, 4, 3)), ('bgr8', (2, 5, 3)), ('mono8', (4, 3))]
)
def test_image_fields_keep_pixels_layout_and_stamp(encoding, shape):
    pixels = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    fields = image_fields(make_image(pixels, encoding, pad=3))  # row padding is dropped
    channels = 1 if len(shape) == 2 else 3
    assert fields == {
        'sec': 12,
        'nsec': 345,
        'frame_id': 'camera',
        'width': shape[1],
        'height': shape[0],
        'encoding': encoding,
        'step': shape[1] * channels,
        'data': pixels.tobytes(),
    }


def test_bad_images_raise_image_error():
    msg = make_image(np.zeros((2, 2, 3), np.uint8))
    msg.encoding = '16UC1'
    with pytest.raises(ImageError, match='unsupported image encoding'):
        image_fields(msg)
    msg = make_image(np.zeros((2, 2, 3), np.uint8))
    msg.data = bytes(5)
    with pytest.raises(ImageError, match='needs 12 bytes'):
        image_fields(msg)


def test_raw_image_encodes_as_the_foxglove_schema_says():
    from foxglove.messages import RawImage

    schema = RawImage.get_schema()
    assert (schema.name, schema.encoding) == ('foxglove.RawImage', 'protobuf')
    numbers = message_field_numbers(bytes(schema.data), 'RawImage')
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    encoded = read_fields(raw_image(image_fields(make_image(pixels, sec=7, nanosec=9))).encode())
    assert encoded[numbers['width']] == [3] and encoded[numbers['height']] == [2]
    assert encoded[numbers['step']] == [9]
    assert encoded[numbers['encoding']] == [b'rgb8'] and encoded[numbers['frame_id']] == [b'camera']
    assert encoded[numbers['data']] == [pixels.tobytes()]
    stamp = read_fields(encoded[numbers['timestamp']][0])
    assert stamp == {1: [7], 2: [9]}  # google.protobuf.Timestamp seconds, nanos


# ------------------------------------------------------------------------------ JSON


def _valid_json(payload) -> dict:
    return json.loads(json.dumps(payload, allow_nan=False))  # strict JSON: no NaN/inf allowed


def test_joint_state_json():
    msg = JointState(
        name=['L0:0', 'L0:1'],
        position=[0.5, float('nan')],
        velocity=[0.0, 0.0],
        effort=[0.0, float('inf')],
    )
    msg.header.stamp.sec, msg.header.stamp.nanosec = 3, 4
    out = _valid_json(joint_state_json(msg))
    assert out == {
        'header': {'stamp': {'sec': 3, 'nsec': 4}, 'frame_id': ''},
        'name': ['L0:0', 'L0:1'],
        'position': [0.5, None],
        'velocity': [0.0, 0.0],
        'effort': [0.0, None],
        'by_name': {'L0:0': 0.5, 'L0:1': None},
    }


def test_diagnostics_json_parses_numbers():
    status = DiagnosticStatus(
        level=DiagnosticStatus.WARN,
        name='world_model',
        message='gate closed',
        hardware_id='cpu',
        values=[
            KeyValue(key='loss', value='0.25'),
            KeyValue(key='gate', value='closed'),
            KeyValue(key='steps', value='12'),
            KeyValue(key='bad', value='nan'),
        ],
    )
    msg = DiagnosticArray(status=[status])
    out = _valid_json(diagnostics_json(msg))
    assert out['status'] == [
        {
            'level': 1,
            'name': 'world_model',
            'message': 'gate closed',
            'hardware_id': 'cpu',
            'values': {'loss': '0.25', 'gate': 'closed', 'steps': '12', 'bad': 'nan'},
            'numbers': {'loss': 0.25, 'steps': 12.0, 'bad': None},
        }
    ]


def test_point_json():
    msg = PointStamped()
    msg.point.x, msg.point.y = 27.0, 5.0
    msg.header.frame_id = 'camera'
    assert _valid_json(point_json(msg))['point'] == {'x': 27.0, 'y': 5.0, 'z': 0.0}


def test_json_schemas_are_object_schemas_for_the_sdk():
    import foxglove

    for type_name, schema in JSON_SCHEMAS.items():
        assert schema['type'] == 'object' and schema['title'].replace('/', '/msg/') == type_name
        channel = foxglove.Channel(
            f'/schema_test/{type_name}', schema=schema, context=foxglove.Context()
        )
        assert channel.message_encoding == 'json' and channel.schema_name() == schema['title']
