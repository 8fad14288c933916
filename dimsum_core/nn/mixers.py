"""Built-in sequence mixers: the Mamba-1 selective SSM (DiMSUM's ``CondMamba``).

Parameter names, shapes and initialisation follow the official Mamba-1 / Vim module, so official
DiMSUM state dicts load unchanged. The conv and scan run in dimsum's Triton kernels on a GPU, in
mamba-ssm's CUDA kernels when asked for, or in the pure-PyTorch scan of
:mod:`dimsum_core.ops.selective_scan` (see :mod:`dimsum_core.ops.backend`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from dimsum_core.errors import RecipeError
from dimsum_core.interfaces.mixer import SequenceMixer
from dimsum_core.ops.backend import BACKENDS, Backend, cuda_kernels, require_backend, resolve_backend
from dimsum_core.ops.causal_conv1d import causal_conv1d
from dimsum_core.ops.selective_scan import selective_scan
from dimsum_core.ops.selective_scan_op import selective_scan_op
from dimsum_core.ops.triton_ops import (
    causal_conv1d_silu_triton,
    selective_scan_triton,
    selective_scan_triton_both,
)

Conditioning = Literal["official", "none", "conv-input"]


@torch.compiler.assume_constant_result
def _kernel_path(backend: str, device_type: str) -> Literal["triton", "fused", "scan-kernel", "torch"]:
    """Which implementation runs: dimsum's Triton conv and scan, mamba-ssm's fused ``mamba_inner_fn``
    (needs causal-conv1d), its scan kernel alone, or the pure-PyTorch scan. Decided outside the traced
    graph under torch.compile."""
    resolved = resolve_backend(backend, torch.device(device_type))
    if resolved != "cuda":
        return resolved
    return "fused" if cuda_kernels().has_causal_conv1d else "scan-kernel"


def _at_least_float32(t: Tensor) -> Tensor:
    """The scan parameters (A_log, D, dt bias) are used in float32, or float64 in a float64 model."""
    return t if t.dtype == torch.float64 else t.float()


def _per_sequence(weight: Tensor, x: Tensor) -> Tensor:
    """``weight`` (k, d) applied to each sequence of x (N, d, L): (N, k, L), as one batched product with
    the weight broadcast over the batch. ``torch.matmul(weight, x)`` would fold the batch into one GEMM
    over N·L rows, which copies a time-contiguous x into rows first and its gradients back; this reads x
    as it is, and the weight's gradient is summed from N small per-sequence products (N·k·d floats).
    The weight is cast to x's dtype before it is expanded (autocast would cast the expanded one)."""
    return torch.bmm(weight.to(x.dtype).expand(len(x), -1, -1), x)


