"""Benchmarks of DESIGN §10: the connector against its peers and the sandbox ceiling (``python -m bench``)."""
