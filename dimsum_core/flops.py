"""Counting multiply-adds (MACs) of one forward pass, two ways.

* ``macs``: every multiply-add — Linear and convolution layers, the attention cores (QKᵀ and AV),
  the Mamba mixers' projections, depthwise conv1d and selective scan, and the wavelet transforms.
* ``paper_macs``: what the DiMSUM paper reported (calflops output / 2, the official `eval_toolbox/compute_flops.py`). calflops only patches
  ``F.linear``/convolutions/``torch.matmul``, so it missed the Mamba ``in_proj`` and ``dt_proj``
  (computed with ``@``), the depthwise conv1d and the scan (CUDA kernels) and the SDPA attention cores.

Like the DiT and DiMSUM papers, "GFLOPs" below means billions of multiply-adds. The count runs on
the meta device, so no memory is allocated and no arithmetic is done.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from dimsum_core.interfaces.mixer import SequenceMixer
from dimsum_core.interfaces.wavelet import WaveletTransform


@dataclass
class MacCount:
    macs: int = 0
    paper_macs: int = 0
    by_part: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, part: str, macs: int, *, paper: bool) -> None:
        self.macs += macs
        self.by_part[part] += macs
        if paper:
            self.paper_macs += macs


def _is_mamba(module: nn.Module) -> bool:
    return isinstance(module, SequenceMixer) and all(
        hasattr(module, a) for a in ("in_proj", "x_proj", "dt_proj", "out_proj", "A_log", "conv1d"))


def mamba_macs(mixer: nn.Module, tokens: int) -> tuple[int, int]:
    """(all, paper-visible) MACs of a Mamba-1 mixer over ``tokens`` tokens (batch × length)."""
    d_inner, d_state = mixer.A_log.shape
    d_model = mixer.in_proj.in_features
    dt_rank = mixer.dt_proj.in_features
    d_conv = mixer.conv1d.weight.shape[-1]
    in_proj = d_model * 2 * d_inner
    x_proj = d_inner * (dt_rank + 2 * d_state)
    dt_proj = dt_rank * d_inner
    out_proj = d_inner * d_model
    conv = d_inner * d_conv
    scan = 3 * d_inner * d_state  # exp(ΔA)·h, ΔB·x and C·h per state
    total = tokens * (in_proj + x_proj + dt_proj + out_proj + conv + scan)
    return total, tokens * (x_proj + out_proj)


def count_macs(model: nn.Module, batch: int = 1) -> MacCount:
    """MACs of ``model(x, t, y)`` for a batch of ``batch`` inputs (the model may live on any device;
    a meta-device copy is not needed: pass a model built under ``torch.device('meta')``)."""
    count = MacCount()
    inside_mixer: set[nn.Module] = set()
    for m in model.modules():
        if _is_mamba(m):
            inside_mixer.update(m.modules())
    hooks = []

    def conv_hook(mod: nn.Module, _inputs: tuple[Any, ...], out: torch.Tensor) -> None:
        kernel = mod.weight[0].numel()  # (in/groups)·k...
        count.add("conv", out.numel() * kernel, paper=True)

    def mixer_hook(mod: nn.Module, inputs: tuple[Any, ...], _out: Any) -> None:
        x = inputs[0]
        total, paper = mamba_macs(mod, x.shape[0] * x.shape[1])
        count.add("mamba", total, paper=False)
        count.paper_macs += paper
        cond = getattr(mod, "cond_proj", None)
        if cond is not None:  # official computes cond_proj(c) even though its result is unused
            count.add("mamba", x.shape[0] * cond.in_features * cond.out_features, paper=True)

    def core_hook(mod: nn.Module, inputs: tuple[Any, ...], _out: Any) -> None:
        count.add("attention", mod.macs(inputs[0]), paper=False)

    def wavelet_hook(mod: WaveletTransform, inputs: tuple[Any, ...], out: torch.Tensor) -> None:
        # as the official depthwise 2×2 convolutions: 4 MACs per coefficient and level, and the
        # same again for the inverse transform (called through `inverse`, which no hook sees)
        count.add("wavelet", 2 * 4 * out.numel() * mod.levels, paper=True)

    for m in model.modules():
        if m in inside_mixer and not _is_mamba(m):
            continue
        if _is_mamba(m):
            hooks.append(m.register_forward_hook(mixer_hook))
        elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, WaveletTransform):
            hooks.append(m.register_forward_hook(wavelet_hook))
        if callable(getattr(m, "macs", None)):
            hooks.append(m.register_forward_hook(core_hook))
    # the mixers' arithmetic is counted analytically; on the meta device they only pass shapes through
    originals = {}
    for m in model.modules():
        if _is_mamba(m):
            originals[m] = m.forward
            m.forward = _shape_only
    try:
        device = next(model.parameters()).device
        size, channels = model.input_size, model.in_channels
        x = torch.zeros(batch, channels, size, size, device=device)
        t = torch.zeros(batch, device=device)
        y = torch.zeros(batch, dtype=torch.long, device=device)
        with torch.no_grad(), _CountLinear(count):
            model(x, t, y)
    finally:
        for h in hooks:
            h.remove()
        for m, fwd in originals.items():
            m.forward = fwd
    return count


class _CountLinear(TorchFunctionMode):
    """Counts every ``F.linear`` (what ``nn.Linear`` calls, and what a module applying a Linear's weight
    itself calls, as the gated MLP does with w12's halves): a Linear module hook would miss the latter.
    calflops patches ``F.linear`` too, so these are all paper-visible."""

    def __init__(self, count: MacCount):
        super().__init__()
        self.count = count

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight = args[0], args[1] if len(args) > 1 else kwargs["weight"]
            out_features, in_features = weight.shape
            self.count.add("linear", x.numel() // in_features * in_features * out_features, paper=True)
        return func(*args, **kwargs)


def _shape_only(x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
    return x
