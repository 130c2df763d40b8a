"""AIOS: an LLM agent operating system (see README)."""
