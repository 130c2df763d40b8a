"""The autogen adapter (see adapter.py)."""
