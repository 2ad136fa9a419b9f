"""A real text corpus that every machine has offline: the Python standard library's own source.

``python_source``: the ``*.py`` files of the running interpreter's standard library
(``sysconfig.get_paths()["stdlib"]``), in sorted order of their relative paths, without
``site-packages`` and (by default) without the test suites, read as raw bytes and joined into
one stream. Byte-level tokens (V = 256) need no tokenizer and lose nothing. The stream is cut
into non-overlapping windows of ``seq_len + 1`` bytes; sample ``i`` is window ``i``: the model
reads its first ``seq_len`` bytes and predicts each next byte (targets = the window shifted by
one). Ids are window indices, stable for a given Python version (the standard library differs
between versions; the version and a SHA-256 of the stream are recorded).

Why this corpus: it exists wherever losslines runs (no download, no licence question for a
tool's test data, ~14 MB of real, structured text: code, docstrings, comments), it is large
enough for the paper's 8 % subsets, and bytes keep the study free of tokenizer choices.
"""

from __future__ import annotations

import hashlib
import platform
import sysconfig
from pathlib import Path

import numpy as np

TEST_DIRS = frozenset({"test", "tests", "idle_test"})


def stdlib_files(include_tests: bool = False) -> tuple[Path, list[Path]]:
    """``(root, files)``: the standard library folder and its ``*.py`` files in canonical order.

    Raises:
        FileNotFoundError: this Python has no standard library source (a frozen or stripped
            installation); the message says what to use instead.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted((p for p in root.rglob("*.py")
                    if "site-packages" not in p.parts and "dist-packages" not in p.parts
                    and (include_tests or not TEST_DIRS.intersection(p.relative_to(root).parts[:-1]))),
                   key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise FileNotFoundError(f"no Python source files under {root}: this Python ships its standard library "
                                "without sources; use another dataset (e.g. 'synthetic_tokens') or a Python with sources")
    return root, files


def load_python_source(seq_len: int = 64, max_bytes: int = 0, include_tests: bool = False) -> tuple[np.ndarray, str]:
    """``(windows [M, seq_len + 1] uint8, provenance)`` of the corpus (see the module docstring).

    Args:
        seq_len: tokens a sample reads (its window has one more: the last target).
        max_bytes: use only the first ``max_bytes`` of the stream (0: all of it).
        include_tests: also the standard library's test suites (about twice the text).

    Raises:
        ValueError: ``seq_len`` < 1, ``max_bytes`` < 0, or a stream shorter than one window.
    """
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"python_source option 'seq_len' must be an int >= 1, got {seq_len!r}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise ValueError(f"python_source option 'max_bytes' must be an int >= 0 (0 = all), got {max_bytes!r}")
    root, files = stdlib_files(include_tests)
    parts, total = [], 0
    for path in files:
        data = path.read_bytes()
        parts.append(data)
        total += len(data)
        if max_bytes and total >= max_bytes:
            break
    stream = b"".join(parts)[: max_bytes or None]
    window = seq_len + 1
    count = len(stream) // window
    if count == 0:
        raise ValueError(f"python_source: {len(stream)} bytes give no window of {window} bytes; raise max_bytes")
    windows = np.frombuffer(stream[: count * window], dtype=np.uint8).reshape(count, window)
    digest = hashlib.sha256(stream).hexdigest()[:16]
    provenance = (f"Python {platform.python_version()} standard library source ({root}), {len(parts)} files, "
                  f"{len(stream)} bytes, sha256 {digest}; byte tokens, windows of {window}")
    return windows, provenance
