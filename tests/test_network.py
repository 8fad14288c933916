"""The networks at tiny sizes: shapes, wavelet parts, fusion semantics, weight sharing, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dimsum_core import create_model
from dimsum_core.config import build
from dimsum_core.errors import RecipeError
from dimsum_core.network import DiMBlock, run_branches, tokens_to_wavelet, wavelet_to_tokens
from dimsum_core.nn.layers import DropPath
from dimsum_core.nn.wavelets import HaarPacket, PyWaveletsPacket
from dimsum_core.plugin.manager import registry

TINY = dict(input_size=16, hidden_size=64, depth=4, mixer={"name": "mamba", "backend": "torch"})


def tiny(name: str = "dimsum", **kw) -> torch.nn.Module:  # noqa: ANN003
    torch.manual_seed(0)
    base = {k: v for k, v in TINY.items() if name != "dit" or k != "mixer"}
    return create_model(name, **{**base, **kw})


# -- wavelets ---------------------------------------------------------------------------------------
def test_haar_matches_the_official_2x2_definition() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]])
    ll, lh, hl, hh = HaarPacket(levels=1)(x).flatten().tolist()
    assert (ll, lh, hl, hh) == (5.5, -2.5, -1.5, 0.5)  # sum/2, top-bottom, left-right, diagonal


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_wavelets_reconstruct_and_agree(levels: int) -> None:
    x = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(levels))
    haar, pw = HaarPacket(levels=levels), PyWaveletsPacket(wave="haar", levels=levels)
    c = haar(x)
    assert c.shape == (2, 3 * 4**levels, 16 >> levels, 24 >> levels)
    torch.testing.assert_close(haar.inverse(c), x, atol=2e-6, rtol=0)
    torch.testing.assert_close(pw(x), c, atol=2e-6, rtol=0)  # same coefficients, same band order
    torch.testing.assert_close(pw.inverse(c), x, atol=2e-6, rtol=0)
    assert torch.allclose(c.pow(2).sum(), x.pow(2).sum(), rtol=1e-5)  # orthonormal


def reference_haar_packet(x: torch.Tensor, levels: int) -> torch.Tensor:
    """The 2x2-block definition, one slice and one sum at a time (the reference twin of HaarPacket)."""
    bands = [x]
    for _ in range(levels):
        children = []
        for band in bands:
            a, b = band[..., 0::2, 0::2], band[..., 0::2, 1::2]
            c, d = band[..., 1::2, 0::2], band[..., 1::2, 1::2]
            children += [((a + b) + (c + d)) * 0.5, ((a + b) - (c + d)) * 0.5,
                         ((a - b) + (c - d)) * 0.5, ((a - b) - (c - d)) * 0.5]
        bands = children
    return torch.stack(bands, dim=1).flatten(1, 2)  # band-major: (N, 4**levels * C, h, w)


def reference_haar_packet_inverse(coeffs: torch.Tensor, levels: int) -> torch.Tensor:
    """Each band's 2x2 blocks from its four children, the last level first."""
    n, k, h, w = coeffs.shape
    bands = list(coeffs.reshape(n, 4**levels, k // 4**levels, h, w).unbind(1))
    for _ in range(levels):
        parents = []
        for ll, lh, hl, hh in zip(*[iter(bands)] * 4, strict=True):
            top_sum, bottom_sum, top_diff, bottom_diff = ll + lh, ll - lh, hl + hh, hl - hh
            block = torch.empty(*ll.shape[:-2], 2 * ll.shape[-2], 2 * ll.shape[-1], dtype=ll.dtype, device=ll.device)
            block[..., 0::2, 0::2], block[..., 0::2, 1::2] = (top_sum + top_diff) * 0.5, (top_sum - top_diff) * 0.5
            block[..., 1::2, 0::2], block[..., 1::2, 1::2] = (bottom_sum + bottom_diff) * 0.5, (bottom_sum - bottom_diff) * 0.5
            parents.append(block)
        bands = parents
    return bands[0]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("levels", [1, 2, 3])
def test_haar_packet_is_bitwise_its_reference_twin(levels: int, dtype: torch.dtype, device: str) -> None:
    x = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(levels), dtype=dtype).to(device)
    haar = HaarPacket(levels=levels).to(device)
    coeffs = reference_haar_packet(x, levels)
    assert torch.equal(haar(x), coeffs)
    assert torch.equal(haar.inverse(coeffs), reference_haar_packet_inverse(coeffs, levels))
    # gradients: the backward of each butterfly is a butterfly; compare with autograd through the twin
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    weight = torch.randn(coeffs.shape, generator=torch.Generator().manual_seed(9), dtype=dtype).to(device)
    (haar(xa) * weight).sum().backward()
    (reference_haar_packet(xb, levels) * weight).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-6, atol=1e-6)
    c = coeffs.clone().requires_grad_()
    (haar.inverse(c) * x).sum().backward()
    # the inverse is the transpose of the orthonormal forward, so its gradient is the forward transform
    torch.testing.assert_close(c.grad, coeffs, rtol=1e-6, atol=1e-6)


