"""``dimsum eval``: FID, KID, Inception Score and precision/recall of a checkpoint or of samples."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from dimsum_core.cli.outputs import check_new_output, overwrite_option
from dimsum_core.cli.sample import report_table, sampling_options, start
from dimsum_core.config.load import parse_assignments
from dimsum_core.config.nodes import build
from dimsum_core.errors import DimsumError
from dimsum_core.metrics.features import ExtractedFeatures, FeatureAccumulator, extract
from dimsum_core.metrics.image_sources import ImageSource
from dimsum_core.metrics.reference import reference_features
from dimsum_core.metrics.scores import METRICS, score
from dimsum_core.progress import TaskProgress
from dimsum_core.sampling.generate import SamplingStats, gather_to_main, rank_indices
from dimsum_core.train.distributed import leave_together

PRESETS = {"fid10k": 10_000, "fid50k": 50_000}
NOTE = ("features from the extractor named here (default: torch-fidelity's Inception-v3 port); values are not "
        "interchangeable with ADM's TensorFlow evaluator or StyleGAN-ADA's fid50k_full, which the official "
        "DiMSUM numbers use")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("dimsum", "torch", "numpy", "scipy", "torchdiffeq", "torch-fidelity", "diffusers"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def _metric_list(text: str) -> tuple[str, ...]:
    metrics = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise DimsumError(f"--metrics: unknown metric '{unknown[0] if unknown else text}'; "
                          f"choose from {','.join(METRICS)}")
    return metrics


def _write_json(path: Path, result: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def metrics_table(metrics: dict[str, float], extractor: str) -> Table:
    """The metrics under the names the result JSON uses, titled with the extractor they come from."""
    title = f"metrics, extractor {extractor}"
    caption = None if extractor == "inception" else "not Inception features: its fid is not a FID"
    table = Table(title=title, caption=caption, min_width=max(len(title), len(caption or "")) + 2)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.6g}")
    return table


@click.command(name="eval")
@click.argument("checkpoint", required=False, type=click.Path(path_type=Path))
@click.option("--ref", required=True, type=click.Path(path_type=Path),
              help="reference images: a folder or an ADM-style .npz (features cached)")
@click.option("--samples", type=click.Path(path_type=Path),
              help="score existing samples (folder or .npz) instead of sampling CHECKPOINT")
@click.option("-n", "--n", "--num-samples", "n", type=click.IntRange(min=2),
              help="number of generated samples, 2 or more for a covariance (default: the preset's; under torchrun "
                   "write -n or --num-samples)")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), help="fid10k or fid50k sample count (default fid50k)")
@sampling_options
@click.option("--extractor", default="inception", show_default=True, help="feature extractor plugin")
@click.option("--extractor-opt", "extractor_opts", multiple=True, metavar="KEY=VALUE",
              help="extractor settings, e.g. weights=/path/to/weights-inception-2015-12-05-6726825d.pth")
@click.option("--metrics", "metric_text", default=",".join(METRICS), show_default=True,
              help="comma-separated subset of fid,kid,is,pr")
@click.option("--ref-resize", type=int, help="resize reference folder images to N x N (Lanczos)")
@click.option("--cache-dir", type=click.Path(path_type=Path),
              help="reference feature cache (default $DIMSUM_CACHE/ref_stats or ~/.cache/dimsum/ref_stats)")
@click.option("--kid-subset-size", type=click.IntRange(min=2), default=1000, show_default=True,
              help="images per KID subset (capped at the smaller set)")
@click.option("--out", type=click.Path(path_type=Path), help="result JSON file (default: print it)")
@overwrite_option()
def eval_command(checkpoint: Path | None, ref: Path, samples: Path | None, n: int | None, preset: str | None,
                 extractor: str, extractor_opts: tuple[str, ...], metric_text: str, ref_resize: int | None,
                 cache_dir: Path | None, kid_subset_size: int, out: Path | None, overwrite: bool,
                 **options: Any) -> None:
    """Score CHECKPOINT (sampled here) or --samples against --ref: FID, KID, IS, precision/recall.

    Reference features are computed once and cached, keyed by the image list, resize and extractor.
    The JSON result records the checkpoint hash, sampler settings, mean NFE, guidance scale, precision,
    sample count, reference stats hash, extractor and library versions. Default features are
    torch-fidelity's Inception-v3: not interchangeable with ADM-TF or StyleGAN-ADA FIDs.

    \b
    Examples:
      dimsum eval ckpt --ref data/celeba256 --preset fid10k --out fid10k.json
      dimsum eval ckpt --ref imagenet_ref/ --cfg 1.4 --vae vae/ --n 50000 --out result.json
      dimsum eval --samples samples.npz --ref data/church256 --metrics fid,kid
      dimsum eval ckpt --ref refs/ --n 200 --extractor random-conv     quick CPU look, not a FID
    """
    if (checkpoint is None) == (samples is None):
        raise DimsumError("give either CHECKPOINT (to sample) or --samples PATH (to score existing samples)")
    if n is not None and preset is not None:
        raise DimsumError("give --n or --preset, not both")
    if out is not None:
        check_new_output(out, overwrite)
    metrics = _metric_list(metric_text)
    reference = ImageSource.open(ref, ref_resize)
    extractor_id = {"name": extractor, **parse_assignments(extractor_opts, "--extractor-opt")}
    features_model = build("feature", extractor_id)  # before sampling: an extractor that cannot run says so now
    console = Console(stderr=True)
    result: dict[str, Any] = {}

    if samples is not None:
        device = _device(options["device"])
        source = ImageSource.open(samples)
        count = source.count if n is None else min(n, source.count)
        with TaskProgress(console, "features", count) as progress:
            generated = extract(features_model, _first(source.batches(options["batch_size"]), count), device,
                                progress)
        result["samples"] = {"source": "path", "path": str(samples), "count": count}
        rank_main = True
    else:
        count = n if n is not None else PRESETS[preset or "fid50k"]
        info, run, batches = start(checkpoint, count, **options)
        with leave_together(info):
            device = info.device
            accumulator = FeatureAccumulator(features_model, device)
            stats = SamplingStats()
            share = len(rank_indices(count, info.rank, info.world_size))
            with TaskProgress(console, "sample", share, enabled=info.is_main) as progress:
                for batch in batches:
                    stats.add(batch)
                    accumulator.add(batch.images)
                    progress.update(stats.samples)
            parts = gather_to_main((accumulator.result(), stats), info.world_size)
        rank_main = info.is_main
        if rank_main:
            generated = _concat([p[0] for p in parts])
            total = SamplingStats.combined([p[1] for p in parts])
            console.print(report_table(run, total))
            result["checkpoint"] = {"path": str(run.checkpoint.path), "weights_file": run.checkpoint.weights_file.name,
                                    "sha256": run.checkpoint.weights_sha256()}
            result["sampling"] = {**run.record(), "mean_nfe": total.mean_nfe,
                                  "nfe_convention": "a guided cond+null pair batched together counts once",
                                  "seconds_per_image": total.seconds_per_image, "ranks": info.world_size}
            result["samples"] = {"source": "checkpoint", "count": total.samples}
    if not rank_main:
        return

    ref_features = reference_features(reference, features_model, {**extractor_id, "resize": ref_resize},
                                      batch_size=options["batch_size"], device=device, cache_dir=cache_dir,
                                      console=console)
    values = score(generated, ref_features.features, metrics, reference_stats=ref_features.stats,
                   kid_subset_size=kid_subset_size)
    result["reference"] = {"path": str(ref), "count": ref_features.stats.count, "resize": ref_resize,
                           "stats_sha256": ref_features.stats_hash, "cache_key": ref_features.key,
                           "cache_file": str(ref_features.cache_file), "from_cache": ref_features.cached}
    result["extractor"] = extractor_id
    result["metrics"] = values
    result["versions"] = library_versions()
    result["note"] = NOTE
    console.print(metrics_table(values, extractor))
    if out is None:
        click.echo(json.dumps(result, indent=2))
    else:
        _write_json(out, result)
        console.print(f"wrote {out}")


def _device(choice: str) -> str:
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise DimsumError("--device cuda, but no CUDA device is available; use --device auto or cpu")
    return "cuda" if choice != "cpu" and torch.cuda.is_available() else "cpu"


def _first(batches: Any, count: int) -> Any:
    """The first ``count`` images of a batch iterator."""
    seen = 0
    for batch in batches:
        if seen >= count:
            return
        yield batch[:count - seen]
        seen += len(batch)


def _concat(parts: list[ExtractedFeatures]) -> ExtractedFeatures:
    features = np.concatenate([p.features for p in parts])
    logits = None if any(p.logits is None for p in parts) else np.concatenate([p.logits for p in parts])
    return ExtractedFeatures(features, logits)
