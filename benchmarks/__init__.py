"""Benchmarks: our ``SessionStore`` side by side with the two stores ZeroClaw ships.

Run ``python -m benchmarks.bench_core`` from the project root (``--quick`` for a
smoke run, ``--out FILE`` for JSON results). Nothing here is imported by the package.
"""
