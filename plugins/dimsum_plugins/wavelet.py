"""Built-in wavelet transforms: the official 2-level Haar packet transform and a pytorch-wavelets one."""

from __future__ import annotations

from dimsum_core.nn.wavelets import HaarPacket, PyWaveletsPacket
from dimsum_core.plugin import hookimpl
from dimsum_core.registry import Registry


@hookimpl
def dimsum_add_wavelets(registry: Registry) -> None:
    for name, wavelet in {"haar": HaarPacket, "pywavelets": PyWaveletsPacket}.items():
        registry.add(name, wavelet)
