"""The networks, in reading order: DiMSUM (the official `DiM` of `models_dim.py` with `--block-type combined`),
its shared transformer block, and the DiT and Mamba-only baselines.

    x (N, C, H, W) -> PatchEmbed + pos_embed                        (N, T, D), T = grid², grid = input/patch
    c = TimestepEmbedder(t) + LabelEmbedder(y)                      (N, D)
    for i in range(depth):  x, res = DiMBlock_i(x, res, c)
                            after every K-th block: x = DiTBlock(x, c)   (one set of weights, "shared")
    FinalLayer(x, c) -> unpatchify                                  (N, C, H, W) velocity

    DiMBlock:  res = res + DropPath(x), float32 (Vim style; res starts at 0, the first block's rate is 0)
               h   = RMSNorm(res)
               h   = h + Fusion(SpatialBranch(h[..., :D/2], c), WaveletBranch(h[..., D/2:], c))
               h   = h + gate · MLP(modulate(RMSNorm(h)))
               return h, res          # built on the normalised h, not on res (official)

    Fusion (default ``cross-attention``, :mod:`dimsum_core.nn.fusions`), with y1 spatial and y2 wavelet:
               proj(concat[attn(q(y1), k(y2), v(y2)), attn(q(y2), k(y1), v(y1))])   (queries swapped)

As in the official code, the final layer reads the last block output and the float32 residual stream is
discarded; the shared transformer acts on the block output.

Attribute names are the official state-dict keys (``spatial_mamba``, ``freq_mamba``, ``proj``, ``norm_2``,
``attn_block``, ``adaLN_modulation``, ``x_embedder``, ...): official checkpoints load by these names
(:mod:`dimsum_core.official`, ``tests/test_official_parity.py``), so do not rename them. The swappable parts
are built from the registries by name: the scan orders (:mod:`dimsum_core.nn.scans`), the wavelet transform
(:mod:`dimsum_core.nn.wavelets`), the branch fusion (:mod:`dimsum_core.nn.fusions`) and the sequence mixer
(:mod:`dimsum_core.nn.mixers`). Presets (``dimsum-L/2``, ``dit-XL/2``, ...) are the size tables at the end.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from dimsum_core.config.nodes import build
from dimsum_core.config.spec import (
    Fraction,
    FusionSpec,
    MixerSpec,
    NonNegativeInt,
    Positive,
    PositiveInt,
    ScanSpec,
    WaveletSpec,
)
from dimsum_core.interfaces.mixer import SequenceMixer
from dimsum_core.interfaces.model import FlowModel
from dimsum_core.interfaces.scan import ScanIndex
from dimsum_core.interfaces.wavelet import WaveletTransform
from dimsum_core.nn.embeddings import LabelEmbedder, PatchEmbed, TimestepEmbedder, sincos_pos_embed_2d
from dimsum_core.nn.layers import (
    Attention,
    DropPath,
    FinalLayer,
    RMSNorm,
    ada_ln,
    gated_add,
    mlp,
    modulate,
    unpatchify,
)
from dimsum_core.nn.streams import on_side_streams, side_by_side

# -- wavelet token layouts ------------------------------------------------------------------------------
# How the wavelet branch turns the token grid into a sequence of wavelet tokens of the same count and width,
# and back. Both layouts start from the packet coefficients of the (N, C, G, G) token image: 4**L subbands of
# size S×S, S = G / 2**L (see :mod:`dimsum_core.interfaces.wavelet`).
#
# * ``interleaved`` (official DiMSUM code): the coefficient stack is rearranged with
#   ``(c p1 p2) h w -> (h p1 w p2) c`` (p = 2**L), so the token at grid position (p·i + p1, p·j + p2) holds
#   all subbands at coarse location (i, j), each with the channel slice ≡ p·p1 + p2 (mod p²). The p×p block
#   of tokens at (i, j) holds every coefficient of that location.
# * ``pyramid`` (what the paper's figure describes): the subbands are tiled as a p×p mosaic of S×S tiles,
#   band b at tile (b // p, b % p); each token holds all C channels of one subband at one location. A window
#   scan with window S then visits the subbands one by one, LL first.

Layout = Literal["interleaved", "pyramid"]


def tokens_to_wavelet(x: torch.Tensor, grid: int, transform: WaveletTransform, layout: Layout,
                      scale: float) -> torch.Tensor:
    """(N, T, C) tokens on a grid×grid raster -> (N, T, C) wavelet tokens (float32)."""
    n, t, c = x.shape
    p = 2**transform.levels
    s = grid // p
    image = x.transpose(1, 2).reshape(n, c, grid, grid)
    coeffs = transform(image) * scale  # (N, p²·C, S, S), band-major
    if layout == "interleaved":
        # channel index k = band·C + ch is split as (c' p1 p2) with p1, p2 innermost
        out = coeffs.reshape(n, c, p, p, s, s).permute(0, 4, 2, 5, 3, 1)  # (N, S, p1, S, p2, c')
    else:
        out = coeffs.reshape(n, p, p, c, s, s).permute(0, 1, 4, 2, 5, 3)  # (N, by, S, bx, S, C)
    return out.reshape(n, t, c)


def wavelet_to_tokens(w: torch.Tensor, grid: int, transform: WaveletTransform, layout: Layout,
                      scale: float) -> torch.Tensor:
    """Inverse of :func:`tokens_to_wavelet`."""
    n, t, c = w.shape
    p = 2**transform.levels
    s = grid // p
    if layout == "interleaved":
        coeffs = w.reshape(n, s, p, s, p, c).permute(0, 5, 2, 4, 1, 3)  # (N, c', p1, p2, S, S)
    else:
        coeffs = w.reshape(n, p, s, p, s, c).permute(0, 1, 3, 5, 2, 4)  # (N, by, bx, C, S, S)
    image = transform.inverse(coeffs.reshape(n, p * p * c, s, s) / scale)
    return image.reshape(n, c, t).transpose(1, 2)


# -- the two branches -----------------------------------------------------------------------------------

class MixerBranch(nn.Module):
    """A residual mixer update in two halves around the mixer, so a block can run two branches' mixers together
    (:func:`run_branches`): ``enter`` gives what leave needs and the scanned sequence, ``leave`` the output."""

    mixer: nn.Module

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        kept, sequence = self.enter(x, c)
        return self.leave(kept, self.mixer(sequence, c))


class SpatialBranch(MixerBranch):
    """``y = x + gate · unscan(Mixer(scan(modulate(x))))`` over the token grid in this layer's order."""

    def __init__(self, width: int, cond_dim: int, layer: int, grid: int, scan: Any, mixer: Any):
        super().__init__()
        self.adaLN_modulation = ada_ln(cond_dim, 3 * width)
        self.mixer = build("mixer", mixer, width, cond_dim)
        self.scan = ScanIndex(build("scan", scan), grid, grid, layer)

    def enter(self, x: torch.Tensor, c: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        shift, scale, gate = self.adaLN_modulation(c).chunk(3, dim=1)
        return (x, gate), self.scan.scan(modulate(x, shift, scale))

    def leave(self, kept: tuple[torch.Tensor, ...], m: torch.Tensor) -> torch.Tensor:
        x, gate = kept
        return gated_add(x, gate, self.scan.unscan(m))


class WaveletBranch(MixerBranch):
    """The same residual Mamba update in the wavelet domain (official `WaveDiMBlock`):
    tokens -> wavelet tokens -> scan -> ``w + gate · Mixer(modulate(w))`` -> unscan -> inverse transform.

    It scans the same grid as the spatial branch (input_size / patch_size on each side): the wavelet tokens
    keep the token count, laid out on that grid as :data:`Layout` says."""

    def __init__(self, width: int, cond_dim: int, layer: int, grid: int, scan: Any, mixer: Any,
                 wavelet: Any, layout: Layout, normalize: bool):
        super().__init__()
        self.adaLN_modulation = ada_ln(cond_dim, 3 * width)
        self.mixer = build("mixer", mixer, width, cond_dim)
        self.transform = build("wavelet", wavelet)
        side = 2**self.transform.levels
        if grid % side:
            raise ValueError(f"a {self.transform.levels}-level wavelet needs a token grid divisible by {side}, "
                             f"got {grid} (input_size / patch_size); make the grid a multiple of {side}")
        if layout == "interleaved" and width % (side * side):
            raise ValueError(f"the interleaved wavelet layout needs the branch width ({width}) divisible by "
                             f"{side * side}")
        self.grid, self.layout = grid, layout
        # official: coefficients divided by 2**levels, so LL is the mean of each block
        self.coeff_scale = 2.0**-self.transform.levels if normalize else 1.0
        self.scan = ScanIndex(build("scan", scan), grid, grid, layer)

    def enter(self, x: torch.Tensor, c: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        shift, scale, gate = self.adaLN_modulation(c).chunk(3, dim=1)
        w = tokens_to_wavelet(x, self.grid, self.transform, self.layout, self.coeff_scale).to(x.dtype)
        return (w, gate), self.scan.scan(modulate(w, shift, scale))

    def leave(self, kept: tuple[torch.Tensor, ...], m: torch.Tensor) -> torch.Tensor:
        w, gate = kept  # w in the branch input's dtype
        out = gated_add(w, gate, self.scan.unscan(m))
        return wavelet_to_tokens(out, self.grid, self.transform, self.layout, self.coeff_scale).to(w.dtype)


def run_branches(first: MixerBranch, x1: torch.Tensor, second: MixerBranch, x2: torch.Tensor,
                 c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first(x1, c), second(x2, c))``: on two CUDA streams where :func:`side_by_side` runs, else in turn,
    the two mixers called as a pair (``SequenceMixer.forward_pair``: Mamba runs both scans as one launch,
    which fills the GPU where one scan's grid does not)."""
    if on_side_streams(x1):
        return side_by_side(first, x1, second, x2, c)
    kept1, seq1 = first.enter(x1, c)
    kept2, seq2 = second.enter(x2, c)
    if isinstance(first.mixer, SequenceMixer):
        m1, m2 = first.mixer.forward_pair(seq1, second.mixer, seq2, c)
    else:  # a plugin mixer need only keep the call contract mixer(x, c) (docs/plugins.md)
        m1, m2 = first.mixer(seq1, c), second.mixer(seq2, c)
    return first.leave(kept1, m1), second.leave(kept2, m2)


# -- the DiM block --------------------------------------------------------------------------------------

class DiMBlock(nn.Module):
    """DiMSUM's block: spatial + wavelet Mamba branches, fusion, gated MLP (official `DiMBlockCombined`).

    ``branches="spatial"`` drops the wavelet branch and the fusion: one Mamba branch over the full width
    (the paper's 'Conditional Mamba only' ablation).
    """

    def __init__(self, dim: int, cond_dim: int, layer: int, grid: int, drop_path: DropPath, /, *,
                 spatial_scan: ScanSpec = "sweep4", wavelet_scan: ScanSpec = "window",
                 wavelet: WaveletSpec = "haar", wavelet_layout: Layout = "interleaved",
                 wavelet_normalize: bool = True, fusion: FusionSpec = "cross-attention",
                 mixer: MixerSpec = "mamba", mlp_ratio: float = 4.0, gated_mlp: bool = True,
                 branches: Literal["both", "spatial"] = "both"):
        super().__init__()
        self.branches = branches
        self.norm = RMSNorm(dim)
        self.drop_path = drop_path
        if branches == "both":
            half = dim // 2
            self.spatial_mamba = SpatialBranch(half, cond_dim, layer, grid, spatial_scan, mixer)
            self.freq_mamba = WaveletBranch(half, cond_dim, layer, grid, wavelet_scan, mixer, wavelet,
                                            wavelet_layout, wavelet_normalize)
            self.proj = build("fusion", fusion, dim)  # official key `proj`: the cross-attention fusion
        else:
            self.spatial_mamba = SpatialBranch(dim, cond_dim, layer, grid, spatial_scan, mixer)
        self.norm_2 = RMSNorm(dim)
        # the block's own MLP adaLN: the only adaLN that DiMSUM.initialize_weights zeroes
        self.adaLN_modulation = ada_ln(cond_dim, 3 * dim)
        self.mlp = mlp(dim, mlp_ratio, gated_mlp)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor,
                c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden (N, T, D), residual (N, T, D) float32 (zeros for the first block), c (N, D)."""
        residual = residual + self.drop_path(hidden).float()
        h = self.norm(residual).to(hidden.dtype)  # (N, T, D)
        if self.branches == "both":
            x1, x2 = h.chunk(2, dim=-1)  # first half -> spatial branch, second half -> wavelet branch
            h = h + self.proj(*run_branches(self.spatial_mamba, x1, self.freq_mamba, x2, c))
        else:
            h = self.spatial_mamba(h, c)
        shift, scale, gate = self.adaLN_modulation(c).chunk(3, dim=1)
        h = gated_add(h, gate, self.mlp(modulate(self.norm_2(h), shift, scale)))
        return h, residual


# -- the shared transformer block (also DiT's block) ----------------------------------------------------

class DiTBlock(nn.Module):
    """``x += g1·Attn(modulate(LN(x)))``; ``x += g2·MLP(modulate(LN(x)))``; adaLN gives 6 chunks."""

    def __init__(self, dim: int, cond_dim: int, /, *, num_heads: PositiveInt = 16, mlp_ratio: Positive = 4.0,
                 gated_mlp: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(dim, mlp_ratio, gated_mlp)
        self.adaLN_modulation = ada_ln(cond_dim, 6 * dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (N, T, D), c (N, D) -> (N, T, D)."""
        s1, sc1, g1, s2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = gated_add(x, g1, self.attn(modulate(self.norm1(x), s1, sc1)))
        return gated_add(x, g2, self.mlp(modulate(self.norm2(x), s2, sc2)))


# -- the model --------------------------------------------------------------------------------------------

class PatchFlowModel(FlowModel):
    """What every network here shares: patchify + position, (t, y) conditioning, final layer and unpatchify.
    Subclasses implement :meth:`body`."""

    def __init__(self, *, input_size: int, in_channels: int, patch_size: int, hidden_size: int,
                 num_classes: int, null_class: bool | None, learnable_pos_embed: bool):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}; use a patch "
                             f"size that divides it")
        self.input_size, self.in_channels, self.patch_size = input_size, in_channels, patch_size
        self.hidden_size = hidden_size
        self.num_classes = num_classes
        self.grid = input_size // patch_size
        # x_embedder, pos_embed, t_embedder, y_embedder, final_layer: official (and DiT) state-dict keys
        self.x_embedder = PatchEmbed(in_channels, hidden_size, patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, hidden_size),
                                      requires_grad=learnable_pos_embed)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size,
                                        num_classes > 1 if null_class is None else null_class)
        self.final_layer = FinalLayer(hidden_size, patch_size, in_channels)

    @property
    def has_null_class(self) -> bool:
        return self.y_embedder.null_class

    def init_embeddings(self) -> None:
        """DiT init: sin-cos position table, Xavier patch embedding, N(0, 0.02) label and t-MLP
        weights, zeroed final adaLN and output layer (so the model starts by predicting zero)."""
        table = sincos_pos_embed_2d(self.hidden_size, self.grid)
        self.pos_embed.data.copy_(torch.from_numpy(table).float().unsqueeze(0))
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def zero_block_modulation(self) -> None:
        """adaLN-Zero: zero the last adaLN Linear of every block in ``self.blocks``."""
        for blk in self.blocks:
            nn.init.zeros_(blk.adaLN_modulation[-1].weight)
            nn.init.zeros_(blk.adaLN_modulation[-1].bias)

    def compile_regions(self, **options: Any) -> None:
        """Regional compilation: each block compiled on its own, embeddings and final layer eager. The blocks
        share a class and nothing in them is a Python constant that differs by layer (drop-path rate a
        tensor, every block drawing its mask, a zero first residual, scans that gather in every order), so
        dynamo traces one graph per block class at any depth; dimsum-L/2 compiled in 93 s with four DiM
        variants, the whole model in 262 s (docs/benchmarks.md)."""
        for module in self.modules():
            if isinstance(module, (DiMBlock, DiTBlock, MambaBlock)):
                module.compile(**options)

    def body(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """(N, T, D) tokens and (N, D) conditioning -> (N, T, D) for the final layer.
        By default ``self.blocks`` (``(x, c) -> x`` blocks) one after the other."""
        for blk in self.blocks:
            x = blk(x, c)
        return x

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        if t.ndim == 0:
            t = t.expand(n)
        # (N, T, D), T = grid²; contiguous, since the patch conv's transposed layout would make the first
        # block a compiled variant of its own
        h = (self.x_embedder(x) + self.pos_embed).contiguous()
        c = self.t_embedder(t) + self.y_embedder(y, n, x.device)  # (N, D)
        h = self.body(h, c)
        return unpatchify(self.final_layer(h, c), self.patch_size, self.in_channels)  # (N, C, H, W)


class DiMSUM(PatchFlowModel):
    """DiMSUM: spatial + wavelet Mamba branches fused by cross-attention, a shared transformer every K blocks."""

    def __init__(self, *, input_size: PositiveInt = 32, in_channels: PositiveInt = 4, patch_size: PositiveInt = 2,
                 hidden_size: PositiveInt = 1024, depth: PositiveInt = 16, num_classes: NonNegativeInt = 1,
                 null_class: bool | None = None, spatial_scan: ScanSpec = "sweep4",
                 wavelet_scan: ScanSpec = "window", wavelet: WaveletSpec = "haar",
                 wavelet_layout: Layout = "interleaved", wavelet_normalize: bool = True,
                 fusion: FusionSpec = "cross-attention", mixer: MixerSpec = "mamba",
                 branches: Literal["both", "spatial"] = "both",
                 attn_every: PositiveInt = 4, transformer: Literal["shared", "independent", "none"] = "shared",
                 attn_heads: PositiveInt = 16, mlp_ratio: Positive = 4.0, gated_mlp: bool = True,
                 drop_path: Fraction = 0.1,
                 learnable_pos_embed: bool = True):
        super().__init__(input_size=input_size, in_channels=in_channels, patch_size=patch_size,
                         hidden_size=hidden_size, num_classes=num_classes, null_class=null_class,
                         learnable_pos_embed=learnable_pos_embed)
        if attn_every < 1:
            raise ValueError("attn_every must be >= 1")
        self.attn_every, self.transformer = attn_every, transformer
        # independent transformers replace Mamba depth, as the official ablation does
        n_blocks = depth - depth // attn_every if transformer == "independent" else depth
        # official: block i uses ([0] + linspace(0, drop_path, depth))[i]; the first block's input starts the
        # residual stream, never dropped (official: res = x), which rate 0 keeps exact. Every block draws
        # where any does, so the blocks share one compiled graph (FlowModel.compile_regions).
        rates = [0.0] + [drop_path * i / max(n_blocks - 1, 1) for i in range(n_blocks)]
        self.blocks = nn.ModuleList(
            DiMBlock(hidden_size, hidden_size, i, self.grid, DropPath(rates[i], active=drop_path > 0),
                     spatial_scan=spatial_scan,
                     wavelet_scan=wavelet_scan, wavelet=wavelet, wavelet_layout=wavelet_layout,
                     wavelet_normalize=wavelet_normalize, fusion=fusion, mixer=mixer, branches=branches,
                     mlp_ratio=mlp_ratio, gated_mlp=gated_mlp)
            for i in range(n_blocks))
        attn_kwargs = dict(num_heads=attn_heads, mlp_ratio=mlp_ratio, gated_mlp=gated_mlp)
        # `attn_block`: the official key of the one shared transformer block
        if transformer == "shared":
            self.attn_block = DiTBlock(hidden_size, hidden_size, **attn_kwargs)
        elif transformer == "independent":
            self.attn_blocks = nn.ModuleList(DiTBlock(hidden_size, hidden_size, **attn_kwargs)
                                             for _ in range(n_blocks // attn_every))
        self.initialize_weights(depth)

    def initialize_weights(self, depth: int) -> None:
        """The official order: DiT-style init first, then Vim/GPT-2 ``_init_weights`` over every module.
        The second pass keys off layer names, so renaming a layer changes the initialisation."""
        self.init_embeddings()
        for blk in self.blocks:  # only each DiM block's own MLP adaLN is zeroed, not its branches' adaLNs
            nn.init.zeros_(blk.adaLN_modulation[-1].weight)
            nn.init.zeros_(blk.adaLN_modulation[-1].bias)
        # Vim/GPT-2: zero every Linear bias (but the mixer's dt_proj, flagged `_no_reinit`), re-draw embeddings,
        # and rescale the residual output projections: a child named exactly `out_proj` (the Mamba mixer's) or
        # `fc2` (the plain MLP's; the gated MLP's `w3` does not match, as in the official code)
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.bias is not None \
                    and not getattr(module.bias, "_no_reinit", False):
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            for name in ("out_proj", "fc2"):
                child = getattr(module, name, None)
                if isinstance(child, nn.Linear):
                    nn.init.kaiming_uniform_(child.weight, a=math.sqrt(5))
                    with torch.no_grad():
                        child.weight /= math.sqrt(depth)

    def body(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # 0 + x is x exactly: the official res = x. Under regional compilation (this loop eager) it requires
        # grad like every later residual, so the first block is not a compiled variant of its own; a whole
        # compiled model needs no such thing (and requires_grad_ there would break its graph)
        residual = torch.zeros_like(x, dtype=torch.float32)
        if x.requires_grad and not torch.compiler.is_compiling():
            residual.requires_grad_()
        for i, blk in enumerate(self.blocks):
            x, residual = blk(x, residual, c)
            if (i + 1) % self.attn_every == 0:
                if self.transformer == "shared":
                    x = self.attn_block(x, c)
                elif self.transformer == "independent":
                    x = self.attn_blocks[(i + 1) // self.attn_every - 1](x, c)
        return x


# -- baselines --------------------------------------------------------------------------------------------

class DiT(PatchFlowModel):
    """DiT/SiT (flow matching, velocity output, learn_sigma off): a stack of adaLN-Zero transformer blocks
    with frozen sin-cos positions and a plain GELU MLP."""

    def __init__(self, *, input_size: PositiveInt = 32, in_channels: PositiveInt = 4, patch_size: PositiveInt = 2,
                 hidden_size: PositiveInt = 1152, depth: PositiveInt = 28, num_heads: PositiveInt = 16,
                 mlp_ratio: Positive = 4.0, gated_mlp: bool = False, num_classes: NonNegativeInt = 1000,
                 null_class: bool | None = None,
                 learnable_pos_embed: bool = False):
        super().__init__(input_size=input_size, in_channels=in_channels, patch_size=patch_size,
                         hidden_size=hidden_size, num_classes=num_classes, null_class=null_class,
                         learnable_pos_embed=learnable_pos_embed)
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, hidden_size, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                             gated_mlp=gated_mlp) for _ in range(depth))
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT: Xavier on every Linear, zero biases, then adaLN-Zero (block and final adaLN zeroed)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.init_embeddings()
        self.zero_block_modulation()


class MambaBlock(nn.Module):
    """The DiT block with attention replaced by a Mamba mixer over this layer's scan order:
    ``x += g1·unscan(Mamba(scan(modulate(RMSNorm(x)))))``, then an optional adaLN MLP."""

    def __init__(self, dim: int, cond_dim: int, layer: int, grid: int, /, *, scan: ScanSpec = "zigzag8",
                 mixer: MixerSpec = "mamba", use_mlp: bool = True, mlp_ratio: float = 4.0,
                 gated_mlp: bool = True):
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.mixer = build("mixer", mixer, dim, cond_dim)
        self.scan = ScanIndex(build("scan", scan), grid, grid, layer)
        self.use_mlp = use_mlp
        chunks = 6 if use_mlp else 3
        if use_mlp:
            self.norm2 = RMSNorm(dim)
            self.mlp = mlp(dim, mlp_ratio, gated_mlp)
        self.adaLN_modulation = ada_ln(cond_dim, chunks * dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        mod = self.adaLN_modulation(c).chunk(6 if self.use_mlp else 3, dim=1)
        h = modulate(self.norm1(x), mod[0], mod[1])
        x = gated_add(x, mod[2], self.scan.unscan(self.mixer(self.scan.scan(h), c)))
        if self.use_mlp:
            x = gated_add(x, mod[5], self.mlp(modulate(self.norm2(x), mod[3], mod[4])))
        return x


class MambaOnly(PatchFlowModel):
    """Mamba-only baseline (ZigMa-like): a stack of adaLN-Zero Mamba blocks, no attention; layer i scans in
    the order ``scan`` gives for layer i."""

    def __init__(self, *, input_size: PositiveInt = 32, in_channels: PositiveInt = 4, patch_size: PositiveInt = 2,
                 hidden_size: PositiveInt = 768, depth: PositiveInt = 24, scan: ScanSpec = "zigzag8",
                 mixer: MixerSpec = "mamba", use_mlp: bool = True, mlp_ratio: Positive = 4.0,
                 gated_mlp: bool = True, num_classes: NonNegativeInt = 1, null_class: bool | None = None,
                 learnable_pos_embed: bool = True):
        super().__init__(input_size=input_size, in_channels=in_channels, patch_size=patch_size,
                         hidden_size=hidden_size, num_classes=num_classes, null_class=null_class,
                         learnable_pos_embed=learnable_pos_embed)
        self.blocks = nn.ModuleList(
            MambaBlock(hidden_size, hidden_size, i, self.grid, scan=scan, mixer=mixer, use_mlp=use_mlp,
                       mlp_ratio=mlp_ratio, gated_mlp=gated_mlp) for i in range(depth))
        self.init_embeddings()
        self.zero_block_modulation()  # every block starts as the identity


# -- sizes ------------------------------------------------------------------------------------------------
# DiMSUM sizes follow the official `DiM_models`: the shared transformer and the fusion always use 16 and 8
# heads (DiMSUM's defaults). `dimsum-S/2` is not official; it exists for cheap runs and studies.

DIMSUM_SIZES = {  # name: (depth, hidden, patch)
    "dimsum-S/2": (12, 384, 2),
    "dimsum-B/2": (12, 768, 2),
    "dimsum-L/2": (16, 1024, 2),
    "dimsum-XL/2": (24, 1152, 2),
    "dimsum-L/4": (16, 1024, 4),
}
DIT_SIZES = {  # name: (depth, hidden, heads, patch), as in DiT
    "dit-S/2": (12, 384, 6, 2),
    "dit-B/2": (12, 768, 12, 2),
    "dit-L/2": (24, 1024, 16, 2),
    "dit-XL/2": (28, 1152, 16, 2),
}
MAMBA_SIZES = {  # name: (depth, hidden, patch); two Mamba blocks per DiT block, as ZigMa's
    "mamba-S/2": (24, 384, 2),
    "mamba-B/2": (24, 768, 2),
    "mamba-L/2": (48, 1024, 2),
}
