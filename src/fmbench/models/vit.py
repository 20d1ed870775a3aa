"""A Vision Transformer: PatchEmbed -> [cls] + pos -> pre-norm Blocks -> LayerNorm -> head.

The defaults are the network the study's tutorial code (uygarkurt/ViT-PyTorch,
`vit-implementation.ipynb`) builds: embedding dim 16 over 8 heads (2 dimensions per head), six
`nn.TransformerEncoderLayer(d_model=16, nhead=8, dropout=..., activation="gelu", batch_first=True,
norm_first=True)` with PyTorch's default `dim_feedforward=2048` (the notebook's `HIDDEN_DIM = 768`
is never passed), deep-copied by `nn.TransformerEncoder`, so all six start identical (`init="torch"`).
tests/test_parity_tutorial.py builds that code with torch.nn and checks weights and logits.
`vit_best` uses the same code with a sound configuration (`ViTBestConfig`, below).

Two options from "Vision Transformer for Small-Size Datasets" (Lee, Lee and Song 2021), both off by
default and both keeping the network a plain ViT (a linear patch projection, then attention):
- `spt`, shifted patch tokenization, as the authors' code builds it (aanna0701/SPT_LSA_ViT,
  models/SPT.py, its "4 diagonal directions" branch, `self.shift = int(patch_size * (1/2))`): the
  image and four copies shifted diagonally by half a patch, concatenated as channels, then patches,
  LayerNorm and the linear projection;
- `lsa`, locality self-attention, as lucidrains/vit-pytorch's vit_for_small_dataset.py builds it:
  one learned temperature per layer, `nn.Parameter(torch.log(torch.tensor(dim_head ** -0.5)))`
  multiplying the scores through `.exp()`, and each token's score with itself masked before the
  softmax (the authors' code learns one temperature per head).
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from fmbench.errors import ConfigError
from fmbench.models.layers import FastDropout, FlipAveraged


@dataclass(frozen=True)
class ViTConfig:
    """Sizes of a ViT on 28x28x1 images. Defaults are the study's `vit_seed`."""

    image_size: int = 28
    patch_size: int = 4
    dim: int = 16            # study: patch_size * patch_size * channels
    depth: int = 6
    heads: int = 8
    mlp_dim: int = 2048      # nn.TransformerEncoderLayer's default dim_feedforward (the study states 768)
    dropout: float = 0.2
    drop_path: float = 0.0   # stochastic depth, max rate (linearly increasing with depth)
    pool: str = "cls"        # "cls" token or global average pooling "mean"
    pos_embed: str = "learned"  # "learned" or "sincos" (fixed 2D sin-cos)
    tta_flip: bool = False   # eval only: average the logits of x and x.flip(-1)
    tta_shift: bool = False  # eval only: and of x shifted 1 pixel both ways (models/layers.py, tta_views)
    # The study's tutorial (uygarkurt/ViT-PyTorch) initialises the class token and the learned
    # positions with torch.randn (std 1: four times the patch signal at dim 16) and feeds pixels
    # normalised to [-1, 1] (Normalize([0.5], [0.5])). timm/ViT use std 0.02 and any fixed scaling.
    embed_init_std: float = 1.0
    center_input: bool = True  # pixels [0, 1] -> [-1, 1] before the patch embedding
    # "torch": as the tutorial's nn.TransformerEncoder: one layer initialised as torch.nn does
    # (attention in-projection Xavier-uniform, its biases 0) and deep-copied, drawn in the tutorial's
    # order, so one seed gives the tutorial's exact initial weights. "independent": each layer drawn
    # on its own with nn.Linear's default (timm-style; vit_best and runs before issue 23).
    init: str = "torch"
    spt: bool = False        # shifted patch tokenization (Lee et al. 2021; the module docstring)
    lsa: bool = False        # locality self-attention (the same paper)
    num_classes: int = 10

    # Runs written before these fields existed were trained with these values (fmbench <= issue 6;
    # `init` <= issue 22).
    LEGACY_DEFAULTS = {"embed_init_std": 0.02, "center_input": False, "init": "independent"}
    POOLS = ("cls", "mean")  # how the tokens become one vector (models/hybrid.py adds "seq")
    # Settings added after runs were named: left out of a run's identity (config.config_hash) while
    # they hold these values, so the runs made before them keep their names and are reused.
    IDENTITY_NEUTRAL = {"spt": False, "lsa": False, "tta_shift": False}

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ConfigError(f"image size {self.image_size} is not divisible by patch size {self.patch_size}")
        if self.dim % self.heads:
            raise ConfigError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.pool not in self.POOLS:
            raise ConfigError(f"pool must be {' or '.join(map(repr, self.POOLS))}, got {self.pool!r}")
        if self.pos_embed not in ("learned", "sincos"):
            raise ConfigError(f"pos_embed must be 'learned' or 'sincos', got {self.pos_embed!r}")
        if min(self.depth, self.heads, self.mlp_dim, self.dim) < 1:
            raise ConfigError("depth, heads, mlp_dim and dim must be >= 1")
        if not (0 <= self.dropout < 1 and 0 <= self.drop_path < 1):
            raise ConfigError("dropout and drop_path must be in [0, 1)")
        if not (0 < self.embed_init_std <= 10):
            raise ConfigError(f"embed_init_std must be in (0, 10], got {self.embed_init_std}")
        if self.init not in ("torch", "independent"):
            raise ConfigError(f"init must be 'torch' or 'independent', got {self.init!r}")
        if self.spt and self.patch_size < 2:
            raise ConfigError(f"spt shifts by half a patch: it needs patch_size >= 2, got {self.patch_size}")
        if self.pos_embed == "sincos" and self.dim % 4:
            raise ConfigError(f"sincos position embedding needs dim divisible by 4, got {self.dim}")


