"""Benchmarks: what the pipeline costs on top of the work, each figure beside its alternative.

Every figure is a ratio against an alternative measured in the same run (the two sides
alternated, medians over repeats), so the numbers stay comparable on a noisy machine.
Run them with ``make bench`` or ``python -m benchmarks.run``.
"""
