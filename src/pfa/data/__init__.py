"""Datasets, transforms and sample-file writers."""