def test_haar_packet_follows_its_input_device() -> None:
    """A transform used on its own, never moved with .to(), still works on another device (meta here)."""
    haar = HaarPacket(levels=2)
    x = torch.empty(1, 2, 8, 8, device="meta", requires_grad=True)
    c = haar(x)
    assert c.device.type == "meta" and c.shape == (1, 32, 2, 2)
    assert haar.inverse(c).shape == x.shape


def test_haar_packet_launches_five_kernels_each_way() -> None:
    """Two butterflies a level plus one scaling (it was 20 kernels forward, 30 inverse, 138 for forward,
    inverse and backward: benchmarks/wavelet.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("wavelet_bench", Path(__file__).parents[1] / "benchmarks" / "wavelet.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.measure(2, 8, 8, 2, torch.device("cpu"), repeats=1)
    assert (result["kernels_forward"], result["kernels_inverse"]) == (5, 5)
    assert result["kernels_forward_inverse_backward"] <= 26


def test_other_families_reconstruct_and_wavelets_stay_float32_under_autocast() -> None:
    x = torch.randn(1, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    db = PyWaveletsPacket(wave="db2", levels=2)
    torch.testing.assert_close(db.inverse(db(x)), x, atol=1e-5, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c = HaarPacket(levels=2)(x.bfloat16())
    assert c.dtype == torch.float32


@pytest.mark.parametrize("layout", ["interleaved", "pyramid"])
def test_wavelet_token_layouts_are_invertible(layout: str) -> None:
    x = torch.randn(2, 64, 32, generator=torch.Generator().manual_seed(1))  # 8×8 grid, width 32
    haar = HaarPacket(levels=2)
    w = tokens_to_wavelet(x, 8, haar, layout, 0.25)
    torch.testing.assert_close(wavelet_to_tokens(w, 8, haar, layout, 0.25), x, atol=2e-6, rtol=0)


def test_interleaved_layout_is_the_official_one() -> None:
    """Token (4i+p1, 4j+p2)[c'] = coef(band = c' // (C/16), channel = 16·(c' % (C/16)) + 4·p1 + p2, at (i, j))."""
    c, grid = 32, 8
    x = torch.randn(1, grid * grid, c, generator=torch.Generator().manual_seed(2))
    haar = HaarPacket(levels=2)
    coeffs = haar(x.transpose(1, 2).reshape(1, c, grid, grid)) / 4  # (1, 16·C, 2, 2)
    w = tokens_to_wavelet(x, grid, haar, "interleaved", 0.25).reshape(1, grid, grid, c)
    for (i, j, p1, p2, cp) in [(0, 0, 0, 0, 0), (1, 0, 2, 3, 5), (0, 1, 3, 1, 31), (1, 1, 1, 2, 17)]:
        band, ch = cp // (c // 16), 16 * (cp % (c // 16)) + 4 * p1 + p2
        assert w[0, 4 * i + p1, 4 * j + p2, cp] == coeffs[0, band * c + ch, i, j]


def test_pyramid_layout_puts_one_subband_per_tile() -> None:
    c, grid = 16, 8
    x = torch.randn(1, grid * grid, c, generator=torch.Generator().manual_seed(3))
    haar = HaarPacket(levels=2)
    coeffs = haar(x.transpose(1, 2).reshape(1, c, grid, grid)).reshape(16, c, 2, 2)
    w = tokens_to_wavelet(x, grid, haar, "pyramid", 1.0).reshape(grid, grid, c)
    for band in (0, 5, 15):
        tile = w[2 * (band // 4):2 * (band // 4) + 2, 2 * (band % 4):2 * (band % 4) + 2]
        torch.testing.assert_close(tile, coeffs[band].permute(1, 2, 0))


# -- fusion -----------------------------------------------------------------------------------------
def test_cross_attention_swaps_queries_or_keys() -> None:
    torch.manual_seed(0)
    q_fusion = build("fusion", {"name": "cross-attention", "num_heads": 2}, 16)
    k_fusion = build("fusion", {"name": "cross-attention", "num_heads": 2, "swap": "k"}, 16)
    k_fusion.load_state_dict(q_fusion.state_dict())
    a, b = torch.randn(2, 5, 8), torch.randn(2, 5, 8)

    def attn(q, k, v):  # noqa: ANN001, ANN202 - two heads of 4
        heads = lambda t: t.view(2, 5, 2, 4).transpose(1, 2)  # noqa: E731
        w = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / 2.0, dim=-1)
        return (w @ heads(v)).transpose(1, 2).reshape(2, 5, 8)

    q1, k1, v1 = q_fusion.qkv1(a).chunk(3, -1)
    q2, k2, v2 = q_fusion.qkv2(b).chunk(3, -1)
    want_q = q_fusion.proj(torch.cat([attn(q1, k2, v2), attn(q2, k1, v1)], -1))
    want_k = q_fusion.proj(torch.cat([attn(q2, k1, v2), attn(q1, k2, v1)], -1))
    torch.testing.assert_close(q_fusion(a, b), want_q, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(k_fusion(a, b), want_k, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["cross-attention", "concat", "sum"])
def test_fusion_shapes(name: str) -> None:
    f = build("fusion", name, 32)
    assert f(torch.randn(3, 7, 16), torch.randn(3, 7, 16)).shape == (3, 7, 32)


# -- blocks and models ------------------------------------------------------------------------------
def test_dim_block_forward_backward() -> None:
    torch.manual_seed(0)
    blk = DiMBlock(64, 64, 1, 8, DropPath(0.0), mixer={"name": "mamba", "backend": "torch"})
    x, c = torch.randn(2, 64, 64, requires_grad=True), torch.randn(2, 64)
    h, res = blk(x, torch.zeros(2, 64, 64), c)
    assert h.shape == x.shape and res.dtype == torch.float32
    torch.testing.assert_close(res, x.detach())  # the first block's residual is its input
    (h.square().mean() + res.mean()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for n, p in blk.named_parameters() if "cond_proj" not in n)


def test_a_dim_block_runs_a_plugin_mixer_that_only_keeps_the_call_contract() -> None:
    """docs/plugins.md asks a mixer for ``mixer(x, c)`` only: a block whose branches run in turn (the CPU,
    compiled code) calls such a mixer for each branch instead of asking it for ``forward_pair``."""

    class Shift(torch.nn.Module):  # not a SequenceMixer: causal, a step back in time
        def __init__(self, scale: float):
            super().__init__()
            self.scale = scale

        def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
            return self.scale * torch.nn.functional.pad(x, (0, 0, 1, 0))[:, :-1]

    torch.manual_seed(0)
    blk = DiMBlock(64, 64, 1, 8, DropPath(0.0), mixer={"name": "mamba", "backend": "torch"})
    blk.spatial_mamba.mixer, blk.freq_mamba.mixer = Shift(1.0), Shift(-2.0)
    x1, x2, c = torch.randn(2, 64, 32), torch.randn(2, 64, 32), torch.randn(2, 64)
    got = run_branches(blk.spatial_mamba, x1, blk.freq_mamba, x2, c)
    for a, b in zip(got, (blk.spatial_mamba(x1, c), blk.freq_mamba(x2, c)), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    h, _ = blk(torch.randn(2, 64, 64), torch.zeros(2, 64, 64), c)
    assert torch.isfinite(h).all()


@pytest.mark.parametrize("name, kw", [
    ("dimsum", {}),
    ("dimsum", {"wavelet_layout": "pyramid", "fusion": "concat", "spatial_scan": "zigzag8"}),
    ("dimsum", {"transformer": "independent"}),
    ("dimsum", {"transformer": "none", "branches": "spatial"}),
    ("dimsum", {"gated_mlp": False, "num_classes": 10, "wavelet": {"name": "pywavelets", "wave": "db2"}}),
    ("dit", {"depth": 2, "num_heads": 4, "num_classes": 10}),
    ("mamba", {"depth": 2}),
])
def test_models_forward_backward(name: str, kw: dict) -> None:
    model = tiny(name, **kw)
    x, t = torch.randn(2, 4, 16, 16), torch.rand(2)
    y = torch.tensor([1, 3]) if model.num_classes > 1 else None
    out = model(x, t, y)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert model.x_embedder.proj.weight.grad is not None


def test_presets_build_with_official_shapes() -> None:
    with torch.device("meta"):
        model = create_model("dimsum-B/2")
    assert (len(model.blocks), model.hidden_size, model.patch_size, model.grid) == (12, 768, 2, 16)
    assert model.blocks[0].spatial_mamba.mixer.in_proj.weight.shape == (1536, 384)
    assert model.attn_block.attn.num_heads == 16
    with torch.device("meta"):
        l4 = create_model("dimsum-L/4", input_size=64)
    assert l4.grid == 16 and l4.x_embedder.proj.weight.shape == (1024, 4, 4, 4)


def test_shared_transformer_is_one_module_used_every_k_blocks() -> None:
    model = tiny(depth=8)
    calls = []
    model.attn_block.register_forward_hook(lambda *a: calls.append(1))
    model(torch.randn(1, 4, 16, 16), torch.rand(1)).sum().backward()
    assert len(calls) == 2  # after blocks 4 and 8, same weights
    assert sum(k.startswith("attn_block.") for k in model.state_dict()) == 10
    # independent transformers: separate weights, Mamba depth reduced (official ablation)
    indep = tiny(depth=8, transformer="independent")
    assert len(indep.blocks) == 6 and len(indep.attn_blocks) == 1


def test_official_initialisation() -> None:
    model = tiny(depth=4)
    blk = model.blocks[0]
    assert blk.adaLN_modulation[1].weight.abs().sum() == 0  # top-level MLP adaLN zeroed
    assert blk.spatial_mamba.adaLN_modulation[1].weight.abs().sum() > 0  # sub-branch adaLN is not
    assert blk.spatial_mamba.adaLN_modulation[1].bias.abs().sum() == 0  # every Linear bias zeroed
    assert model.final_layer.linear.weight.abs().sum() == 0
    assert blk.spatial_mamba.mixer.dt_proj.bias.abs().sum() > 0  # except Mamba's dt bias
    assert model.pos_embed.requires_grad  # learnable sin-cos position embedding


def test_determinism() -> None:
    x, t = torch.randn(2, 4, 16, 16), torch.rand(2)
    a, b = tiny(), tiny()
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)
    assert torch.equal(a.eval()(x, t), b.eval()(x, t))
    assert torch.equal(a(x, t), a(x, t))


@pytest.mark.parametrize("overrides, message", [
    ({"hiden_size": 64}, "model 'dimsum-S/2' has no argument 'hiden_size'; did you mean 'hidden_size'?"),
    ({"backend": "torch"}, "has no argument 'backend'; it is an argument of the mixer: "
                           "mixer={'name': 'mamba', 'backend': ...}"),
    ({"levels": 3}, "it is an argument of the wavelet: wavelet={'name': 'haar', 'levels': ...}"),
])
def test_create_model_names_an_argument_it_does_not_take(overrides: dict, message: str) -> None:
    with pytest.raises(RecipeError) as err:
        create_model("dimsum-S/2", **overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("block", [{"name": "dim", "spatial_scan": "zigzag8"}, "dit"])
def test_a_block_setting_has_one_place(block: object) -> None:
    """The model builds its DiM blocks itself, from its own settings (model.spatial_scan, model.mixer, ...): a
    block node is refused in one line (its settings used to be overridden by the model's without a word, and
    a block of another shape failed with a TypeError)."""
    with pytest.raises(RecipeError, match="model 'dimsum' has no argument 'block'") as err:
        tiny(block=block)
    assert "\n" not in str(err.value)
    with pytest.raises(KeyError, match="unknown component kind 'block'"):
        registry("block")


def test_build_refuses_a_setting_the_caller_also_gives() -> None:
    with pytest.raises(RecipeError, match="fusion 'cross-attention': num_heads is set by what builds the fusion"):
        build("fusion", {"name": "cross-attention", "num_heads": 8}, 32, num_heads=4)
    with pytest.raises(RecipeError, match="fusion 'concat' does not take num_heads"):
        build("fusion", "concat", 32, num_heads=4)


def test_validate_refuses_a_block_node(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "dimsum_core.cli.main", "validate", "quickstart",
                             "model.block={name: dim, wavelet_scan: raster}"], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 2
    assert "model.block: unknown key" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_model_built_without_create_model_saves_a_config_that_rebuilds_it(tmp_path: Path) -> None:
    from dimsum_core import load_model
    from dimsum_core.checkpoint import write_weights
    from dimsum_core.network import DiMSUM

    torch.manual_seed(0)
    model = DiMSUM(input_size=8, hidden_size=32, depth=2, attn_every=2, attn_heads=2, num_classes=3,
                   mixer={"name": "mamba", "backend": "torch"})
    assert model.config() == {"name": "dimsum", "input_size": 8, "hidden_size": 32, "depth": 2, "attn_every": 2,
                              "attn_heads": 2, "num_classes": 3, "mixer": {"name": "mamba", "backend": "torch"}}
    write_weights(tmp_path / "ckpt", model)
    loaded = load_model(tmp_path / "ckpt", ema=False).eval()
    model.eval()
    x, t, y = torch.randn(2, 4, 8, 8), torch.rand(2), torch.tensor([0, 2])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, y), model(x, t, y))
