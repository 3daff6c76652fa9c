"""The session explorer as a clickable app: ipywidgets over :class:`SessionExplorer`.

ROS-free. In a notebook (or rendered as a page by Voila)::

    from devbot_explorer.explorer import SessionExplorer
    from devbot_explorer.explorer_widgets import ExplorerApp

    app = ExplorerApp(SessionExplorer('saved/sessions', 'saved/checkpoints'))
    app.widget                 # the last expression of a cell: shows the app

What it shows and does, all through the explorer's own calls (nothing is computed here):
a session dropdown; a frame slider with a play button; the frame, its autoencoder reconstruction
and the predicted next frame for every action (the explorer's sweep figure); "train autoencoder"
and "train predictor" buttons with pause/resume, whose runs (:class:`workbench.Training`) advance
in short chunks from an asyncio task on the kernel's event loop, so clicks and the slider stay live
and the loss plot is redrawn after every chunk; the weight views; saving the model. Without a
session it says so; without a model the training buttons are disabled and say why.

Each part carries a CSS class (``devbot-<part>``) so a page can be driven from a browser.
"""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from devbot.bag.session import BagError

from .explorer import ExplorerError, SessionExplorer

WIDTH = '224px'  # the frame and its reconstruction are shown at the same size


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 [H, W, 3] -> PNG file bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format='png')
    return buf.getvalue()


def figure_png(fig, dpi: int = 72) -> bytes:
    """A matplotlib figure -> PNG bytes; the figure is closed (a notebook must not show it too)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format='png', dpi=dpi)
    finally:
        plt.close(fig)
    return buf.getvalue()


def _show(image, data: bytes) -> None:
    """Set an Image widget's PNG; an empty one is hidden (a browser draws a broken-image icon)."""
    image.value = data
    image.layout.display = None if data else 'none'


def _escape(text: str) -> str:
    return text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')


