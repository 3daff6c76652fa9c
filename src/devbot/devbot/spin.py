"""Running a node: one executor choice and one shutdown path for every devbot node."""

from __future__ import annotations

from collections.abc import Callable

from rclpy.executors import SingleThreadedExecutor


def spin_until(node, done: Callable[[], bool] | None = None, poll_s: float = 0.1) -> None:
    """Spin ``node`` on a SingleThreadedExecutor until ``done()`` is true (or forever).

    Not the MultiThreadedExecutor: in rclpy 9.1 it busy-loops and was erratic here. Not the
    experimental EventsExecutor either: publisher ``matched`` events never fire on it, and the
    robot nodes rely on them to re-send the current frame to late joiners.
    KeyboardInterrupt (SIGINT) and ExternalShutdownException (SIGTERM) propagate to the caller.
    """
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if done is None:
            executor.spin()
        else:
            while not done():
                executor.spin_once(timeout_sec=poll_s)
    finally:
        executor.remove_node(node)
        executor.shutdown()
