"""Pictures of the online learner's state: frames, reconstructions, predictions, attention.

The learner's ``current_frame``, ``reconstruction_image``, ``predicted_frames``,
``last_prediction``, ``visualization_panel`` and ``attention_maps`` are built from these.

The live panel (``render_panel``) is one RGB image a person reads at 1x in any image viewer:
numpy and OpenCV text, no matplotlib, a few ms per panel. The node publishes it on
world_model/visualization and the run report saves the last one as panels.png.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from . import diagnostics as D
from . import metrics as M
from .diagnostics import patches_to_images
from .models import (
    ACTION_TOKEN,
    QUERY_TOKEN,
    PredictorContext,
    TransformerActionConditionedPredictor,
)

# ---------------------------------------------------------------------------------------------
# the live panel
# ---------------------------------------------------------------------------------------------

FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_SCALE = 0.5  # capitals ~11 px, boxes 14 px (+4 px descenders)
MIN_TEXT_SCALE = (
    0.45  # a text too wide for its band shrinks down to this (12 px boxes), then is cut
)
LINE_HEIGHT = 20  # one line of a label band
BACKGROUND = (12, 12, 12)  # caption band and gaps between tiles
CELL_COLOUR = (38, 38, 38)  # a tile's label bands and frames (unmarked): light text on dark
TEXT_COLOUR = (235, 235, 235)
MUTED_COLOUR = (150, 150, 150)  # missing values
EXECUTED_COLOUR = (40, 210, 40)  # outer frame: the executed candidate
MOST_UNCERTAIN_COLOUR = (255, 150, 0)  # inner frame: the most uncertain candidate of its level
PLACEHOLDER_COLOUR = (44, 44, 44)  # image area of a candidate without a prediction
FRAME_WIDTH = 3  # width of each of the two frames around a tile
GAP = 4  # between tiles and around the panel
MIN_TILE_SIZE = 160  # smaller frames are enlarged by a whole factor (nearest) to at least this
MAX_COLUMNS = 8
# candidates shown at most: with the frame and its reconstruction, three rows of eight tiles
MAX_CANDIDATES = 22
CAPTION_LINES = 3
VALUE_LINES = 2  # under each image


@dataclass(frozen=True)
class CandidateTile:
    """One candidate's prediction of the current frame and its numbers.

    Attributes:
        label: the candidate's name (``L0:1``, ``L1:1-0``).
        image: uint8 [S, S, 3] its prediction of the current frame; None when there is none.
        error: MSE (pixels in [0, 1]) of that prediction vs the current frame.
        uncertainty: the score the selector saw for it.
        executed: it is the (macro-)action the robot executed.
        most_uncertain: it had the highest score of its level.
    """

    label: str
    image: np.ndarray | None
    error: float | None = None
    uncertainty: float | None = None
    executed: bool = False
    most_uncertain: bool = False


@dataclass(frozen=True)
class PanelContent:
    """Everything one live panel shows.

    Attributes:
        step: the learner's step.
        gate_open: the quality gate's state at that step.
        level_spans: primitive steps per action of each hierarchy level (1, macro_length, ...).
        current: uint8 [S, S, 3] the current frame as the model sees it.
        reconstruction: uint8 [S, S, 3] its reconstruction, or None.
        reconstruction_loss: that reconstruction's MSE, or None.
        reconstruction_threshold: the gate opens below this MSE.
        previous_action: label of the primitive action executed before the current frame.
        candidates: the candidates shown, in label order.
        total_candidates: candidates there are (more than shown when capped).
    """

    step: int
    gate_open: bool
    level_spans: tuple[int, ...]
    current: np.ndarray
    reconstruction: np.ndarray | None
    reconstruction_loss: float | None
    reconstruction_threshold: float
    previous_action: str | None
    candidates: list[CandidateTile]
    total_candidates: int


@dataclass(frozen=True)
class PanelLayout:
    """Where everything of a panel goes. Cell 0 is the current frame, cell 1 its reconstruction,
    cell 2 + k candidate k; cells fill rows of ``columns`` left to right. A cell is two frames
    (``FRAME_WIDTH`` each, background unless marked) around a title band, the image and a band of
    ``VALUE_LINES`` value lines; the caption band spans the top of the panel."""

    tile: int  # displayed image side (px)
    cells: int
    columns: int
    rows: int

    @property
    def frame(self) -> int:
        return 2 * FRAME_WIDTH

    @property
    def cell_width(self) -> int:
        return self.tile + 2 * self.frame

    @property
    def cell_height(self) -> int:
        return 2 * self.frame + LINE_HEIGHT + self.tile + VALUE_LINES * LINE_HEIGHT

    @property
    def caption_height(self) -> int:
        return CAPTION_LINES * LINE_HEIGHT + 4

    @property
    def width(self) -> int:
        return GAP + self.columns * (self.cell_width + GAP)

    @property
    def height(self) -> int:
        return self.caption_height + GAP + self.rows * (self.cell_height + GAP)

    def cell(self, i: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of cell i, frames included (x1, y1 exclusive)."""
        r, c = divmod(i, self.columns)
        x = GAP + c * (self.cell_width + GAP)
        y = self.caption_height + GAP + r * (self.cell_height + GAP)
        return x, y, x + self.cell_width, y + self.cell_height

    def title(self, i: int) -> tuple[int, int, int, int]:
        """The title band of cell i, above its image."""
        x0, y0, x1, _ = self.cell(i)
        f = self.frame
        return x0 + f, y0 + f, x1 - f, y0 + f + LINE_HEIGHT

    def image(self, i: int) -> tuple[int, int, int, int]:
        """The image area of cell i."""
        x0, _, x1, _ = self.cell(i)
        y = self.title(i)[3]
        return x0 + self.frame, y, x1 - self.frame, y + self.tile

    def values(self, i: int) -> tuple[int, int, int, int]:
        """The value band of cell i, below its image."""
        x0, y0, x1, y1 = self.image(i)
        return x0, y1, x1, y1 + VALUE_LINES * LINE_HEIGHT


