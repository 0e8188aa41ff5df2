"""Serving: a model answered by replicas placed over the cluster (docs/serving.md)."""
