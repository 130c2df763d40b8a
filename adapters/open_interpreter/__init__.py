"""The open_interpreter adapter (see adapter.py)."""