@dataclass(frozen=True)
class ViTBestConfig(ViTConfig):
    """`vit_best`: patch 4, dim 128, 4 heads of 32 dims, 6 layers, GAP, 2D sin-cos, drop_path 0.05, flip TTA."""

    dim: int = 128
    depth: int = 6
    heads: int = 4
    mlp_dim: int = 256
    dropout: float = 0.0     # dropout is slow on CPU (RNG) and stochastic depth regularises better
    drop_path: float = 0.05
    pool: str = "mean"
    pos_embed: str = "sincos"
    tta_flip: bool = True    # as cnn_best: both families get the same test-time flip averaging
    embed_init_std: float = 0.02
    center_input: bool = False
    init: str = "independent"  # its shipped weights' recipe drew each layer on its own


class PatchEmbed(nn.Module):
    """Cut the image into non-overlapping patches and project each linearly to `dim`.

    With `shifted` (SPT), the image and its four diagonal shifts by half a patch (zero-filled) are
    concatenated as channels first, and each patch's 5*p*p values pass a LayerNorm before the projection.
    """

    def __init__(self, patch_size: int, dim: int, shifted: bool = False) -> None:
        super().__init__()
        self.p = patch_size
        self.shifts = diagonal_shifts(patch_size // 2) if shifted else ()
        n = patch_size * patch_size * (1 + len(self.shifts))
        self.norm = nn.LayerNorm(n) if shifted else None
        self.proj = nn.Linear(n, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shifts:
            x = torch.cat([x, *(F.pad(x, pad) for pad in self.shifts)], 1)   # (B, 5C, H, W)
        B, C, H, W = x.shape
        p = self.p
        x = x.reshape(B, C, H // p, p, W // p, p)            # (B, C, h, p, w, p)
        x = x.permute(0, 2, 4, 1, 3, 5).reshape(B, (H // p) * (W // p), C * p * p)  # (B, N, C*p*p)
        return self.proj(x if self.norm is None else self.norm(x))                 # (B, N, dim)


def diagonal_shifts(s: int) -> tuple[tuple[int, int, int, int], ...]:
    """F.pad arguments (left, right, top, bottom) that move an image's content by `s` pixels
    right-down, left-down, right-up and left-up (a negative pad crops)."""
    return tuple((dx * s, -dx * s, dy * s, -dy * s) for dy in (1, -1) for dx in (1, -1))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability `p`."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, device=x.device, dtype=x.dtype) >= self.p
        return x * keep / (1 - self.p)


def locality_scores(q: torch.Tensor, k: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """LSA's scores (B, nh, N, N): q.k times a learned scale, each token's score with itself -inf."""
    att = (q @ k.transpose(-2, -1)) * log_scale.exp()
    return att.masked_fill(torch.eye(att.shape[-1], dtype=torch.bool, device=att.device), float("-inf"))


class Attention(nn.Module):
    """Multi-head self-attention with dropout on the attention probabilities (the CPU engine runs CpuAttention).

    With `lsa`, the scores' scale is learned (`log_scale`, starting at 1/sqrt(head size) as in plain
    attention) and each token's score with itself is masked out (locality self-attention).
    """

    def __init__(self, dim: int, heads: int, dropout: float, lsa: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout
        self.proj_drop = FastDropout(dropout)
        self.log_scale = nn.Parameter(torch.tensor(math.log((dim // heads) ** -0.5))) if lsa else None
        self.record = False                                  # explain/rollout.py asks for the probabilities
        self.attention_probs: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, D // self.heads)  # (B, N, 3, nh, hs)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)                              # each (B, nh, N, hs)
        drop = self.dropout if self.training else 0.0
        if self.record or self.log_scale is not None:
            # SDPA never materialises the probabilities (an explanation needs them) and takes no learned scale
            att = (locality_scores(q, k, self.log_scale) if self.log_scale is not None
                   else (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(-1)   # (B, nh, N, N)
            if self.record:
                self.attention_probs = att.detach()
            x = (F.dropout(att, drop) if drop else att) @ v                     # (B, nh, N, hs)
        else:
            x = nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=drop)  # (B, nh, N, hs)
        x = x.transpose(1, 2).reshape(B, N, D)                            # (B, N, D)
        return self.proj_drop(self.proj(x))


class MLP(nn.Sequential):
    """Linear -> GELU -> Dropout -> Linear -> Dropout (on CPU the engine fuses GELU and dropout: FusedMLP)."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), FastDropout(dropout),
                         nn.Linear(hidden, dim), FastDropout(dropout))


class Block(nn.Module):
    """Pre-norm transformer encoder layer: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: ViTConfig, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.attn = Attention(cfg.dim, cfg.heads, cfg.dropout, cfg.lsa)
        self.norm2 = nn.LayerNorm(cfg.dim)
        self.mlp = MLP(cfg.dim, cfg.mlp_dim, cfg.dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """Fixed 2D sin-cos position embedding, (h*w, dim), as in MAE / "Better plain ViT baselines"."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    omega = 1.0 / (10000 ** (torch.arange(dim // 4) / (dim // 4 - 1 or 1)))
    y = y.flatten()[:, None] * omega[None, :]
    x = x.flatten()[:, None] * omega[None, :]
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)


class ViT(FlipAveraged):
    """Image (B, 1, 28, 28) -> logits (B, num_classes)."""

    def __init__(self, cfg: ViTConfig = ViTConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        rng_at_start = torch.random.get_rng_state()
        side = cfg.image_size // cfg.patch_size
        n_tokens = side * side + (cfg.pool == "cls")
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.dim, cfg.spt)
        std = cfg.embed_init_std
        self.cls_token = nn.Parameter(torch.randn(1, 1, cfg.dim) * std) if cfg.pool == "cls" else None
        if cfg.pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.randn(1, n_tokens, cfg.dim) * std)
        else:
            pe = sincos_2d(side, side, cfg.dim)
            if cfg.pool == "cls":
                pe = torch.cat([torch.zeros(1, cfg.dim), pe])
            self.register_buffer("pos_embed", pe[None], persistent=False)
        self.dropout = FastDropout(cfg.dropout)
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.Sequential(*[Block(cfg, r) for r in rates])
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)
        if cfg.init == "torch":
            torch.random.set_rng_state(rng_at_start)   # redraw from the same seed, in the tutorial's order
            self._init_as_torch_encoder()

    @torch.no_grad()
    def _init_as_torch_encoder(self) -> None:
        """Draw the weights as the tutorial's code does, in its order: Conv2d patch projection (the
        same bound and element order as our Linear), class token, positions, then ONE
        nn.TransformerEncoderLayer (MultiheadAttention: out_proj as nn.Linear, then in_proj
        Xavier-uniform, both biases 0; linear1; linear2), copied into every layer; then the head."""
        std = self.cfg.embed_init_std
        self.patch_embed.proj.reset_parameters()
        for p in (self.cls_token, self.pos_embed):   # None without a class token; a buffer if sincos
            if isinstance(p, nn.Parameter):
                p.copy_(torch.randn(p.shape) * std)
        first = self.blocks[0]
        first.attn.proj.reset_parameters()
        nn.init.xavier_uniform_(first.attn.qkv.weight)
        nn.init.zeros_(first.attn.qkv.bias)
        nn.init.zeros_(first.attn.proj.bias)
        first.mlp[0].reset_parameters()
        first.mlp[3].reset_parameters()
        for block in self.blocks[1:]:
            block.load_state_dict(first.state_dict())
        self.head.reset_parameters()

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        if self.cfg.center_input:
            x = x * 2 - 1                                         # [0, 1] -> [-1, 1]
        x = self.patch_embed(x)                                   # (B, N, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(B, -1, -1), x], 1)  # (B, 1 + N, D)
        x = self.dropout(x + self.pos_embed)
        x = self.norm(self.blocks(x))
        x = x[:, 0] if self.cls_token is not None else x.mean(1)  # (B, D)
        return self.head(x)
