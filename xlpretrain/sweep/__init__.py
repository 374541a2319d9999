"""Sweeps: many runs of one base config (spec.py), run by a runner (runners.py), compared in one
table or figure (report.py). Sweep files import the trial builders from here."""

from xlpretrain.sweep.spec import choice, loguniform, product, sample, uniform, zipped

__all__ = ["choice", "loguniform", "product", "sample", "uniform", "zipped"]
