"""``dimsum doctor``: what is installed and what it means for the user."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import warnings

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dimsum_core.ops.backend import auto_path_reason
from dimsum_core.ops.kernels import causal_conv1d_status, mamba_status, triton_status


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _import_check(module: str) -> str | None:
    """None if the module imports, else the one-line reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module(module)
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return None


def _diffusers_row() -> tuple[str, str, str]:
    """Installed is not enough: diffusers imports torchvision, which may be built for another torch."""
    from dimsum_core.errors import DimsumError
    from dimsum_core.vae import INSTALL_HINT, autoencoder_class

    version = _version("diffusers")
    if version is None:
        return "diffusers", "not installed", f"missing: VAE encode/decode for latent models (`{INSTALL_HINT}`)"
    try:
        autoencoder_class()
    except DimsumError as exc:
        return "diffusers", version, f"VAE unavailable: {exc}"
    return "diffusers", version, "VAE encode/decode for latent models"


def _compile_row(cuda: bool) -> tuple[str, str, str]:
    """Whether `dimsum run` compiles here by default (train.compile: auto), and why."""
    from dimsum_core.train.config import TrainConfig

    if TrainConfig().compiles("cuda" if cuda else "cpu"):
        return ("train.compile", "auto -> on", "`dimsum run` compiles each repeated block once (~20-40 s for "
                "DiMSUM-L/2 on an H200), then trains faster; train.compile=false skips it")
    if cuda:
        return ("train.compile", "auto -> off",
                "Triton is not installed, which inductor needs on a GPU: `dimsum run` trains eagerly")
    return ("train.compile", "auto -> off",
            "no CUDA device: `dimsum run` trains eagerly (train.compile=true compiles on the CPU too)")


def diagnose() -> list[tuple[str, str, str]]:
    """(component, status, meaning) rows."""
    import torch

    rows = [("python", platform.python_version(), ""),
            ("torch", torch.__version__, "")]
    if torch.cuda.is_available():
        rows.append(("cuda", f"{torch.version.cuda} on {torch.cuda.get_device_name(0)}", "GPU training is possible"))
    else:
        rows.append(("cuda", "not available", "CPU only: fine for tests and tiny models; train real models on a GPU"))
    t = triton_status()
    rows.append(("triton", (t.version or _version("triton") or "") + ("" if t.loads else f" ({t.detail})")
                 if t.installed else "not installed",
                 f"dimsum's kernels run here: {t.detail}" if t.loads else
                 "dimsum's Triton kernels need Triton and a CUDA device (a CUDA build of torch brings Triton)"))
    backend, why = auto_path_reason()
    rows.append(("mixer backend", f"auto -> {backend}", why))
    rows.append(_compile_row(torch.cuda.is_available()))
    m = mamba_status()
    rows.append(("mamba-ssm", _version("mamba-ssm") + ("" if m.loads else f" ({m.detail})") if m.installed else "not installed",
                 "optional reference kernels: mixer backend 'cuda' can use them" if m.loads else
                 "optional: only mixer backend 'cuda' (a reference) needs it; "
                 "`pip install --no-build-isolation -e \".[cuda]\"` builds it"))
    c = causal_conv1d_status()
    rows.append(("causal-conv1d", _version("causal-conv1d") + ("" if c.loads else f" ({c.detail})") if c.installed else "not installed",
                 "backend 'cuda' runs mamba-ssm's fused mamba_inner_fn in eager mode" if c.loads else
                 "optional: without it backend 'cuda' runs mamba-ssm's scan kernel with a PyTorch conv"))
    problem = _import_check("pytorch_wavelets")
    rows.append(("pytorch-wavelets", _version("pytorch-wavelets") or "not installed",
                 "wavelet families other than the built-in Haar are available" if problem is None else
                 f"only the built-in Haar transform works ({problem}; it needs PyWavelets and setuptools<82)"))
    problem = _import_check("torch_fidelity")
    rows.append(("torch-fidelity", _version("torch-fidelity") or "not installed",
                 "`dimsum eval` can compute Inception FID/KID/IS" if problem is None else
                 f"Inception metrics unavailable ({problem}); registered feature plugins still work. "
                 "torch-fidelity needs a torchvision that matches torch (GPU hosts: `pip install -e \".[fid]\"`)"))
    rows.append(_diffusers_row())
    for dist, meaning in (("torchdiffeq", "adaptive ODE samplers (dopri5)"),
                          ("matplotlib", "`dimsum show-scan` and study plots (`pip install -e \".[plot]\"`)")):
        v = _version(dist)
        rows.append((dist, v or "not installed", meaning if v else f"missing: {meaning}"))
    return rows


@click.command()
def doctor() -> None:
    """Report Python, torch, CUDA and the optional kernels and libraries, and what each means.

    \b
    Examples:
      dimsum doctor
    """
    table = Table("component", "status", "what it means", box=None, pad_edge=False)
    for row in diagnose():
        table.add_row(*(escape(cell) for cell in row))
    Console().print(table)
