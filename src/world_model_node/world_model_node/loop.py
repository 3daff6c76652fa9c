"""Driving the online learner from a robot's frame and executed-action streams. ROS-free.

The node feeds events in as they arrive (from the executor thread) and a worker thread calls
:meth:`LearningLoop.work` for the next unit of learning. The rules:

* An executed action is paired with the **first frame captured at or after its completion
  stamp**; that frame is the action's outcome and is observed next. Frames and executed actions
  travel on different topics, so either may arrive first; frames wait in a small buffer.
* While the quality gate is closed no action flows. A new frame (a streaming camera) is observed
  as it comes; with no new frame (the lockstep simulator sends none) the learner keeps training
  its autoencoder on the latest frame, so the loop never waits for a frame only an action makes.
* When the gate is open the scores are handed out once (the selectors' "go"); then the loop
  waits for the executed action. Frames arriving meanwhile are not the outcome of anything the
  learner knows about and are dropped (counted).

The frame buffer is bounded: when the learner falls behind a fast camera the oldest frames are
dropped and counted, never queued without bound.

A train filter (:func:`train_filter`) never removes anything from the streams (a gap would pair
an action with the wrong frame): every frame and action is observed, and the filter only marks
each recorded transition as one the learner may train on or not.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from devbot.action_space import ActionSpace
from devbot.bag.filter import TransitionFilter

# frames kept while waiting (a camera at 30 Hz for ~1 s)
FRAME_BUFFER = 32


#: (action index, its completion stamp ns, the run's first frame stamp ns) -> may it train
MayTrain = Callable[[int, int, int], bool]


@dataclass(frozen=True)
class ExecutedTransition:
    """What a transition filter reads of an executed action."""

    action: int
    values: dict[str, float]  # its channel values in the action space
    action_stamp_ns: int  # when it completed


def train_filter(text: str, space: ActionSpace) -> MayTrain | None:
    """The transitions a run may train on, from a filter in the recorded selector's language
    (:mod:`devbot.bag.filter`; ``from=``/``to=`` count seconds since the run's first frame).

    Args:
        text: the filter ('' or blanks: every transition).
        space: the robot's action space (channel names and action indices are checked).
    Returns:
        ``may_train`` for :class:`LearningLoop`, or None for an empty filter.
    Raises:
        devbot.bag.FilterError: a filter that does not parse or does not fit ``space``.
    """
    keep = TransitionFilter.parse(text, space)
    if keep.empty:
        return None

    def may_train(action: int, stamp_ns: int, start_ns: int) -> bool:
        return keep(ExecutedTransition(action, space.values(action), stamp_ns), start_ns)

    return may_train


@dataclass
class LoopCounters:
    frames_received: int = 0  # frames handed to on_frame
    frames_observed: int = 0  # frames given to the learner
    frames_dropped: int = 0  # frames discarded (buffer full, stale, or not an outcome)
    actions_recorded: int = 0  # executed actions paired with a frame
    actions_ignored: int = 0  # executed actions that came while no scores were out
    actions_trainable: int = 0  # recorded actions whose transition the train filter keeps
    gate_retries: int = 0  # autoencoder steps on an already-seen frame (train_gate)
    scores_published: int = 0  # times the gate was open and scores were handed out
    extra: dict = field(default_factory=dict)


class LearningLoop:
    """The pairing and gating state machine around an ``OnlineLearner``.

    Args:
        learner: an ``OnlineLearner`` (or anything with observe/train_gate/record_action).
        on_frame_done: called with a frame's stamp once the frame is learned from or dropped
            (the node acks it, so a lockstep bag player can publish the next one).
        may_train: whether the transition an executed action starts may train the learner
            (:func:`train_filter`); None: every one.
    """

    def __init__(
        self,
        learner,
        on_frame_done: Callable[[int], None] | None = None,
        may_train: MayTrain | None = None,
    ) -> None:
        self.learner = learner
        self._frame_done = on_frame_done or (lambda stamp: None)
        self._may_train = may_train
        self._first_frame_stamp: int | None = None  # the run's time origin for the filter
        self.counters = LoopCounters()
        self._frames: deque[tuple[int, np.ndarray]] = deque()  # (stamp ns, frame), oldest first
        self._executed: deque[tuple[int, int]] = deque()  # (stamp ns, action index)
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._last_observed_stamp: int | None = None
        self._awaiting_action = False  # scores are out; the selector has to answer
        self._outcome_stamp: int | None = None  # an action was recorded; wait for its outcome frame
        self._gate_open = False
        self._closed = False

    # ------------------------------------------------------------------ events (any thread)

    def on_frame(self, stamp_ns: int, frame: np.ndarray) -> None:
        """A camera frame (uint8 [H, W, 3] RGB) captured at ``stamp_ns``."""
        with self._lock:
            self.counters.frames_received += 1
            if self._first_frame_stamp is None:
                self._first_frame_stamp = stamp_ns
            newest = self._frames[-1][0] if self._frames else self._last_observed_stamp
            if newest is not None and stamp_ns <= newest:
                self._drop(stamp_ns)  # a re-sent or out-of-order frame
                return
            if len(self._frames) >= FRAME_BUFFER:
                self._drop(self._frames.popleft()[0])
            self._frames.append((stamp_ns, frame))
            self._wakeup.notify()

    def on_executed(self, stamp_ns: int, action: int) -> None:
        """The robot executed ``action``; it completed at ``stamp_ns``."""
        with self._lock:
            self._executed.append((stamp_ns, action))
            self._wakeup.notify()

    def close(self) -> None:
        """Wake and stop a worker blocked in :meth:`work`."""
        with self._lock:
            self._closed = True
            self._wakeup.notify_all()

    # ------------------------------------------------------------------ work (worker thread)

    def work(self, timeout: float = 0.1):
        """Do the next unit of learning; return the learner's result, or None if there was
        nothing to do within ``timeout`` seconds (or the loop was closed)."""
        with self._lock:
            job = self._next_job()
            if job is None and not self._closed:
                self._wakeup.wait(timeout)
                job = self._next_job()
        if job is None:
            return None
        kind, payload = job
        if kind == 'observe':
            result = self.learner.observe(payload)
            self.counters.frames_observed += 1
            self._frame_done(self._last_observed_stamp)
        else:
            result = self.learner.train_gate()
            self.counters.gate_retries += 1
        with self._lock:
            self._gate_open = result.gate_open
            if result.gate_open:
                self._awaiting_action = True
                self.counters.scores_published += 1
        return result

    def _next_job(self):
        """Pick the next job under the lock: ('observe', frame), ('train_gate', None) or None."""
        if self._closed:
            return None
        if self._awaiting_action:
            # the executed action that answers the scores
            if not self._executed:
                return None
            stamp, action = self._executed.popleft()
            trainable = self._may_train is None or self._may_train(
                action, stamp, self._first_frame_stamp
            )
            self.learner.record_action(action, trainable=trainable)
            self.counters.actions_recorded += 1
            self.counters.actions_trainable += int(trainable)
            self._awaiting_action = False
            self._outcome_stamp = stamp
        else:
            while self._executed:  # not an answer to our scores (e.g. teleop, or a stale reply)
                self._executed.popleft()
                self.counters.actions_ignored += 1
        if self._outcome_stamp is not None:
            # the first frame captured at or after the action's completion
            while self._frames and self._frames[0][0] < self._outcome_stamp:
                self._drop(self._frames.popleft()[0])
            if not self._frames:
                return None
            self._outcome_stamp = None
            return self._take_oldest()
        if self._frames:
            # nothing is pending: learn from the newest frame (gate closed, streaming camera)
            while len(self._frames) > 1:
                self._drop(self._frames.popleft()[0])
            return self._take_oldest()
        if self._last_observed_stamp is not None and not self._gate_open:
            return 'train_gate', None
        return None

    def _drop(self, stamp_ns: int) -> None:
        self.counters.frames_dropped += 1
        self._frame_done(stamp_ns)

    def _take_oldest(self):
        stamp, frame = self._frames.popleft()
        self._last_observed_stamp = stamp
        return 'observe', frame

    @property
    def last_observed_stamp(self) -> int | None:
        """Stamp (ns) of the frame the learner saw last."""
        return self._last_observed_stamp

    @property
    def awaiting_action(self) -> bool:
        """Scores are out and the loop waits for the executed action."""
        with self._lock:
            return self._awaiting_action
