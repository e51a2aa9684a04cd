"""Plain PyTorch and OpenCV, no Django. `serving/` ages the photos users send (the only part a job runs);
`generator/` is the learned generator and its tooling, trained only; `dp/` trains it under differential
privacy. Imports run serving <- generator <- dp, never back (tests/test_layers.py)."""
