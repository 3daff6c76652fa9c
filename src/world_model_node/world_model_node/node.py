"""ROS 2 node: the online world model in the robot's loop (a wrapper over OnlineLearner).

The executor thread only converts and queues messages; a worker thread runs the learner
(:class:`world_model_node.loop.LearningLoop` decides what to learn next), so a slow learning
step never blocks DDS callbacks, and a fast camera is buffered with drop-oldest.

Subscribed topics:
    camera/image_raw (sensor_msgs/Image, rgb8/bgr8/mono8, any size: resized to the model's).
    motor_command/executed (sensor_msgs/JointState): paired with the first frame captured at or
        after its stamp.

Published topics:
    world_model/action_scores (sensor_msgs/JointState): only while the quality gate is open (the
        selectors' "go"); name = candidate labels ("L0:1", macro-actions "L1:1-1"), position =
        predictive uncertainty (entropy), header.stamp = the scored frame's stamp. Re-sent to a
        selector that joins late. Held back until the node's ``motor_command/executed`` reader
        has matched the robot's publisher: an answer sent before that would never arrive, and
        the loop would wait for it forever.
    world_model/visualization (sensor_msgs/Image, rgb8): every display_interval steps, the live
        panel: the frame, its reconstruction with its MSE, and each candidate's prediction of the
        frame with its error and the uncertainty the selector saw; the executed candidate
        framed green, the most uncertain one orange (``visualization.render_panel``).
    world_model/metrics (diagnostic_msgs/DiagnosticArray): losses, gate state, counters, every step.
    world_model/processed (std_msgs/Header): stamp of each camera frame once it has been learned
        from or dropped: the ack a lockstep bag player (``devbot play --lockstep``) waits for.

Parameters:
    robot_config (string): robot file with the action space.
    session (string): or take the robot type and action space from this recorded session (bag
        folder), for training from bags of any robot; exactly one of the two is set.
    preset (string): full | tiny: the base model config [full]; every field of
        WorldModelConfig is also a parameter of its own (e.g. reconstruction_threshold) that
        overrides it.
    autoencoder_lr, predictor_lr (float): learning rates [0 = unset: the preset's for a fresh
        start, the checkpoint's when resuming]; set for a resumed run they replace the saved
        rates (the optimizer moments are kept) and the node logs "resumed with ...".
    train_filter (string): train only on the transitions this filter keeps, in the recorded
        selector's language (e.g. actions=1; motor_right>0; from=10 = seconds since the run's
        first frame); every frame and action is still observed ['' = all].
    checkpoint_dir (string): '' = saved/checkpoints/<robot type>; resumed from at start.
    report_dir (string): '' = saved/reports/<robot type>_world_model_<time>; the run report.
    max_steps (int): end after this many learner steps (frames observed + autoencoder retries on
        the latest frame; 0 = no limit) [0].
    duration (float): end after this many seconds (0 = no limit) [0].
    device (string): cpu | cuda | auto [auto].
    precision (string): the arithmetic of the learner's forward passes: fp32 | bf16 | auto; auto
        is bf16 on a CPU that computes it natively (AVX-512 BF16 or AMX: 12-15% less time per
        acted frame, as much learned per frame) and fp32 elsewhere, GPUs included [auto].
    num_threads (int): torch CPU threads (0 = torch's default) [0].
    wandb_project (string): log to Weights & Biases (offline without a key); '' = off [''].
    progress_period (float): seconds between progress lines [5].
    heldout_samples (int): the toroidal_dot robot's report scores each action (EV, dot error) on
        this many held-out transitions on the dot's row and on rows it never visited, at the end
        (0 = skip) [64].

At the end (budget reached, Ctrl-C, SIGTERM, robot gone) it saves a checkpoint, writes the report
and exits 0; an error in learning saves what it can and exits 1. A setup mistake found at start
(parameters, robot file, bag, a checkpoint of another model) is one line on stderr and exit 2.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import math
import queue
import sys
import threading
import time
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header

from devbot import action_space, topics
from devbot.action_space import ActionError, ActionSpace
from devbot.bag import FilterError
from devbot.bag.session import BagError
from devbot.image import ImageError, image_to_numpy, numpy_to_image
from devbot.messages import joint_state_to_action
from devbot.params import declare
from devbot.spin import create_node, ros_process, spin_until
from toroidal_sim.env import ToroidalDotConfig
from world_model_node.checkpoint import CheckpointError
from world_model_node.config import ConfigError, WorldModelConfig
from world_model_node.core import ONLINE_PRECISIONS
from world_model_node.dot_heldout import dot_row, evaluate_dot
from world_model_node.learner import OnlineLearner
from world_model_node.loop import LearningLoop, train_filter
from world_model_node.report import RunReport


def session_action_space(session: str) -> ActionSpace:
    """The action space stored in a recorded session's metadata."""
    from devbot.bag import read_info

    space = read_info(session).action_space
    if space is None:
        raise ConfigError(f'{session}: the bag has no devbot action space in its metadata')
    return space


