"""Reading the data stage's split files, for every later stage and tool (decrypted in memory when sealed)."""

from __future__ import annotations

from pathlib import Path

from tailor import encryption


def load_split(data_dir: Path, split: str, columns: list[str] | None = None) -> list[dict]:
    """Records of one split written by the data stage (only `columns` of them, when given)."""
    table = load_table(data_dir, split, columns)
    return table.to_pylist() if table is not None else []


def load_table(data_dir: Path, split: str, columns: list[str] | None = None):
    """One split as a pyarrow Table (None if it was not written): whole columns without a dict per record."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(data_dir) / f"{split}.parquet"
    if not encryption.exists(path):
        return None
    data = pa.BufferReader(encryption.read_bytes(path))  # .enc: decrypted in memory
    return pq.read_table(data, columns=columns)
