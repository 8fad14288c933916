"""Built-in blocks: the DiM block, the DiT block (DiMSUM's shared transformer) and a plain Mamba block."""

from __future__ import annotations

from dimsum_core.plugin import hookimpl
from dimsum_plugins.blocks.dim import DiMBlock
from dimsum_plugins.blocks.dit import DiTBlock
from dimsum_plugins.blocks.mamba import MambaBlock


@hookimpl
def dimsum_add_blocks(registry) -> None:  # noqa: ANN001
    registry.add("dim", DiMBlock)
    registry.add("dit", DiTBlock)
    registry.add("mamba", MambaBlock)