def _ros_value(value):
    """A config value as a ROS parameter value (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value


#: config fields whose parameter is 0 unless set, so that a resume can tell "not given"
LR_FIELDS = ('autoencoder_lr', 'predictor_lr')


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class WorldModelNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__('world_model', **kwargs)
        robot_config = declare(self, 'robot_config', '', 'robot file with the action space')
        session = str(
            declare(
                self,
                'session',
                '',
                'take the robot type and action space from this recorded '
                'session (bag folder) instead of robot_config',
                dynamic_typing=True,
            )
        )
        preset = declare(self, 'preset', 'full', 'base model config: full | tiny')
        checkpoint_dir = declare(self, 'checkpoint_dir', '', "'' = saved/checkpoints/<robot type>")
        report_dir = declare(
            self, 'report_dir', '', "'' = saved/reports/<robot type>_world_model_<time>"
        )
        self.max_steps = declare(
            self,
            'max_steps',
            0,
            'end after this many learner steps; 0 = no limit',
            int_range=(0, 2**31 - 1),
        )
        self.duration = declare(
            self,
            'duration',
            0.0,
            'end after this many seconds; 0 = no limit',
            float_range=(0.0, 1e7),
        )
        device = declare(self, 'device', 'auto', 'torch device: cpu | cuda | auto')
        precision = declare(
            self,
            'precision',
            'auto',
            "forward arithmetic: fp32 | bf16 | auto (bf16 on a CPU that computes it natively)",
        )
        num_threads = declare(
            self, 'num_threads', 0, "torch CPU threads; 0 = torch's default", int_range=(0, 256)
        )
        wandb_project = declare(
            self, 'wandb_project', '', 'Weights & Biases project; empty = no logging'
        )
        self.progress_period = declare(
            self,
            'progress_period',
            5.0,
            'seconds between progress lines',
            float_range=(0.1, 3600.0),
        )
        self.heldout_samples = declare(
            self,
            'heldout_samples',
            64,
            'toroidal_dot robot: at the end, the report scores each action on this many held-out '
            "transitions on the dot's row and on rows it never visited (EV, dot error); 0 = skip",
            int_range=(0, 100000),
        )
        self.train_filter = str(
            declare(
                self,
                'train_filter',
                '',
                "train only on the transitions this filter keeps (e.g. actions=1); '' = all",
                dynamic_typing=True,
            )
        ).strip()
        if bool(robot_config) == bool(session):
            raise ConfigError(
                'set exactly one of robot_config (e.g. config/toroidal_dot.yaml) and session'
            )
        if preset not in ('full', 'tiny'):
            raise ConfigError(f'preset must be full or tiny, got {preset!r}')
        if precision not in ONLINE_PRECISIONS:
            raise ConfigError(
                f'precision must be one of {" | ".join(ONLINE_PRECISIONS)}, got {precision!r}'
            )
        self.action_space = (
            ActionSpace.from_yaml(robot_config) if robot_config else session_action_space(session)
        )
        self.config, lr_overrides = self._declare_config(
            WorldModelConfig() if preset == 'full' else WorldModelConfig.tiny()
        )
        try:
            may_train = train_filter(self.train_filter, self.action_space)
        except FilterError as exc:
            raise ConfigError(f'train_filter {self.train_filter!r}: {exc}') from exc

        import torch

        if num_threads:
            torch.set_num_threads(num_threads)
        if device == 'auto':
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        robot = self.action_space.robot_type
        self.checkpoint_dir = Path(checkpoint_dir or Path('saved') / 'checkpoints' / robot)
        stamp = datetime.now().strftime('%Y%m%d-%H%M%S')
        self.report_dir = Path(
            report_dir or Path('saved') / 'reports' / f'{robot}_world_model_{stamp}'
        )
        # every torch call of this node runs on one thread: see TorchThread
        self._torch = TorchThread('world_model_learner')
        self.learner = self._torch.call(
            OnlineLearner,
            self.config,
            self.action_space.normalized(),
            device=device,
            precision=precision,
            checkpoint_dir=self.checkpoint_dir,
            wandb_project=wandb_project or None,
            run_name=f'{robot}_{stamp}',
            **lr_overrides,
        )
        self.loop = LearningLoop(self.learner, on_frame_done=self._ack_frame, may_train=may_train)
        self.report = RunReport(
            self.report_dir,
            f'{robot} world model, run {stamp}',
            self.config.reconstruction_threshold,
            self.config.prediction_threshold,
        )
        self.start_step = self.learner.step

        qos = topics.loop_qos()
        # a selector that joins while the loop waits for an action gets the current scores
        self._scores_pub = topics.ResendingPublisher(
            self,
            JointState,
            topics.ACTION_SCORES,
            qos,
            resend_when=lambda: self.loop.awaiting_action,
        )
        # reliable keep-last-1: works with reliable and best-effort viewers, never queues up
        self._panel_pub = self.create_publisher(
            Image,
            topics.WM_VISUALIZATION,
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE),
        )
        self._metrics_pub = self.create_publisher(DiagnosticArray, topics.WM_METRICS, qos)
        self._processed_pub = self.create_publisher(Header, topics.WM_PROCESSED, qos)
        self.create_subscription(Image, topics.CAMERA_IMAGE, self._on_image, qos)
        self._executed_sub = self.create_subscription(
            JointState,
            topics.MOTOR_EXECUTED,
            self._on_executed,
            qos,
            event_callbacks=SubscriptionEventCallbacks(matched=self._on_executed_matched),
        )
        self._scores_lock = threading.Lock()
        self._held_scores: JointState | None = None

        self.done = threading.Event()
        self.failed = False
        self.bad_images = 0
        self.bad_actions = 0
        self._frame_stamps: dict[int, object] = {}
        self._started = time.monotonic()
        self._worker = self._torch.submit(self._work)
        resumed = f'resumed at step {self.start_step}' if self.start_step else 'fresh start'
        self.get_logger().info(
            f'{robot}: {self.action_space.num_actions} actions, {preset} model on {device} '
            f'({self.learner.core.precision}), '
            f'{resumed}, checkpoints in {self.checkpoint_dir}, report in {self.report_dir}'
        )
        if self.learner.lr_changes:
            self.get_logger().info('resumed with ' + ', '.join(self.learner.lr_changes))
        if may_train is not None:
            self.get_logger().info(
                f'training only on the transitions the filter {self.train_filter!r} keeps'
            )

    def _declare_config(
        self, base: WorldModelConfig
    ) -> tuple[WorldModelConfig, dict[str, float | None]]:
        """Every config field as a parameter over ``base``; returns the config and the learning
        rates set explicitly (``OnlineLearner``'s ``autoencoder_lr`` / ``predictor_lr``: None
        for one left at 0, so that a resume keeps the checkpoint's rate)."""
        descriptions = WorldModelConfig.descriptions()
        values, lr_overrides = {}, {}
        for f in dataclasses.fields(WorldModelConfig):
            if f.name in LR_FIELDS:
                help_ = f"{descriptions[f.name]}; 0 = the preset's, or the checkpoint's on resume"
                lr = declare(self, f.name, 0.0, help_)
                if not (math.isfinite(lr) and lr >= 0):
                    raise ConfigError(f'{f.name} must be a finite number > 0 (0 = unset), got {lr}')
                lr_overrides[f.name] = lr or None
                values[f.name] = lr or getattr(base, f.name)
                continue
            default = _ros_value(getattr(base, f.name))
            values[f.name] = declare(self, f.name, default, descriptions[f.name])
        return WorldModelConfig.from_dict(values), lr_overrides

    # ------------------------------------------------------------------ executor thread

    def _on_image(self, msg: Image) -> None:
        try:
            frame = image_to_numpy(msg, 'rgb8')
        except ImageError as exc:
            self.bad_images += 1
            # every one of the first few, then at most one line per 5 s
            self.get_logger().error(
                f'rejected camera frame #{self.bad_images}: {exc}',
                throttle_duration_sec=0.0 if self.bad_images <= 10 else 5.0,
            )
            return
        stamp = stamp_ns(msg.header.stamp)
        self._frame_stamps[stamp] = msg.header.stamp
        if len(self._frame_stamps) > 64:
            self._frame_stamps.pop(next(iter(self._frame_stamps)))
        self.loop.on_frame(stamp, frame)

    def _on_executed(self, msg: JointState) -> None:
        try:
            action = joint_state_to_action(self.action_space, msg)
        except ActionError as exc:
            self.bad_actions += 1
            self.get_logger().error(
                f'ignored executed action #{self.bad_actions}: {exc}',
                throttle_duration_sec=0.0 if self.bad_actions <= 10 else 5.0,
            )
            return
        self.loop.on_executed(stamp_ns(msg.header.stamp), action)

    def _on_executed_matched(self, info) -> None:
        if info.current_count_change <= 0:
            return
        with self._scores_lock:
            held, self._held_scores = self._held_scores, None
        if held is not None and self.loop.awaiting_action:
            self.get_logger().info('the robot publishes its executed actions: scores out')
            self._scores_pub.publish(held)

    def _publish_scores(self, msg: JointState) -> None:
        """Publish ``msg``, or hold it until the executed-action reader has matched (see
        :meth:`_on_executed_matched`; the lock orders the check against that callback)."""
        with self._scores_lock:
            if self._executed_sub.get_publisher_count() == 0:
                if self._held_scores is None:
                    self.get_logger().info(
                        'gate open; holding the scores until a robot publishes '
                        f'{self._executed_sub.topic_name} (its answer would be lost)'
                    )
                self._held_scores = msg
                return
            self._held_scores = None
        self._scores_pub.publish(msg)

    def _ack_frame(self, stamp: int) -> None:
        header = Header()
        header.stamp.sec, header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        self._processed_pub.publish(header)

    # ------------------------------------------------------------------ worker thread

    def _work(self) -> None:
        next_progress = time.monotonic() + self.progress_period
        try:
            while not self.done.is_set():
                result = self.loop.work(timeout=0.1)
                if result is not None:
                    self._publish(result)
                    self.report.add(result)
                now = time.monotonic()
                if now >= next_progress:
                    next_progress = now + self.progress_period
                    self.get_logger().info(self.progress_line())
                if self._budget_spent():
                    self.get_logger().info(f'budget reached: {self.progress_line()}')
                    self.done.set()
        except Exception as exc:  # noqa: BLE001 - any learning error ends the run, after saving
            self.failed = True
            self.get_logger().error(f'learning failed: {type(exc).__name__}: {exc}')
            import traceback

            traceback.print_exc()
            self.done.set()

    def _budget_spent(self) -> bool:
        return bool(
            (self.max_steps and self.learner.step - self.start_step >= self.max_steps)
            or (self.duration and time.monotonic() - self._started >= self.duration)
        )

    def _publish(self, result) -> None:
        stamp = self._frame_stamps.get(self.loop.last_observed_stamp)
        if result.gate_open and result.scores is not None:
            msg = JointState()
            if stamp is not None:
                msg.header.stamp = stamp
            msg.name = [str(label) for label in result.labels]
            msg.position = [float(s) for s in result.scores]
            msg.velocity = [0.0] * len(msg.name)
            msg.effort = [0.0] * len(msg.name)
            self._publish_scores(msg)
        self._metrics_pub.publish(self._metrics_msg(result))
        if result.step % max(1, self.config.display_interval) == 0 or result.new_level is not None:
            panel = self.learner.visualization_panel()
            if panel is not None:
                img = numpy_to_image(panel, 'rgb8')
                img.header.stamp = self.get_clock().now().to_msg()
                self._panel_pub.publish(img)

    def _metrics_msg(self, result) -> DiagnosticArray:
        values = {
            'step': result.step,
            'gate_open': int(result.gate_open),
            'gate_released': int(result.gate_released),
            'reconstruction_loss': result.reconstruction_loss,
            'consecutive_autoencoder_iterations': result.consecutive_autoencoder_iterations,
            'num_levels': result.num_levels,
            'frames_dropped': self.loop.counters.frames_dropped,
        }
        for level, err in result.prediction_errors.items():
            values[f'prediction_errors/level_{level}'] = err
        if result.explained_variance is not None:
            values['predictor_explained_variance'] = result.explained_variance
        if result.autoencoder_loss is not None:
            values['autoencoder_training_loss'] = result.autoencoder_loss
        for key, value in (result.metrics or {}).items():
            values.setdefault(key, value)
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK,
            name='world_model',
            message='gate open' if result.gate_open else 'training autoencoder',
            values=[
                KeyValue(key=k, value=f'{v:.6g}' if isinstance(v, float) else str(v))
                for k, v in values.items()
            ],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        return msg

    # ------------------------------------------------------------------ progress and the end

    def progress_line(self) -> str:
        c = self.loop.counters
        rows = self.report.rows
        last = rows[-1] if rows else None
        elapsed = time.monotonic() - self._started
        rate = len(rows) / elapsed if elapsed > 0 else 0.0
        parts = [
            f'step {self.learner.step}',
            f'frames {c.frames_observed}',
            f'actions {c.actions_recorded}',
        ]
        if last:
            parts.append('gate OPEN' if last['gate_open'] else 'gate closed')
            parts.append(f'recon {last["reconstruction_loss"]:.2e}')
            pred = [
                r['prediction_error']
                for r in rows[-20:]
                if r['prediction_error'] == r['prediction_error']
            ]
            if pred:
                parts.append(f'pred {sum(pred) / len(pred):.2e}')
        parts.append(f'{rate:.2f} steps/s')
        if self.duration:
            parts.append(f'ETA {max(0.0, self.duration - elapsed):.0f}s')
        elif self.max_steps and rate > 0:
            left = self.max_steps - (self.learner.step - self.start_step)
            parts.append(f'ETA {max(0, left) / rate:.0f}s')
        return ', '.join(parts)

    def finish(self) -> Path:
        """Stop the worker, save a checkpoint, write the report; return the summary path."""
        self.done.set()
        self.loop.close()
        try:
            self._worker.result(timeout=120)
        except Exception:  # noqa: BLE001 - _work logs its own failure; the checkpoint still gets saved
            pass
        panel = self._torch.call(self._close_learner, timeout=600)
        extra = {
            'train_filter': self.train_filter or 'all',
            'transitions_trainable': self.loop.counters.actions_trainable,
            'predictor_training_steps': self.learner.levels[0].training_steps,
            'frames_dropped': self.loop.counters.frames_dropped,
            'bad_images': self.bad_images,
            'checkpoint_generation': self.learner.generation,
            'checkpoint_dir': str(self.checkpoint_dir),
        }
        # the report first: the held-out evaluation takes seconds at full size, and a launch that
        # escalates to SIGKILL meanwhile must not cost the report
        summary = self.report.write(panel, extra)
        heldout = self._torch.call(self._dot_heldout, timeout=600) if panel is not None else {}
        self._torch.stop()
        if heldout:
            summary = self.report.write(panel, extra | heldout)
        return summary

    def _close_learner(self) -> np.ndarray | None:
        """(On the torch thread.) Save the final checkpoint; the last live panel."""
        self.learner.close()
        return self.learner.visualization_panel() if self.loop.counters.frames_observed else None

    def _dot_heldout(self) -> dict:
        """For the dot robot: each action's EV and dot error on held-out transitions on the row
        the dot lived on and on rows it never visited (``dot_heldout``)."""
        if self.action_space.robot_type != 'toroidal_dot' or not self.heldout_samples:
            return {}
        env = ToroidalDotConfig()  # the dot world the launch files start
        try:
            row = dot_row(self.learner.current_frame(), env.size)
        except ValueError:
            return {}
        out: dict = {'heldout_dot_row': row}
        for i, (kind, home) in enumerate((('home_row', row), ('unseen_rows', None))):
            held = evaluate_dot(
                self.learner,
                env,
                self.heldout_samples,
                seed=12345 + i,
                row=home,
                avoid_row=None if home is not None else row,
            )
            out |= held.flat(kind)
            self.get_logger().info(f'held-out ({kind}): ' + held.describe())
        return out


class TorchThread:
    """One thread that runs every torch call of the node, one job at a time.

    Why: libgomp (torch's OpenMP) keeps a thread team per calling thread, and once the process has
    more OpenMP threads than CPUs it stops spin-waiting between parallel regions. Building the
    model on the main thread and learning on a worker doubled the teams and made every learner
    step ~35% slower on 2 cores (bench/bench_world_model_graph.py). Daemon thread: a stuck job
    must not keep the process alive after the node gave up waiting for it.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn, *args, **kwargs) -> Future:
        """Queue ``fn(*args, **kwargs)``; its Future carries the result or the exception."""
        future: Future = Future()
        self._jobs.put((future, fn, args, kwargs))
        return future

    def call(self, fn, *args, timeout: float | None = None, **kwargs):
        """Run ``fn`` on the thread and wait for its result (re-raises its exception)."""
        return self.submit(fn, *args, **kwargs).result(timeout)

    def stop(self) -> None:
        """Let the thread end after the queued jobs."""
        self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller through the Future
                future.set_exception(exc)


# what a user sets up wrongly (parameters, robot file, bag, checkpoint folder): one line, exit 2
STARTUP_ERRORS = (ConfigError, action_space.ConfigError, BagError, CheckpointError)


def main(args: list[str] | None = None) -> int:
    # a native crash prints every thread's Python stack
    faulthandler.enable()
    with ros_process(args) as stop:
        node = create_node(WorldModelNode, 'world_model_node', STARTUP_ERRORS)
        if node is None:
            return 2
        try:
            spin_until(node, stop, node.done.is_set)
        finally:
            # the worker stops, the checkpoint and the report are saved, all on a live context
            summary = node.finish()
            node.destroy_node()
        print(node.progress_line(), flush=True)
        print(
            f'checkpoint generation {node.learner.generation} in {node.checkpoint_dir}; '
            f'report: {summary}',
            flush=True,
        )
        return 1 if node.failed else 0
    return 0  # stopped while starting: nothing learned yet


if __name__ == '__main__':
    sys.exit(main())
