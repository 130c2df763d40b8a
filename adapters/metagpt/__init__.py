"""The metagpt adapter (see adapter.py)."""
