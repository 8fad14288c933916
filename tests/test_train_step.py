"""What `dimsum run`, the convergence study and `dimsum bench` share: the precision scope, the epoch order
and the training step."""

from __future__ import annotations

import pytest
import tiny_models
import torch
from test_train import make_trainer

from dimsum_core.errors import DimsumError
from dimsum_core.gpu_benchmark import train_step_fn
from dimsum_core.nn.precision import precision_scope
from dimsum_core.train.batches import GlobalBatchSampler, epoch_permutation


def _tf32() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.mark.parametrize(("precision", "training", "tf32"), [
    ("fp32", True, False), ("tf32", True, True), ("bf16", True, True),  # bf16 trains its float32 parts in TF32
    ("fp32", False, False), ("tf32", False, True), ("bf16", False, False),  # ... and samples them strictly
])
def test_precision_scope_sets_tf32_and_restores_it(no_tf32, precision, training, tf32):
    with precision_scope(precision, training=training):
        assert _tf32() == (tf32, tf32)
    assert _tf32() == (False, False)
    with pytest.raises(DimsumError, match="unknown precision 'fp16'"), precision_scope("fp16"):
        pass


def test_a_training_run_leaves_the_tf32_flags_as_it_found_them(no_tf32, tmp_path):
    tiny_models.register()
    make_trainer(tmp_path, steps=1, every=1, precision="tf32").run()
    assert _tf32() == (False, False)


def test_the_epoch_order_is_one_permutation_per_seed_and_epoch():
    sampler = GlobalBatchSampler(12, 4, rank=0, world_size=1, grad_accum=1, seed=5)
    batches = iter(sampler)
    for epoch in range(2):
        order = torch.cat([torch.tensor(next(batches)) for _ in range(3)])
        assert torch.equal(order, epoch_permutation(12, 5, epoch))
    assert not torch.equal(epoch_permutation(12, 5, 0), epoch_permutation(12, 5, 1))


def test_the_gpu_benchmark_times_the_training_step_without_the_ema():
    """`dimsum bench`'s step is the trainer's (here on the CPU): the dead parameter is frozen and stays,
    the others train."""
    torch.manual_seed(0)
    model = tiny_models.TinyTrainModel(input_size=8, num_classes=4)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    step = train_step_fn(model, 4, "fp32")
    assert step.func.ema is None and step.func.frozen == ["cond_proj.weight", "cond_proj.bias"]
    loss, grad_norm = step()
    assert loss > 0 and grad_norm > 0
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert moved == set(before) - {"cond_proj.weight", "cond_proj.bias"}


def test_cuda_graph_refuses_what_it_cannot_capture_in_one_line():
    from dimsum_core.config.nodes import build
    from dimsum_core.errors import RecipeError
    from dimsum_core.train.config import TrainConfig
    from dimsum_core.train.step import TrainStep, cuda_graph_problem

    model = tiny_models.TinyTrainModel(input_size=8, num_classes=4)
    with pytest.raises(RecipeError, match=r"^train.cuda_graph needs a CUDA device \(the run would train on cpu\); "
                                          r"set train.cuda_graph=false$"):
        TrainStep(model, build("objective", "gvp"), TrainConfig(cuda_graph=True), torch.device("cpu"))
    assert cuda_graph_problem(TrainConfig(cuda_graph=True), "cuda", 2) == (
        "train.cuda_graph captures one micro-batch a step, not train.grad_accum=2; set train.grad_accum=1 or "
        "train.cuda_graph=false")
    assert cuda_graph_problem(TrainConfig(cuda_graph=True), "cuda", 1) is None
    assert cuda_graph_problem(TrainConfig(), "cpu", 2) is None


def test_adamw_is_fused_on_cuda_only():
    """The CPU keeps PyTorch's default AdamW (per-tensor-list ops); the GPU tests check the fused one."""
    from dimsum_core.config.nodes import build
    from dimsum_core.train.config import TrainConfig
    from dimsum_core.train.step import TrainStep

    step = TrainStep(tiny_models.TinyTrainModel(input_size=8, num_classes=4), build("objective", "gvp"),
                     TrainConfig(), torch.device("cpu"))
    assert step.optimizer.defaults["fused"] is False


def _graph_pair(name: str, cuda_graph: bool, **model_kwargs):  # noqa: ANN202
    from dimsum_core import create_model
    from dimsum_core.config.nodes import build
    from dimsum_core.train.config import TrainConfig
    from dimsum_core.train.step import TrainStep

    torch.manual_seed(0)
    model = create_model(name, input_size=16, in_channels=3, num_classes=4, hidden_size=64, depth=2,
                         **model_kwargs).cuda().train()
    cfg = TrainConfig(lr=1e-3, warmup_steps=3, label_dropout=0.2, ema_decay=0.9, precision="fp32",
                      cuda_graph=cuda_graph)
    return model, TrainStep(model, build("objective", "gvp"), cfg, torch.device("cuda"))


@pytest.mark.gpu
@pytest.mark.parametrize(("name", "kwargs"), [("dit-S/2", {"num_heads": 4}),
                                              ("dimsum-S/2", {"drop_path": 0.0, "mixer": {"name": "mamba", "backend": "triton"}})],
                         ids=["dit", "dimsum-triton"])
