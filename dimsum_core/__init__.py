"""dimsum: DiMSUM-style image diffusion (hybrid Mamba/Transformer over the token grid and its
wavelet subbands, trained with flow matching). Time convention: t = 0 noise, t = 1 data."""

import os

# Before torch loads: with several processes on one host (torchrun), idle OpenMP threads sleep rather
# than spin. Spinning made CPU forward passes up to 20× slower when processes shared cores; a single
# process keeps OpenMP's default, which ran the CPU quickstart ~25% faster than sleeping threads.
if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from dimsum_core.models import create_model, load_model  # noqa: E402

__version__ = "0.1.0"
# `dimsum_core.registry` is the module of Registry and KINDS; a kind's registry is
# `dimsum_core.plugin.manager.registry(kind)`
__all__ = ["create_model", "load_model"]
