"""Data sources: each yields records (dicts of fields) tagged with where they came from."""

from tailor.data.sources.files import read_files

__all__ = ["read_files"]
