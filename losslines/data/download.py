"""Downloads through torchvision (md5-checked), failing fast and in one line when offline.

torchvision's download helpers open URLs without a timeout; on a machine without network a
download could hang or end in a page of urllib traceback. :func:`fetch` bounds every socket
operation by a timeout, and turns any failure into a one-line reason that the caller puts into
its ``FileNotFoundError``.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Callable, Iterator

DOWNLOAD_TIMEOUT_S = 10.0


@contextlib.contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """Bound new sockets' blocking operations by ``seconds`` inside the block (restored after)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def one_line(exc: BaseException) -> str:
    """``"Type: message"`` of an exception, reduced to its first non-empty line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def fetch(action: Callable[[], None], timeout: float = DOWNLOAD_TIMEOUT_S) -> str | None:
    """Run a download ``action`` under a socket timeout.

    Returns:
        ``None`` on success, else the one-line reason it failed.
    """
    try:
        with socket_timeout(timeout):
            action()
    except Exception as exc:  # noqa: BLE001 - every failure becomes the reason in one clear line
        return one_line(exc)
    return None


def download_cifar(torchvision_class: type, directory: Path) -> None:
    """Download and extract a CIFAR archive (``CIFAR10``/``CIFAR100`` attributes) into ``directory``."""
    from torchvision.datasets.utils import download_and_extract_archive

    c = torchvision_class
    download_and_extract_archive(c.url, str(directory), filename=c.filename, md5=c.tgz_md5)


def download_mnist(torchvision_class: type, directory: Path) -> None:
    """Download and gunzip the four IDX files of ``MNIST``/``FashionMNIST`` into
    ``directory/<ClassName>/raw``, trying each mirror torchvision knows."""
    from torchvision.datasets.utils import download_and_extract_archive

    raw = directory / torchvision_class.__name__ / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for filename, md5 in torchvision_class.resources:
        reasons = []
        for mirror in torchvision_class.mirrors:
            try:
                download_and_extract_archive(f"{mirror}{filename}", str(raw), filename=filename, md5=md5)
                break
            except Exception as exc:  # noqa: BLE001 - try the next mirror, report all
                reasons.append(f"{mirror}: {one_line(exc)}")
        else:
            raise RuntimeError(f"{filename}: " + "; ".join(reasons))


def download_svhn(split: str, directory: Path) -> None:
    """Download one SVHN ``.mat`` file (``split`` in ``train``/``test``) into ``directory``."""
    from torchvision.datasets import SVHN
    from torchvision.datasets.utils import download_url

    url, filename, md5 = SVHN.split_list[split]
    download_url(url, str(directory), filename, md5)
