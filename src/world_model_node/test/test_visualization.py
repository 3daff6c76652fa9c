"""The live panel: its layout, the text and marks drawn from given numbers, and the learner's
numbers going into it (tiny configs, 32x32 frames)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from toroidal_sim.env import ToroidalDotConfig, ToroidalDotEnv
from world_model_node import visualization as V
from world_model_node.config import WorldModelConfig
from world_model_node.learner import OnlineLearner, _panel_candidates

torch.set_num_threads(1)
ACTIONS = np.array([[-1.0], [1.0]], np.float32)  # the dot: stay, move right


def image(size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def content(size: int = 32, n: int = 4, executed: int = 1, most: int = 2, **kw) -> V.PanelContent:
    candidates = [
        V.CandidateTile(
            f'L0:{i}', image(size, 10 + i), 0.001 * (i + 1), 0.5 + i, i == executed, i == most
        )
        for i in range(n)
    ]
    values = dict(
        step=42,
        gate_open=True,
        level_spans=(1,),
        current=image(size, 0),
        reconstruction=image(size, 1),
        reconstruction_loss=4.56e-4,
        reconstruction_threshold=1e-3,
        previous_action='L0:1',
        candidates=candidates,
        total_candidates=n,
    )
    values.update(kw)
    return V.PanelContent(**values)


def crop(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return img[y0:y1, x0:x1]


def colour_of(pixels: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in p) for p in pixels.reshape(-1, 3)}


# ------------------------------------------------------------------ layout and drawing


@pytest.mark.parametrize('size', [32, 224])
@pytest.mark.parametrize('n', [1, 2, 6, 22])
def test_panel_size_and_grid_for_n_candidates(size, n):
    lay = V.panel_layout(size, n)
    assert lay.tile >= V.MIN_TILE_SIZE and lay.tile % size == 0  # whole-factor enlargement
    assert lay.columns == min(n + 2, V.MAX_COLUMNS) and lay.rows == -(-(n + 2) // lay.columns)
    img = V.render_panel(content(size, n, executed=0, most=0))
    assert img.shape == (lay.height, lay.width, 3) and img.dtype == np.uint8
    assert lay.width == V.GAP + lay.columns * (lay.cell_width + V.GAP)
    # cells do not overlap and lie inside the panel; candidate k is cell 2 + k
    boxes = [lay.cell(i) for i in range(n + 2)]
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        assert 0 < x0 < x1 <= lay.width and lay.caption_height < y0 < y1 <= lay.height
        for j in range(i):
            a = boxes[j]
            assert x1 <= a[0] or a[2] <= x0 or y1 <= a[1] or a[3] <= y0


def test_images_are_drawn_untouched_and_text_only_in_the_label_bands():
    c = content(32, 4)
    img = V.render_panel(c)
    lay = V.panel_layout(32, 4)
    scale = lay.tile // 32
    images = [c.current, c.reconstruction] + [t.image for t in c.candidates]
    for i, expected in enumerate(images):
        big = expected.repeat(scale, axis=0).repeat(scale, axis=1)
        assert np.array_equal(crop(img, lay.image(i)), big), f'cell {i}: text over the image'
        # text in the title band and on both value lines: light pixels on the dark band
        for band in (lay.title(i), lay.values(i)):
            pixels = crop(img, band)
            assert (pixels.max(axis=2) > 150).sum() > 30, f'cell {i}: no text in {band}'
        x0, y0, x1, y1 = lay.values(i)
        for line in range(V.VALUE_LINES):
            top = y0 + line * V.LINE_HEIGHT
            assert (img[top : top + V.LINE_HEIGHT, x0:x1].max(axis=2) > 150).any()
    caption = img[: lay.caption_height]
    assert (caption.max(axis=2) > 150).sum() > 200


def test_text_is_at_least_12_px_high():
    img = V.render_panel(content(32, 2))
    lay = V.panel_layout(32, 2)
    x0, y0, x1, _ = lay.values(1)  # 'gate opens < 1.0e-03': ascenders and descenders
    rows = np.nonzero((img[y0 + V.LINE_HEIGHT : y0 + 2 * V.LINE_HEIGHT, x0:x1].max(axis=2) > 120))
    assert rows[0].max() - rows[0].min() + 1 >= 12


def test_executed_is_framed_and_most_uncertain_marked():
    img = V.render_panel(content(32, 4, executed=1, most=2))
    lay = V.panel_layout(32, 4)
    f = V.FRAME_WIDTH

    def rings(i):
        x0, y0, x1, y1 = lay.cell(i)
        outer = np.concatenate(
            [img[y0 : y0 + f, x0:x1].reshape(-1, 3), img[y0:y1, x0 : x0 + f].reshape(-1, 3)]
        )
        outer = np.concatenate(
            [outer, img[y1 - f : y1, x0:x1].reshape(-1, 3), img[y0:y1, x1 - f : x1].reshape(-1, 3)]
        )
        inner = img[y0 + f : y0 + 2 * f, x0 + f : x1 - f]
        inner_side = img[y0 + f : y1 - f, x1 - 2 * f : x1 - f]
        return colour_of(outer), colour_of(inner) | colour_of(inner_side)

    assert rings(2 + 1) == ({V.EXECUTED_COLOUR}, {V.CELL_COLOUR})
    assert rings(2 + 2) == ({V.CELL_COLOUR}, {V.MOST_UNCERTAIN_COLOUR})
    for i in (0, 1, 2 + 0, 2 + 3):
        assert rings(i) == ({V.CELL_COLOUR}, {V.CELL_COLOUR}), i
    both = V.render_panel(content(32, 4, executed=3, most=3))
    x0, y0, x1, _ = lay.cell(2 + 3)
    assert tuple(both[y0, x0 + 10]) == V.EXECUTED_COLOUR
    assert tuple(both[y0 + f, x0 + 10]) == V.MOST_UNCERTAIN_COLOUR


def test_the_text_is_made_of_the_given_numbers():
    c = content(
        32,
        3,
        candidates=[
            V.CandidateTile('L0:0', image(32, 5), 1.234e-3, 0.5, True, False),
            V.CandidateTile('L1:1-0', None, None, None),
            V.CandidateTile('L1:0-1', image(32, 6), 2.5e-2, -1.25, False, True),
        ],
        total_candidates=30,
        level_spans=(1, 2),
        gate_open=False,
    )
    assert V.cell_texts(c) == [
        ('current frame', ['step 42', 'after L0:1']),
        ('reconstruction', ['MSE 4.56e-04', 'gate opens < 1.0e-03']),
        ('L0:0', ['err 1.23e-03', 'unc 0.5']),
        ('L1:1-0', ['err -', 'unc -']),
        ('L1:0-1', ['err 2.50e-02', 'unc -1.25']),
    ]
    caption = V.caption_lines(c)
    assert caption[0].startswith('step 42   gate closed')
    assert 'levels L0, L1' in caption[0] and '3 of 30 candidates (capped at 22)' in caption[0]
    assert '1 step before (L0), 2 (L1)' in caption[1]
    # a candidate without a prediction shows the placeholder and says so, not an image
    img = V.render_panel(c)
    lay = V.panel_layout(32, 3)
    placeholder = crop(img, lay.image(2 + 1))
    assert (placeholder == V.PLACEHOLDER_COLOUR).all(axis=2).mean() > 0.9
    assert (placeholder.max(axis=2) > 100).sum() > 30  # 'no prediction'
    # other numbers draw other text, in that candidate's value band only
    other = V.render_panel(
        V.PanelContent(
            **{
                **c.__dict__,
                'candidates': [
                    V.CandidateTile('L0:0', image(32, 5), 9.876e-3, 0.5, True, False),
                    *c.candidates[1:],
                ],
            }
        )
    )
    changed = np.nonzero((img != other).any(axis=2))
    x0, y0, x1, y1 = lay.values(2)
    assert changed[0].size and changed[0].min() >= y0 and changed[0].max() < y0 + V.LINE_HEIGHT
    assert changed[1].min() >= x0 and changed[1].max() < x1


def test_too_long_text_is_cut_inside_its_band():
    c = content(32, 1, candidates=[V.CandidateTile('L9:' + '-'.join('1' * 40), image(32, 3))])
    img = V.render_panel(c)
    lay = V.panel_layout(32, 1)
    x0, y0, x1, y1 = lay.title(2)
    assert colour_of(img[y0:y1, x1 : lay.cell(2)[2]]) == {V.CELL_COLOUR}


# ------------------------------------------------------------------ the learner's numbers


def dot_env(seed: int = 0) -> ToroidalDotEnv:
    return ToroidalDotEnv(ToroidalDotConfig(size=32, dot_radius=2, move_pixels=5, seed=seed))


def test_the_panel_carries_the_learners_numbers():
    # gate always open, predictions never trained: the autoencoder stays as it encoded the frame,
    # so the learner's own fresh-prediction error is the panel's error of the executed candidate
    cfg = WorldModelConfig.tiny(
        reconstruction_threshold=1.0, prediction_threshold=1.0, prediction_variance_fraction=0.0
    )
    learner = OnlineLearner(cfg, ACTIONS)
    env = dot_env(3)
    actions = [1, 0, 1, 1]
    result = learner.observe(env.frame())
    for a in actions:
        before = result
        passed = learner.last_scoring.pred_patches[0].clone()
        learner.record_action(a)
        result = learner.observe(env.step(a))
        c = learner.panel_content()
        assert c.step == result.step and c.gate_open and c.level_spans == (1,)
        assert c.reconstruction_loss == pytest.approx(result.reconstruction_loss, rel=1e-6)
        assert c.previous_action == f'L0:{a}' and c.total_candidates == 2
        assert [t.label for t in c.candidates] == ['L0:0', 'L0:1']
        assert [t.uncertainty for t in c.candidates] == [float(s) for s in before.scores]
        assert [t.executed for t in c.candidates] == [i == a for i in range(2)]
        most = int(np.argmax(before.scores))
        assert [t.most_uncertain for t in c.candidates] == [i == most for i in range(2)]
        target = learner.latest.target
        for i, tile in enumerate(c.candidates):
            expected = float(F.mse_loss(passed[i : i + 1], target))
            assert tile.error == pytest.approx(expected, rel=1e-5)
            assert np.array_equal(
                tile.image, V.patches_to_images(learner.autoencoder, passed[i : i + 1])[0]
            )
        assert c.candidates[a].error == pytest.approx(result.prediction_errors[0], rel=1e-5)
        assert np.array_equal(c.current, learner.current_frame())
        assert np.array_equal(learner.visualization_panel(), V.render_panel(c))


def test_macro_levels_show_their_prediction_of_this_frame():
    cfg = WorldModelConfig.tiny(
        reconstruction_threshold=1.0,
        prediction_threshold=1.0,
        prediction_variance_fraction=0.0,
        level_creation_steps=2,
    )
    learner = OnlineLearner(cfg, ACTIONS)
    env = dot_env(4)
    rng = np.random.default_rng(0)
    results = [learner.observe(env.frame())]
    passes = {}  # entry step -> per-level predictions of that scoring pass
    while True:
        passes[learner.last_scoring.entry_step] = [
            None if p is None else p.clone() for p in learner.last_scoring.pred_patches
        ]
        a = int(rng.integers(0, 2))
        learner.record_action(a)
        results.append(learner.observe(env.step(a)))
        if learner.num_levels == 3 and len(results) > 12:
            break
    c = learner.panel_content()
    assert c.level_spans == (1, 2, 4) and c.total_candidates == 2 + 4 + 16
    assert len(c.candidates) == 22  # all of them: not above the cap
    history = list(learner.history)
    target = learner.latest.target
    offset = 0
    for lvl in learner.levels:
        tiles = c.candidates[offset : offset + lvl.num_actions]
        offset += lvl.num_actions
        scored = history[-1 - lvl.span]
        made = next(r for r in results if r.step == scored.step)
        scores, labels = made.level_scores(lvl.index)
        if not len(scores):  # the level is younger than that frame's scoring
            assert all(t.image is None and t.error is None for t in tiles)
            continue
        assert [t.label for t in tiles] == [str(lab) for lab in labels]
        assert [t.uncertainty for t in tiles] == [float(s) for s in scores]
        macro = [e.action for e in history[-1 - lvl.span : -1]]
        executed = [t.executed for t in tiles]
        assert executed.index(True) == sum(p * 2**k for k, p in enumerate(reversed(macro)))
        assert [t.most_uncertain for t in tiles].index(True) == int(np.argmax(scores))
        predictions = passes[scored.step][lvl.index]
        for i, tile in enumerate(tiles):
            expected = float(F.mse_loss(predictions[i : i + 1], target))
            assert tile.error == pytest.approx(expected, rel=1e-5)
    # only the predictions whose frame is still to come (or is this one) are kept
    position = {e.step: i for i, e in enumerate(history)}
    for kept in learner.scoring_passes:
        for lvl, p in zip(learner.levels, kept.pred_patches):
            alive = position[kept.entry_step] + lvl.span >= len(history) - 1
            assert (p is not None) == alive, (kept.entry_step, lvl.index)


def test_a_capped_panel_keeps_level_0_the_executed_and_the_most_uncertain():
    rows = [(0, i, None, None, 0.1, i == 1) for i in range(3)]
    rows += [(1, i, None, None, float(i), i == 0) for i in range(9)]  # 8 most uncertain
    rows += [(2, i, None, None, None, False) for i in range(5)]  # not scored yet
    shown = _panel_candidates(rows, {0: 0, 1: 8}, cap=6)
    assert [(r[0], r[1]) for r in shown] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 7), (1, 8)]
    assert _panel_candidates(rows, {}, cap=len(rows)) == rows


def test_panel_before_any_prediction_and_after_a_resume(tmp_path):
    cfg = WorldModelConfig.tiny(reconstruction_threshold=1.0)
    learner = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    assert learner.panel_content() is None and learner.visualization_panel() is None
    env = dot_env(5)
    learner.observe(env.frame())
    c = learner.panel_content()
    assert c.previous_action is None and all(t.image is None for t in c.candidates)
    learner.record_action(1)
    learner.observe(env.step(1))
    learner.save()
    resumed = OnlineLearner(cfg, ACTIONS, checkpoint_dir=tmp_path)
    c = resumed.panel_content()  # no encoding, no scoring pass yet: the frame and placeholders
    assert c.reconstruction is None and c.reconstruction_loss is None
    assert np.array_equal(c.current, learner.current_frame())
    lay = V.panel_layout(32, 2)
    assert resumed.visualization_panel().shape == (lay.height, lay.width, 3)
