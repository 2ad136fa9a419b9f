"""Where a store lives: a local folder, a ``file://`` URL, or any fsspec URL (``s3://``, ``gs://``,
``memory://``...), with its ``storage_options``.

Every place that touches a store's *location* goes through :class:`Location`; the checks only a
local folder needs (is it a folder, is anything else there, its size on disk, atomic renames)
live here, in one place. Remote stores are opened through zarr's store layer
(``zarr.storage.FsspecStore``); their filesystems come from fsspec and its plugins (``s3fs``,
``gcsfs``, ...), which the user installs for the URLs they use.
"""

from __future__ import annotations

import os
import tempfile
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class Location:
    """A store's place (see the module docstring).

    Attributes:
        url: the local path or URL as given (``file://`` URLs are turned into paths).
        storage_options: passed to fsspec for remote URLs (credentials, endpoints, ...).
    """

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return _SCHEME.match(self.url) is None

    @property
    def path(self) -> Path:
        """The local folder.

        Raises:
            ValueError: the location is remote.
        """
        if not self.is_local:
            raise ValueError(f"{self.url} is not a local path")
        return Path(self.url)

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return self.url

    def __truediv__(self, child: str) -> "Location":
        return Location(f"{self.url.rstrip('/')}/{child}", self.storage_options)

    def sibling(self, suffix: str) -> "Location":
        """``<url><suffix>``, e.g. the checkpoint folder ``<store>.ckpt``."""
        return Location(self.url.rstrip("/") + suffix, self.storage_options)

    def _fs(self):
        import fsspec

        fs, path = fsspec.core.url_to_fs(self.url, **dict(self.storage_options))
        return fs, path

    def exists(self) -> bool:
        if self.is_local:
            return self.path.exists()
        fs, path = self._fs()
        return fs.exists(path)

    def is_zarr_group(self) -> bool:
        """Is there a zarr v3 group here (a ``zarr.json``)?"""
        if self.is_local:
            return (self.path / "zarr.json").is_file()
        fs, path = self._fs()
        return fs.exists(f"{path.rstrip('/')}/zarr.json")

    def is_empty_folder(self) -> bool:
        if self.is_local:
            return self.path.is_dir() and not any(self.path.iterdir())
        fs, path = self._fs()
        return fs.isdir(path) and not fs.ls(path)

    def zarr_store(self, read_only: bool = False):
        """The zarr store object of this location."""
        from zarr.storage import FsspecStore, LocalStore

        if self.is_local:
            return LocalStore(str(self.path), read_only=read_only)
        return FsspecStore.from_url(self.url, storage_options=dict(self.storage_options) or None,
                                    read_only=read_only)

    def check_writable(self) -> None:
        """Raise unless a store could be created here: for a local path, a probe folder is made
        and removed in its nearest existing ancestor (a read-only filesystem, missing permissions
        or a file in the way show now, not after a run has trained). URLs are not probed.

        Raises:
            PermissionError / NotADirectoryError: naming the folder that cannot be written.
        """
        if not self.is_local:
            return
        folder = self.path.parent
        while not folder.exists():
            folder = folder.parent
        if not folder.is_dir():
            raise NotADirectoryError(f"cannot write {self}: {folder} is a file, not a folder; choose another --out")
        try:
            Path(tempfile.mkdtemp(prefix=".losslines-probe-", dir=folder)).rmdir()
        except OSError as err:
            raise PermissionError(f"cannot write {self}: {folder} is not writable ({err.strerror}); choose "
                                  "another --out") from err

    def remove(self) -> None:
        """Delete the folder or prefix and everything below it."""
        if self.is_local:
            shutil.rmtree(self.path)
            return
        fs, path = self._fs()
        fs.rm(path, recursive=True)

    def size(self) -> int:
        """Bytes stored below this location (metadata included)."""
        if self.is_local:
            total = 0
            for folder, _, files in os.walk(self.path):
                for f in files:
                    try:
                        total += os.path.getsize(os.path.join(folder, f))
                    except FileNotFoundError:  # a temporary file renamed away by a writer
                        pass
            return total
        fs, path = self._fs()
        return int(fs.du(path, total=True))

    def write_bytes_atomic(self, data: bytes) -> None:
        """Write a file here, replacing any old one as one step where the filesystem allows
        (local: temporary file, fsync, rename; remote: one object put)."""
        if self.is_local:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            return
        fs, path = self._fs()
        parent = path.rsplit("/", 1)[0]
        if parent:
            fs.makedirs(parent, exist_ok=True)
        fs.pipe_file(path, data)

    def read_bytes(self) -> bytes:
        if self.is_local:
            return self.path.read_bytes()
        fs, path = self._fs()
        return fs.cat_file(path)


def location(where: str | os.PathLike[str] | Location, storage_options: Mapping[str, Any] | None = None) -> Location:
    """A :class:`Location` from a path, a URL or a ``Location`` (``file://`` URLs become paths).

    Raises:
        ValueError: ``storage_options`` given for a local path.
    """
    if isinstance(where, Location):
        return where if storage_options is None else Location(where.url, storage_options)
    url = os.fspath(where)
    if url.startswith("file://"):
        url = url[len("file://"):]
    options = dict(storage_options or {})
    if options and _SCHEME.match(url) is None:
        raise ValueError(f"storage_options apply to URLs (s3://, gs://, memory://...), not to the local path {url}")
    return Location(url, options)
