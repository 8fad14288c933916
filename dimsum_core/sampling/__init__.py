"""Sampling: ODE/SDE solvers, classifier-free guidance, seeded noise and the generation pipeline.

Time runs from t = 0 (noise) to t = 1 (data); every solver integrates the model's velocity.
"""
