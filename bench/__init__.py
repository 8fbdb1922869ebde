"""Benchmarks of mde-containment on the local stack (``python -m bench.storm``)."""
