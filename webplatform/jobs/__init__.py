"""Transformation jobs: age a photo on an `aging` worker (CPU), store the result encrypted."""
