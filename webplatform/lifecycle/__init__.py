"""The data lifecycle: retention, erasure, withdrawal effects, export, the compliance report."""
