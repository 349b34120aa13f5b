"""Benchmarks of Serpent.

``python -m serpent_arch.benchmark network [...]``: params, GFLOPs, peak memory and latency of the
Serpent variants against SwinIR and RRDBNet (:mod:`serpent_arch.benchmark.network`).
``python -m serpent_arch.benchmark scan [...]``: the selective scan backends on their own
(:mod:`serpent_arch.benchmark.scan`).

Importing this package imports nothing heavy; the subcommands load their modules when run.
"""
