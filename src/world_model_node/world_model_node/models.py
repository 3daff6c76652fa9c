"""The two networks of the world model. Plain PyTorch, no ROS.

* ``MaskedAutoencoderViT``: a ViT encoder (timm ``Block``s) with fixed 2-D sin-cos positions on
  integer grid coordinates and a lightweight per-token MLP decoder. ``encode`` gives the frame
  features [B, 1+N, D] (CLS first) that the predictor works on.
* ``TransformerActionConditionedPredictor``: a causal transformer over
  ``[frame_0 tokens, a_0, frame_1 tokens, a_1, ..., frame_t tokens, a_t, future queries]`` that
  predicts the features of frame t+1. Positions: a learned table plus, in every layer, queries and
  keys rotated by their patch's grid row and column (patch RoPE), so attention sees relative patch
  offsets. FiLM layers (zero-initialised, so identity at start) inject the embedding of the action
  being predicted for; the output is a residual on the last frame's features (delta latent); an
  ensemble of output heads gives the predictive uncertainty; an action classifier looks at decoded
  pixel differences.

Shapes use: B batch, N patches per frame (196), T = N + 1 tokens per frame (197), D width (256),
F frames in a context, C action channels, A candidate actions, E ensemble heads, H heads,
P = patch_size**2 * in_chans values per patch (768), L sequence length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch.func import functional_call

if TYPE_CHECKING:
    from .config import WorldModelConfig

# token types of the predictor sequence
FRAME_TOKEN, ACTION_TOKEN, QUERY_TOKEN = 0, 1, 2


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Sin-cos encoding of integer positions: [len(positions), dim] = [sin(p*w_k), cos(p*w_k)],
    w_k = 10000^(-k / (dim/2)), k = 0 .. dim/2 - 1."""
    if dim % 2:
        raise ValueError(f'dim must be even, got {dim}')
    k = torch.arange(dim // 2, dtype=torch.float64)
    omega = 1.0 / 10000.0 ** (k / (dim / 2.0))  # [dim/2]
    angles = positions.to(torch.float64)[:, None] * omega[None]  # [L, dim/2]
    return torch.cat([angles.sin(), angles.cos()], dim=1)  # [L, dim]


def sincos_2d(dim: int, grid_size: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D position table for a grid_size x grid_size patch grid, row-major.

    Half the width encodes the row index, half the column index, on integer coordinates
    (0, 1, 2, ...), never normalised to [0, 1] (there neighbouring patches' codes would be nearly
    equal). With ``cls_token`` a zero row is
    prepended for the CLS token. Returns [(1 +) grid_size**2, dim] float32.
    """
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing='ij')
    emb = torch.cat(
        [sincos_1d(dim // 2, rows.flatten()), sincos_1d(dim // 2, cols.flatten())], dim=1
    )
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=emb.dtype), emb], dim=0)
    return emb.float()


def patch_rope_angles(
    tokens_per_frame: int, head_dim: int, base: float = 100.0, wrap: bool = False
) -> torch.Tensor:
    """Rotary angles [T+1, head_dim/2] for the predictor's token slots (axial 2-D RoPE).

    Slot j of a step is token j of a frame (0 = CLS, 1..N = patches in row-major order) or, for
    j = T, the action token; future queries share the slots of the frame tokens. A patch slot gets
    head_dim/4 angles from its grid row and head_dim/4 from its grid column; CLS and action slots
    get zero angles (no rotation). Rotating queries and keys by these angles makes the attention
    logits depend on the patches' relative offset, so "look one patch to the left" is one rule
    for every patch instead of one per position.

    Frequencies: base^(-k/(head_dim/4)) radians per patch, k = 0..head_dim/4-1; with ``wrap``
    (a grid that wraps around, a torus) the harmonics 2*pi*k/grid instead, so an offset of o and
    of o - grid rotate alike and the patch right of the last column is the first column. With
    head_dim/4 >= grid/2 + 1 those harmonics span every function of the offset modulo the grid.
    """
    grid = int(round(math.sqrt(tokens_per_frame - 1)))
    if grid * grid != tokens_per_frame - 1 or head_dim % 4:
        raise ValueError(
            f'patch RoPE needs a square patch grid and head_dim % 4 == 0, got '
            f'{tokens_per_frame - 1} patches and head_dim {head_dim}'
        )
    quarter = head_dim // 4
    k = torch.arange(quarter, dtype=torch.float64)
    freqs = 2 * math.pi * k / grid if wrap else base ** (-k / quarter)  # [dh/4]
    rows = torch.arange(grid * grid) // grid
    cols = torch.arange(grid * grid) % grid
    angles = torch.zeros(tokens_per_frame + 1, 2 * quarter, dtype=torch.float64)
    angles[1:tokens_per_frame] = torch.cat([rows[:, None] * freqs, cols[:, None] * freqs], dim=1)
    return angles.float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [..., S, dh] by angles given as cos, sin [S, dh/2] (pairs (i, i + dh/2))."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """The same values; the gradient flowing back through the result is multiplied by ``scale``
    (0: none). Used for ENCODER_PREDICTION_GRAD_SCALE on the features the predictor reads."""
    if scale == 1.0:
        return x
    xd = x.detach()
    return xd if scale == 0 else xd + scale * (x - xd)


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, N, p*p*C].

    Patches are row-major; the values inside a patch are ordered (row, col, channel).
    """
    b, c, h, w = imgs.shape
    p = patch_size
    x = imgs.reshape(b, c, h // p, p, w // p, p)
    x = torch.einsum('bchpwq->bhwpqc', x)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, in_chans: int = 3) -> torch.Tensor:
    """[B, N, p*p*C] -> [B, C, H, W] (inverse of ``patchify``; N must be a square)."""
    b, n, _ = patches.shape
    g = int(round(math.sqrt(n)))
    p = patch_size
    x = patches.reshape(b, g, g, p, p, in_chans)
    x = torch.einsum('bhwpqc->bchpwq', x)
    return x.reshape(b, in_chans, g * p, g * p)


def _init_linear_and_norm(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# ---------------------------------------------------------------------------------------------
# masked autoencoder
# ---------------------------------------------------------------------------------------------


class MAEDecoder(nn.Module):
    """Lightweight per-token MLP decoder: Linear(D->Dd), mask tokens + un-shuffle, fixed sin-cos
    positions, ``hidden_layers`` x [Linear(Dd->Dd), ReLU], Linear(Dd->P); the CLS output is
    dropped.

    Args:
        embed_dim: encoder width D.
        decoder_embed_dim: decoder width Dd.
        hidden_layers: hidden layers of the per-token MLP (the original: 1).
        grid_size: patches per image side (N = grid_size**2).
        patch_dim: values per patch P = patch_size**2 * in_chans.
    """

    def __init__(
        self,
        embed_dim: int,
        decoder_embed_dim: int,
        hidden_layers: int,
        grid_size: int,
        patch_dim: int,
    ) -> None:
        super().__init__()
        self.num_patches = grid_size * grid_size
        self.embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.register_buffer(
            'pos_embed', sincos_2d(decoder_embed_dim, grid_size)[None], persistent=False
        )
        hidden = [
            layer
            for _ in range(hidden_layers)
            for layer in (nn.Linear(decoder_embed_dim, decoder_embed_dim), nn.ReLU())
        ]
        self.pred = nn.Sequential(*hidden, nn.Linear(decoder_embed_dim, patch_dim))
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(
        self, latent: torch.Tensor, ids_restore: torch.Tensor | None = None
    ) -> torch.Tensor:
        """latent [B, 1+K, D] (CLS + K kept tokens in shuffled order), ids_restore [B, N] or None
        (no masking, K = N) -> predicted patches [B, N, P]."""
        x = self.embed(latent)  # [B, 1+K, Dd]
        if ids_restore is not None:
            b, k1, dd = x.shape
            masks = self.mask_token.expand(b, self.num_patches + 1 - k1, dd)
            x_ = torch.cat([x[:, 1:], masks], dim=1)  # [B, N, Dd] shuffled
            x_ = torch.gather(x_, 1, ids_restore[..., None].expand(-1, -1, dd))  # un-shuffle
            x = torch.cat([x[:, :1], x_], dim=1)  # [B, 1+N, Dd]
        x = x + self.pos_embed
        return self.pred(x)[:, 1:].float()  # [B, N, P]; pixels leave as float32 under autocast too


class MaskedAutoencoderViT(nn.Module):
    """ViT masked autoencoder.

    Build it from a config with ``from_config`` (``build_autoencoder``); the sizes have no
    defaults of their own, so the config's are the only ones.

    Args:
        img_size: input side in pixels (e.g. 224).
        patch_size: patch side (e.g. 16 -> N = 196 patches).
        in_chans: image channels.
        embed_dim: encoder width D.
        depth: encoder blocks.
        num_heads: encoder attention heads.
        mlp_ratio: MLP hidden width / D.
        decoder_embed_dim: decoder width.
        decoder_hidden_layers: hidden layers of the decoder's per-token MLP.
        norm_eps: LayerNorm epsilon.
    """

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        in_chans: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        decoder_embed_dim: int,
        decoder_hidden_layers: int,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size**2
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)

        # encoder
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.register_buffer(
            'pos_embed', sincos_2d(embed_dim, self.grid_size)[None], persistent=False
        )
        self.blocks = nn.ModuleList(
            [
                Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
                for _ in range(depth)
            ]
        )
        self.norm = norm_layer(embed_dim)

        # decoder
        self.decoder = MAEDecoder(
            embed_dim,
            decoder_embed_dim,
            decoder_hidden_layers,
            self.grid_size,
            patch_size * patch_size * in_chans,
        )
        self._init_weights()

    @classmethod
    def from_config(cls, cfg: WorldModelConfig) -> 'MaskedAutoencoderViT':
        """The autoencoder of a world-model config."""
        return cls(
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            in_chans=cfg.in_chans,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            mlp_ratio=cfg.mlp_ratio,
            decoder_embed_dim=cfg.decoder_embed_dim,
            decoder_hidden_layers=cfg.decoder_hidden_layers,
        )

    def _init_weights(self) -> None:
        w = self.patch_embed.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.cls_token, std=0.02)
        self.apply(_init_linear_and_norm)

    # ------------------------------------------------------------------ pixels <-> patches

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, N, P]."""
        return patchify(imgs, self.patch_size)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """[B, N, P] -> [B, C, H, W]."""
        return unpatchify(patches, self.patch_size, self.in_chans)

    # ------------------------------------------------------------------ encoder

    @staticmethod
    def random_masking(
        x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample random shuffle; keep floor(N * (1 - mask_ratio)) tokens (at least one).

        x [B, N, D] -> (kept [B, K, D], mask [B, N] with 1 = removed, ids_restore [B, N]).
        """
        b, n, d = x.shape
        keep = max(1, int(n * (1.0 - mask_ratio)))
        # drawn where the generator lives (the callers keep theirs on the CPU: the same masks on any
        # device, and a checkpoint's generator state that loads anywhere), then moved to x's device
        where = x.device if generator is None else generator.device
        noise = torch.rand(b, n, generator=generator, device=where).to(x.device)
        ids_shuffle = torch.argsort(noise, dim=1)  # ascending: small noise is kept
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :keep]
        kept = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, d))
        mask = torch.ones(b, n, device=x.device)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return kept, mask, ids_restore

    def forward_encoder(
        self, imgs: torch.Tensor, mask_ratio: float = 0.0, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Encode images, masking a random share of the patches.

        imgs [B, C, H, W] in [0, 1] -> (latent [B, 1+K, D], mask [B, N] | None,
        ids_restore | None).
        """
        x = self.patch_embed(imgs).flatten(2).transpose(1, 2)  # [B, N, D]
        x = x + self.pos_embed[:, 1:]
        mask = ids_restore = None
        if mask_ratio > 0:
            x, mask, ids_restore = self.random_masking(x, mask_ratio, generator)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)  # [B, 1+K, D]
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def encode(self, imgs: torch.Tensor) -> torch.Tensor:
        """Unmasked features: imgs [B, C, H, W] in [0, 1] -> [B, 1+N, D] (CLS first)."""
        return self.forward_encoder(imgs, 0.0)[0]

    # ------------------------------------------------------------------ decoder

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Unmasked features [B, 1+N, D] -> reconstructed patches [B, N, P].

        The patches are pixels in [0, 1] units.
        """
        return self.decoder(latent)

    def decode_frozen(self, latent: torch.Tensor) -> torch.Tensor:
        """``decode`` with the decoder's parameters held fixed: the gradient reaches ``latent`` (the
        predictor and the encoder behind it) but not the decoder. Predictions are decoded this way
        for their losses, so that the decoder learns from reconstruction only: trained on
        predicted latents and on the action classifier's loss, its reconstruction MSE rises above
        the quality gate after predictor steps and closes the gate again."""
        params = {k: v.detach() for k, v in self.decoder.named_parameters()}
        return functional_call(self.decoder, params, (latent,))

    # ------------------------------------------------------------------ training

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """MSE over all N patches (masked and visible), pixels in [0, 1].

        imgs [B, C, H, W], pred [B, N, P].
        """
        return F.mse_loss(pred, self.patchify(imgs))

    def forward(
        self, imgs: torch.Tensor, mask_ratio: float = 0.75, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One masked-autoencoding pass.

        Returns (loss, predicted patches [B, N, P], mask [B, N] | None).
        """
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, generator)
        pred = self.decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred), pred, mask


# ---------------------------------------------------------------------------------------------
# action-conditioned predictor
# ---------------------------------------------------------------------------------------------


class ActionEmbedding(nn.Module):
    """Normalised action [.., C] -> embedding [.., E].

    Layers: Linear(C->hidden), GELU, Linear(hidden->E), GELU, LayerNorm.

    Args:
        action_dim: channels C (per primitive action; a macro-action concatenates them).
        hidden_dim: hidden width (FILM_HIDDEN_DIM, 128).
        embed_dim: output width (ACTION_EMBED_DIM, 64).
    """

    def __init__(self, action_dim: int, hidden_dim: int = 128, embed_dim: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(action_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, embed_dim),
            nn.GELU(),
            nn.LayerNorm(embed_dim),
        )

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        return self.net(actions)


class FiLM(nn.Module):
    """Feature-wise linear modulation x <- x * (1 + W_g e) + W_b e.

    Zero-initialised, so it is the identity at the start.

    Args:
        cond_dim: width of the conditioning embedding e.
        width: width of the modulated features x.
    """

    def __init__(self, cond_dim: int, width: int) -> None:
        super().__init__()
        self.gamma = nn.Linear(cond_dim, width)
        self.beta = nn.Linear(cond_dim, width)
        for lin in (self.gamma, self.beta):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x [B, S, width], e [B, cond_dim] -> [B, S, width]."""
        return x * (1.0 + self.gamma(e)[:, None]) + self.beta(e)[:, None]


class PredictorLayer(nn.Module):
    """Pre-norm causal transformer layer that can attend to cached keys/values of earlier tokens
    and return its per-head attention map on request.

    Args:
        dim: width D.
        num_heads: attention heads H.
        ffn_dim: feed-forward hidden width.
        dropout: dropout on attention weights, residual branches and the FFN (train mode only).
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
        return_attn: bool = False,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        """x [B, S, D] (tokens at positions P .. P+S-1), past (k, v) [1 or B, H, P, D/H] or None,
        rope: (cos, sin) [S, D/H/2] rotary angles of this segment's tokens, or None.

        Token i sees every past token and tokens 0..i of this segment (causal).
        Returns (x [B, S, D], this segment's (k, v) [B, H, S, D/H] (k rotated), attention
        [B, H, S, P+S] or None).
        """
        b, s, d = x.shape
        q, k, v = self._qkv(x, rope)
        p = 0
        k_all, v_all = k, v
        if past is not None:
            pk, pv = past
            p = pk.shape[2]
            if pk.shape[0] != b:
                pk, pv = pk.expand(b, -1, -1, -1), pv.expand(b, -1, -1, -1)
            k_all, v_all = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)  # [B, H, P+S, dh]
        drop_p = self.dropout if self.training else 0.0
        attn = None
        if return_attn:
            scores = (q @ k_all.transpose(-2, -1)) / math.sqrt(self.head_dim)  # [B, H, S, P+S]
            scores = scores.masked_fill(~_causal_mask(s, p, x.device), float('-inf'))
            attn = scores.softmax(dim=-1)
            out = F.dropout(attn, drop_p, self.training) @ v_all
        elif p == 0:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop_p, is_causal=True)
        else:
            out = F.scaled_dot_product_attention(
                q, k_all, v_all, attn_mask=_causal_mask(s, p, x.device), dropout_p=drop_p
            )
        x = x + self.drop(self.proj(out.transpose(1, 2).reshape(b, s, d)))
        x = x + self.drop(self.fc2(self.drop(F.gelu(self.fc1(self.norm2(x))))))
        return x, (k, v), attn

    def keys_values(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This segment's (k, v) [B, H, S, D/H] (k rotated) as ``forward`` returns them, without
        the layer's output: all that later tokens need of a context's last layer."""
        _, k, v = self._qkv(x, rope)
        return k, v

    def _qkv(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, S, D] -> q, k, v [B, H, S, dh] (q and k rotated by ``rope``)."""
        b, s, _ = x.shape
        qkv = (
            self.qkv(self.norm1(x))
            .view(b, s, 3, self.num_heads, self.head_dim)
            .permute(2, 0, 3, 1, 4)
        )
        q, k, v = qkv.unbind(0)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return q, k, v


def _causal_mask(s: int, p: int, device: torch.device) -> torch.Tensor:
    """[S, P+S] bool, True = may attend: query i (position P+i) sees keys 0 .. P+i."""
    return (
        torch.arange(p + s, device=device)[None, :] <= (p + torch.arange(s, device=device))[:, None]
    )


class ActionClassifier(nn.Module):
    """Which action produced this change? Pixel difference (prediction - last frame) ->
    Conv(3->16, 3x3, s2) ReLU Conv(16->32, 3x3, s2) ReLU, global average pool, Linear -> logits.

    Args:
        num_actions: discrete actions of the level (A).
        in_chans: image channels.
        channels: the two conv widths (16, 32).
        patch_size: to turn patches back into images.
    """

    def __init__(
        self,
        num_actions: int,
        in_chans: int = 3,
        channels: tuple[int, int] = (16, 32),
        patch_size: int = 16,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.conv = nn.Sequential(
            nn.Conv2d(in_chans, channels[0], 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(channels[0], channels[1], 3, stride=2),
            nn.ReLU(),
        )
        self.fc = nn.Linear(channels[1], num_actions)

    def forward(self, pred_patches: torch.Tensor, last_patches: torch.Tensor) -> torch.Tensor:
        """pred_patches, last_patches [B, N, P] (decoded) -> logits [B, A]."""
        diff = unpatchify(
            pred_patches - last_patches, self.patch_size, self.in_chans
        )  # [B, C, H, W]
        return self.fc(self.conv(diff).mean(dim=(2, 3)))


@dataclass
class PredictorOutput:
    prediction: torch.Tensor  # [B, T, D] mean prediction of the next frame's features
    head_predictions: torch.Tensor  # [E, B, T, D] one prediction per ensemble head
    attention: torch.Tensor | None = (
        None  # [B, H, S, L] last layer's attention (rows: this segment's tokens)
    )
    features: torch.Tensor | None = (
        None  # [B, T, D] normalised query outputs the heads read (for head-only updates)
    )


@dataclass
class PredictorContext:
    """Cached keys/values of a context ``[frame, action]* + current frame``.

    See ``build_context``.
    """

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (k, v) [1, H, L, D/H]
    length: int  # L: context tokens, = position of the candidate action token
    last_frame: torch.Tensor  # [1, T, D] current frame features (delta-latent base)
    token_types: torch.Tensor  # [L] FRAME_TOKEN / ACTION_TOKEN per context token


class TransformerActionConditionedPredictor(nn.Module):
    """Causal transformer predicting the next frame's features.

    It predicts from frames, actions and a candidate action.

    Sequence: for each context frame its T feature tokens then its action token (the last frame's
    action token is the candidate action whose outcome is predicted), then T learned future-query
    tokens whose outputs become the prediction. Learned position table + token-type embedding.

    Args:
        embed_dim: width D (the encoder's).
        tokens_per_frame: T = patches + CLS (197).
        action_dim: channels of one action token (C; C * macro length for a macro-action level).
        num_actions: discrete actions of this level (action classifier classes).
        depth: layers.
        num_heads: attention heads.
        ffn_dim: feed-forward width.
        dropout: dropout, active in train mode only.
        action_embed_dim: ActionEmbedding output width.
        film_hidden_dim: ActionEmbedding hidden width.
        film_block_ids: FiLM after these layers.
        max_seq_len: position table size; longer contexts keep the newest frames.
        delta_latent: prediction = last frame features + head output.
        ensemble_heads: output heads E (>= 2); their disagreement measures uncertainty.
        patch_size, in_chans, classifier_channels: for the pixel-difference action classifier.
        prior_scale: scale of the heads' fixed random action priors (0: plain ensemble).
        head_init_std: std of the heads' initial weights.
        action_grad_scale: scale of the action classifier's verdict gradient reaching the
            prediction.
        patch_rope: also rotate every layer's queries and keys by their patch's grid row and
            column (axial 2-D RoPE, see ``patch_rope_angles``), on top of the learned positions.
        patch_rope_wrap: the patch grid wraps around (a torus world): RoPE frequencies are
            whole turns over the grid.

    Build it from a config with ``from_config`` (``build_predictor``); the arguments have no
    defaults of their own, so the config's are the only ones.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        tokens_per_frame: int,
        action_dim: int,
        num_actions: int,
        depth: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float,
        action_embed_dim: int,
        film_hidden_dim: int,
        film_block_ids: tuple[int, ...],
        max_seq_len: int,
        delta_latent: bool,
        ensemble_heads: int,
        patch_size: int,
        in_chans: int,
        classifier_channels: tuple[int, int],
        prior_scale: float,
        head_init_std: float,
        action_grad_scale: float,
        patch_rope: bool,
        patch_rope_wrap: bool,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.tokens_per_frame = tokens_per_frame
        self.action_dim = action_dim
        self.num_actions = num_actions
        self.max_seq_len = max_seq_len
        self.delta_latent = delta_latent
        self.head_init_std = head_init_std
        self.action_grad_scale = action_grad_scale
        self.film_block_ids = tuple(film_block_ids)

        self.action_embed = ActionEmbedding(action_dim, film_hidden_dim, action_embed_dim)
        self.action_token = nn.Linear(action_embed_dim, embed_dim)
        self.future_queries = nn.Parameter(torch.zeros(tokens_per_frame, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(max_seq_len, embed_dim))
        self.type_embed = nn.Embedding(3, embed_dim)
        self.input_drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            [PredictorLayer(embed_dim, num_heads, ffn_dim, dropout) for _ in range(depth)]
        )
        self.films = nn.ModuleDict(
            {str(i): FiLM(action_embed_dim, embed_dim) for i in self.film_block_ids}
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head_weight = nn.Parameter(torch.empty(ensemble_heads, embed_dim, embed_dim))
        self.head_bias = nn.Parameter(torch.zeros(ensemble_heads, embed_dim))
        # Randomized prior functions (Osband et al. 2018): each head adds a FIXED random function
        # of the candidate action, prior_i(a) = prior_scale * cos(a G + g) R_i, centred over the
        # heads (so the mean prediction never sees it). Each head's latent loss makes its trainable
        # part cancel its prior on the transitions it is trained on; on transitions never trained
        # on the priors stay uncancelled and the heads disagree: real epistemic uncertainty.
        self.prior_scale = prior_scale
        g = torch.Generator().manual_seed(1234)
        prior_features = 16
        self.register_buffer('prior_freq', torch.randn(action_dim, prior_features, generator=g))
        self.register_buffer('prior_phase', 2 * math.pi * torch.rand(prior_features, generator=g))
        proj = torch.randn(ensemble_heads, prior_features, embed_dim, generator=g) / math.sqrt(
            prior_features
        )
        self.register_buffer('prior_proj', proj - proj.mean(dim=0, keepdim=True))
        self.action_classifier = ActionClassifier(
            num_actions, in_chans, classifier_channels, patch_size
        )
        self.patch_rope = patch_rope
        self.patch_rope_wrap = patch_rope_wrap
        if patch_rope:  # fixed tables, rebuilt from the constructor arguments (not in checkpoints)
            angles = patch_rope_angles(
                tokens_per_frame, embed_dim // num_heads, wrap=patch_rope_wrap
            )  # [T+1, dh/2]
            self.register_buffer('rope_cos', angles.cos(), persistent=False)
            self.register_buffer('rope_sin', angles.sin(), persistent=False)
        self._init_weights()

    @classmethod
    def from_config(
        cls, cfg: WorldModelConfig, action_dim: int, num_actions: int, **overrides: Any
    ) -> 'TransformerActionConditionedPredictor':
        """The predictor of a world-model config for ``num_actions`` actions of ``action_dim``
        channels (a hierarchy level k has macro-actions of span * C channels); ``overrides``
        replace constructor arguments (e.g. ``dropout=0.0`` in tests)."""
        args = dict(
            embed_dim=cfg.embed_dim,
            tokens_per_frame=cfg.tokens_per_frame,
            action_dim=action_dim,
            num_actions=num_actions,
            depth=cfg.predictor_depth,
            num_heads=cfg.predictor_heads,
            ffn_dim=cfg.predictor_ffn_dim,
            dropout=cfg.predictor_dropout,
            action_embed_dim=cfg.action_embed_dim,
            film_hidden_dim=cfg.film_hidden_dim,
            film_block_ids=cfg.film_block_ids,
            max_seq_len=cfg.max_seq_len,
            delta_latent=cfg.delta_latent,
            ensemble_heads=cfg.ensemble_heads,
            patch_size=cfg.patch_size,
            in_chans=cfg.in_chans,
            classifier_channels=cfg.classifier_channels,
            prior_scale=cfg.prior_scale,
            head_init_std=cfg.head_init_std,
            action_grad_scale=cfg.action_grad_scale,
            patch_rope=cfg.patch_rope,
            patch_rope_wrap=cfg.patch_rope_wrap,
        )
        args.update(overrides)
        return cls(**args)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for film in self.films.values():  # FiLM stays zero: identity at start
            for lin in (film.gamma, film.beta):
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
        nn.init.trunc_normal_(self.future_queries, std=0.02)
        with torch.no_grad():
            self.pos_embed.copy_(self.initial_positions())
        nn.init.trunc_normal_(self.type_embed.weight, std=0.02)
        if self.head_init_std > 0:  # heads differ: disagreement off the data
            nn.init.trunc_normal_(self.head_weight, std=self.head_init_std)
        else:  # the heads differ by their priors only
            nn.init.zeros_(self.head_weight)

    def initial_positions(self) -> torch.Tensor:
        """Initial value of the learned position table [max_seq_len, D].

        Position l is token j = l mod (T+1) of its step (frame tokens 0..T-1, then the action
        token; the future queries start on a step boundary, so query j has the same j as frame
        token j). Token j >= 1 is patch j-1 and starts from that patch's fixed 2-D sin-cos code,
        so "query of patch p" and "frame token of patch p" share a position code from the start
        and the predictor learns one shift rule instead of 196 separate alignments; CLS and action
        slots start at zero. Plus small noise. The table stays fully learned.
        """
        t = self.tokens_per_frame
        grid = int(round(math.sqrt(t - 1)))
        patch_codes = torch.zeros(t + 1, self.embed_dim)
        if grid * grid == t - 1 and self.embed_dim % 4 == 0:
            patch_codes[:t] = sincos_2d(self.embed_dim, grid)  # row 0 (CLS) is zero
        j = torch.arange(self.max_seq_len) % (t + 1)
        return patch_codes[j] + 0.02 * torch.randn(self.max_seq_len, self.embed_dim)

    @property
    def ensemble_heads(self) -> int:
        return self.head_weight.shape[0]

    # ------------------------------------------------------------------ tokens

    def embed_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Normalised actions [..., C] -> ActionEmbedding [..., action_embed_dim]."""
        return self.action_embed(actions)

    def _frame_tokens(self, feats: torch.Tensor, pos: int) -> torch.Tensor:
        """feats [B, T, D] at positions pos .. pos+T-1 -> tokens [B, T, D]."""
        t = feats.shape[1]
        return feats + self.pos_embed[pos : pos + t] + self.type_embed.weight[FRAME_TOKEN]

    def _action_tokens(self, emb: torch.Tensor, pos: int) -> torch.Tensor:
        """Action embeddings [B, Ea] at position pos -> tokens [B, 1, D]."""
        return (
            self.action_token(emb) + self.pos_embed[pos] + self.type_embed.weight[ACTION_TOKEN]
        )[:, None]

    def _query_tokens(
        self, batch: int, pos: int, last_frame: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The learned future queries at positions pos .. pos+T-1 -> [B, T, D]. Each query also
        starts from the current frame's token of the same patch (last_frame [B or 1, T, D]): a
        query then knows "its" patch without having to find it by attention, and only has to
        learn where the content comes from."""
        q = (
            self.future_queries
            + self.pos_embed[pos : pos + self.tokens_per_frame]
            + self.type_embed.weight[QUERY_TOKEN]
        )
        q = q[None].expand(batch, -1, -1)
        if last_frame is not None:
            q = q + last_frame.detach()
        return q

    def max_context_frames(self) -> int:
        """Most context frames that fit the position table.

        The candidate token and the queries must fit too.
        """
        return (self.max_seq_len - self.tokens_per_frame) // (self.tokens_per_frame + 1)

    # ------------------------------------------------------------------ trunk

    def _segment_rope(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(cos, sin) [S, dh/2] of the tokens at positions start .. start+S-1.

        None without RoPE.
        """
        if not self.patch_rope:
            return None
        slot = (start + torch.arange(length, device=self.rope_cos.device)) % (
            self.tokens_per_frame + 1
        )
        return self.rope_cos[slot], self.rope_sin[slot]

    def _run_layers(
        self,
        x: torch.Tensor,
        past: list | None,
        film_emb: torch.Tensor | None,
        film_from: int,
        return_attn: bool,
        start: int,
        keys_values_only: bool = False,
    ) -> tuple[torch.Tensor | None, list, torch.Tensor | None]:
        """Run all layers over a segment x [B, S, D] whose first token is at position ``start``;
        FiLM (with film_emb [B, Ea]) modulates the segment's tokens from index ``film_from`` on,
        after each layer in FILM_BLOCK_IDS. With ``keys_values_only`` (a context, whose output
        nothing reads) the last layer computes its keys and values alone.
        Returns (x [B, S, D] or None with ``keys_values_only``, per-layer (k, v) of this segment,
        last layer attention or None)."""
        x = self.input_drop(x)
        rope = self._segment_rope(start, x.shape[1])
        new_kv = []
        attn = None
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if keys_values_only and i == last:
                new_kv.append(layer.keys_values(x, rope))
                return None, new_kv, None
            x, kv, a = layer(
                x,
                None if past is None else past[i],
                return_attn=return_attn and i == last,
                rope=rope,
            )
            new_kv.append(kv)
            if a is not None:
                attn = a
            if film_emb is not None and str(i) in self.films:
                film = self.films[str(i)]
                if film_from <= 0:
                    x = film(x, film_emb)
                else:
                    x = torch.cat([x[:, :film_from], film(x[:, film_from:], film_emb)], dim=1)
        return x, new_kv, attn

    def action_prior(self, actions: torch.Tensor) -> torch.Tensor:
        """The heads' fixed random priors for candidate actions [B, C] -> [E, B, D].

        The priors have zero mean over E.
        """
        phi = torch.cos(actions @ self.prior_freq + self.prior_phase)  # [B, K]
        return self.prior_scale * torch.einsum('bk,ekd->ebd', phi, self.prior_proj)

    def _heads(
        self,
        query_out: torch.Tensor,
        base: torch.Tensor,
        attn: torch.Tensor | None,
        actions: torch.Tensor,
    ) -> PredictorOutput:
        """Future-query outputs [B, T, D] -> ensemble predictions; base [B, T, D] = last frame
        features; actions [B, C] the candidate actions (for the heads' priors)."""
        h = self.norm(query_out)
        deltas = (
            torch.einsum('btd,edf->ebtf', h, self.head_weight) + self.head_bias[:, None, None]
        )  # [E, B, T, D]
        if self.prior_scale > 0:
            deltas = deltas + self.action_prior(actions)[:, :, None]
        heads = base[None] + deltas if self.delta_latent else deltas
        return PredictorOutput(heads.mean(dim=0), heads, attn, h)

    def heads_from_features(
        self, features: torch.Tensor, base: torch.Tensor, actions: torch.Tensor
    ) -> PredictorOutput:
        """Re-run only the ensemble heads on stored trunk features [B, T, D] (normalised query
        outputs), base [B, T, D], actions [B, C]: gradient reaches the heads only."""
        deltas = (
            torch.einsum('btd,edf->ebtf', features, self.head_weight)
            + self.head_bias[:, None, None]
        )
        if self.prior_scale > 0:
            deltas = deltas + self.action_prior(actions)[:, :, None]
        heads = base[None] + deltas if self.delta_latent else deltas
        return PredictorOutput(heads.mean(dim=0), heads, None, features)

    # ------------------------------------------------------------------ full forward

    def forward(
        self, frame_feats: torch.Tensor, actions: torch.Tensor, return_attn: bool = False
    ) -> PredictorOutput:
        """Predict the features of the frame after the last one.

        Args:
            frame_feats: [B, F, T, D] context frames, oldest first (the last is the current frame).
            actions: [B, F, C] normalised action after each frame; actions[:, -1] is the candidate.
            return_attn: also return the last layer's attention [B, H, L, L].
        Returns:
            PredictorOutput with prediction [B, T, D].
        """
        b, f, t, d = frame_feats.shape
        keep = min(f, self.max_context_frames())
        frame_feats, actions = frame_feats[:, f - keep :], actions[:, f - keep :]
        emb = self.embed_actions(actions)  # [B, F, Ea]
        parts, pos = [], 0
        for i in range(keep):
            parts.append(self._frame_tokens(frame_feats[:, i], pos))
            parts.append(self._action_tokens(emb[:, i], pos + t))
            pos += t + 1
        parts.append(self._query_tokens(b, pos, frame_feats[:, -1]))
        x = torch.cat(parts, dim=1)  # [B, L, D]
        film_from = pos - 1  # the candidate action token
        x, _, attn = self._run_layers(x, None, emb[:, -1], film_from, return_attn, start=0)
        return self._heads(x[:, pos:], frame_feats[:, -1], attn, actions[:, -1])

    # ------------------------------------------------------------------ cached context (online use)

    def build_context(
        self,
        current: torch.Tensor,
        history_feats: torch.Tensor | None = None,
        history_actions: torch.Tensor | None = None,
    ) -> PredictorContext:
        """Run the context once so that any number of candidate actions can be scored against it.

        The history part (older frames and their actions) is computed without gradient: it is a
        stop-gradient memory as in Transformer-XL. The current frame's tokens follow the ambient
        grad mode, so a later loss trains the predictor (and the encoder through ``current``).

        Args:
            current: [1, T, D] features of the current frame.
            history_feats: [1, F-1, T, D] older frames, oldest first, or None.
            history_actions: [1, F-1, C] the action taken after each of them.
        """
        t = self.tokens_per_frame
        h = 0 if history_feats is None else history_feats.shape[1]
        h = min(h, self.max_context_frames() - 1)
        kv, pos = None, 0
        types = []
        if h > 0:
            hist_f = history_feats[:, -h:]
            with torch.no_grad():
                emb = self.embed_actions(history_actions[:, -h:])
                parts = []
                for i in range(h):
                    parts.append(self._frame_tokens(hist_f[:, i], pos))
                    parts.append(self._action_tokens(emb[:, i], pos + t))
                    pos += t + 1
                    types += [FRAME_TOKEN] * t + [ACTION_TOKEN]
                _, kv, _ = self._run_layers(
                    torch.cat(parts, dim=1), None, None, 0, False, start=0, keys_values_only=True
                )
        x = self._frame_tokens(current, pos)
        _, cur_kv, _ = self._run_layers(x, kv, None, 0, False, start=pos, keys_values_only=True)
        base = current.detach()  # the delta-latent base: no pull of z_t towards z_{t+1}
        if kv is None:
            kv = cur_kv
        else:
            kv = [
                (torch.cat([pk, ck], dim=2), torch.cat([pv, cv], dim=2))
                for (pk, pv), (ck, cv) in zip(kv, cur_kv)
            ]
        types += [FRAME_TOKEN] * t
        return PredictorContext(kv, pos + t, base, torch.tensor(types, device=current.device))

    def predict(
        self, ctx: PredictorContext, candidate_actions: torch.Tensor, return_attn: bool = False
    ) -> PredictorOutput:
        """Predict the next frame for every candidate action in ONE batched pass.

        Args:
            ctx: from ``build_context``.
            candidate_actions: [A, C] normalised candidate actions.
            return_attn: also return the last layer's attention [A, H, 1+T, L+1+T].
        Returns:
            PredictorOutput with prediction [A, T, D] and head_predictions [E, A, T, D].
        """
        a = candidate_actions.shape[0]
        emb = self.embed_actions(candidate_actions)  # [A, Ea]
        x = torch.cat(
            [
                self._action_tokens(emb, ctx.length),
                self._query_tokens(a, ctx.length + 1, ctx.last_frame),
            ],
            dim=1,
        )
        x, _, attn = self._run_layers(x, ctx.kv, emb, 0, return_attn, start=ctx.length)
        return self._heads(x[:, 1:], ctx.last_frame.expand(a, -1, -1), attn, candidate_actions)

    # ------------------------------------------------------------------ losses

    def classify_action(
        self, pred_patches: torch.Tensor, last_patches: torch.Tensor
    ) -> torch.Tensor:
        """Decoded prediction and decoded last frame [B, N, P] -> action logits [B, A]."""
        return self.action_classifier(pred_patches, last_patches)

    def forward_loss(
        self,
        out: PredictorOutput,
        pred_patches: torch.Tensor,
        last_patches: torch.Tensor,
        next_patches: torch.Tensor,
        target_latent: torch.Tensor,
        target_patches: torch.Tensor,
        action_index: torch.Tensor,
        weights: tuple[float, float, float] = (0.2, 0.8, 1.0),
    ) -> dict[str, torch.Tensor]:
        """The predictor's losses and their weighted sum.

        The action classifier learns which action caused a change from the REAL change (decoded
        next frame - decoded last frame); its verdict on the PREDICTED change trains the
        prediction only. A classifier trained on the predictions themselves co-adapts with the
        predictor: its cross-entropy, ~100x the prediction losses' gradient, rewards any change
        that tells the actions apart and pushes every action's prediction to exaggerated changes.
        Judged by a classifier of real changes, a prediction is pushed towards what that action
        really does (nothing, for "stay").

        Args:
            out: predictor output (prediction [B, T, D], head_predictions [E, B, T, D]).
            pred_patches: decoded mean prediction [B, N, P].
            last_patches: decoded last context frame [B, N, P] (no gradient is taken).
            next_patches: decoded real next frame [B, N, P] (no gradient is taken).
            target_latent: encoder features of the real next frame [B, T, D] (treated as a target).
            target_patches: patches of the real next frame [B, N, P].
            action_index: executed action [B] (long).
            weights: (PRED_PATCH_W, PRED_LATENT_W, PRED_ACTION_W); the last weighs both
                cross-entropies.
        Returns:
            dict with 'patch', 'latent' (mean over heads, CLS excluded), 'action' (CE of the verdict
            on the predicted change), 'classifier' (CE on the real change), 'total'.
        """
        patch = F.mse_loss(pred_patches, target_patches)
        heads = out.head_predictions[:, :, 1:]
        latent = F.mse_loss(heads, target_latent[None, :, 1:].expand_as(heads))
        last = last_patches.detach()
        frozen = {k: v.detach() for k, v in self.action_classifier.named_parameters()}
        verdict = functional_call(
            self.action_classifier,
            frozen,
            (scale_gradient(pred_patches, self.action_grad_scale), last),
        )
        action = F.cross_entropy(verdict, action_index)
        classifier = F.cross_entropy(
            self.action_classifier(next_patches.detach(), last), action_index
        )
        total = weights[0] * patch + weights[1] * latent + weights[2] * (action + classifier)
        return {
            'total': total,
            'patch': patch,
            'latent': latent,
            'action': action,
            'classifier': classifier,
        }


def clip_gradients(module: nn.Module, max_norm: float) -> None:
    """Clip the global gradient norm of ``module`` to ``max_norm`` (0: off). A predictor's action
    classifier is clipped on its own: it learns from real changes, a loss of its own, and its
    gradient must not rescale the rest of the predictor's step."""
    if max_norm <= 0:
        return
    params = list(module.parameters())
    if isinstance(module, TransformerActionConditionedPredictor):
        own = {id(p) for p in module.action_classifier.parameters()}
        torch.nn.utils.clip_grad_norm_([p for p in params if id(p) in own], max_norm, foreach=True)
        params = [p for p in params if id(p) not in own]
    torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)


def build_autoencoder(cfg: WorldModelConfig) -> MaskedAutoencoderViT:
    """The autoencoder of a world-model config (``MaskedAutoencoderViT.from_config``)."""
    return MaskedAutoencoderViT.from_config(cfg)


def build_predictor(
    cfg: WorldModelConfig, action_dim: int, num_actions: int, level: int = 0, **overrides: Any
) -> TransformerActionConditionedPredictor:
    """The predictor of a world-model config (``TransformerActionConditionedPredictor.from_config``)
    for ``num_actions`` actions of ``action_dim`` channels, as deep as hierarchy level ``level``'s
    (``WorldModelConfig.level_depth``)."""
    depth = cfg.level_depth(level)
    films = tuple(i for i in cfg.film_block_ids if i < depth)
    return TransformerActionConditionedPredictor.from_config(
        cfg, action_dim, num_actions, **{'depth': depth, 'film_block_ids': films, **overrides}
    )


def ensemble_entropy(
    head_predictions: torch.Tensor, eps: float = 1e-8, residual: torch.Tensor | None = None
) -> torch.Tensor:
    """Predictive uncertainty per sample: entropy of a Gaussian predictive distribution.

    Each feature of the prediction is a Gaussian whose variance is the heads' disagreement
    (epistemic part) plus ``residual`` (the mean squared error this candidate's predictions have
    actually had, per feature; without it an ensemble that agrees on a wrong prediction would be
    "certain"). The result is the differential entropy 0.5 * log(2*pi*e*(var + eps)), averaged
    over the patch tokens and features (nats per feature).

    Args:
        head_predictions: [E, B, T, D].
        eps: variance floor.
        residual: [B] residual variance per sample, or None.
    Returns:
        [B]
    """
    heads = head_predictions[:, :, 1:]  # [E, B, T-1, D]
    # two-pass variance over the heads; ~6x faster on CPU than Tensor.var(dim=0) for this layout
    var = (heads - heads.mean(dim=0)).square().mean(dim=0)  # [B, T-1, D]
    if residual is not None:
        var = var + residual.to(var.dtype)[:, None, None]
    return 0.5 * torch.log(2 * math.pi * math.e * (var + eps)).mean(dim=(1, 2))


__all__ = [
    'build_autoencoder',
    'build_predictor',
    'MaskedAutoencoderViT',
    'MAEDecoder',
    'TransformerActionConditionedPredictor',
    'ActionEmbedding',
    'FiLM',
    'PredictorLayer',
    'ActionClassifier',
    'PredictorOutput',
    'PredictorContext',
    'ensemble_entropy',
    'patchify',
    'unpatchify',
    'sincos_1d',
    'sincos_2d',
    'FRAME_TOKEN',
    'ACTION_TOKEN',
    'QUERY_TOKEN',
]
