"""Adapters for training frameworks, each an optional extra (``pip install 'losslines[lightning]'``).

* :mod:`losslines.integrations.lightning`: ``LineSamplerCallback``, a Lightning ``Callback``
  that wraps every optimizer step of a ``Trainer`` with ``LineSampler.measure``.

They import their framework when imported themselves; ``import losslines`` never does.
"""
