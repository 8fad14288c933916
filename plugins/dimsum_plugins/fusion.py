"""Built-in fusions of the DiM block's spatial and wavelet branch outputs."""

from __future__ import annotations

from dimsum_core.nn.fusions import ConcatFusion, CrossAttentionFusion, SumFusion
from dimsum_core.plugin import hookimpl
from dimsum_core.registry import Registry


@hookimpl
def dimsum_add_fusions(registry: Registry) -> None:
    for name, fusion in {"cross-attention": CrossAttentionFusion, "concat": ConcatFusion,
                         "sum": SumFusion}.items():
        registry.add(name, fusion)
