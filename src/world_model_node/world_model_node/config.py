"""Configuration of the world model: one dataclass, loadable from YAML or ROS parameters.

Every field carries its description (``metadata['help']``, see ``descriptions``), which the node
declares as its ROS parameter's description. Field names are lower-case (ROS parameter style);
``from_dict`` also accepts UPPER_CASE names (``LOG_INTERVAL`` -> ``log_interval``).

Example:
    >>> cfg = WorldModelConfig()                 # full size: 224x224 frames, the default nets
    >>> tiny = WorldModelConfig.tiny()           # 32x32 images, small nets: for tests
    >>> cfg = WorldModelConfig.from_yaml('config/world_model.yaml')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A world-model configuration that cannot be used (unknown key, bad value)."""


def read_yaml(path: str | Path) -> Any:
    """A YAML document (an empty file is ``{}``).

    Raises:
        ConfigError: the file does not exist or is not valid YAML.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f'config file not found: {path}')
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f'{path}: invalid YAML: {exc}') from exc


def param(default: Any, help: str, check: str | None = None) -> Any:
    """A config field with its description (``metadata['help']``, the ROS parameter's) and the
    range ``__post_init__`` checks (``metadata['check']``): ``'positive'`` (> 0) or ``'nonneg'``
    (a finite number >= 0)."""
    if check not in (None, 'positive', 'nonneg'):
        raise ValueError(f'unknown check {check!r}')
    return dataclasses.field(default=default, metadata={'help': help, 'check': check})


@dataclass
class WorldModelConfig:
    # ---------------------------------------------------------------- quality thresholds
    reconstruction_threshold: float = param(
        0.0005,
        'gate: act only when the unmasked reconstruction MSE is below this (see also '
        'reconstruction_variance_fraction)',
        check='nonneg',
    )
    reconstruction_variance_fraction: float = param(
        0.05,
        "gate: also act when the reconstruction MSE is below this fraction of the frame's pixel "
        'variance (0: off). On a camera image (variance ~0.04) 5e-4 alone means an explained '
        'variance of 0.99, which a young autoencoder chases on every new view while the robot '
        'stands still; on the dot world (variance 1.6e-3) reconstruction_threshold is the looser '
        'test and rules',
        check='nonneg',
    )
    prediction_threshold: float = param(
        0.0005,
        'train a level when its fresh prediction MSE is above this (see also '
        'prediction_variance_fraction)',
        check='nonneg',
    )
    prediction_variance_fraction: float = param(
        0.05,
        "also train a level when its fresh prediction MSE is above this fraction of the frame's "
        'pixel variance (0: off). On a camera image (variance ~0.05) prediction_threshold is the '
        'stricter test; on a nearly uniform frame (the dot world: variance 1.6e-3) the absolute '
        'threshold alone stops training at an explained variance of ~0.69',
        check='nonneg',
    )
    gate_patience: int = param(
        300,
        'gate-closed iterations without a 2% better reconstruction MSE after which the frame is '
        'acted on anyway (0: never); only after the gate has first opened. The masked objective '
        'can settle just above the threshold on one frame, and a lockstep robot would wait forever',
        check='nonneg',
    )

    # ---------------------------------------------------------------- optimisation
    autoencoder_lr: float = param(
        3e-4,
        'AdamW learning rate of the autoencoder (encoder + decoder); the original: 1e-4. Warmed '
        'up, 3e-4 reaches a reconstruction explained variance of 0.95 in 3,000 steps on the dot '
        'world against 0.93 (docs/design.md)',
        check='positive',
    )
    autoencoder_warmup_steps: int = param(
        500,
        "both trainers raise the autoencoder's learning rate linearly from 0 to autoencoder_lr "
        'over its first N autoencoder steps (0: from the start, the original). Without it, Adam '
        'at rates above 1e-4 sets a fresh autoencoder back',
        check='nonneg',
    )
    autoencoder_initial_lr_factor: float = param(
        4.0,
        'both trainers start the autoencoder at this multiple of autoencoder_lr (times the '
        'warm-up) and lower it linearly to autoencoder_lr over its first '
        'autoencoder_lr_decay_steps steps (1: no fall, the original). On the dot world both '
        'actions stood 0.01-0.04 EV higher at the same acted frames on three seeds, and the '
        "JetBot's gate opened sooner (docs/design.md)",
        check='positive',
    )
    autoencoder_lr_decay_steps: int = param(
        2500,
        'autoencoder steps over which the rate falls from autoencoder_initial_lr_factor x '
        'autoencoder_lr to autoencoder_lr (counted over a resumed run too; 0: no fall)',
        check='nonneg',
    )
    predictor_lr: float = param(
        1e-4, 'AdamW learning rate of every predictor level', check='positive'
    )
    predictor_initial_lr_factor: float = param(
        3.0,
        'both trainers start each predictor level at this multiple of predictor_lr and lower it '
        'linearly to predictor_lr over its first predictor_lr_decay_steps steps (1: constant, '
        'the original). On the dot world 3 learned "move" sooner on five seeds (EV 0.67-0.76 '
        'against 0.59-0.64 after 500 acted frames; docs/design.md)',
        check='positive',
    )
    predictor_lr_decay_steps: int = param(
        1000,
        'predictor steps over which the rate falls from predictor_initial_lr_factor x '
        'predictor_lr to predictor_lr (counted per level, over a resumed run too; 0: no fall)',
        check='nonneg',
    )
    weight_average_decay: float = param(
        0.0,
        'keep an exponential moving average of the autoencoder and of every predictor level '
        '(this decay per step) and evaluate it in reports and benchmarks; the robot acts and '
        'trains with the live weights (0: off, the original)',
        check='nonneg',
    )
    weight_decay: float = param(0.0, 'AdamW weight decay of both optimizers', check='nonneg')
    adam_betas: tuple[float, float] = param((0.9, 0.999), 'Adam moment decay rates')
    grad_clip_norm: float = param(
        1.0, 'clip the global grad norm of each parameter set (0: off)', check='nonneg'
    )
    mask_ratio_min: float = param(
        0.30, 'autoencoder step: mask ratio r ~ U(min, max) per step; lower end'
    )
    mask_ratio_max: float = param(0.85, 'upper end of the mask ratio range')
    joint_reconstruction_weight: float = param(
        1.0,
        'weight of the reconstruction MSE kept in the joint encoder objective',
        check='nonneg',
    )
    encoder_prediction_grad_scale: float = param(
        0.0,
        "scale of the predictor losses' gradient reaching the encoder (0: none, the encoder "
        'learns from reconstruction alone). At 1 the encoder chased the predictor and the '
        "predictions blew up; at 0.1 the dot's long runs broke down after ~1,900 acted frames. "
        'Above 0 a trained frame is encoded twice (docs/design.md)',
        check='nonneg',
    )

    context_dropout: float = param(
        0.5,
        'probability that a level-0 training transition keeps only the newest 0 to F-2 history '
        'frames of its context (uniformly drawn): with full contexts alone the predictor learns '
        "to extrapolate the history's motion instead of reading the action, and predicts poorly "
        'after an unusual history',
        check='nonneg',
    )
    roll_augmentation: float = param(
        0.0,
        'probability that a level-0 training transition has its current and target frames '
        'rolled by one random offset (rows and columns, wrapping around) and is predicted from '
        'the rolled current frame alone (context_dropout then does not apply); a gate-closed '
        "autoencoder step rolls its frame with the same probability. The toroidal dot world's "
        'physics is the same under any roll, so the model learns rows the robot never visited; '
        'a camera image is no torus: keep 0 there',
        check='nonneg',
    )

    predictor_replay: int = param(
        0,
        'past level-0 transitions from the history replayed in every level-0 training step, '
        'each predicted from its frame alone (rolled with probability roll_augmentation) and '
        'averaged with the current transition: more learning per acted frame, for ~60% of a '
        'training step each (0: off)',
        check='nonneg',
    )

    # ---------------------------------------------------------------- predictor losses
    pred_patch_w: float = param(
        0.2, 'weight of MSE(decoded prediction, target patches)', check='nonneg'
    )
    pred_latent_w: float = param(
        0.8, 'weight of MSE(prediction[1:], encode(target)[1:])', check='nonneg'
    )
    pred_action_w: float = param(
        1.0, 'weight of CE(action logits, executed action)', check='nonneg'
    )
    action_grad_scale: float = param(
        0.01,
        "scale of that CE's gradient reaching the prediction (0: none); the CE's gradient is "
        "~100x the prediction losses', and at full strength it pushes the predictions to "
        'exaggerated changes',
        check='nonneg',
    )
    delta_latent: bool = param(True, 'prediction = last context frame features + head output')

    # ---------------------------------------------------------------- context and history
    prediction_history_size: int = param(
        0,
        'history frames before the current one in a context (0: the current frame alone; the '
        'original: 3). Where the frame holds the robot\'s state (the dot world, a robot that '
        'stops after each action) the history adds nothing and costs the predictor 4x the '
        'tokens; a robot with momentum or a lagging camera needs it',
        check='nonneg',
    )
    max_history_size: int = param(
        1000, 'frames (with features and actions) kept in memory', check='positive'
    )
    saved_history_size: int = param(
        100,
        'newest history entries stored in the learner-state checkpoint',
        check='nonneg',
    )
    max_seq_len: int = param(
        4096,
        'predictor position table size; longer contexts keep the newest frames',
        check='positive',
    )

    # ---------------------------------------------------------------- intervals
    log_interval: int = param(
        100,
        'scalar metrics every N steps; grad/UWR metrics every N predictor steps',
        check='positive',
    )
    visualization_upload_interval: int = param(
        500, 'a prediction figure to wandb every N steps', check='positive'
    )
    checkpoint_save_interval: int = param(
        500,
        'save checkpoints every N level-0 predictor training steps',
        check='positive',
    )
    checkpoint_period_s: float = param(
        120.0,
        'also save a checkpoint this many seconds after the last one, in every phase (gate '
        'closed included), so a killed run loses at most this much; 0: off',
        check='nonneg',
    )
    display_interval: int = param(
        10, 'live panels every N steps (published by the node)', check='positive'
    )

    # ---------------------------------------------------------------- image / autoencoder
    img_size: int = param(224, 'frames are resized to img_size x img_size RGB', check='positive')
    patch_size: int = param(16, 'ViT patch size (224/16 -> 196 patches)', check='positive')
    in_chans: int = param(3, 'image channels', check='positive')
    embed_dim: int = param(256, 'encoder width = predictor width', check='positive')
    depth: int = param(5, 'encoder ViT blocks', check='positive')
    num_heads: int = param(4, 'encoder attention heads', check='positive')
    mlp_ratio: float = param(4.0, 'encoder MLP hidden = mlp_ratio * embed_dim', check='positive')
    decoder_embed_dim: int = param(
        512,
        'width of the lightweight per-token MLP decoder. Its output patches lie in a subspace of '
        'this dimension: at 128 (the original) a sharp disc at every offset within a patch does '
        'not fit, and the reconstruction stays blurred on the rim',
        check='positive',
    )
    decoder_hidden_layers: int = param(
        2,
        "hidden layers of the decoder's per-token MLP (the original: 1). The autoencoder alone "
        'on dot frames: reconstruction EV 0.905 / 0.923 after 2,000 / 3,000 steps with 2, '
        'against 0.883 / 0.906 with 1, in the same time; checkpoints made with 1 resume with '
        '1 in a params file',
        check='positive',
    )

    # ---------------------------------------------------------------- predictor
    predictor_depth: int = param(6, 'predictor transformer layers', check='positive')
    macro_predictor_depth: int = param(
        1,
        'transformer layers of the predictors of hierarchy levels >= 1 (0: predictor_depth); '
        'FiLM after those of film_block_ids they have. With level 1 present a trained acted '
        'frame cost +116% at 6 layers, +45% at 2, +26% at 1 (docs/design.md)',
        check='nonneg',
    )
    predictor_heads: int = param(8, 'predictor attention heads', check='positive')
    predictor_ffn_dim: int = param(1024, 'predictor feed-forward hidden width', check='positive')
    predictor_dropout: float = param(
        0.1, 'dropout in train mode (every trainer runs the predictor in eval mode)'
    )
    action_embed_dim: int = param(64, 'ActionEmbedding output width', check='positive')
    film_hidden_dim: int = param(128, 'ActionEmbedding hidden width', check='positive')
    film_block_ids: tuple[int, ...] = param((0, 2), 'FiLM after these predictor layers')
    classifier_channels: tuple[int, int] = param(
        (16, 32), 'conv widths of the pixel-difference action classifier'
    )
    patch_rope: bool = param(
        True,
        "also rotate the predictor's queries and keys by their patch's grid row and column "
        '(axial 2-D RoPE) in every layer, so attention depends on relative patch offsets',
    )
    patch_rope_wrap: bool = param(
        False,
        "the patch grid wraps around (a torus world): patch RoPE's frequencies are whole turns "
        'over the grid (harmonics 0, 1, 2, ... of its width), so the patch past the last '
        'column is the first one and a move across the edge is the same rule as any other (the '
        'dot: "move" +0.08-0.11 EV at 500 acted frames, and no more swings). A camera image '
        'does not wrap: keep false there',
    )

    # ---------------------------------------------------------------- uncertainty
    ensemble_heads: int = param(
        5, 'output heads; their disagreement is the predictive uncertainty', check='positive'
    )
    uncertainty_eps: float = param(
        1e-8,
        'variance floor inside the Gaussian entropy 0.5*log(2*pi*e*(var+eps))',
        check='nonneg',
    )
    prior_scale: float = param(
        0.1,
        "scale of each head's fixed random action prior (randomized priors)",
        check='nonneg',
    )
    head_init_std: float = param(
        0.002,
        "std of the output heads' initial weights: their outputs start at ~head_init_std * "
        'sqrt(embed_dim) per feature, near the copy of the frame',
        check='nonneg',
    )
    residual_decay: float = param(
        0.9,
        "EMA decay of each action's observed latent prediction error (the predictive variance's "
        'residual part); 0: the last error only',
        check='nonneg',
    )
    initial_residual: float = param(
        1.0,
        'residual of an action never tried yet (high: untried = uncertain)',
        check='nonneg',
    )

    # ---------------------------------------------------------------- hierarchy
    max_levels: int = param(
        3, 'levels 0..max_levels-1 (level 0 = primitive actions)', check='positive'
    )
    macro_length: int = param(
        2, 'a level-k action = macro_length level-(k-1) actions', check='positive'
    )
    level_creation_steps: int = param(
        200,
        'consecutive accurate fresh predictions of the top level before a new level',
        check='positive',
    )
    max_macro_actions: int = param(
        64, 'never create a level with more candidate actions than this', check='positive'
    )

    # ---------------------------------------------------------------- misc
    seed: int = param(0, 'seeds model init (per level) and the masking RNG')

    # ------------------------------------------------------------------ validation

    def __post_init__(self) -> None:
        self.adam_betas = tuple(float(b) for b in self.adam_betas)
        self.film_block_ids = tuple(int(i) for i in self.film_block_ids)
        self.classifier_channels = tuple(int(c) for c in self.classifier_channels)
        checks = {f.name: f.metadata['check'] for f in dataclasses.fields(self)}
        for name in (n for n, check in checks.items() if check == 'positive'):
            if not getattr(self, name) > 0:
                raise ConfigError(f'{name} must be > 0, got {getattr(self, name)!r}')
        for name in (n for n, check in checks.items() if check == 'nonneg'):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f'{name} must be a finite number >= 0, got {v!r}')
        for name in ('context_dropout', 'roll_augmentation'):
            if getattr(self, name) > 1.0:
                raise ConfigError(f'{name} is a probability, got {getattr(self, name)}')
        if not 0.0 <= self.mask_ratio_min <= self.mask_ratio_max < 1.0:
            raise ConfigError(
                f'need 0 <= mask_ratio_min <= mask_ratio_max < 1, got '
                f'{self.mask_ratio_min}, {self.mask_ratio_max}'
            )
        if self.weight_average_decay >= 1.0:
            raise ConfigError(
                f'weight_average_decay must be in [0, 1), got {self.weight_average_decay}'
            )
        if not 0.0 <= self.predictor_dropout < 1.0:
            raise ConfigError(f'predictor_dropout must be in [0, 1), got {self.predictor_dropout}')
        if self.img_size % self.patch_size:
            raise ConfigError(
                f'img_size {self.img_size} is not a multiple of patch_size {self.patch_size}'
            )
        if self.embed_dim % 4:
            raise ConfigError(
                f'embed_dim must be a multiple of 4 (2-D sin-cos), got {self.embed_dim}'
            )
        if self.decoder_embed_dim % 4:
            raise ConfigError(
                f'decoder_embed_dim must be a multiple of 4, got {self.decoder_embed_dim}'
            )
        if self.embed_dim % self.num_heads or self.embed_dim % self.predictor_heads:
            raise ConfigError(
                f'embed_dim {self.embed_dim} must be divisible by num_heads {self.num_heads} '
                f'and predictor_heads {self.predictor_heads}'
            )
        if self.patch_rope and (self.embed_dim // self.predictor_heads) % 4:
            raise ConfigError(
                f'patch_rope needs a predictor head width (embed_dim / predictor_heads = '
                f'{self.embed_dim // self.predictor_heads}) that is a multiple of 4'
            )
        if self.patch_rope_wrap and not self.patch_rope:
            raise ConfigError('patch_rope_wrap needs patch_rope')
        bad = [i for i in self.film_block_ids if not 0 <= i < self.predictor_depth]
        if bad:
            raise ConfigError(f'film_block_ids {bad} outside 0..{self.predictor_depth - 1}')
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ConfigError(f'adam_betas must be two numbers in [0, 1), got {self.adam_betas}')
        if len(self.classifier_channels) != 2:
            raise ConfigError(
                f'classifier_channels must have 2 entries, got {self.classifier_channels}'
            )
        if self.ensemble_heads < 2:
            raise ConfigError('ensemble_heads must be >= 2: their disagreement is the uncertainty')
        if (
            self.max_history_size
            < (self.prediction_history_size + 1) * self.macro_length ** (self.max_levels - 1) + 1
        ):
            raise ConfigError(
                'max_history_size is too small to hold the context of the highest level'
            )
        if (
            self.tokens_per_step * (self.prediction_history_size + 1) + self.tokens_per_frame
            > self.max_seq_len
        ):
            # Allowed (the predictor keeps the newest frames) but only down to one frame.
            if 2 * self.tokens_per_step + self.tokens_per_frame > self.max_seq_len:
                raise ConfigError(
                    f'max_seq_len {self.max_seq_len} cannot hold one frame and its prediction'
                )

    # ------------------------------------------------------------------ thresholds of a frame

    def gate_threshold(self, frame_variance: float) -> float:
        """The reconstruction MSE under which the gate opens on a frame of this pixel variance:
        RECONSTRUCTION_THRESHOLD, or RECONSTRUCTION_VARIANCE_FRACTION of the variance when that
        is higher."""
        return max(
            self.reconstruction_threshold, self.reconstruction_variance_fraction * frame_variance
        )

    def miss_threshold(self, frame_variance: float) -> float:
        """The prediction MSE above which a fresh prediction of a frame of this pixel variance
        missed (and trains): PREDICTION_THRESHOLD, or PREDICTION_VARIANCE_FRACTION of the
        variance when that is lower."""
        if self.prediction_variance_fraction <= 0:
            return self.prediction_threshold
        return min(self.prediction_threshold, self.prediction_variance_fraction * frame_variance)

    # ------------------------------------------------------------------ derived sizes

    @property
    def num_patches(self) -> int:
        """Patches per frame, e.g. 196."""
        return (self.img_size // self.patch_size) ** 2

    @property
    def tokens_per_frame(self) -> int:
        """Feature tokens per frame: patches + CLS, e.g. 197."""
        return self.num_patches + 1

    @property
    def tokens_per_step(self) -> int:
        """A context frame and its action token, e.g. 198."""
        return self.tokens_per_frame + 1

    def level_depth(self, level: int) -> int:
        """Transformer layers of hierarchy level ``level``'s predictor."""
        if level > 0 and self.macro_predictor_depth:
            return self.macro_predictor_depth
        return self.predictor_depth

    @property
    def context_frames(self) -> int:
        """Frames in a predictor context: history + the current frame, e.g. 4."""
        return self.prediction_history_size + 1

    # ------------------------------------------------------------------ presets

    @classmethod
    def tiny(cls, **overrides: Any) -> 'WorldModelConfig':
        """A small model for tests on 2 CPU cores: 32x32 frames, 8 px patches (16 tokens),
        width 32."""
        small = dict(
            img_size=32,
            patch_size=8,
            embed_dim=32,
            depth=2,
            num_heads=2,
            decoder_embed_dim=16,
            # a 16-wide decoder learns fastest with one hidden layer, and tests train for tens of
            # steps (with two an offline test's patch loss fell to 0.25x in 60 steps, not 0.07x)
            decoder_hidden_layers=1,
            predictor_depth=3,
            predictor_heads=2,
            predictor_ffn_dim=64,
            predictor_dropout=0.0,
            action_embed_dim=16,
            film_hidden_dim=16,
            classifier_channels=(4, 8),
            ensemble_heads=3,
            max_history_size=64,
            saved_history_size=20,
            level_creation_steps=20,
            autoencoder_lr=1e-3,
            autoencoder_warmup_steps=0,
            autoencoder_initial_lr_factor=1.0,
            autoencoder_lr_decay_steps=0,
            predictor_lr=1e-3,
            predictor_initial_lr_factor=1.0,
            prediction_history_size=3,  # the history's code paths under test
            log_interval=10,
            checkpoint_save_interval=1000,
        )
        small.update(overrides)
        return cls(**small)

    # ------------------------------------------------------------------ (de)serialisation

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (tuples become lists): YAML-, JSON- and checkpoint-safe."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'WorldModelConfig':
        """Build from a mapping; keys are field names or the original UPPER_CASE names.

        Raises:
            ConfigError: an unknown key, a key given twice (e.g. ``lr`` and ``LR``), a value of
                the wrong type, or a value out of range.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f'world model config must be a mapping, got {type(data).__name__}')
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        unknown = []
        for key, value in data.items():
            name = str(key).lower()
            if name not in fields:
                unknown.append(key)
                continue
            if name in kwargs:
                raise ConfigError(f'parameter {name!r} given twice')
            kwargs[name] = _coerce(name, value, fields[name].default)
        if unknown:
            raise ConfigError(
                f'unknown world model parameter(s) {unknown}; known: {sorted(fields)}'
            )
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(str(exc)) from exc

    @classmethod
    def from_checkpoint(cls, data: Mapping[str, Any]) -> 'WorldModelConfig':
        """The config stored in a checkpoint. A field added after that checkpoint was written
        takes the value the model had before the field existed (``CHECKPOINT_LEGACY_VALUES``),
        not today's default, so an older checkpoint still describes the model it holds."""
        return cls.from_dict(cls.checkpoint_values(data))

    @classmethod
    def checkpoint_values(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """A checkpoint's stored config with the legacy values of fields it predates filled in
        and the fields that no longer exist (``CHECKPOINT_REMOVED_FIELDS``) left out."""
        kept = {k: v for k, v in data.items() if k not in cls.CHECKPOINT_REMOVED_FIELDS}
        return {**cls.CHECKPOINT_LEGACY_VALUES, **kept}

    @classmethod
    def descriptions(cls) -> dict[str, str]:
        """Every field's description (its ``metadata['help']``), by field name."""
        return {f.name: f.metadata['help'] for f in dataclasses.fields(cls)}

    @classmethod
    def from_yaml(cls, path: str | Path, section: str | None = 'world_model') -> 'WorldModelConfig':
        """Load from a YAML file: the mapping under ``section`` if present, else the whole
        document."""
        doc = read_yaml(path)
        if section is not None and isinstance(doc, Mapping) and section in doc:
            doc = doc[section]
        try:
            return cls.from_dict(doc)
        except ConfigError as exc:
            raise ConfigError(f'{path}: {exc}') from exc

    def replace(self, **changes: Any) -> 'WorldModelConfig':
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    #: fields that fix tensor shapes or what the network computes; a checkpoint only loads into a
    #: config that agrees on them
    MODEL_FIELDS = (
        'img_size',
        'patch_size',
        'in_chans',
        'embed_dim',
        'depth',
        'num_heads',
        'mlp_ratio',
        'decoder_embed_dim',
        'decoder_hidden_layers',
        'predictor_depth',
        'macro_predictor_depth',
        'predictor_heads',
        'predictor_ffn_dim',
        'action_embed_dim',
        'film_hidden_dim',
        'film_block_ids',
        'classifier_channels',
        'ensemble_heads',
        'max_seq_len',
        'macro_length',
        'patch_rope',
        'patch_rope_wrap',
    )
    #: model fields added later, with the value every checkpoint written before them was made with
    CHECKPOINT_LEGACY_VALUES = {
        'patch_rope': False,
        'patch_rope_wrap': False,
        'macro_predictor_depth': 0,
        'decoder_hidden_layers': 1,
    }
    #: fields that older checkpoints store but that no longer exist (nothing read them)
    CHECKPOINT_REMOVED_FIELDS = ('action_delay', 'recording_mode', 'recording_max_disk_gb')


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Check/convert a value to the type of the field's default (ints and numeric strings
    accepted for floats)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f'{name} must be true/false, got {value!r}')
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f'{name} must be an integer, got {value!r}')
        return value
    if isinstance(default, float):
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string; ROS reads a number
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f'{name} must be a number, got {value!r}') from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f'{name} must be a number, got {value!r}')
        return float(value)
    if isinstance(default, tuple):
        if isinstance(value, (str, bytes)) or not hasattr(value, '__iter__'):
            raise ConfigError(f'{name} must be a list, got {value!r}')
        return tuple(value)
    return value


__all__ = ['WorldModelConfig', 'ConfigError']
