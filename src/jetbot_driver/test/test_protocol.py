"""The wire format: base64 JPEG frames and motor value checks."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest

from jetbot_driver import protocol
from jetbot_driver.protocol import FrameError


def test_frame_round_trip_keeps_size_and_colour_order():
    bgr = np.zeros((224, 224, 3), np.uint8)
    bgr[:, :112] = (255, 0, 0)  # blue on the left (BGR)
    bgr[:, 112:] = (0, 0, 255)  # red on the right
    text = protocol.encode_frame(bgr)
    assert isinstance(text, str) and len(text) < 30_000
    back = protocol.decode_frame(text)
    assert back.shape == (224, 224, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(int) - bgr.astype(int)).mean() < 3
    assert back[100, 20, 0] > 200 and back[100, 200, 2] > 200


@pytest.mark.parametrize(
    'bad', ['', None, 'not base64 at all!', base64.b64encode(b'no jpeg').decode(), 42]
)
def test_undecodable_frames_raise_frame_error(bad):
    with pytest.raises(FrameError):
        protocol.decode_frame(bad)


def test_encode_refuses_non_images():
    with pytest.raises(FrameError):
        protocol.encode_frame(np.zeros((10, 10), np.uint8))
    with pytest.raises(FrameError):
        protocol.encode_frame(np.zeros((10, 10, 3), np.float32))


def test_clamp_motor():
    assert protocol.clamp_motor(0.5) == 0.5
    assert protocol.clamp_motor(3) == 1.0
    assert protocol.clamp_motor(-7.5) == -1.0
    assert protocol.clamp_motor(0.9, limit=0.3) == 0.3
    assert protocol.clamp_motor(np.float32(0.25)) == 0.25
    for bad in (math.nan, math.inf, -math.inf, '0.5', None, True, [0.1]):
        with pytest.raises(ValueError):
            protocol.clamp_motor(bad)


def test_protocol_constants_match_the_jetbot_contract():
    assert protocol.DEFAULT_PORT == 18861
    assert protocol.SYNC_REQUEST_TIMEOUT_S == 30
    assert protocol.client_config()['sync_request_timeout'] == 30
    assert (protocol.GET_CAMERA_FRAME, protocol.SET_MOTORS) == ('get_camera_frame', 'set_motors')
    assert protocol.DEFAULT_HOST == '127.0.0.1'
