"""Packaged encoder checkpoints (data only; see README.md for how ``default.pt`` was trained)."""
