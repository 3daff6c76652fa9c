"""``devbot view``: watch ``sensor_msgs/Image`` topics, in a window or saved to disk.

With a display (``DISPLAY``/``WAYLAND_DISPLAY`` set and an OpenCV build with GUI support) the
latest frame of every topic is shown in one window as a contact sheet (press q or Esc to quit).
Headless (the usual case here: the venv has opencv-python-headless) it writes, every
``--interval`` seconds, the latest frame of each topic as ``<out>/<topic>.png`` plus
``<out>/contact_sheet.png`` (all topics in a grid, captioned with topic name and stamp).

Subscriptions are best-effort keep-last-1 (:func:`devbot.topics.viewer_qos`), so a slow viewer
never slows the learning loop; spinning is ``spin_once`` on the main thread.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

#: one-line help of this ``devbot`` subcommand (``devbot --help`` lists it)
HELP = 'show image topics in a window (or save them headless)'

EXAMPLES = """\
examples:
  devbot view /toroidal_dot/camera/image_raw
  devbot view /toroidal_dot/camera/image_raw /toroidal_dot/world_model/visualization --interval 2
  devbot view /jetbot/camera/image_raw --duration 30 --out saved/reports/jetbot_view

Headless, the latest frames are written to --out (default saved/reports/view/) as
<topic>.png and contact_sheet.png every --interval seconds; Ctrl-C stops (frames are saved
once more on the way out).
"""

DEFAULT_OUT = os.path.join('saved', 'reports', 'view')
CAPTION_HEIGHT = 36
_BACKGROUND = (40, 40, 40)


# ---------------------------------------------------------------------------------------------
# pure parts


def topic_file_name(topic: str) -> str:
    """``/toroidal_dot/camera/image_raw`` -> ``toroidal_dot__camera__image_raw.png``."""
    name = '__'.join(part for part in topic.split('/') if part)
    name = ''.join(c if c.isalnum() or c in '_-.' else '_' for c in name)
    return (name or 'root') + '.png'


def format_stamp(sec: int, nanosec: int) -> str:
    return f'{int(sec)}.{int(nanosec):09d}'


def _fit(img: np.ndarray, size: int) -> np.ndarray:
    """Letterbox a BGR (or grey) uint8 image into a [size, size, 3] tile, aspect kept."""
    import cv2

    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    h, w = img.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
    resized = cv2.resize(img, (nw, nh), interpolation=interpolation) if (nh, nw) != (h, w) else img
    tile = np.zeros((size, size, 3), np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    tile[top : top + nh, left : left + nw] = resized
    return tile


def contact_sheet(
    entries: list[tuple[str, np.ndarray | None, str]], tile: int = 224, columns: int | None = None
) -> np.ndarray:
    """A grid of captioned tiles, one per ``(title, bgr_image_or_None, subtitle)``.

    Each cell is a caption bar (title on the first line, subtitle such as the stamp and frame
    count on the second) above the image letterboxed into ``tile`` x ``tile``; a missing image
    shows "no frame yet". Returns a BGR uint8 array.
    """
    import cv2

    if not entries:
        raise ValueError('contact_sheet needs at least one entry')
    columns = columns or math.ceil(math.sqrt(len(entries)))
    rows = math.ceil(len(entries) / columns)
    cell_h, cell_w = tile + CAPTION_HEIGHT, tile
    sheet = np.full((rows * cell_h, columns * cell_w, 3), _BACKGROUND, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for index, (title, image, subtitle) in enumerate(entries):
        top, left = (index // columns) * cell_h, (index % columns) * cell_w
        cell = sheet[top : top + cell_h, left : left + cell_w]
        cell[:CAPTION_HEIGHT] = 0
        cv2.putText(
            cell, _clip_text(title, tile), (4, 14), font, 0.4, (255, 255, 255), 1, cv2.LINE_AA
        )
        cv2.putText(
            cell, _clip_text(subtitle, tile), (4, 30), font, 0.35, (180, 180, 180), 1, cv2.LINE_AA
        )
        if image is None:
            cell[CAPTION_HEIGHT:] = _BACKGROUND
            cv2.putText(
                cell,
                'no frame yet',
                (tile // 2 - 45, CAPTION_HEIGHT + tile // 2),
                font,
                0.45,
                (200, 200, 200),
                1,
                cv2.LINE_AA,
            )
        else:
            cell[CAPTION_HEIGHT:] = _fit(image, tile)
        # a thin separator line between cells
        cell[:, -1] = _BACKGROUND
        cell[-1, :] = _BACKGROUND
    return sheet


def _clip_text(text: str, width: int) -> str:
    limit = max(4, width // 7)
    return text if len(text) <= limit else '...' + text[-(limit - 3) :]


def gui_available() -> tuple[bool, str]:
    """Whether an OpenCV window can be opened here, and why not."""
    if not (os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')):
        return False, 'no display (DISPLAY/WAYLAND_DISPLAY not set)'
    import cv2

    try:
        cv2.namedWindow('devbot probe', cv2.WINDOW_NORMAL)
        cv2.destroyWindow('devbot probe')
    except cv2.error:
        return False, 'this OpenCV build has no GUI support (opencv-python-headless)'
    return True, ''


# ---------------------------------------------------------------------------------------------
# the ROS side


class _TopicState:
    def __init__(self, topic: str):
        self.topic = topic
        self.msg = None
        self.count = 0
        self.errors = 0
        self.last_error = ''


class ImageViewer:
    """Subscribes to image topics and keeps the latest message and a frame count per topic."""

    def __init__(self, node, topics: list[str]):
        from sensor_msgs.msg import Image

        from devbot.topics import viewer_qos

        self.node = node
        self.states = {t: _TopicState(t) for t in topics}
        for topic in topics:
            node.create_subscription(Image, topic, self._callback(self.states[topic]), viewer_qos())

    @staticmethod
    def _callback(state: _TopicState):
        def on_image(msg) -> None:
            state.msg = msg
            state.count += 1

        return on_image

    def frames(self) -> list[tuple[str, np.ndarray | None, str]]:
        """(topic, BGR frame or None, caption) for each topic, converted now."""
        from devbot.image import ImageError, image_to_numpy

        result = []
        for state in self.states.values():
            image, caption = None, f'{state.count} frames'
            if state.msg is not None:
                stamp = state.msg.header.stamp
                caption = f'stamp {format_stamp(stamp.sec, stamp.nanosec)}  #{state.count}'
                try:
                    image = image_to_numpy(state.msg, 'bgr8')
                except ImageError as exc:
                    state.errors += 1
                    state.last_error = str(exc)
                    caption = f'bad image: {exc}'
            result.append((state.topic, image, caption))
        return result

    def progress(self, elapsed: float) -> str:
        parts = []
        for state in self.states.values():
            rate = state.count / elapsed if elapsed > 0 else 0.0
            parts.append(f'{state.topic}: {state.count} ({rate:.1f}/s)')
        return 'frames  ' + '  '.join(parts)


def save_frames(frames: list[tuple[str, np.ndarray | None, str]], out_dir: str) -> list[str]:
    """Write each available frame as ``<topic>.png`` and all of them as ``contact_sheet.png``."""
    import cv2

    os.makedirs(out_dir, exist_ok=True)
    written = []
    for topic, image, _ in frames:
        if image is not None:
            path = os.path.join(out_dir, topic_file_name(topic))
            _write_png(cv2, path, image)
            written.append(path)
    path = os.path.join(out_dir, 'contact_sheet.png')
    _write_png(cv2, path, contact_sheet(frames))
    written.append(path)
    return written


def _write_png(cv2, path: str, image: np.ndarray) -> None:
    """Atomic: a reader never sees a half-written PNG."""
    tmp = path + '.tmp.png'
    if not cv2.imwrite(tmp, image):
        raise OSError(f'cannot write {tmp}')
    os.replace(tmp, path)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='devbot view',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Show sensor_msgs/Image topics in a window, or save them as PNG when headless.',
        epilog=EXAMPLES,
    )
    parser.add_argument(
        'topics', nargs='+', metavar='TOPIC', help='image topics (sensor_msgs/Image)'
    )
    parser.add_argument(
        '--out',
        default=None,
        help=f'folder for the PNGs (default {DEFAULT_OUT}/ when headless; with a window, '
        'frames are saved only when --out is given)',
    )
    parser.add_argument(
        '--interval', type=float, default=1.0, help='seconds between saves (default 1)'
    )
    parser.add_argument(
        '--duration',
        type=float,
        default=0.0,
        help='stop after this many seconds (default: run until Ctrl-C)',
    )
    parser.add_argument(
        '--no-window', action='store_true', help='never open a window, even with a display'
    )
    parser.add_argument(
        '--tile', type=int, default=224, help='contact sheet tile size in pixels (default 224)'
    )
    options = parser.parse_args(argv)
    if options.interval <= 0:
        parser.error('--interval must be positive')
    if options.tile < 32:
        parser.error('--tile must be at least 32')
    return options


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        options = _parse(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    window = False
    if not options.no_window:
        window, why = gui_available()
        if not window:
            print(
                f'[devbot.view] no window: {why}; saving frames to '
                f'{options.out or DEFAULT_OUT}/ instead',
                flush=True,
            )
    out_dir = options.out or (None if window else DEFAULT_OUT)

    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=None)
    node = None
    status = 0
    try:
        node = rclpy.create_node('devbot_viewer')
        viewer = ImageViewer(node, options.topics)
        status = _run(viewer, options, window, out_dir)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return status


def _run(
    viewer: ImageViewer, options: argparse.Namespace, window: bool, out_dir: str | None
) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    executor.add_node(viewer.node)
    tty = sys.stdout.isatty()
    start = time.monotonic()
    next_save = start + options.interval
    next_progress = start + 1.0
    try:
        while rclpy.ok():
            now = time.monotonic()
            if options.duration and now - start >= options.duration:
                break
            executor.spin_once(timeout_sec=0.02 if window else 0.05)
            now = time.monotonic()
            if window:
                import cv2

                cv2.imshow('devbot view', contact_sheet(viewer.frames(), options.tile))
                if cv2.waitKey(1) & 0xFF in (ord('q'), 27):
                    break
            if out_dir and now >= next_save:
                save_frames(viewer.frames(), out_dir)
                next_save = now + options.interval
            if now >= next_progress:
                line = '[devbot.view] ' + viewer.progress(now - start)
                print(('\r' + line) if tty else line, end='' if tty else '\n', flush=True)
                next_progress = now + 1.0
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.remove_node(viewer.node)
        executor.shutdown()
        if tty:
            print()
    if out_dir:
        written = save_frames(viewer.frames(), out_dir)
        print(f'[devbot.view] {viewer.progress(time.monotonic() - start)}', flush=True)
        print(
            f'[devbot.view] saved {len(written)} file(s) in {out_dir}/'
            + (
                ''
                if any(s.count for s in viewer.states.values())
                else ' (no frame received: is the topic published, with the same ROS_DOMAIN_ID?)'
            ),
            flush=True,
        )
    if window:
        import cv2

        cv2.destroyAllWindows()
    bad = [s for s in viewer.states.values() if s.errors]
    for state in bad:
        print(
            f'[devbot.view] {state.topic}: {state.errors} frame(s) could not be converted: '
            f'{state.last_error}',
            file=sys.stderr,
        )
    return 0
