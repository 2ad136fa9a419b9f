"""Adapters for training frameworks, each an optional extra (``pip install 'losslines[lightning]'``).

* :mod:`losslines.integrations.lightning`: ``LineSamplerCallback``, a Lightning ``Callback``
  that wraps every optimizer step of a ``Trainer`` with ``LineSampler.measure``.
* :mod:`losslines.integrations.huggingface`: ``LineSamplerCallback``, a ``TrainerCallback`` that
  does the same for a HuggingFace ``Trainer`` (``pip install 'losslines[hf]'``), and
  ``causal_lm_batch`` (the batch of a causal LM as the sampler's inputs and targets).

They import their framework when imported themselves; ``import losslines`` never does.
"""
