"""dimsum: DiMSUM-style image diffusion (hybrid Mamba/Transformer over the token grid and its
wavelet subbands, trained with flow matching). Time convention: t = 0 noise, t = 1 data."""

import os

# Before torch loads OpenMP, for every command: idle OpenMP threads sleep instead of spinning. Spinning
# threads steal the cores any other process (another run, a test suite, torchrun's other ranks) needs:
# beside one other process the CPU quickstart ran 10-20x slower, and alone it gains nothing from spinning
# (benchmarks/cpu_threads.py, docs/benchmarks.md). A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from dimsum_core.models import create_model, load_model  # noqa: E402
from dimsum_core.plugin.manager import registry  # noqa: E402

__version__ = "0.1.0"
__all__ = ["create_model", "load_model", "registry"]
