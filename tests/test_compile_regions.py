"""Regional compilation (FlowModel.compile_regions): one compiled block serves the whole depth, and the
compiled model computes what the eager one does. Dynamo's "eager" backend keeps this a CPU test (no C++
compiler, no inductor): it counts traced graphs, which is what compile time scales with."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch._dynamo

from dimsum_core import create_model
from dimsum_core.interfaces.model import FlowModel


def tiny(depth: int) -> FlowModel:
    return create_model("dimsum-S/2", input_size=8, depth=depth, hidden_size=32, num_classes=4, drop_path=0.2,
                        mixer={"name": "mamba", "backend": "torch"}).train()


def compiled_graphs_and_outputs(depth: int) -> tuple[int, list[torch.Tensor], list[torch.Tensor]]:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    torch.manual_seed(0)
    model = tiny(depth)
    eager = tiny(depth)
    eager.load_state_dict(model.state_dict())
    model.compile_regions(backend="eager")
    x, t, y = torch.randn(2, 4, 8, 8), torch.rand(2), torch.tensor([1, 3])
    results = []
    for net in (model, eager):
        torch.manual_seed(1)  # the same drop-path masks
        out = net(x, t, y)
        out.square().mean().backward()
        results.append([out.detach(), *(p.grad for p in net.parameters() if p.grad is not None)])
    return torch._dynamo.utils.counters["stats"]["unique_graphs"], results[0], results[1]


def test_one_compiled_block_serves_every_depth():
    """With drop path on (a different rate per block) dynamo traces two graphs at any depth: one DiM block
    and the shared transformer. Nothing in a block is a Python constant that differs between layers: the
    drop-path rate is a tensor (as a float every block was a recompile, past dynamo's limit of 8), every
    block draws a drop mask, the first block gets a zero residual and contiguous tokens, and compiled
    scans gather even in identity order (each of these was a variant of its own: five graphs before)."""
    shallow, compiled, eager = compiled_graphs_and_outputs(8)
    deep, _, _ = compiled_graphs_and_outputs(16)
    assert deep == shallow == 2
    assert len(compiled) == len(eager) > 10
    for a, b in zip(compiled, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_model_without_repeated_blocks_is_compiled_whole():
    class Plain(FlowModel):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Conv2d(4, 4, 1)

        def forward(self, x, t, y=None):  # noqa: ANN001, ANN201
            return self.proj(x) * t[:, None, None, None]

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    model = Plain()
    model.compile_regions(backend="eager")
    x, t = torch.randn(2, 4, 3, 3), torch.rand(2)
    torch.testing.assert_close(model(x, t), model.proj(x) * t[:, None, None, None], rtol=0, atol=0)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_train_compile_compiles_the_blocks_and_saves_the_weights_uncompiled(tmp_path, compile_on_eager_backend):
    """train.compile goes through compile_regions (here on dynamo's eager backend) and the checkpoint is
    the one an uncompiled run writes: same keys, same values."""
    from safetensors.torch import load_file

    from dimsum_core import checkpoint as ckpt
    from dimsum_core.train import CheckpointConfig, LogConfig, TrainConfig, Trainer

    def run(out, compile_):  # noqa: ANN001, ANN202
        torch._dynamo.reset()
        Trainer(out_dir=out, model={"name": "dit", "input_size": 8, "in_channels": 3, "hidden_size": 32, "depth": 2,
                                    "num_heads": 2, "num_classes": 4},
                data={"name": "procedural", "resolution": 8, "num_classes": 4, "size": 32}, objective="gvp", seed=0,
                train=TrainConfig(steps=2, global_batch_size=4, num_workers=0, device="cpu", compile=compile_),
                checkpoint=CheckpointConfig(every=2, keep_last=0), log=LogConfig(every=1, sample_every=-1,
                                                                                tensorboard=False),
                recipe_yaml="job: train\n").run()
        return load_file(next((out / "checkpoints").iterdir()) / ckpt.MODEL_WEIGHTS)

    compiled, plain = run(tmp_path / "compiled", True), run(tmp_path / "plain", False)
    assert compile_on_eager_backend == ["DiT"]
    run(tmp_path / "auto", "auto")  # the default: on a CUDA device only
    assert compile_on_eager_backend == ["DiT"]
    assert compiled.keys() == plain.keys()
    for key in plain:
        torch.testing.assert_close(compiled[key], plain[key], rtol=0, atol=0)


def test_train_compile_auto_means_cuda_and_bad_values_get_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from dimsum_core.errors import RecipeError
    from dimsum_core.train import TrainConfig
    from dimsum_core.train.config import as_config

    assert TrainConfig().compile == "auto"
    triton = importlib.util.find_spec("triton") is not None
    assert TrainConfig().compiles("cuda") == triton and not TrainConfig().compiles("cpu")
    assert TrainConfig(compile=True).compiles("cpu") and not TrainConfig(compile=False).compiles("cuda")
    assert as_config(TrainConfig, {"compile": False}, "train").compile is False
    with pytest.raises(RecipeError, match="train.compile") as err:
        as_config(TrainConfig, {"compile": "yes"}, "train")
    assert "\n" not in str(err.value)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "triton" else find_spec(name, *a))
    assert not TrainConfig().compiles("cuda") and TrainConfig(compile=True).compiles("cuda")  # no Triton: eager


def test_doctor_says_whether_dimsum_run_compiles() -> None:
    from dimsum_core.cli.doctor import diagnose

    rows = {name: (status, meaning) for name, status, meaning in diagnose()}
    status, meaning = rows["train.compile"]
    assert status == ("auto -> on" if torch.cuda.is_available() else "auto -> off")
    assert "train.compile" in meaning
