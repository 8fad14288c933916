"""dimsum: DiMSUM-style image diffusion (hybrid Mamba/Transformer over the token grid and its
wavelet subbands, trained with flow matching). Time convention: t = 0 noise, t = 1 data."""

from dimsum_core.models import create_model, load_model
from dimsum_core.plugin.manager import registry

__version__ = "0.1.0"
__all__ = ["create_model", "load_model", "registry"]