def panel_layout(image_size: int, num_candidates: int) -> PanelLayout:
    """The layout of a panel of ``image_size`` frames and ``num_candidates`` candidate tiles."""
    scale = max(1, math.ceil(MIN_TILE_SIZE / image_size))
    cells = 2 + num_candidates
    columns = min(cells, MAX_COLUMNS)
    return PanelLayout(image_size * scale, cells, columns, math.ceil(cells / columns))


def format_error(value: float | None) -> str:
    return 'err -' if value is None else f'err {value:.2e}'


def format_uncertainty(value: float | None) -> str:
    return 'unc -' if value is None else f'unc {value:.3g}'


def caption_lines(content: PanelContent) -> list[str]:
    """The caption: step, gate and hierarchy state, what the tiles show."""
    gate = 'OPEN' if content.gate_open else 'closed (training the autoencoder)'
    shown = len(content.candidates)
    cap = (
        f'{shown} of {content.total_candidates} candidates (capped at {MAX_CANDIDATES})'
        if shown < content.total_candidates
        else f'{shown} candidates'
    )
    spans = content.level_spans
    levels = ', '.join(f'L{k}' for k in range(len(spans)))
    made = ', '.join(
        f'{span} step{"s" if span > 1 else ""} before (L{k})' if k == 0 else f'{span} (L{k})'
        for k, span in enumerate(spans)
    )
    return [
        f'step {content.step}   gate {gate}   levels {levels}   {cap}',
        f'candidates: their prediction of this frame, made {made}',
        'err: its MSE vs this frame   unc: its score, as the selector saw it',
    ]


def cell_texts(content: PanelContent) -> list[tuple[str, list[str]]]:
    """(title, value lines) of every cell: the frame, the reconstruction, each candidate."""
    frame_lines = [
        f'step {content.step}',
        f'after {content.previous_action}' if content.previous_action else '',
    ]
    loss = content.reconstruction_loss
    recon_lines = [
        'MSE -' if loss is None else f'MSE {loss:.2e}',
        f'gate opens < {content.reconstruction_threshold:.1e}',
    ]
    texts = [('current frame', frame_lines), ('reconstruction', recon_lines)]
    texts += [
        (c.label, [format_error(c.error), format_uncertainty(c.uncertainty)])
        for c in content.candidates
    ]
    return texts


