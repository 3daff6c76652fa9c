import numpy as np
import pytest
from sensor_msgs.msg import Image

from devbot.image import ImageError, image_to_numpy, numpy_to_image, resize_rgb


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def test_rgb_round_trip(rgb):
    msg = numpy_to_image(rgb, 'rgb8')
    assert (msg.height, msg.width, msg.step, msg.encoding) == (5, 7, 21, 'rgb8')
    out = image_to_numpy(msg)
    assert out.dtype == np.uint8 and np.array_equal(out, rgb)
    out[0, 0, 0] ^= 1  # the result does not alias the message
    assert np.array_equal(image_to_numpy(msg), rgb)


def test_bgr_and_rgb_conversions(rgb):
    bgr_msg = numpy_to_image(rgb[:, :, ::-1].copy(), 'bgr8')
    assert np.array_equal(image_to_numpy(bgr_msg, 'rgb8'), rgb)
    assert np.array_equal(image_to_numpy(numpy_to_image(rgb, 'rgb8'), 'bgr8'), rgb[:, :, ::-1])


def test_mono_round_trip_and_conversion(rgb):
    grey = rgb[:, :, 0].copy()
    msg = numpy_to_image(grey, 'mono8')
    assert msg.step == 7 and np.array_equal(image_to_numpy(msg), grey)
    assert np.array_equal(image_to_numpy(msg, 'rgb8'), np.repeat(grey[:, :, None], 3, axis=2))
    white = numpy_to_image(np.full((2, 2, 3), 255, np.uint8), 'rgb8')
    assert (image_to_numpy(white, 'mono8') == 255).all()


def test_step_with_row_padding_is_honoured(rgb):
    padded = np.zeros((5, 24), np.uint8)
    padded[:, :21] = rgb.reshape(5, 21)
    padded[:, 21:] = 99  # padding bytes must be ignored
    msg = Image(height=5, width=7, encoding='rgb8', step=24, data=padded.tobytes())
    assert np.array_equal(image_to_numpy(msg), rgb)


@pytest.mark.parametrize(
    'field, value, match',
    [
        ('encoding', '16UC1', 'unsupported'),
        ('step', 20, 'smaller than a row'),
        ('height', 6, 'needs'),
        ('width', 0, 'no pixels'),
    ],
)
def test_inconsistent_messages_are_rejected(rgb, field, value, match):
    msg = numpy_to_image(rgb, 'rgb8')
    setattr(msg, field, value)
    with pytest.raises(ImageError, match=match):
        image_to_numpy(msg)


def test_truncated_data_is_rejected(rgb):
    msg = numpy_to_image(rgb, 'rgb8')
    msg.data = bytes(msg.data)[:-3]
    with pytest.raises(ImageError, match='needs 105 bytes, got 102'):
        image_to_numpy(msg)


@pytest.mark.parametrize(
    'array, encoding',
    [
        (np.zeros((4, 4, 3), np.float32), 'rgb8'),
        (np.zeros((4, 4), np.uint8), 'rgb8'),
        (np.zeros((4, 4, 4), np.uint8), 'bgr8'),
        (np.zeros((4, 4, 3), np.uint8), 'mono8'),
        (np.zeros((4, 4, 3), np.uint8), 'rgba8'),
    ],
)
def test_bad_arrays_are_rejected(array, encoding):
    with pytest.raises(ImageError):
        numpy_to_image(array, encoding)


def test_resize():
    img = np.zeros((480, 640, 3), np.uint8)
    img[:240] = 200
    out = resize_rgb(img, 224)
    assert out.shape == (224, 224, 3) and out[0, 0, 0] == 200 and out[-1, 0, 0] == 0
    same = np.zeros((224, 224, 3), np.uint8)
    assert resize_rgb(same, 224) is same
