"""What serves: a photo in, the same photo with its face aged out. Face geometry (a face mesh), an apparent
age reading, and the hand-built aging layers, in OpenCV and numpy on the CPU. Imports nothing from
inference.generator or inference.dp (tests/test_layers.py)."""
