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

from losslines import batched

HELDOUT_SOURCES = ("test", "pool")


@dataclass(frozen=True)
class Split:
    """One split of a dataset, held in memory.

    Attributes:
        inputs: ``[N, ...]`` model inputs: images ``[N, C, H, W]`` float32 (normalised), token ids
            ``[N, T]`` int64, or a tuple/dict of tensors batched along dim 0 (``losslines.batched``).
        targets: ``[N, ...]``: int64 class labels ``[N]``, token ids ``[N, T]`` (-100: not
            predicted), float regression targets, or a batched structure for your own loss.
        ids: ``[N]`` int64 stable sample ids, ascending (see the module docstring).
    """

    inputs: object
    targets: object
    ids: torch.Tensor

    def __post_init__(self) -> None:
        n = batched.rows(self.inputs)
        if batched.rows(self.targets) != n:
            raise ValueError(f"Split.targets hold {batched.rows(self.targets)} samples, the inputs {n}")
        if self.ids.dtype != torch.int64 or self.ids.shape != (n,):
            raise ValueError(f"Split.ids must be int64 of shape [{n}], got {self.ids.dtype} {tuple(self.ids.shape)}")
        if n > 1 and not bool((self.ids[1:] > self.ids[:-1]).all()):
            raise ValueError("Split.ids must be strictly increasing (unique, sorted)")

    def __len__(self) -> int:
        return batched.rows(self.inputs)

    def to(self, device: torch.device | str) -> "Split":
        """The same split with inputs and targets on ``device`` (ids stay on the CPU)."""
        move = lambda t: t.to(device)  # noqa: E731
        return Split(batched.map_tensors(move, self.inputs), batched.map_tensors(move, self.targets), self.ids)


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: a training subset and a held-out split with stable ids.

    Attributes:
        name: registry name, e.g. ``"cifar10"``.
        train: the training subset (the measurement set of the paper's "full batch").
        val: the held-out split; may hold 0 samples.
        num_classes: number of classes C (targets lie in ``[0, C)``); the vocabulary of token data.
        input_shape: shape of one sample, e.g. ``(3, 32, 32)`` or ``(T,)`` (for structured
            inputs: of the first tensor).
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
            if isinstance(split.inputs, torch.Tensor) and tuple(split.inputs.shape[1:]) != tuple(self.input_shape):
                raise ValueError(
                    f"{split_name} inputs have sample shape {tuple(split.inputs.shape[1:])}, "
                    f"expected input_shape {tuple(self.input_shape)}"
                )
        if self.heldout_from == "pool" and len(self.train) and len(self.val):
            overlap = torch.isin(self.train.ids, self.val.ids)
            if bool(overlap.any()):
                raise ValueError("train and val ids overlap although both come from the same pool")


def make_dataset(name: str, *, train: tuple, val: tuple | None = None, num_classes: int,
                 input_shape: tuple[int, ...] | None = None, source: str = "", **record) -> Dataset:
    """A :class:`Dataset` from in-memory ``(inputs, targets)`` pairs, ids ``0 .. N-1`` per split
    (``heldout_from="test"``: the held-out ids index the held-out set): what a loader named by
    import path (``data.name = "package.module:loader"``) returns most easily.

    Args:
        name: the dataset's name (recorded).
        train, val: ``(inputs, targets)`` batched structures (``val`` may be None: no held-out set).
        num_classes: classes (vocabulary) of the targets.
        input_shape: one sample's shape (default: of the first input tensor).
        source: provenance (recorded).
        **record: JSON-able facts recorded as the dataset's ``selection``.
    """
    def split(pair) -> Split:
        inputs, targets = pair
        n = batched.rows(inputs)
        return Split(inputs, targets, torch.arange(n, dtype=torch.int64))

    train_split = split(train)
    first = batched.leaves(train_split.inputs)[0]
    empty = batched.take(train_split.inputs, slice(0, 0)), batched.take(train_split.targets, slice(0, 0))
    return Dataset(name=name, train=train_split, val=split(val) if val is not None else split(empty),
                   num_classes=int(num_classes),
                   input_shape=tuple(input_shape) if input_shape is not None else tuple(first.shape[1:]),
                   normalization={"mode": "none", "reason": "given by the loader"}, source=source or name,
                   heldout_from="test", selection=dict(record))

