"""The clickable session explorer (``devbot_explorer.explorer_widgets.ExplorerApp``): its widgets
driven from Python, its notebook executed headless, and the notebook served by Voila and clicked in
a real headless Chromium (skipped, with the reason, where Debian's chromium and chromium-driver are
not installed).

``EXPLORER_APP_SCREENSHOT=docs/images/explorer_app.png`` makes the browser test write its
screenshot there (as a small palette PNG)."""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from devbot_explorer.demo import write_demo_checkpoint, write_demo_sessions
from devbot_explorer.explorer import SessionExplorer
from devbot_explorer.explorer_widgets import ExplorerApp, png_bytes

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / 'notebooks' / 'session_explorer_app.ipynb'
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
CHROMEDRIVER = shutil.which('chromedriver')


@pytest.fixture(scope='module')
def demo(tmp_path_factory) -> Path:
    """Two dot and two JetBot sessions, and a tiny checkpoint for the dot only."""
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('explorer_app')
    infos = write_demo_sessions(root / 'sessions', dot_steps=60, jetbot_steps=10)
    write_demo_checkpoint(
        root / 'checkpoints' / 'toroidal_dot',
        infos[0].path,
        autoencoder_steps=20,
        predictor_steps=10,
    )
    return root


def app_on(demo: Path, session: str = 'toroidal_dot/demo-00', **kwargs) -> ExplorerApp:
    return ExplorerApp(
        SessionExplorer(demo / 'sessions', demo / 'checkpoints'), session=session, **kwargs
    )


def is_png(image) -> bool:
    """An Image widget holds a PNG."""
    return bytes(image.value).startswith(b'\x89PNG')


def text(html: str) -> str:
    return re.sub(r'<[^>]+>', '', html)


def test_frames_reconstruction_and_predictions_follow_the_slider(demo):
    app = app_on(demo)
    ex = app.explorer
    labels = [label for label, _ in app.session_dropdown.options]
    assert labels == [
        'jetbot/demo-00',
        'jetbot/demo-01',
        'toroidal_dot/demo-00',
        'toroidal_dot/demo-01',
    ]
    assert ex.info.name == 'demo-00' and ex.robot_type == 'toroidal_dot'
    assert app.frame_slider.max == app.play.max == ex.num_frames - 1
    assert app.frame_image.value == png_bytes(ex.frame(0))
    assert not app.train_ae_button.disabled and not app.train_pred_button.disabled
    assert 'checkpoints/toroidal_dot' in app.model_info.value

    moved = next(i for i in range(1, ex.num_frames) if not np.array_equal(ex.frame(i), ex.frame(0)))
    app.frame_slider.value = moved
    assert app.frame_image.value == png_bytes(ex.frame(moved)) != png_bytes(ex.frame(0))
    assert text(app.caption.value).startswith(f'frame {moved} ')
    _, recon, losses = ex.reconstruct([moved])
    assert app.recon_image.value == png_bytes(recon[0])
    assert f'MSE {losses[0]:.2e}' in app.recon_caption.value
    assert is_png(app.sweep_image) and app.sweep_image.layout.display is None

    last = ex.num_frames - 1  # no action was recorded after the last frame: no predictions
    app.frame_slider.value = last
    assert app.sweep_image.value == b'' and app.sweep_image.layout.display == 'none'
    assert 'no recorded action after it' in app.sweep_message.value

    app.play.playing = True  # while playing, only the frame and its reconstruction are redrawn
    app.frame_slider.value = 3
    assert app.sweep_image.value == b'' and 'when playing stops' in app.sweep_message.value
    app.play.playing = False
    assert is_png(app.sweep_image) and app.sweep_message.value == ''


