"""Live camera feed of a JetBot over RPyC, without ROS: ``devbot jetbot-feed --ip ADDRESS``.

With a display (``DISPLAY``/``WAYLAND_DISPLAY``) and an OpenCV build with GUI support, frames
are shown in a window (``q`` or Esc quits). Headless, frames are saved as PNG files into a
folder (``--out``, every ``--save-every``-th frame) and the frame rate is printed. ``--duration``
ends the feed after that many seconds (0 = until Ctrl-C or ``q``). The feed never moves the
motors. Exit status: 0, or 1 when the JetBot cannot be reached or the connection is lost.

Examples:
    devbot jetbot-feed --ip 192.168.1.42
    devbot jetbot-feed --ip 127.0.0.1 --port 18861 --duration 10 --out saved/reports/jetbot_feed
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from devbot.viewer import gui_available
from jetbot_driver import protocol
from jetbot_driver.client import ConnectionLost, JetBotClient
from jetbot_driver.protocol import FrameError

#: one-line help of this ``devbot`` subcommand (``devbot --help`` lists it)
HELP = 'live camera feed of a JetBot over RPyC'

WINDOW = 'devbot jetbot-feed'


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='devbot jetbot-feed',
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('Examples:')[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument('--ip', required=True, help='address of the JetBot RPyC service')
    parser.add_argument(
        '--port', type=int, default=protocol.DEFAULT_PORT, help='its TCP port (default 18861)'
    )
    parser.add_argument(
        '--duration', type=float, default=0.0, help='stop after this many seconds (0 = no limit)'
    )
    parser.add_argument(
        '--rate',
        type=float,
        default=0.0,
        help='at most this many frames/s (0 = as fast as possible)',
    )
    parser.add_argument(
        '--out', default='saved/reports/jetbot_feed', help='headless: folder for the PNG frames'
    )
    parser.add_argument(
        '--save-every', type=int, default=1, help='headless: save every N-th frame (0 = none)'
    )
    parser.add_argument(
        '--size', type=int, default=protocol.FRAME_SIZE, help='frame size shown/saved (default 224)'
    )
    parser.add_argument(
        '--headless', action='store_true', help='save frames even when a window could open'
    )
    parser.add_argument(
        '--connect-timeout', type=float, default=10.0, help='seconds to keep trying to connect'
    )
    parser.add_argument('--ssl-keyfile', default='', help='TLS client key')
    parser.add_argument('--ssl-certfile', default='', help='TLS client certificate')
    parser.add_argument(
        '--ssl-ca-certs', default='', help='TLS: certificate the robot must present'
    )
    options = parser.parse_args(argv)
    if (
        options.duration < 0
        or options.rate < 0
        or options.save_every < 0
        or not 16 <= options.size <= 2048
    ):
        parser.error('--duration, --rate, --save-every must be >= 0 and --size in 16..2048')
    return options


def main(argv: list[str] | None = None) -> int:
    options = _parse(list(sys.argv[1:] if argv is None else argv))
    import cv2

    window, why = (False, '--headless') if options.headless else gui_available()
    out_dir = None
    if not window:
        out_dir = options.out
        os.makedirs(out_dir, exist_ok=True)
        print(f'jetbot-feed: headless ({why}): saving frames to {out_dir}/', flush=True)
    try:
        client = JetBotClient.connect(
            options.ip,
            options.port,
            image_size=options.size,
            connect_timeout=options.connect_timeout,
            ssl_keyfile=options.ssl_keyfile,
            ssl_certfile=options.ssl_certfile,
            ssl_ca_certs=options.ssl_ca_certs,
        )
    except ConnectionLost as exc:
        print(f'jetbot-feed: {exc}', file=sys.stderr)
        return 1
    print(
        f'jetbot-feed: connected to {options.ip}:{options.port}' + (' (q quits)' if window else ''),
        flush=True,
    )
    start = time.monotonic()
    next_report = start + 2.0
    frames = saved = failed = 0
    status = 0
    try:
        while not options.duration or time.monotonic() - start < options.duration:
            t0 = time.monotonic()
            try:
                rgb = client.get_frame()
            except FrameError as exc:
                rgb = None
                print(f'jetbot-feed: bad frame: {exc}', file=sys.stderr)
            if rgb is None:
                failed += 1
            else:
                frames += 1
                bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
                if window:
                    cv2.imshow(WINDOW, bgr)
                    if cv2.waitKey(1) & 0xFF in (ord('q'), 27):
                        break
                elif options.save_every and (frames - 1) % options.save_every == 0:
                    cv2.imwrite(os.path.join(out_dir, f'frame_{frames:06d}.png'), bgr)
                    saved += 1
            now = time.monotonic()
            if now >= next_report:
                next_report = now + 2.0
                print(
                    f'jetbot-feed: {frames / (now - start):.1f} frames/s ({frames} frames)',
                    flush=True,
                )
            if options.rate > 0:
                time.sleep(max(0.0, 1.0 / options.rate - (time.monotonic() - t0)))
    except ConnectionLost as exc:
        print(f'jetbot-feed: {exc}', file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
        if window:
            cv2.destroyAllWindows()
    elapsed = max(time.monotonic() - start, 1e-9)
    print(
        f'jetbot-feed: {frames} frames in {elapsed:.1f} s = {frames / elapsed:.1f} frames/s'
        + (f', {failed} missing' if failed else '')
        + (f', {saved} saved to {out_dir}/' if out_dir is not None else ''),
        flush=True,
    )
    return status


if __name__ == '__main__':
    sys.exit(main())
