"""losslines.store: the zarr format (v1), its streaming writer and lazy reader."""

from losslines.store.info import describe, summarize
from losslines.store.reader import LineStore, StoreArray, open_store
from losslines.store.schema import FORMAT_VERSION, StoreLayout
from losslines.store.sink import StoreSink
from losslines.store.writer import StoreWriter, WriterError

__all__ = [
    "FORMAT_VERSION",
    "StoreLayout",
    "StoreWriter",
    "StoreSink",
    "WriterError",
    "open_store",
    "LineStore",
    "StoreArray",
    "describe",
    "summarize",
]
