"""Transformation jobs: age a photo on the GPU worker, store the result encrypted."""
