"""sensor_msgs/Image <-> numpy with cv_bridge's semantics, for the encodings devbot uses.

ROS 2's cv_bridge is not on PyPI, so this is a small converter that behaves like it for
``rgb8``, ``bgr8`` and ``mono8``: it honours ``step`` (row padding), refuses inconsistent
sizes, and converts between colour orders on request. The pure functions work on any object
with the Image fields, so they are unit-tested without DDS.
"""

from __future__ import annotations

import numpy as np

# encoding -> channels (all 8-bit)
ENCODINGS = {'rgb8': 3, 'bgr8': 3, 'mono8': 1}


class ImageError(ValueError):
    """An image message or array that cannot be converted."""


def image_to_numpy(msg, desired_encoding: str = 'passthrough') -> np.ndarray:
    """Decode an Image message to a uint8 array.

    Args:
        msg: a ``sensor_msgs/Image`` (or anything with height, width, encoding, step, data,
            is_bigendian).
        desired_encoding: ``passthrough`` keeps the message's layout; ``rgb8``/``bgr8`` convert
            colour order (mono8 is expanded to 3 channels); ``mono8`` converts to grey.

    Returns:
        [H, W, 3] for rgb8/bgr8, [H, W] for mono8. The array does not share memory with msg.

    Raises:
        ImageError: unsupported encoding, step smaller than a row, or data size != step*height.
    """
    enc = msg.encoding
    if enc not in ENCODINGS:
        raise ImageError(f'unsupported image encoding {enc!r}; supported: {sorted(ENCODINGS)}')
    channels = ENCODINGS[enc]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels
    if height <= 0 or width <= 0:
        raise ImageError(f'image has no pixels: {width}x{height}')
    if step < row_bytes:
        raise ImageError(
            f'step {step} is smaller than a row of {width} {enc} pixels ({row_bytes} bytes)'
        )
    data = msg.data
    size = len(data)
    if size != step * height:
        raise ImageError(
            f'{enc} image {width}x{height} with step {step} needs {step * height} bytes, got {size}'
        )
    buf = np.frombuffer(data, dtype=np.uint8).reshape(height, step)[:, :row_bytes]
    img = buf.reshape(height, width, channels) if channels > 1 else buf.reshape(height, width)
    return convert_encoding(img, enc, desired_encoding)


def convert_encoding(img: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Convert a uint8 array between rgb8/bgr8/mono8 (``passthrough`` returns a copy)."""
    if dst == 'passthrough' or dst == src:
        return np.array(img, dtype=np.uint8, copy=True)
    if dst not in ENCODINGS:
        raise ImageError(
            f'unsupported target encoding {dst!r}; supported: {sorted(ENCODINGS)} or passthrough'
        )
    if src == 'mono8':
        return np.repeat(img[:, :, None], 3, axis=2)  # grey -> 3 equal channels
    rgb = img if src == 'rgb8' else img[:, :, ::-1]
    if dst == 'rgb8':
        return np.ascontiguousarray(rgb)
    if dst == 'bgr8':
        return np.ascontiguousarray(rgb[:, :, ::-1])
    # mono8, ITU-R BT.601 luma as OpenCV computes it
    grey = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def numpy_to_image(img: np.ndarray, encoding: str = 'rgb8', msg=None):
    """Fill (or create) a ``sensor_msgs/Image`` from a uint8 array, rows packed (step = width*ch).

    Args:
        img: [H, W, 3] for rgb8/bgr8 or [H, W] for mono8, dtype uint8.
        encoding: the encoding the array is in.
        msg: an existing message to fill (keeps its header); a new one if None.

    Raises:
        ImageError: wrong dtype, shape or encoding.
    """
    if encoding not in ENCODINGS:
        raise ImageError(f'unsupported image encoding {encoding!r}; supported: {sorted(ENCODINGS)}')
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise ImageError(
            f'image must be a uint8 numpy array, got {getattr(img, "dtype", type(img).__name__)}'
        )
    channels = ENCODINGS[encoding]
    expected_ndim = 3 if channels > 1 else 2
    if img.ndim != expected_ndim or (channels > 1 and img.shape[2] != channels):
        raise ImageError(
            f'{encoding} needs shape {"[H, W, 3]" if channels > 1 else "[H, W]"}, '
            f'got {list(img.shape)}'
        )
    if msg is None:
        from sensor_msgs.msg import Image

        msg = Image()
    msg.height, msg.width = int(img.shape[0]), int(img.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels
    msg.data = np.ascontiguousarray(img).tobytes()
    return msg


def resize_rgb(img: np.ndarray, size: int) -> np.ndarray:
    """Resize an [H, W, 3] uint8 image to [size, size, 3] (area averaging when shrinking)."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    import cv2

    shrinking = img.shape[0] > size or img.shape[1] > size
    return cv2.resize(
        img, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )
