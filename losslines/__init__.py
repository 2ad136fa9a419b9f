"""losslines: measure the loss along every optimizer update direction, store it, analyse it."""
from losslines._version import __version__

__all__ = ["__version__"]