class ExplorerApp:
    """Widgets over a :class:`SessionExplorer` (see the module docstring); ``widget`` is the app.

    Args:
        explorer: the explorer (its roots say where sessions and checkpoints are).
        session: the session to open first (anything :meth:`SessionExplorer.open` takes); default
            the first readable one.
        fresh_config: the ``WorldModelConfig`` of the untrained model offered when a robot has no
            checkpoint (default ``WorldModelConfig()``, full size).
        train_steps: the default number of steps of a training run.
        chunk_seconds: training runs this long between two redraws (and between two chances for
            the kernel to handle clicks).
        play_interval_ms: time between two frames when playing.
    """

    def __init__(
        self,
        explorer: SessionExplorer,
        session: Any = None,
        fresh_config=None,
        train_steps: int = 200,
        chunk_seconds: float = 0.3,
        play_interval_ms: int = 300,
    ) -> None:
        import ipywidgets as W

        self.explorer = explorer
        self.fresh_config = fresh_config
        self.chunk_seconds = float(chunk_seconds)
        self.run = None  # the current workbench.Training
        self.task: asyncio.Task | None = None  # the loop that drives it
        self._pause_requested = False
        self._chunk_end = 0.0  # when the current chunk of training steps ends (time.monotonic)
        self._model_robot_type: str | None = None
        self._model_reason = ''
        self._quiet = False  # set while the app itself changes a widget

        def box(*children, cls: str | None = None, **layout):
            b = W.HBox(list(children), layout=W.Layout(**layout))
            if cls:
                b.add_class(cls)
            return b

        def tagged(widget, cls: str):
            widget.add_class(cls)
            return widget

        self.message = tagged(W.HTML(), 'devbot-message')
        self.session_dropdown = tagged(
            W.Dropdown(description='session', layout=W.Layout(width='420px')), 'devbot-session'
        )
        self.model_info = tagged(W.HTML(), 'devbot-model')
        self.fresh_button = tagged(
            W.Button(description='use an untrained model', layout=W.Layout(width='auto')),
            'devbot-fresh',
        )
        self.play = tagged(W.Play(interval=int(play_interval_ms), step=1), 'devbot-play')
        self.frame_slider = tagged(
            W.IntSlider(
                description='frame', continuous_update=False, layout=W.Layout(width='460px')
            ),
            'devbot-frame-slider',
        )
        W.jslink((self.play, 'value'), (self.frame_slider, 'value'))
        self.caption = tagged(W.HTML(), 'devbot-caption')
        self.frame_image = tagged(
            W.Image(format='png', layout=W.Layout(display='none'), width=WIDTH), 'devbot-frame'
        )
        self.recon_image = tagged(
            W.Image(format='png', layout=W.Layout(display='none'), width=WIDTH), 'devbot-recon'
        )
        self.recon_caption = tagged(W.HTML(), 'devbot-recon-caption')
        self.sweep_image = tagged(
            W.Image(format='png', layout=W.Layout(display='none')), 'devbot-sweep'
        )
        self.sweep_message = tagged(W.HTML(), 'devbot-sweep-message')

        self.train_frames = tagged(
            W.IntRangeSlider(description='train on', layout=W.Layout(width='460px')),
            'devbot-train-frames',
        )
        self.steps_box = tagged(
            W.BoundedIntText(
                value=int(train_steps),
                min=1,
                max=1_000_000,
                description='steps',
                layout=W.Layout(width='170px'),
            ),
            'devbot-steps',
        )
        self.use_threshold = tagged(
            W.Checkbox(value=False, description="stop at the model's threshold", indent=False),
            'devbot-threshold',
        )
        self.train_ae_button = tagged(
            W.Button(description='train autoencoder', icon='play', button_style='primary'),
            'devbot-train-autoencoder',
        )
        self.train_pred_button = tagged(
            W.Button(description='train predictor', icon='play', button_style='primary'),
            'devbot-train-predictor',
        )
        self.pause_button = tagged(W.Button(description='pause', icon='pause'), 'devbot-pause')
        self.train_status = tagged(W.HTML(), 'devbot-train-status')
        self.loss_image = tagged(
            W.Image(format='png', layout=W.Layout(display='none')), 'devbot-loss'
        )
        self.weights_choice = tagged(
            W.ToggleButtons(options=['weight change', 'autoencoder', 'predictor'], value=None),
            'devbot-weights-choice',
        )
        self.weights_image = tagged(
            W.Image(format='png', layout=W.Layout(display='none')), 'devbot-weights'
        )
        self.save_path = tagged(
            W.Text(description='save to', layout=W.Layout(width='460px')), 'devbot-save-path'
        )
        self.save_button = tagged(W.Button(description='save', icon='save'), 'devbot-save')
        self.save_status = tagged(W.HTML(), 'devbot-save-status')

        self.session_dropdown.observe(self._on_session, names='value')
        self.frame_slider.observe(self._on_frame, names='value')
        self.play.observe(self._on_playing, names='playing')
        self.fresh_button.on_click(lambda _: self.use_fresh_model())
        self.train_ae_button.on_click(lambda _: self.start_training('autoencoder'))
        self.train_pred_button.on_click(lambda _: self.start_training('predictor'))
        self.pause_button.on_click(lambda _: self.toggle_pause())
        self.weights_choice.observe(lambda _: self.show_weights(), names='value')
        self.save_button.on_click(lambda _: self.save())

        self.session_part = tagged(
            W.VBox([box(self.session_dropdown, self.fresh_button), self.model_info]),
            'devbot-session-part',
        )
        self.frame_part = tagged(
            W.VBox(
                [
                    box(self.play, self.frame_slider, self.caption, align_items='center'),
                    box(
                        W.VBox([W.HTML('<b>frame</b>'), self.frame_image]),
                        W.VBox(
                            [W.HTML('<b>reconstruction</b>'), self.recon_image, self.recon_caption]
                        ),
                        W.VBox([self.sweep_message, self.sweep_image]),
                    ),
                ]
            ),
            'devbot-frame-part',
        )
        self.train_part = tagged(
            W.VBox(
                [
                    box(
                        self.train_frames, self.steps_box, self.use_threshold, align_items='center'
                    ),
                    box(self.train_ae_button, self.train_pred_button, self.pause_button),
                    self.train_status,
                    box(
                        self.loss_image,
                        W.VBox([W.HTML('<b>weights</b>'), self.weights_choice, self.weights_image]),
                    ),
                    box(self.save_path, self.save_button),
                    self.save_status,
                ]
            ),
            'devbot-train-part',
        )
        self.widget = tagged(
            W.VBox(
                [
                    W.HTML('<h3>devbot session explorer</h3>'),
                    self.message,
                    self.session_part,
                    self.frame_part,
                    self.train_part,
                ]
            ),
            'devbot-explorer-app',
        )
        self._fill_sessions(session)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # =========================================================================================
    # sessions and the model
    # =========================================================================================

    def _fill_sessions(self, session: Any) -> None:
        infos = self.explorer.sessions()
        if not infos:
            self.message.value = (
                f'<b>No sessions</b> under '
                f'<code>{_escape(str(self.explorer.sessions_root))}</code>: '
                'record one (the recorder writes <code>&lt;root&gt;/&lt;robot&gt;/&lt;session&gt;'
                '</code>) or point the explorer at another folder.'
            )
            self.session_part.layout.display = 'none'
            self.frame_part.layout.display = 'none'
            self.train_part.layout.display = 'none'
            return
        options = [
            (f'{i.robot}/{i.name}' + (' (unreadable)' if i.error else ''), str(i.path))
            for i in infos
        ]
        first = None
        if session is not None:
            first = str(self.explorer._resolve(session))
        else:
            first = next((str(i.path) for i in infos if not i.error), options[0][1])
        self._quiet = True
        try:
            self.session_dropdown.options = options
            self.session_dropdown.value = None
        finally:
            self._quiet = False
        self.session_dropdown.value = first

    def _on_session(self, change) -> None:
        if self._quiet or change['new'] is None:
            return
        self.open(change['new'], previous=change['old'])

    def open(self, path: str, previous: str | None = None) -> None:
        """Open a session (a dropdown value: its path), load its robot's model, show frame 0."""
        try:
            self.explorer.open(path)
        except (BagError, ExplorerError, OSError) as exc:
            self.message.value = f'<b>Cannot open {_escape(path)}</b>: {_escape(str(exc))}'
            if previous is not None and self.explorer.session is not None:
                self._quiet = True
                try:
                    self.session_dropdown.value = previous
                finally:
                    self._quiet = False
            return
        self.message.value = ''
        self.run = None  # a paused run trains on the previous session's frames: not resumable here
        self._load_model()
        n = self.explorer.num_frames
        self._quiet = True
        try:
            self.play.playing = False
            self.frame_slider.value = self.play.value = 0
            self.frame_slider.max = self.play.max = max(n - 1, 0)
            self.train_frames.max = max(n - 1, 0)
            self.train_frames.value = (0, max(min(n, 200) - 1, 0))
        finally:
            self._quiet = False
        self.frame_slider.disabled = self.play.disabled = n == 0
        self.save_path.value = str(
            self.explorer.checkpoints_root / f'{self.explorer.robot_type}_explorer'
        )
        _show(self.loss_image, b'')
        self.train_status.value = ''
        self.save_status.value = ''
        self.weights_choice.value = None
        _show(self.weights_image, b'')
        self._update_training_controls()
        self.show_frame(0)

    def _load_model(self) -> None:
        robot_type = self.explorer.robot_type
        if self.explorer.model is not None and self._model_robot_type == robot_type:
            return  # the same robot's model (with what it was trained here) stays
        self.explorer.model = None
        self._model_robot_type = None
        self._model_reason = ''
        try:
            self.explorer.load_model()
        except (ExplorerError, BagError) as exc:
            self._model_reason = str(exc)
        else:
            self._model_robot_type = robot_type
        self._show_model_info()

    def use_fresh_model(self) -> None:
        """Use an untrained model (``fresh_config``) for the open session's action space."""
        from world_model_node.config import WorldModelConfig

        try:
            self.explorer.load_model(fresh=True, config=self.fresh_config or WorldModelConfig())
        except (ExplorerError, BagError) as exc:
            self._model_reason = str(exc)
        else:
            self._model_robot_type = self.explorer.robot_type
            self._model_reason = ''
        self._show_model_info()
        self._update_training_controls()
        self.show_frame(self.frame_slider.value)

    def _show_model_info(self) -> None:
        model = self.explorer.model
        if model is None:
            self.model_info.value = f'<b>No model</b>: {_escape(self._model_reason)}'
            self.fresh_button.layout.display = None
            return
        cfg = model.config
        source = str(model.source) if model.source else 'untrained (not saved yet)'
        self.model_info.value = (
            f'model: <code>{_escape(source)}</code>, {cfg.img_size} px, width {cfg.embed_dim}, '
            f'depth {cfg.depth}'
        )
        self.fresh_button.layout.display = 'none'

    # =========================================================================================
    # frames
    # =========================================================================================

    def _on_frame(self, change) -> None:
        if not self._quiet:
            self.show_frame(change['new'])

    def _on_playing(self, change) -> None:
        if not change['new']:  # stopped: the predictions skipped while playing
            self.show_frame(self.frame_slider.value)

    def show_frame(self, index: int) -> None:
        """Show frame ``index``, its reconstruction and (unless playing) the action sweep."""
        ex = self.explorer
        if ex.session is None or ex.num_frames == 0:
            self.caption.value = 'this session has no camera frames'
            for image in (self.frame_image, self.recon_image, self.sweep_image):
                _show(image, b'')
            return
        self.caption.value = _escape(ex.frame_caption(index))
        _show(self.frame_image, png_bytes(ex.frame(index)))
        self._show_reconstruction(index)
        if self.play.playing:
            self.sweep_message.value = '<i>predictions are shown when playing stops</i>'
            return
        self._show_sweep(index)

    def _show_reconstruction(self, index: int) -> None:
        ex = self.explorer
        if ex.model is None:
            _show(self.recon_image, b'')
            self.recon_caption.value = '<i>no model</i>'
            return
        _, recon, losses = ex.reconstruct([index])
        _show(self.recon_image, png_bytes(recon[0]))
        threshold = ex.model.config.reconstruction_threshold
        gate = 'open' if losses[0] <= threshold else 'closed'
        self.recon_caption.value = f'MSE {losses[0]:.2e}, gate {gate}'

    def _show_sweep(self, index: int) -> None:
        ex = self.explorer
        if ex.model is None:
            _show(self.sweep_image, b'')
            self.sweep_message.value = '<i>no model: no predictions</i>'
            return
        try:
            d = ex.sweep(index)
        except ExplorerError as exc:
            _show(self.sweep_image, b'')
            self.sweep_message.value = f'<i>no predictions: {_escape(str(exc))}</i>'
            return
        self.sweep_message.value = ''
        _show(self.sweep_image, figure_png(ex.sweep_figure(d)))

    # =========================================================================================
    # training
    # =========================================================================================

    @property
    def training(self) -> bool:
        """A training loop is running (not paused, not done)."""
        return self.task is not None and not self.task.done()

    def _update_training_controls(self) -> None:
        no_model = self.explorer.model is None
        busy = self.training
        reason = f'no model: {self._model_reason}' if no_model else ''
        for b in (self.train_ae_button, self.train_pred_button):
            b.disabled = no_model or busy
            b.tooltip = reason or ('training...' if busy else '')
        if no_model:
            self.train_status.value = f'<i>training disabled ({_escape(reason)})</i>'
        can_resume = self.run is not None and not self.run.done
        self.pause_button.disabled = no_model or not (busy or can_resume)
        self.pause_button.description = 'pause' if busy or not can_resume else 'resume'
        self.pause_button.icon = 'pause' if self.pause_button.description == 'pause' else 'play'
        self.session_dropdown.disabled = busy
        self.fresh_button.disabled = busy
        self.save_button.disabled = no_model or busy

    def start_training(self, kind: str) -> None:
        """Start a new run of ``kind`` ('autoencoder' or 'predictor') on the chosen frames, for the
        chosen steps (and the model's threshold if ticked), driven in chunks (see :meth:`drive`)."""
        ex = self.explorer
        if self.training or ex.model is None:
            return
        lo, hi = self.train_frames.value
        cfg = ex.model.config
        threshold = None
        if self.use_threshold.value:
            threshold = (
                cfg.reconstruction_threshold if kind == 'autoencoder' else cfg.prediction_threshold
            )
        train = ex.train_autoencoder if kind == 'autoencoder' else ex.train_predictor
        try:
            self.run = train(
                range(lo, hi + 1),
                steps=int(self.steps_box.value),
                threshold=threshold,
                run=False,
                callback=self._end_of_chunk,
            )
        except (ExplorerError, ValueError) as exc:
            self.train_status.value = f'<b>cannot train the {kind}</b>: {_escape(str(exc))}'
            return
        self._go()

    def toggle_pause(self) -> None:
        """Pause the running loop after its current step, or resume a paused run."""
        if self.training:
            self._pause_requested = True
            self.run.pause()
        elif self.run is not None and not self.run.done:
            self._go()

    def _go(self) -> None:
        self._pause_requested = False
        self._chunk_end = 0.0
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:  # no event loop (a plain script): run to the end right here
            asyncio.run(self.drive())
            return
        self.task = loop.create_task(self.drive())
        self._update_training_controls()

    def _end_of_chunk(self, run) -> None:
        if time.monotonic() >= self._chunk_end:
            run.pause()  # Training.run returns; drive() redraws and yields to the event loop

    async def drive(self) -> None:
        """Advance ``run`` chunk by chunk until it is done or paused, redrawing the loss plot, the
        status and the reconstruction after each chunk and yielding to the event loop between
        chunks (where the kernel handles clicks and slider moves)."""
        run = self.run
        try:
            while not run.done and not self._pause_requested:
                self._chunk_end = time.monotonic() + self.chunk_seconds
                run.run()
                self._show_training()
                await asyncio.sleep(0.01)
        except Exception as exc:  # shown in the app: a callback's exception would be lost
            self.train_status.value = f'<b>training failed</b>: {_escape(repr(exc))}'
            raise
        finally:
            self.task = None
            self._update_training_controls()
        self._show_training()
        if run.done:
            self.show_frame(self.frame_slider.value)
            if self.weights_choice.value is not None:
                self.show_weights()

    def _show_training(self) -> None:
        run = self.run
        if run is None:
            return
        if run.done:
            state = f'done ({run.reason})'
        elif self.training and not self._pause_requested:
            state = 'running'
        else:
            state = 'paused'
        bound = f'/{run.max_steps}' if run.max_steps is not None else ''
        threshold = f', threshold {run.threshold:.3g}' if run.threshold is not None else ''
        self.train_status.value = (
            f'{run.kind}: {run.steps_done}{bound} steps, evaluation loss {run.last_eval:.3e}'
            f'{threshold}: <b>{state}</b>'
        )
        _show(self.loss_image, figure_png(self.explorer.training_figure(run)))
        self._show_reconstruction(self.frame_slider.value)

    # =========================================================================================
    # weights and saving
    # =========================================================================================

    def show_weights(self) -> None:
        """Draw the chosen weight view: the change per layer since the load, or a network."""
        choice = self.weights_choice.value
        if choice is None or self.explorer.model is None:
            _show(self.weights_image, b'')
            return
        if choice == 'weight change':
            fig = self.explorer.weight_change_figure()
        else:
            fig = self.explorer.weights_figure(choice)
        _show(self.weights_image, figure_png(fig))

    def save(self) -> None:
        """Save the model into the folder of the text box (never over a live checkpoint)."""
        from .workbench import LiveCheckpointError

        target = Path(self.save_path.value.strip()).expanduser()
        if not self.save_path.value.strip():
            self.save_status.value = '<b>not saved</b>: give a folder'
            return
        try:
            generation = self.explorer.save_model(target)
        except (ExplorerError, LiveCheckpointError, OSError) as exc:
            self.save_status.value = f'<b>not saved</b>: {_escape(str(exc))}'
            return
        self.save_status.value = (
            f'saved generation {generation} to <code>{_escape(str(target))}</code>'
        )


__all__ = ['ExplorerApp', 'png_bytes', 'figure_png']