class Mamba(SequenceMixer):
    """Mamba-1 selective SSM mixer (official DiMSUM CondMamba): Triton, mamba-ssm or pure-PyTorch kernels.

    x (N, L, d_model) -> in_proj -> (x, z); x -> causal depthwise conv -> SiLU -> x_proj ->
    (dt, B, C); delta = softplus(dt_proj(dt)); selective scan with A = -exp(A_log) and skip D;
    gate by SiLU(z); out_proj.

    ``conditioning``: ``"official"`` keeps the released code's ``cond_proj`` (in the state dict and
    the parameter count) without effect; ``"none"`` drops it; ``"conv-input"`` adds ``cond_proj(c)``
    to the conv input, zero-initialised so training starts from the official function.
    """

    def __init__(
        self,
        d_model: int,
        cond_dim: int | None = None,
        /,
        *,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        backend: Backend = "auto",
        conditioning: Conditioning = "official",
    ):
        super().__init__()
        if conditioning not in ("official", "none", "conv-input"):
            raise RecipeError(f"mixer conditioning must be 'official', 'none' or 'conv-input', got {conditioning!r}")
        if conditioning == "conv-input" and cond_dim is None:
            raise RecipeError("mixer conditioning='conv-input' needs a conditioning vector, but this block "
                              "gives the mixer none; use conditioning='none' or 'official'")
        if backend not in BACKENDS:
            raise RecipeError(f"mixer backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend != "auto":
            require_backend(backend)
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank is None else dt_rank
        self.backend, self.conditioning = backend, conditioning

        # Creation order as in the official module, so a seeded init draws the same numbers.
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.cond_proj = (nn.Linear(cond_dim, self.d_inner, bias=True)
                          if cond_dim is not None and conditioning != "none" else None)

        # dt_proj: weight ~ U(±dt_rank^-0.5); bias = softplus⁻¹(dt), dt log-uniform in [dt_min, dt_max].
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True  # a model-wide "zero every Linear bias" init skips it

        # S4D-real: A = -(1..d_state) per channel, stored as its log in float32.
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

        if self.cond_proj is not None and conditioning == "conv-input":
            nn.init.zeros_(self.cond_proj.weight)
            nn.init.zeros_(self.cond_proj.bias)
        elif self.cond_proj is not None:
            # Official: the released kernel binding uses cond_proj(c) only as the conv's output buffer,
            # which the kernel overwrites (official `CondMamba` in the vendored mamba_simple.py), so cond_proj is dead weight that never gets a
            # gradient. Kept for state-dict and parameter-count parity, frozen so DDP with
            # find_unused_parameters=False does not wait for its gradient.
            self.cond_proj.requires_grad_(False)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """x (N, L, d_model), c (N, cond_dim) or None -> (N, L, d_model), causal along L."""
        if self._runs_triton(x):
            return self._output(selective_scan_triton(*self._triton_scan_inputs(x, c)))
        cond, A = self._conditioning(c), self._A()
        path = _kernel_path(self.backend, x.device.type)
        if path == "fused" and not torch.compiler.is_compiling():
            return self._fused_cuda(x, cond, A, cuda_kernels().mamba_inner_fn)
        if path == "scan-kernel":  # mamba-ssm's scan kernel as custom ops: torch.compile traces through them
            return self._unfused(x, cond, A, selective_scan_op)
        return self._unfused(x, cond, A, selective_scan)

    def forward_pair(self, x: Tensor, other: SequenceMixer, x2: Tensor,
                     c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """With another Mamba on dimsum's kernels: both scans as one launch (a DiM block's two branches; they
        have the same shapes)."""
        if not (isinstance(other, Mamba) and self._runs_triton(x) and other._runs_triton(x2)):
            return super().forward_pair(x, other, x2, c)
        y, y2 = selective_scan_triton_both(self._triton_scan_inputs(x, c), other._triton_scan_inputs(x2, c))
        return self._output(y), other._output(y2)

    def _runs_triton(self, x: Tensor) -> bool:
        # float64 (reference checks) takes the torch scan
        return _kernel_path(self.backend, x.device.type) == "triton" and x.dtype != torch.float64

    def _conditioning(self, c: Tensor | None) -> Tensor | None:
        """What the mixer adds to the conv input: (N, d_inner), or None."""
        if self.conditioning == "conv-input" and c is None:
            raise ValueError("Mamba(conditioning='conv-input') needs the conditioning vector c")
        return self.cond_proj(c) if self.conditioning == "conv-input" else None

    def _A(self) -> Tensor:
        return -torch.exp(_at_least_float32(self.A_log))  # (d_inner, d_state)

    def _triton_scan_inputs(self, x: Tensor, c: Tensor | None) -> tuple[Tensor, ...]:
        """The scan's inputs (u, delta, A, B, C, D, z, delta_bias) from x (N, L, d_model).

        Time-contiguous (N, d, L) from in_proj to the scan, the layout the Triton kernels scan fastest; in
        training the scan writes its output channels-last, so out_proj reads it as rows with no copy
        (:meth:`_output`). x_proj and dt_proj, inside the mixer, are per-sequence products
        (:func:`_per_sequence`), which copy nothing. in_proj and out_proj stay GEMMs over N·L rows: their
        copies (the sequences into and out of rows) move about what per-sequence weight gradients would
        (N·k·d values), and a transposed output would make the scan order's gather read across rows."""
        cond = self._conditioning(c)
        xz = torch.matmul(self.in_proj.weight, x.transpose(1, 2))  # (N, 2·d_inner, L)
        if self.in_proj.bias is not None:
            xz = xz + self.in_proj.bias.to(xz.dtype)[:, None]
        u, z = xz.chunk(2, dim=1)
        if cond is not None:
            u = u + cond.to(u.dtype)[:, :, None]
        u = causal_conv1d_silu_triton(u, self.conv1d.weight, self.conv1d.bias)
        dt, B, C = _per_sequence(self.x_proj.weight, u).split([self.dt_rank, self.d_state, self.d_state], dim=1)
        delta = _per_sequence(self.dt_proj.weight, dt)  # its bias is added inside the softplus, in float32
        return u, delta, self._A(), B, C, self.D, z, self.dt_proj.bias

    def _output(self, y: Tensor) -> Tensor:
        """The scan's output y (N, d_inner, L) -> (N, L, d_model)."""
        return self.out_proj(y.transpose(1, 2))

    def _unfused(self, x: Tensor, cond: Tensor | None, A: Tensor, scan: Callable[..., Tensor]) -> Tensor:
        """Step by step, channels-last; ``scan`` is mamba-ssm's kernel (as custom ops) or ours."""
        u, z = self.in_proj(x).chunk(2, dim=-1)  # (N, L, d_inner) each
        if cond is not None:
            u = u + cond.to(u.dtype)[:, None, :]
        u = F.silu(causal_conv1d(u, self.conv1d.weight, self.conv1d.bias))
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight)  # its bias is added inside the softplus, in float32
        y = scan(u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2),
                 _at_least_float32(self.D), z=z.transpose(1, 2),
                 delta_bias=_at_least_float32(self.dt_proj.bias), delta_softplus=True)  # (N, d_inner, L)
        return self.out_proj(y.transpose(1, 2))

    def _fused_cuda(self, x: Tensor, cond: Tensor | None, A: Tensor,
                    mamba_inner_fn: Callable[..., Tensor]) -> Tensor:
        """mamba-ssm's fused conv + projections + scan + gate + out_proj, as the official module."""
        xz = rearrange(self.in_proj.weight @ rearrange(x, "b l d -> d (b l)"), "d (b l) -> b d l", l=x.shape[1])
        if self.in_proj.bias is not None:
            xz = xz + self.in_proj.bias.to(xz.dtype)[:, None]
        if cond is not None:
            u, z = xz.chunk(2, dim=1)
            xz = torch.cat([u + cond.to(u.dtype)[..., None], z], dim=1)
        return mamba_inner_fn(xz, self.conv1d.weight, self.conv1d.bias, self.x_proj.weight,
                              self.dt_proj.weight, self.out_proj.weight, self.out_proj.bias, A, None, None,
                              _at_least_float32(self.D), delta_bias=_at_least_float32(self.dt_proj.bias),
                              delta_softplus=True)
