"""Sequence-mixing operators: a plain float32 reference (``naive.py``) beside every fast form."""
