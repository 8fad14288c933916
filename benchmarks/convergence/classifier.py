"""The study's classifier: a compact CNN trained on the study's own train split.

Its penultimate activations are the feature space of the study's Fréchet distance, and its
predictions score class-conditional samples. Nothing is downloaded: the network, its recipe
(``recipes/study/classifier.yaml``) and its training ship with the library, and its accuracy on the
real validation split is reported next to every number it produces.

    image (N, 3, R, R) in [-1, 1]
    3 stages of [conv3x3 - GroupNorm - SiLU] x 2, then 2x2 average pooling   (N, 4W, R/8, R/8)
    conv1x1 -> SiLU -> global mean                                             (N, F) features
    linear                                                                     (N, K) logits
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from dimsum_core.errors import CheckpointError

from .data import Split, decode

WEIGHTS = "classifier.safetensors"
REPORT = "classifier.json"


@dataclass(frozen=True)
class ClassifierConfig:
    """The keys of ``recipes/study/classifier.yaml``."""

    #: channels of the first stage (the next two have 2x and 4x)
    width: int = 32
    #: length of the feature vector (the Fréchet distance's space)
    feature_dim: int = 128
    epochs: int = 8
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU(),
        nn.AvgPool2d(2))


class SceneClassifier(nn.Module):
    def __init__(self, num_classes: int, width: int = 32, feature_dim: int = 128):
        super().__init__()
        self.num_classes, self.width, self.feature_dim = num_classes, width, feature_dim
        self.stages = nn.Sequential(_stage(3, width), _stage(width, 2 * width), _stage(2 * width, 4 * width))
        self.project = nn.Conv2d(4 * width, feature_dim, 1)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, R, R) in [-1, 1] -> (N, F)."""
        return F.silu(self.project(self.stages(x))).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class ClassifierReport:
    num_classes: int
    config: dict
    #: accuracy on the real validation split
    val_accuracy: float
    val_items: int
    train_items: int
    train_seconds: float
    params: int


@torch.no_grad()
def accuracy(classifier: SceneClassifier, split: Split, batch_size: int = 1024) -> float:
    device = next(classifier.parameters()).device
    classifier.eval()
    correct = 0
    for start in range(0, len(split), batch_size):
        x = decode(split.images[start:start + batch_size].to(device))
        y = split.labels[start:start + batch_size].to(device)
        correct += int((classifier(x).argmax(1) == y).sum())
    return correct / len(split)


def train_classifier(cfg: ClassifierConfig, train: Split, val: Split, num_classes: int,
                     device: torch.device, log: Callable[[str], None] = print) -> tuple[SceneClassifier, ClassifierReport]:
    """AdamW with a cosine learning rate over ``cfg.epochs`` passes of ``train``; random shifts
    (rolls) of up to 2 pixels per batch keep it from keying on exact positions."""
    torch.manual_seed(cfg.seed)
    model = SceneClassifier(num_classes, cfg.width, cfg.feature_dim).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(len(train) // cfg.batch_size, 1)
    total = steps_per_epoch * cfg.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    g = torch.Generator(device).manual_seed(cfg.seed)
    images, labels = train.images.to(device), train.labels.to(device)
    began = time.perf_counter()
    model.train()
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(train), generator=g, device=device)
        for k in range(steps_per_epoch):
            idx = order[k * cfg.batch_size:(k + 1) * cfg.batch_size]
            x = decode(images[idx])
            shift = torch.randint(-2, 3, (2,), generator=g, device=device).tolist()
            x = torch.roll(x, shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(model(x), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        log(f"classifier epoch {epoch + 1}/{cfg.epochs}: loss {loss.item():.4f}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - began
    report = ClassifierReport(num_classes, asdict(cfg), accuracy(model, val), len(val), len(train), seconds,
                              sum(p.numel() for p in model.parameters()))
    return model.eval(), report


def save_classifier(directory: Path, model: SceneClassifier, report: ClassifierReport) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(directory / WEIGHTS))
    (directory / REPORT).write_text(json.dumps(asdict(report), indent=1))


def load_classifier(directory: str | Path) -> tuple[SceneClassifier, ClassifierReport]:
    directory = Path(directory).expanduser()
    if not (directory / WEIGHTS).is_file() or not (directory / REPORT).is_file():
        raise CheckpointError(f"{directory}: no study classifier here (needs {WEIGHTS} and {REPORT}); "
                              f"train one with benchmarks/study.py")
    report = ClassifierReport(**json.loads((directory / REPORT).read_text()))
    cfg = report.config
    model = SceneClassifier(report.num_classes, cfg["width"], cfg["feature_dim"])
    model.load_state_dict(load_file(str(directory / WEIGHTS)))
    return model.eval(), report
