"""The convergence study (issue #9): DiMSUM, its baselines and its ablations trained on the same
procedural scenes for the same number of images, scored at fixed intervals by metrics that need no
downloaded weights (validation flow-matching loss, a classifier-feature Fréchet distance, the
classifier's accuracy on class-conditional samples) plus sample grids.

``benchmarks/study.py`` runs it; the pieces live here, outside the ``dimsum`` package (the core imports
none of them; the study trains with the core's :class:`dimsum_core.train.step.TrainStep`):

* :mod:`.data` renders and caches the train/val splits as uint8 tensors,
* :mod:`.classifier` is the small CNN that the metrics use (and its training),
* :mod:`.features` exposes it as the ``study-classifier`` feature extractor, registered at run time,
* :mod:`.evaluation` computes the metrics of one model,
* :mod:`.arms` reads the per-arm recipes in ``recipes/study/``,
* :mod:`.runner` trains one arm with evaluations at fixed image counts,
* :mod:`.report` renders ``docs/study.md`` and its plots from the results JSON,
* :mod:`.driver` is the command line.
"""
