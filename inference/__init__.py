"""Plain-PyTorch inference: faces, the age-conditioned generator, its registry, batching engine and training."""