def render_panel(content: PanelContent) -> np.ndarray:
    """Draw one live panel: a caption band, then the current frame, its reconstruction and one
    prediction per candidate, each with a title band above and its numbers below (the text is
    never drawn on an image); the executed candidate framed in ``EXECUTED_COLOUR``, the most
    uncertain one of each level in ``MOST_UNCERTAIN_COLOUR`` inside it.

    Args:
        content: the images and numbers (``OnlineLearner.panel_content``).
    Returns:
        uint8 [H, W, 3] RGB, H and W from ``panel_layout``.
    """
    size = content.current.shape[0]
    lay = panel_layout(size, len(content.candidates))
    img = _background(lay).copy()
    for k, line in enumerate(caption_lines(content)):
        colour = TEXT_COLOUR if k == 0 else MUTED_COLOUR
        _text(img, line, (GAP, (k + 1) * LINE_HEIGHT - 4, lay.width - GAP), colour)
    images = [content.current, content.reconstruction] + [c.image for c in content.candidates]
    marks = [(False, False)] * 2 + [(c.executed, c.most_uncertain) for c in content.candidates]
    for i, ((title, lines), image, (executed, uncertain)) in enumerate(
        zip(cell_texts(content), images, marks)
    ):
        x0, y0, x1, y1 = lay.image(i)
        if image is None:  # no image to cover: the reason goes in its place
            img[y0:y1, x0:x1] = PLACEHOLDER_COLOUR
            missing = 'no reconstruction' if i == 1 else 'no prediction'
            _text(img, missing, (x0 + 4, (y0 + y1) // 2 + 5, x1 - 4), MUTED_COLOUR)
        else:
            scale = lay.tile // image.shape[0]
            img[y0:y1, x0:x1] = image if scale == 1 else _enlarge(image, scale)
        if executed:
            _ring(img, lay.cell(i), 0, EXECUTED_COLOUR)
        if uncertain:
            _ring(img, lay.cell(i), FRAME_WIDTH, MOST_UNCERTAIN_COLOUR)
        tx0, ty0, tx1, _ = lay.title(i)
        tags = [('executed', EXECUTED_COLOUR)] if executed else []
        tags += [('most unc.', MOST_UNCERTAIN_COLOUR)] if uncertain else []
        right = tx1 - 4
        for tag, colour in reversed(tags):
            w = cv2.getTextSize(tag, FONT, MIN_TEXT_SCALE, 1)[0][0]
            right -= w
            _text(img, tag, (right, ty0 + LINE_HEIGHT - 5, right + w), colour, MIN_TEXT_SCALE)
            right -= 6
        _text(img, title, (tx0 + 4, ty0 + LINE_HEIGHT - 5, right), TEXT_COLOUR)
        vx0, vy0, vx1, _ = lay.values(i)
        for k, line in enumerate(lines):
            colour = MUTED_COLOUR if line.endswith(' -') else TEXT_COLOUR
            _text(img, line, (vx0 + 4, vy0 + (k + 1) * LINE_HEIGHT - 5, vx1 - 4), colour)
    return img


@functools.lru_cache(maxsize=4)
def _background(lay: PanelLayout) -> np.ndarray:
    """The panel without images and text: the dark background and the cells' bands."""
    img = np.empty((lay.height, lay.width, 3), np.uint8)
    img[:] = BACKGROUND
    for i in range(lay.cells):
        x0, y0, x1, y1 = lay.cell(i)
        img[y0:y1, x0:x1] = CELL_COLOUR
    img.flags.writeable = False
    return img


def _ring(
    img: np.ndarray, box: tuple[int, int, int, int], inset: int, colour: tuple[int, int, int]
) -> None:
    """A FRAME_WIDTH wide frame ``inset`` px inside the box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box[0] + inset, box[1] + inset, box[2] - inset, box[3] - inset
    f = FRAME_WIDTH
    img[y0 : y0 + f, x0:x1] = colour
    img[y1 - f : y1, x0:x1] = colour
    img[y0:y1, x0 : x0 + f] = colour
    img[y0:y1, x1 - f : x1] = colour


def _enlarge(image: np.ndarray, scale: int) -> np.ndarray:
    side = image.shape[0] * scale
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_NEAREST)


def _text(
    img: np.ndarray,
    text: str,
    where: tuple[int, int, int],
    colour: tuple[int, int, int],
    scale: float = TEXT_SCALE,
) -> None:
    """Draw ``text`` with its baseline at (x, y) and no further right than x_max: shrunk down to
    MIN_TEXT_SCALE, then cut with '..' when it does not fit."""
    x, y, x_max = where
    room = x_max - x
    if not text or room <= 0:
        return
    width = cv2.getTextSize(text, FONT, scale, 1)[0][0]
    if width > room:
        scale = max(MIN_TEXT_SCALE, scale * room / width)
        while text and cv2.getTextSize(text, FONT, scale, 1)[0][0] > room:
            text = text[:-3] + '..' if len(text) > 3 else ''
    cv2.putText(img, text, (x, y), FONT, scale, colour, 1, cv2.LINE_AA)


@torch.no_grad()
def attention_maps(
    predictor: TransformerActionConditionedPredictor,
    ctx: PredictorContext,
    actions: torch.Tensor,
) -> dict[str, Any]:
    """Last-layer attention of a context for every candidate action.

    Args:
        predictor: the level's predictor.
        ctx: the context (from ``build_context``).
        actions: [A, C] the candidates.
    Returns:
        {'attention': [A, H, 1+T, L] (rows: candidate action token then the T future queries;
        keys: the whole sequence), 'key_types': [L] token types, 'query_rows': [1+T] bool (True
        for future queries), 'metrics': APA/ALF/TTAR/RI@16/entropy of candidate 0}.
    """
    out = predictor.predict(ctx, actions, return_attn=True)
    t = predictor.tokens_per_frame
    device = ctx.token_types.device
    key_types = torch.cat(
        [ctx.token_types, torch.tensor([ACTION_TOKEN] + [QUERY_TOKEN] * t, device=device)]
    )
    rows = torch.zeros(1 + t, dtype=torch.bool, device=device)
    rows[1:] = True
    return {
        'attention': out.attention,
        'key_types': key_types,
        'query_rows': rows,
        'metrics': M.to_floats(D.attention_metrics(out.attention[0], key_types, rows)),
    }


__all__ = [
    'patches_to_images',
    'CandidateTile',
    'PanelContent',
    'PanelLayout',
    'panel_layout',
    'render_panel',
    'caption_lines',
    'cell_texts',
    'attention_maps',
]
