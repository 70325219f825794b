"""Benchmarks of the lrlab course, run by `make bench` (`python -m benchmarks`).

Each ``bench_*.py`` module exposes ``run(quick: bool = False) -> list[dict]``; every row measures a baseline and a
candidate side by side in the same process and states the ratio the course promises.
"""
