"""Tailor: build a custom language model from one spec file."""

__version__ = "0.1.0"
