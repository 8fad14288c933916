"""Two CPU processes (gloo) train exactly like one process with the same global batch.

The rank split of a step (2 ranks x 1 micro-batch) and the accumulation split (1 rank x 2
micro-batches) see the same items and random numbers (see dimsum_core.train.batches), so the only
difference is the order of the floating-point gradient sums: all-reduce (g0 + g1) / 2 versus
g0 / 2 + g1 / 2. Tolerance: 1e-6 absolute after 4 AdamW steps (measured: 1.5e-8 on weights of order 0.1).
The tiny model has a parameter without gradient (like the official cond_proj), which DDP with
find_unused_parameters=False would reject unless the trainer freezes it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tiny_models
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from dimsum_core.train import CheckpointConfig, LogConfig, TrainConfig, Trainer

MODEL = {"name": "tiny-train", "input_size": 8, "num_classes": 4, "drop": 0.2}
DATA = {"name": "procedural", "resolution": 8, "num_classes": 4, "size": 64}


def _trainer(out_dir: Path, grad_accum: int) -> Trainer:
    return Trainer(out_dir=out_dir, model=MODEL, data=DATA, seed=7,
                   train=TrainConfig(steps=4, global_batch_size=8, grad_accum=grad_accum, num_workers=0,
                                     device="cpu", label_dropout=0.1, lr=1e-3, ema_decay=0.5),
                   checkpoint=CheckpointConfig(every=4), log=LogConfig(every=1, sample_every=-1, tensorboard=False))


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    tiny_models.register()
    _trainer(Path(out_dir), grad_accum=1).run()


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path, free_port):
    tiny_models.register()
    single = tmp_path / "single"
    _trainer(single, grad_accum=2).run()

    ddp = tmp_path / "ddp"
    mp.spawn(_worker, args=(2, free_port, str(ddp)), nprocs=2, join=True)

    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(single / "checkpoints" / "0000004" / name)
        b = load_file(ddp / "checkpoints" / "0000004" / name)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=f"{name}:{key}")
    # the weights moved, so the comparison is not trivially about initial values
    init = load_file(single / "checkpoints" / "0000004" / "model.safetensors")["inp.weight"]
    torch.manual_seed(7)
    assert not torch.allclose(init, tiny_models.TinyTrainModel(input_size=8, num_classes=4).inp.weight, atol=1e-4)
    sa = torch.load(single / "checkpoints" / "0000004" / "train_state.pt", weights_only=True)
    sb = torch.load(ddp / "checkpoints" / "0000004" / "train_state.pt", weights_only=True)
    for i, state in sa["optimizer"]["state"].items():
        torch.testing.assert_close(sb["optimizer"]["state"][i]["exp_avg"], state["exp_avg"], rtol=0, atol=1e-6)


def _leaving_worker(rank: int, port: int, out_dir: str) -> None:
    import time

    from dimsum_core.sampling.generate import gather_to_main
    from dimsum_core.train.distributed import init_distributed, leave_together

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    info = init_distributed("cpu")
    with leave_together(info):
        parts = gather_to_main(rank, info.world_size)
        if info.is_main:
            assert parts == [0, 1]
            time.sleep(0.5)  # rank 0 still writes its output; rank 1 has nothing left to do
            Path(out_dir, "main-done").write_text(repr(time.time()))
    Path(out_dir, f"left-{rank}").write_text(repr(time.time()))


@pytest.mark.slow
def test_ranks_leave_together(tmp_path, free_port):
    """A rank with nothing left to do waits for the others before the group is destroyed (tearing gloo down
    while rank 0 was still busy aborted rank 1 now and then)."""
    mp.spawn(_leaving_worker, args=(free_port, str(tmp_path)), nprocs=2, join=True)
    main_done = float((tmp_path / "main-done").read_text())
    assert float((tmp_path / "left-1").read_text()) >= main_done
    assert float((tmp_path / "left-0").read_text()) >= main_done


GPU_MODEL = {"name": "dimsum-S/2", "input_size": 8, "in_channels": 3, "num_classes": 4, "hidden_size": 64,
             "depth": 2, "mixer": {"name": "mamba", "backend": "triton"}}


def _gpu_trainer(out_dir: Path, grad_accum: int) -> Trainer:
    # train.compile is left at its default (auto: compiled on CUDA), as a torchrun user's run is
    return Trainer(out_dir=out_dir, model=GPU_MODEL, data=DATA, seed=7,
                   train=TrainConfig(steps=4, global_batch_size=8, grad_accum=grad_accum, num_workers=0,
                                     device="cuda", precision="fp32", label_dropout=0.1, lr=1e-3, ema_decay=0.5),
                   checkpoint=CheckpointConfig(every=4), log=LogConfig(every=1, sample_every=-1, tensorboard=False))


def _gpu_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    _gpu_trainer(Path(out_dir), grad_accum=1).run()


@pytest.mark.gpu
def test_two_nccl_processes_on_two_gpus_match_one_process(tmp_path, free_port):
    """The torchrun path on GPUs: DiMSUM with our Triton kernels, compiled (the CUDA default), two NCCL ranks
    against one process accumulating two micro-batches; the same weights up to the order of the sums."""
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA GPUs (the two-GPU machine)")
    single = tmp_path / "single"
    _gpu_trainer(single, grad_accum=2).run()
    ddp = tmp_path / "ddp"
    mp.spawn(_gpu_worker, args=(2, free_port, str(ddp)), nprocs=2, join=True)
    a = load_file(single / "checkpoints" / "0000004" / "model.safetensors")
    b = load_file(ddp / "checkpoints" / "0000004" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
    assert a["final_layer.linear.weight"].abs().sum() > 0  # zero at init: the runs trained