def test_training_runs_in_chunks_pauses_resumes_and_saves(demo, tmp_path):
    app = app_on(demo, train_steps=60, chunk_seconds=0.05)
    before = app.recon_image.value
    app.train_frames.value = (0, 39)
    seen: dict = {}

    async def clicks():
        app.train_ae_button.click()
        assert app.training and app.train_ae_button.disabled and app.train_pred_button.disabled
        assert app.session_dropdown.disabled and app.pause_button.description == 'pause'
        while app.run.steps_done == 0:  # the loop runs on this event loop, between our awaits
            await asyncio.sleep(0.01)
        app.pause_button.click()
        while app.training:
            await asyncio.sleep(0.01)
        seen['paused_at'] = app.run.steps_done
        seen['paused_status'] = text(app.train_status.value)
        seen['resume_label'] = app.pause_button.description
        await asyncio.sleep(0.2)
        seen['still'] = app.run.steps_done
        app.pause_button.click()  # resume
        while app.training:
            await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(clicks(), 120))
    run = app.run
    assert 0 < seen['paused_at'] < 60 and seen['still'] == seen['paused_at']
    assert 'paused' in seen['paused_status'] and seen['resume_label'] == 'resume'
    assert run.kind == 'autoencoder' and run.steps_done == 60 and run.reason == 'steps'
    assert len(run.evals) >= 3, 'evaluated at the start and at the end of every chunk'
    status = text(app.train_status.value)
    assert status.startswith('autoencoder: 60/60 steps') and 'done (steps)' in status
    assert f'{run.last_eval:.3e}' in status
    assert is_png(app.loss_image)
    assert app.recon_image.value != before, 'the reconstruction is redrawn with the trained model'
    assert not app.train_ae_button.disabled and not app.session_dropdown.disabled
    assert app.pause_button.disabled
    change = app.explorer.model.weight_change()
    assert any(v > 0 for k, v in change.items() if k.startswith('autoencoder/'))

    app.steps_box.value = 5
    asyncio.run(_click_and_wait(app, app.train_pred_button))
    assert app.run.kind == 'predictor' and app.run.steps_done == 5
    assert text(app.train_status.value).startswith('predictor: 5/5 steps')

    for choice in ('weight change', 'autoencoder', 'predictor'):
        app.weights_choice.value = choice
        assert is_png(app.weights_image)

    app.save_path.value = str(tmp_path / 'tuned')
    app.save_button.click()
    assert text(app.save_status.value).startswith('saved generation')
    assert sorted(p.name for p in (tmp_path / 'tuned').iterdir()) == [
        'autoencoder.pth',
        'learner_state.pth',
        'predictor_0.pth',
    ]
    app.save_path.value = str(demo / 'checkpoints' / 'toroidal_dot')  # the live one: refused
    app.save_button.click()
    assert 'not saved' in app.save_status.value and 'loaded from' in app.save_status.value

    app.steps_box.value = 1000  # a run paused, then another session: nothing left to resume
    app.chunk_seconds = 0.02
    asyncio.run(_click_and_wait(app, app.train_ae_button, pause=True))
    assert not app.run.done and app.pause_button.description == 'resume'
    app.session_dropdown.value = str(demo / 'sessions' / 'toroidal_dot' / 'demo-01')
    assert app.run is None and app.pause_button.disabled and app.loss_image.value == b''
    assert app.explorer.model.weight_change()['autoencoder/decoder'] > 0, 'the same model stays'


async def _click_and_wait(app: ExplorerApp, button, pause: bool = False) -> None:
    button.click()
    if pause:
        await asyncio.sleep(0)
        app.pause_button.click()
    while app.training:
        await asyncio.sleep(0.01)


def test_without_sessions_or_model_it_says_why(demo, tmp_path):
    empty = ExplorerApp(SessionExplorer(tmp_path / 'nothing', tmp_path / 'none'))
    assert 'No sessions' in empty.message.value and str(tmp_path / 'nothing') in empty.message.value
    assert empty.frame_part.layout.display == 'none' and empty.train_part.layout.display == 'none'

    from world_model_node.config import WorldModelConfig

    app = app_on(demo, session='jetbot/demo-00', fresh_config=WorldModelConfig.tiny())
    assert app.explorer.model is None and app.explorer.robot_type == 'jetbot'
    assert app.train_ae_button.disabled and app.train_pred_button.disabled
    assert app.save_button.disabled and app.pause_button.disabled
    assert 'no world-model checkpoint' in app.train_ae_button.tooltip
    assert 'training disabled' in app.train_status.value and 'No model' in app.model_info.value
    assert is_png(app.frame_image) and app.recon_image.value == b''
    assert app.fresh_button.layout.display is None
    app.fresh_button.click()
    assert app.explorer.model is not None and app.explorer.model.source is None
    assert not app.train_ae_button.disabled and is_png(app.recon_image)
    assert app.fresh_button.layout.display == 'none'
    # back to the dot: its own checkpoint is loaded (not the JetBot's untrained model)
    app.session_dropdown.value = str(demo / 'sessions' / 'toroidal_dot' / 'demo-01')
    assert app.explorer.robot_type == 'toroidal_dot'
    assert app.explorer.model.source == (demo / 'checkpoints' / 'toroidal_dot').resolve()


