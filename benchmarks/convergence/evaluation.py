"""The study's metrics of one model, computed the same way at every evaluation of every arm.

* ``val_loss``: the velocity-matching loss on the first images of the validation split, with noise
  fixed per image and t on a fixed midpoint grid ``(k + 0.5) / K``, averaged over images and t
  (``val_loss_t`` keeps the per-t means). No sampling noise, so small differences are real.
* ``fd``: the Fréchet distance between classifier features of class-conditional samples (the same
  number per class) and of the whole validation split (``dimsum_core.metrics``).
* ``accuracy``: how often the classifier assigns a sample the class it was generated for.
* a sample grid: one column per class, fixed noise.
* the NFE sweep (issue 18's question 2, on a run's final weights): for each sampler of :data:`NFE_SWEEP`,
  the mean NFE per sample and the FD and accuracy of the same class-conditional samples (same noise).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from dimsum_core.config.nodes import build
from dimsum_core.interfaces.model import FlowModel
from dimsum_core.interfaces.objective import Objective
from dimsum_core.metrics.frechet import FeatureStats, feature_stats, fid_from_stats
from dimsum_core.nn.precision import Precision, autocast
from dimsum_core.sampling.generate import generate
from dimsum_core.sampling.outputs import grid_picture

from .classifier import SceneClassifier
from .data import Split, decode

#: the official sampler: dopri5 at atol 1e-6, rtol 1e-3
OFFICIAL_DOPRI5 = {"name": "dopri5", "atol": 1e-6, "rtol": 1e-3}
#: Euler and Heun over a range of steps, and dopri5 at the official tolerances and one decade either side
#: in rtol: "the same sampler at the same NFE", and the adaptive solver's NFE
NFE_SWEEP: list[dict[str, Any]] = (
    [{"name": "euler", "steps": s} for s in (4, 8, 16, 32, 64)]
    + [{"name": "heun", "steps": s} for s in (2, 4, 8, 16, 32)]
    + [{**OFFICIAL_DOPRI5, "rtol": r} for r in (OFFICIAL_DOPRI5["rtol"] * 10, OFFICIAL_DOPRI5["rtol"],
                                                 OFFICIAL_DOPRI5["rtol"] / 10)]
)


@dataclass(frozen=True)
class EvalSettings:
    #: validation images for the loss, and points of the t grid
    val_loss_images: int = 1000
    t_grid: int = 10
    #: class-conditional samples per class for the Fréchet distance and the accuracy
    samples_per_class: int = 50
    #: rows of the sample grid (one column per class)
    grid_rows: int = 8
    batch_size: int = 500
    seed: int = 0


@torch.no_grad()
def classifier_outputs(classifier: SceneClassifier, images: torch.Tensor,
                       batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images -> (features (N, F) float64, predicted classes (N,))."""
    device = next(classifier.parameters()).device
    features, predictions = [], []
    for start in range(0, len(images), batch_size):
        f = classifier.features(decode(images[start:start + batch_size].to(device)))
        features.append(f.double().cpu().numpy())
        predictions.append(classifier.head(f).argmax(1).cpu().numpy())
    return np.concatenate(features), np.concatenate(predictions)


class StudyEvaluator:
    """Holds everything fixed across evaluations: validation batch, noise, t grid, reference stats."""

    def __init__(self, settings: EvalSettings, val: Split, classifier: SceneClassifier, num_classes: int,
                 sampler_node: Any, cfg_scale: float, precision: Precision, device: torch.device):
        self.settings, self.num_classes = settings, num_classes
        self.cfg_scale, self.precision, self.device = cfg_scale, precision, device
        self.sampler = build("sampler", sampler_node)
        self.classifier = classifier.to(device).eval()
        n = min(settings.val_loss_images, len(val))
        self.x1 = decode(val.images[:n]).to(device)
        self.y = val.labels[:n].to(device)
        g = torch.Generator().manual_seed(settings.seed)
        self.x0 = torch.randn(self.x1.shape, generator=g).to(device)
        self.t_grid = [(k + 0.5) / settings.t_grid for k in range(settings.t_grid)]
        features, _ = classifier_outputs(self.classifier, val.images)
        self.reference: FeatureStats = feature_stats(features)

    @torch.no_grad()
    def val_loss(self, model: FlowModel, objective: Objective) -> tuple[float, list[float]]:
        per_t = []
        bs = self.settings.batch_size
        y_all = self.y if model.num_classes > 0 else None
        for t_value in self.t_grid:
            total = 0.0
            for start in range(0, len(self.x1), bs):
                x1, x0 = self.x1[start:start + bs], self.x0[start:start + bs]
                t = torch.full((len(x1),), t_value, device=self.device)
                x_t, u_t = objective.path(x0, x1, t)
                y = None if y_all is None else y_all[start:start + bs]
                with autocast(self.precision, self.device.type):
                    prediction = model(x_t, t, y)
                total += float(objective.loss(prediction, u_t).sum())
            per_t.append(total / len(self.x1))
        return float(np.mean(per_t)), per_t

    def samples(self, model: FlowModel, sampler: Any = None) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Class-conditional samples (of the study's sampler, or ``sampler``), classes cycling with the
        index: uint8 (N, 3, R, R), labels (N,) and the mean NFE per sample."""
        n = self.settings.samples_per_class * self.num_classes
        images, labels, nfe = [], [], 0
        for batch in generate(model, sampler or self.sampler, range(n), seed=self.settings.seed,
                              batch_size=self.settings.batch_size, cfg_scale=self.cfg_scale,
                              classes=list(range(self.num_classes)), precision=self.precision):
            images.append(batch.images)
            labels.append(batch.labels)
            nfe += batch.nfe * len(batch.indices)
        return torch.cat(images), torch.cat(labels), nfe / n

    def nfe_sweep(self, model: FlowModel, samplers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """For each sampler node: its mean NFE per sample, and the FD and accuracy of its samples."""
        was_training = model.training
        model.eval()
        rows = []
        for node in samplers:
            began = time.perf_counter()
            images, labels, nfe = self.samples(model, build("sampler", node))
            rows.append({"sampler": node, "nfe": nfe, **self.sample_metrics(images, labels),
                         "seconds": time.perf_counter() - began})
        model.train(was_training)
        return rows

    def sample_metrics(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        features, predicted = classifier_outputs(self.classifier, images)
        return {"fd": fid_from_stats(feature_stats(features), self.reference),
                "accuracy": float((predicted == labels.numpy()).mean())}

    def __call__(self, model: FlowModel, objective: Objective) -> tuple[dict[str, Any], Image.Image]:
        """All metrics of ``model`` (in eval mode) and its sample grid."""
        began = time.perf_counter()
        was_training = model.training
        model.eval()
        loss, per_t = self.val_loss(model, objective)
        images, labels, _ = self.samples(model)
        model.train(was_training)
        result: dict[str, Any] = {"val_loss": loss, "val_loss_t": per_t, **self.sample_metrics(images, labels)}
        result["eval_seconds"] = time.perf_counter() - began
        rows = min(self.settings.grid_rows, self.settings.samples_per_class)
        grid = grid_picture(images[:rows * self.num_classes], self.num_classes)
        return result, grid
