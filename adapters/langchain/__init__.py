"""The langchain adapter (see adapter.py)."""