def test_a_graphed_step_trains_like_the_eager_one(name, kwargs):
    """Same draws, same lr warm-up, same weights, EMA and AdamW state after each step (the captured AdamW
    computes its bias corrections on the device, hence allclose and not equal); the checkpointed lr is a
    plain float, so an eager run resumes from a graphed one."""
    runs = [_graph_pair(name, graphed, **kwargs) for graphed in (False, True)]
    g = torch.Generator().manual_seed(1)
    x1, y = torch.randn(8, 3, 16, 16, generator=g).cuda(), torch.randint(0, 4, (8,), generator=g).cuda()
    for step in range(4):
        out = []
        for _, train_step in runs:
            train_step.set_lr(step, 10)
            loss = train_step.micro_batch(x1, y, torch.Generator("cuda").manual_seed(step))
            norm = train_step.clip()
            train_step.apply()
            out.append((float(loss), float(norm)))
        assert out[0] == pytest.approx(out[1], rel=1e-4), step
    (eager_model, eager), (graphed_model, graphed) = runs
    assert graphed.graphs is not None and eager.graphs is None
    assert eager.optimizer.defaults["fused"] and graphed.optimizer.defaults["fused"]  # AdamW on CUDA
    for a, b in zip([*eager_model.parameters(), *eager.ema.parameters()],
                    [*graphed_model.parameters(), *graphed.ema.parameters()], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    state = graphed.optimizer.state_dict()
    assert all(type(group["lr"]) is float for group in state["param_groups"])
    eager.optimizer.load_state_dict(state)
    eager.set_lr(4, 10)
    eager.micro_batch(x1, y, torch.Generator("cuda").manual_seed(4))
    eager.clip()
    eager.apply()
    assert all(torch.isfinite(p).all() for p in eager_model.parameters())


@pytest.mark.gpu
def test_a_graphed_step_refuses_another_batch_shape_in_one_line():
    from dimsum_core.errors import DataError

    _, train_step = _graph_pair("dit-S/2", True, num_heads=4)
    x1, y = torch.randn(8, 3, 16, 16, device="cuda"), torch.zeros(8, dtype=torch.long, device="cuda")
    train_step(x1, y, torch.Generator("cuda").manual_seed(0))
    with pytest.raises(DataError, match=r"captured for batches of shape \(8, 3, 16, 16\), got \(4, 3, 16, 16\); "
                                         r"keep the batch size fixed or set train.cuda_graph=false"):
        train_step(x1[:4], y[:4], torch.Generator("cuda").manual_seed(1))


@pytest.mark.gpu
def test_a_dropped_graphed_step_frees_its_graphs_by_reference_count():
    """A step's CUDA graphs go when the step goes, not when the cycle collector runs: that could be inside
    another step's capture, which destroying a graph there breaks (dimsum_core.graph_capture)."""
    import gc
    import weakref

    _, train_step = _graph_pair("dit-S/2", True, num_heads=4)
    x1, y = torch.randn(8, 3, 16, 16, device="cuda"), torch.zeros(8, dtype=torch.long, device="cuda")
    train_step(x1, y, torch.Generator("cuda").manual_seed(0))
    graphs = weakref.ref(train_step.graphs)
    gc.disable()
    try:
        del train_step
        assert graphs() is None
    finally:
        gc.enable()


@pytest.mark.gpu
def test_a_graphed_run_through_the_trainer_saves_and_resumes(tmp_path):
    """`dimsum run` with train.cuda_graph: the loop, its checkpoints and a resume work as without."""
    tiny_models.register()
    first = make_trainer(tmp_path, steps=4, every=2, device="cuda", grad_accum=1, cuda_graph=True, compile=False).run()
    again = make_trainer(tmp_path, steps=6, every=2, device="cuda", grad_accum=1, cuda_graph=True, compile=False).run()
    assert first.step == 4 and again.step == 6 and again.trained and again.loss == again.loss


@pytest.mark.gpu
def test_a_compiled_dimsum_run_samples_saves_and_resumes(tmp_path, monkeypatch):
    """`dimsum run` on the GPU compiles by default (train.compile: auto; inductor, our Triton mixer):
    training steps, EMA sample grids drawn through the compiled blocks (no grad, another batch size),
    checkpoints and a resume; the saved weights load into an uncompiled model."""
    from dimsum_core import load_model
    from dimsum_core.network import PatchFlowModel
    from dimsum_core.train import CheckpointConfig, LogConfig, TrainConfig, Trainer

    compiled, compile_regions = [], PatchFlowModel.compile_regions

    def counted(self, **options):  # noqa: ANN001, ANN003, ANN202
        compiled.append(1)
        return compile_regions(self, **options)

    monkeypatch.setattr(PatchFlowModel, "compile_regions", counted)

    model = {"name": "dimsum-S/2", "input_size": 8, "in_channels": 3, "num_classes": 4, "hidden_size": 64,
             "depth": 2, "mixer": {"name": "mamba", "backend": "triton"}}

    def trainer(steps: int) -> Trainer:
        train = TrainConfig(steps=steps, global_batch_size=8, num_workers=0, device="cuda",
                            precision="bf16", ema_decay=0.9, lr=1e-3)
        return Trainer(out_dir=tmp_path, model=model, data={"name": "procedural", "resolution": 8,
                                                            "num_classes": 4, "size": 64},
                       objective="gvp", seed=3, train=train, checkpoint=CheckpointConfig(every=2, keep_last=0),
                       log=LogConfig(every=1, sample_every=2, sample_n=4,
                                     sampler={"name": "euler", "steps": 4}, tensorboard=False),
                       recipe_yaml="job: train\n")

    first = trainer(4).run()
    again = trainer(6).run()
    assert first.step == 4 and again.step == 6 and again.trained and again.loss == again.loss
    assert compiled == [1, 1]  # each run compiled its model once
    assert len(list((tmp_path / "samples").glob("*.png"))) == 3  # steps 2, 4 and 6
    loaded = load_model(tmp_path)  # the newest checkpoint, step 6
    assert all(torch.isfinite(p).all() for p in loaded.parameters())