def _with_parameters(path: Path, parameters: str) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if 'parameters' in c.metadata.get('tags', []))
    cell.source += '\n' + parameters
    return nb


def test_app_notebook_builds_the_widget_tree_headless(tmp_path):
    nb = _with_parameters(NOTEBOOK, f'WORK_DIR = {str(tmp_path)!r}')
    NotebookClient(
        nb,
        timeout=180,
        kernel_name='python3',
        resources={'metadata': {'path': str(NOTEBOOK.parent)}},
    ).execute()
    last = nb.cells[-1].outputs
    views = [o for o in last if 'application/vnd.jupyter.widget-view+json' in o.get('data', {})]
    assert len(views) == 1, last
    state = nb.metadata['widgets']['application/vnd.jupyter.widget-state+json']['state']
    root = state[views[0]['data']['application/vnd.jupyter.widget-view+json']['model_id']]
    assert 'devbot-explorer-app' in root['state']['_dom_classes']
    by_class = {
        c: m['state']
        for m in state.values()
        for c in m['state'].get('_dom_classes', [])
        if c.startswith('devbot-')
    }
    assert by_class['devbot-session']['_options_labels'] == [
        'jetbot/demo-00',
        'jetbot/demo-01',
        'toroidal_dot/demo-00',
        'toroidal_dot/demo-01',
    ]
    assert by_class['devbot-frame-slider']['max'] == 60 and by_class['devbot-play']['max'] == 60
    assert by_class['devbot-train-autoencoder']['disabled'] is False
    assert 'checkpoints/toroidal_dot' in by_class['devbot-model']['value']
    assert 'frame 0 ' in by_class['devbot-caption']['value']
    assert not [o for c in nb.cells for o in c.get('outputs', []) if o.get('name') == 'stderr']


# ---------------------------------------------------------------------------------------------
# in a browser
# ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _wait(what: str, predicate, timeout: float = 60.0, every: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f'timed out after {timeout:.0f} s waiting for {what}')


# The white pixels of an <img> (the dot): count and centre, read back through a canvas.
BRIGHT_JS = """
const img = arguments[0];
const c = document.createElement('canvas');
c.width = img.naturalWidth; c.height = img.naturalHeight;
const g = c.getContext('2d'); g.drawImage(img, 0, 0);
const d = g.getImageData(0, 0, c.width, c.height).data;
let n = 0, sx = 0, sy = 0;
for (let i = 0; i < d.length; i += 4) {
  if (d[i] > 128) { const p = i / 4; n++; sx += p % c.width; sy += Math.floor(p / c.width); }
}
return [c.width, c.height, n, n ? sx / n : -1, n ? sy / n : -1];
"""


