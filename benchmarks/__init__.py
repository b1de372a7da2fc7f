"""Paired benchmarks: hvinfra against the docker CLI and bare docker-py (`python -m benchmarks`)."""
