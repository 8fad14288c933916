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