def _bright(frame: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(frame[:, :, 0] > 128)
    return [frame.shape[1], frame.shape[0], len(xs), float(xs.mean()), float(ys.mean())]


@pytest.fixture
def voila_app(tmp_path):
    """The app notebook (on demo data in tmp_path) served by Voila on loopback with a token."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            'needs a headless Chromium and its driver: apt-get install -y chromium chromium-driver'
        )
    nb = _with_parameters(NOTEBOOK, f'WORK_DIR = {str(tmp_path / "work")!r}\nTRAIN_STEPS = 30')
    nbformat.write(nb, tmp_path / 'app.ipynb')
    port, token = _free_port(), os.urandom(12).hex()
    log = open(tmp_path / 'voila.log', 'w')
    server = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'voila',
            'app.ipynb',
            '--no-browser',
            f'--port={port}',
            '--Voila.ip=127.0.0.1',
            f'--token={token}',
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def up() -> bool:
            assert server.poll() is None, (tmp_path / 'voila.log').read_text()
            try:
                socket.create_connection(('127.0.0.1', port), timeout=2).close()
                return True
            except OSError:
                return False

        _wait('voila to listen', up, timeout=60)
        yield f'http://127.0.0.1:{port}/?token={token}', tmp_path
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'):
        options.add_argument(arg)
    options.add_argument('--window-size=1280,1400')
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_app_in_a_browser_served_by_voila(voila_app, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, tmp = voila_app
    d = browser
    d.get(url)
    css = lambda sel: d.find_element(By.CSS_SELECTOR, sel)  # noqa: E731

    def shown(sel: str) -> str | None:
        els = d.find_elements(By.CSS_SELECTOR, sel)
        return els[0].get_attribute('src') if els and els[0].is_displayed() else None

    frame_src = _wait('the frame image', lambda: shown('img.devbot-frame'), timeout=120)
    ex = SessionExplorer(tmp / 'work' / 'sessions')
    ex.open('toroidal_dot/demo-00')
    img = css('img.devbot-frame')
    _wait('the frame to load', lambda: d.execute_script('return arguments[0].complete', img))
    assert d.execute_script(BRIGHT_JS, img) == pytest.approx(_bright(ex.frame(0)))
    assert css('.devbot-session select').get_attribute('value').endswith('toroidal_dot/demo-00')
    assert css('.devbot-caption').text.startswith('frame 0 ')

    # the slider, by keyboard: three steps right show frame 3 (the dot where the bag has it)
    css('.devbot-frame-slider .noUi-handle').click()
    for _ in range(3):
        css('.devbot-frame-slider .noUi-handle').send_keys(Keys.ARROW_RIGHT)
    _wait('frame 3', lambda: css('.devbot-caption').text.startswith('frame 3 '))
    _wait('a new frame image', lambda: shown('img.devbot-frame') not in (None, frame_src))
    img = css('img.devbot-frame')
    _wait('the frame to load', lambda: d.execute_script('return arguments[0].complete', img))
    assert d.execute_script(BRIGHT_JS, img) == pytest.approx(_bright(ex.frame(3)))
    assert shown('img.devbot-sweep'), 'frame 3 has an action after it: the predictions show'

    # play: the slider moves on by itself (predictions wait), then pause (predictions again)
    readout = lambda: int(css('.devbot-frame-slider .widget-readout').text)  # noqa: E731
    css('.devbot-play button').click()
    _wait('playing', lambda: readout() >= 6, timeout=30)
    _wait(
        'no predictions while playing',
        lambda: 'when playing stops' in css('.devbot-frame-part').text,
    )
    css('.devbot-play button').click()  # the play button pauses while playing
    at = readout()
    _wait(
        'the caption of the frame played to',
        lambda: css('.devbot-caption').text.startswith(f'frame {at} '),
    )
    _wait(
        'predictions after the pause',
        lambda: 'when playing stops' not in css('.devbot-frame-part').text,
    )
    assert at >= 6 and readout() == at

    # train the autoencoder 30 steps: the status says so, the loss plot appears
    assert not css('.devbot-loss').is_displayed()
    recon_src = shown('img.devbot-recon')
    css('.devbot-train-autoencoder').click()
    status = _wait(
        'training to finish',
        lambda: 'done (steps)' in (t := css('.devbot-train-status').text) and t,
        timeout=90,
    )
    assert status.startswith('autoencoder: 30/30 steps, evaluation loss')
    _wait('the loss plot', lambda: shown('img.devbot-loss'))
    _wait('the new reconstruction', lambda: shown('img.devbot-recon') not in (None, recon_src))

    # a long run, paused from the browser while it runs, stays paused
    steps = css('.devbot-steps input')
    steps.send_keys(Keys.CONTROL, 'a')
    steps.send_keys('5000', Keys.ENTER)
    _wait('the steps', lambda: steps.get_attribute('value') == '5000', timeout=10)
    css('.devbot-train-autoencoder').click()
    _wait('running', lambda: 'running' in css('.devbot-train-status').text, timeout=30)
    css('.devbot-pause').click()
    paused = _wait('paused', lambda: 'paused' in (t := css('.devbot-train-status').text) and t)
    time.sleep(1.0)
    assert css('.devbot-train-status').text == paused
    assert css('.devbot-pause').text.strip() == 'resume'
    found = re.match(r'autoencoder: (\d+)/5000 steps', paused)
    assert found, paused
    done = int(found.group(1))
    assert 0 < done < 5000

    css('.devbot-weights-choice button').click()  # the weight change since the load
    _wait('the weight view', lambda: shown('img.devbot-weights'))
    d.set_window_size(1280, d.execute_script('return document.body.scrollHeight') + 40)
    d.save_screenshot(str(tmp / 'explorer_app.png'))
    shot = Path(os.environ.get('EXPLORER_APP_SCREENSHOT', tmp / 'explorer_app.png'))
    if shot != tmp / 'explorer_app.png':
        _small_png(tmp / 'explorer_app.png', shot)


def _small_png(source: Path, target: Path) -> None:
    """A palette PNG of a screenshot (small enough to keep in the repository)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.open(source).convert('RGB').quantize(colors=64).save(buf, format='png', optimize=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(buf.getvalue())
