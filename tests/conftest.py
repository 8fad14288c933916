"""Shared test setup: GPU tests skip without CUDA; the official parity fixtures are read from
../shared (CI has it beside the checkout) or $DIMSUM_FIXTURES, and tests skip with a reason otherwise."""

from __future__ import annotations

import os
import socket
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: with spinning, a forward pass took 7 s instead of
# 0.3 s whenever another process (the DDP tests' workers, a parallel job) shared the 2 CI cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# A fixed thread count: tests compare runs bitwise, which a count that follows the machine's load
# (dimsum_core.cpu_threads.make_room, off when this is set) would make flaky.
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))

import pytest  # noqa: E402
import torch  # noqa: E402

# Without CUDA, dimsum's Triton kernels run in Triton's interpreter (read when the kernels are defined).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("DIMSUM_FIXTURES", REPO.parent / "shared" / "fixtures" / "official_parity"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run on the GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def no_tf32():  # noqa: ANN201
    """TF32 off for exact float32 comparisons on a GPU (plain assignment: these are not real attributes,
    so monkeypatch cannot restore them)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def fixtures_or_skip(path: Path) -> Path:
    """``path`` if it holds the official fixtures; else skip, saying what they are and that they are optional."""
    if not (path / "A" / "state_dict.safetensors").is_file():
        pytest.skip(f"optional: the official-parity tests compare with outputs of the official DiMSUM code, which "
                    f"are not part of this repository and were not found at {path}; set DIMSUM_FIXTURES to a "
                    f"copy to run them")
    return path


@pytest.fixture
def official_fixtures() -> Path:
    return fixtures_or_skip(FIXTURES)


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for the gloo process-group tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def compile_on_eager_backend(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """FlowModel.compile_regions (and PatchFlowModel's) on dynamo's eager backend: the compile path is taken
    without inductor's C++ compiler, which CI need not have. Returns the class names of the models compiled."""
    import torch._dynamo

    from dimsum_core.interfaces.model import FlowModel
    from dimsum_core.network import PatchFlowModel

    compiled: list[str] = []
    for cls in (FlowModel, PatchFlowModel):
        def on_eager_backend(self, _original=cls.compile_regions, **options):  # noqa: ANN001, ANN003, ANN202
            compiled.append(type(self).__name__)
            _original(self, backend="eager")

        monkeypatch.setattr(cls, "compile_regions", on_eager_backend)
    torch._dynamo.reset()
    return compiled
