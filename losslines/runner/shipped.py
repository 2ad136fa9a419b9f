"""The configs shipped with losslines, by name: ``losslines run quickstart`` from any directory.

An installed losslines carries ``configs/*.toml`` as package data (``losslines/configs/``); a
source checkout (an editable install) has them in the repository's ``configs/``. A config
argument that names an existing file is that file; otherwise a bare name (``quickstart``, or
``quickstart.toml``) is looked up among the shipped configs.
"""

from __future__ import annotations

from pathlib import Path

import losslines


def shipped_dir() -> Path | None:
    """Where the shipped configs are (installed package data first, then the source checkout)."""
    package = Path(losslines.__file__).resolve().parent
    for candidate in (package / "configs", package.parent / "configs"):
        if candidate.is_dir() and any(candidate.glob("*.toml")):
            return candidate
    return None


def shipped_configs() -> dict[str, Path]:
    """``{name: path}`` of every shipped config, sorted by name."""
    folder = shipped_dir()
    return {p.stem: p for p in sorted(folder.glob("*.toml"))} if folder is not None else {}


def describe(path: Path, width: int = 100) -> str:
    """A config's description: the start of its leading comment block, on one line."""
    words = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        words += line.lstrip("#").split()
    text = " ".join(words)
    return text if len(text) <= width else text[:width - 1].rsplit(" ", 1)[0] + " …"


def resolve_config(text: str | Path) -> Path:
    """The config file ``text`` means: an existing path, or a shipped config's name.

    Returns the path unchanged when nothing matches, so that reading it reports the missing file
    (with the shipped names: see :func:`missing_hint`).
    """
    path = Path(text)
    if path.exists() or len(path.parts) > 1:
        return path
    return shipped_configs().get(path.name.removesuffix(".toml"), path)


def missing_hint() -> str:
    """The shipped names, for the error about a config that does not exist."""
    names = list(shipped_configs())
    return f"; shipped configs (losslines configs): {', '.join(names)}" if names else ""
