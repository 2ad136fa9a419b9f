"""The in-memory records a dataset loader returns: :class:`Split` and :class:`Dataset`.

Sample-id convention (what ``Split.ids`` means):

* ``Dataset.heldout_from == "test"`` (CIFAR-10/100, MNIST, Fashion-MNIST, SVHN): train ids are
  indices into the **official training split**, held-out ids are indices into the **official
  test split**. The two are separate id spaces (train id 7 and val id 7 are different images);
  the store keeps them in separate arrays (``sample_ids_train`` / ``sample_ids_val``).
* ``Dataset.heldout_from == "pool"`` (``digits``, ``synthetic``, which have no official test
  split): both splits index the same pool of samples and are disjoint.

Ids inside a split are sorted ascending, so the order of samples is canonical: two runs with
the same selection hold the same images in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

HELDOUT_SOURCES = ("test", "pool")


@dataclass(frozen=True)
class Split:
    """One split of a dataset, held in memory.

    Attributes:
        inputs: ``[N, C, H, W]`` (or ``[N, D]``) float32, already normalised.
        targets: ``[N]`` int64 class labels in ``[0, num_classes)``.
        ids: ``[N]`` int64 stable sample ids, ascending (see the module docstring).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    ids: torch.Tensor

    def __post_init__(self) -> None:
        n = self.inputs.shape[0]
        if self.inputs.dtype != torch.float32:
            raise ValueError(f"Split.inputs must be float32, got {self.inputs.dtype}")
        if self.inputs.dim() < 2:
            raise ValueError(f"Split.inputs must be [N, ...] with at least 2 dims, got {tuple(self.inputs.shape)}")
        for name, t in (("targets", self.targets), ("ids", self.ids)):
            if t.dtype != torch.int64 or t.shape != (n,):
                raise ValueError(f"Split.{name} must be int64 of shape [{n}], got {t.dtype} {tuple(t.shape)}")
        if n > 1 and not bool((self.ids[1:] > self.ids[:-1]).all()):
            raise ValueError("Split.ids must be strictly increasing (unique, sorted)")

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def to(self, device: torch.device | str) -> "Split":
        """The same split with inputs and targets on ``device`` (ids stay on the CPU)."""
        return Split(self.inputs.to(device), self.targets.to(device), self.ids)


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: a training subset and a held-out split with stable ids.

    Attributes:
        name: registry name, e.g. ``"cifar10"``.
        train: the training subset (the measurement set of the paper's "full batch").
        val: the held-out split; may hold 0 samples.
        num_classes: number of classes C (targets lie in ``[0, C)``).
        input_shape: shape of one sample, e.g. ``(3, 32, 32)``.
        normalization: what normalisation was applied and with which statistics (JSON-able).
        source: where the data came from (a directory, or ``"sklearn.datasets.load_digits"``).
        heldout_from: ``"test"`` (val ids index the official test split) or ``"pool"`` (val and
            train ids index the same pool and are disjoint).
        selection: how the subsets were drawn (seed, sizes, pool sizes; JSON-able).
    """

    name: str
    train: Split
    val: Split
    num_classes: int
    input_shape: tuple[int, ...]
    normalization: dict
    source: str
    heldout_from: str = "test"
    selection: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.heldout_from not in HELDOUT_SOURCES:
            raise ValueError(f"heldout_from must be one of {HELDOUT_SOURCES}, got {self.heldout_from!r}")
        for split_name, split in (("train", self.train), ("val", self.val)):
            if tuple(split.inputs.shape[1:]) != tuple(self.input_shape):
                raise ValueError(
                    f"{split_name} inputs have sample shape {tuple(split.inputs.shape[1:])}, "
                    f"expected input_shape {tuple(self.input_shape)}"
                )
        if self.heldout_from == "pool" and len(self.train) and len(self.val):
            overlap = torch.isin(self.train.ids, self.val.ids)
            if bool(overlap.any()):
                raise ValueError("train and val ids overlap although both come from the same pool")
