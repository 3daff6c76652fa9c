"""Running a node: one executor choice and one shutdown path for every devbot node."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
NodeT = TypeVar('NodeT')


class StopSignals:
    """SIGINT and SIGTERM of a node process (see :func:`ros_process`).

    Until the node spins they interrupt at once (KeyboardInterrupt: nothing to save yet, and a
    robot connection that is still being retried must not hold Ctrl-C up). From the first
    :func:`spin_until` on they only set a flag: the spin loop ends, and the node finishes (stops its
    worker, saves, stops motors, closes a bag) and is destroyed on a live context. A second signal
    while it finishes changes nothing; the launcher's SIGKILL after its timeout stays the last
    resort.
    """

    def __init__(self) -> None:
        self._received = threading.Event()
        self.deferred = False  # set by defer(): the node is spinning

    def is_set(self) -> bool:
        """A stop signal arrived after the node started spinning."""
        return self._received.is_set()

    def defer(self) -> None:
        """From now on a signal only sets the flag."""
        self.deferred = True

    def handle(self, signum: int, _frame) -> None:
        if not self.deferred:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        self._received.set()


@contextmanager
def ros_process(args: list[str] | None = None) -> Iterator[StopSignals]:
    """rclpy initialised for one node process, with devbot's stop signals (:class:`StopSignals`).

    Use as ``with ros_process(args) as stop:``; build the node, ``spin_until(node, stop, ...)``,
    then finish and destroy the node inside the ``with`` (and return from there). The context is
    shut down when the ``with`` ends, after the node is gone. A signal before the node spins ends
    the ``with`` early, without an exception.

    Why not rclpy's own handlers: on a signal they shut the context down at once from rclpy's
    native signal thread, while the node, a worker thread's publishes and the middleware's threads
    still use it (world_model_node, which saves a checkpoint after the signal, died of SIGSEGV there
    in about one CI run in three), and their KeyboardInterrupt lands anywhere (in the middle of a
    bag write, say).
    """
    stop = StopSignals()
    previous = {sig: signal.signal(sig, stop.handle) for sig in STOP_SIGNALS}
    try:
        with rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO):
            yield stop
    except KeyboardInterrupt:
        if stop.deferred:
            raise  # not a stop signal before spinning: someone else's KeyboardInterrupt
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def spin_until(
    node, stop: StopSignals, done: Callable[[], bool] | None = None, poll_s: float = 0.1
) -> None:
    """Spin ``node`` on a SingleThreadedExecutor until a stop signal or ``done()``.

    ``done`` is checked every ``poll_s`` seconds.

    Not the MultiThreadedExecutor: in rclpy 9.1 it busy-loops and was erratic here. Not the
    experimental EventsExecutor either: publisher ``matched`` events never fire on it, and the
    robot nodes rely on them to re-send the current frame to late joiners.
    """
    stop.defer()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not (stop.is_set() or (done is not None and done())):
            executor.spin_once(timeout_sec=poll_s)
    finally:
        executor.remove_node(node)
        executor.shutdown()


def create_node(
    factory: Callable[[], NodeT], program: str, setup_errors: tuple[type[Exception], ...]
) -> NodeT | None:
    """``factory()``, or None after one line on stderr when it raises one of ``setup_errors``.

    For mistakes the user fixes at start (a missing or bad parameter, robot file, bag or
    checkpoint): the message, not a traceback, and the caller's ``main`` returns 2. Any other
    exception keeps its traceback.
    """
    try:
        return factory()
    except setup_errors as exc:
        print(f'{program}: cannot start: {exc}', file=sys.stderr, flush=True)
        return None
