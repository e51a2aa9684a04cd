"""Plain PyTorch and OpenCV, no Django: real face geometry, the aging layers, the learned generator and its
registry, the batching engine, DP training, synthetic faces for tests."""
