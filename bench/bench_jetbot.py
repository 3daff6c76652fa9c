"""JetBot protocol over loopback RPyC: call latency and camera frames/s.

The server runs in its own process (as on the robot) and the client here, both on this
machine, so the numbers are transport + encode/decode costs without a network:

  ping                 a protocol round trip (no service method)
  set_motors           one motor command
  get_camera_frame     static camera: a fixed 224x224 picture, JPEG-encoded per call (the
                       transport and JPEG cost, as with a real camera that has a frame ready)
  get_camera_frame     sim camera: the virtual room rendered per call (+ render time)
  client get_frame     static camera, plus base64/JPEG decode and BGR->RGB in the client
  client get_frame     sim camera 320x240, plus the resize to 224x224
  frames/s             back-to-back client get_frame calls (static camera / sim camera)
  forward action       the original turn action (4-step ramp, 0.14 s hold, ramp down): 8 calls
  raw frame            for comparison: the same picture as a raw 150 KB bytes value

Usage:
    .venv/bin/python bench/bench_jetbot.py [--calls 2000] [--frames 300]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import statistics
import time

import numpy as np

from jetbot_driver.client import JetBotClient
from jetbot_driver.motion import MotorController
from jetbot_driver.server import Hardware, JetBotServer, JetBotService


def _picture(size: int = 224) -> np.ndarray:
    """A photo-like BGR test picture (gradients + shapes + noise), so JPEG sizes are realistic."""
    import cv2

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    img = np.stack([x * 255 / size, y * 255 / size, (x + y) * 127 / size], axis=2)
    img = img + rng.normal(0, 12, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    cv2.circle(img, (size // 3, size // 2), size // 6, (30, 200, 240), -1)
    cv2.rectangle(img, (size // 2, size // 5), (size - 20, size // 2), (200, 40, 90), -1)
    return img


class StaticHardware(Hardware):
    def __init__(self) -> None:
        self.image = _picture()

    def set_motors(self, left: float, right: float) -> None:
        pass

    def camera_bgr(self) -> np.ndarray:
        return self.image


class RawFrameService(JetBotService):
    """Only for the comparison line: the picture as raw bytes instead of base64 JPEG."""

    def exposed_get_raw_frame(self) -> bytes:
        return self._hardware.camera_bgr().tobytes()


def _serve(kind: str, port: int, ready) -> None:
    if kind == 'static':
        server = JetBotServer(StaticHardware(), '127.0.0.1', port, service_cls=RawFrameService)
    else:
        from jetbot_driver.sim_server import SimServer

        server = SimServer('127.0.0.1', port, size=(320, 240) if kind == 'sim320' else 224)
    server._server._listen()
    ready.set()
    server.serve_forever()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _times(fn, n: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _line(name: str, times: list[float], extra: str = '') -> None:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    print(
        f'  {name:<42} mean {statistics.fmean(ms):7.3f} ms  median {statistics.median(ms):7.3f}  '
        f'p95 {p95:7.3f}  ({len(ms)} calls){extra}',
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--calls', type=int, default=2000, help='calls per latency line')
    parser.add_argument('--frames', type=int, default=300, help='frames per frame line')
    options = parser.parse_args()
    ctx = mp.get_context('spawn')
    servers = {}
    try:
        for kind in ('static', 'sim', 'sim320'):
            port, ready = _free_port(), ctx.Event()
            proc = ctx.Process(target=_serve, args=(kind, port, ready), daemon=True)
            proc.start()
            if not ready.wait(30):
                raise SystemExit(f'{kind} server did not start')
            servers[kind] = (proc, JetBotClient.connect('127.0.0.1', port, connect_timeout=10))
        static, sim, sim320 = (servers[k][1] for k in ('static', 'sim', 'sim320'))

        print('JetBot RPyC over loopback (server in its own process):')
        _line('ping', _times(static.ping, options.calls))
        _line('set_motors', _times(lambda: static.set_motors(0.1, 0.1), options.calls))
        get_frame_text = static._root.get_camera_frame  # bound once, as the client does
        text = get_frame_text()
        _line(
            'get_camera_frame, static camera',
            _times(get_frame_text, options.frames),
            f'  {len(text) / 1024:.1f} KiB base64',
        )
        _line(
            'get_camera_frame, sim camera (render)',
            _times(sim._root.get_camera_frame, options.frames),
        )
        _line('client get_frame -> RGB 224, static', _times(static.get_frame, options.frames))
        _line(
            'client get_frame -> RGB 224, sim 320x240',
            _times(sim320.get_frame, options.frames),
            '  (incl. resize)',
        )
        _line(
            'raw 150 KB bytes frame (not the contract)',
            _times(static._root.get_raw_frame, max(20, options.frames // 5)),
        )
        for name, client in (('static camera', static), ('sim camera', sim)):
            n = options.frames
            t = time.perf_counter()
            for _ in range(n):
                client.get_frame()
            print(f'  {"frames/s, " + name:<42} {n / (time.perf_counter() - t):7.1f}', flush=True)
        controller = MotorController(sim.set_motors)
        actions = _times(lambda: controller.execute(0.0, 0.12, 0.2), 10)
        _line('forward action (0, 0.12, 0.2 s), 8 calls', actions, '  (spec: >= 0.245 s)')
    finally:
        for proc, client in servers.values():
            client.close()
            proc.terminate()
            proc.join(5)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
