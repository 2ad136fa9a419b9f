"""Batched structures, the one torch utility below every layer: model inputs, targets and outputs
as a tensor, a tuple/list or a dict of tensors, every tensor batched along dim 0.

A model that takes one tensor is called ``model(x)``; a tuple or list is passed positionally,
``model(*x)``; a dict as keywords, ``model(**x)`` (e.g. ``{"input_ids", "attention_mask"}``). Outputs
may be any structure torch's pytree utilities know (tensors, tuples, lists, dicts, and the
output objects of HuggingFace ``transformers``). Slicing into BatchNorm groups and memory chunks,
device moves and repetition over points act on every tensor of a structure alike.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Union

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils import _pytree as pytree

Batched = Union[Tensor, tuple, list, Mapping[str, Any]]


def leaves(x: Any) -> list[Tensor]:
    """The tensors of a structure, in pytree order.

    Raises:
        ValueError: a leaf that is not a tensor (inputs and targets hold tensors only).
    """
    flat = pytree.tree_leaves(x)
    bad = [type(v).__name__ for v in flat if not isinstance(v, Tensor)]
    if bad or not flat:
        raise ValueError(f"expected a tensor, or a tuple/list/dict of tensors batched along dim 0; got "
                         f"{'no tensors' if not flat else 'leaves of type ' + ', '.join(sorted(set(bad)))}")
    return flat


def rows(x: Any) -> int:
    """The batch size of a structure: the common length of dim 0 of its tensors.

    Raises:
        ValueError: no tensors, a 0-d tensor, or tensors of different batch sizes.
    """
    sizes = set()
    for t in leaves(x):
        if t.dim() == 0:
            raise ValueError("a batched tensor needs a batch dimension (dim 0); got a 0-d tensor")
        sizes.add(t.shape[0])
    if len(sizes) != 1:
        raise ValueError(f"the tensors of a batched structure must share dim 0, got sizes {sorted(sizes)}")
    return sizes.pop()


def map_tensors(fn: Callable[[Tensor], Tensor], x: Any) -> Any:
    """``fn`` applied to every tensor of a structure (the structure is kept)."""
    return pytree.tree_map(fn, x)


def take(x: Any, index: slice | Tensor) -> Any:
    """Rows ``index`` (a slice or an index tensor) of every tensor of a structure."""
    return pytree.tree_map(lambda t: t[index], x)


def to_device(x: Any, device: torch.device, float_dtype: torch.dtype) -> Any:
    """Every tensor on ``device``; floating tensors in ``float_dtype`` (the model's), others kept."""
    return pytree.tree_map(lambda t: t.to(device=device, dtype=float_dtype if t.is_floating_point() else t.dtype), x)


def repeat_rows(x: Any, k: int) -> Any:
    """Every tensor repeated ``k`` times along dim 0 (line-major: rows of point 0, then point 1...)."""
    return pytree.tree_map(lambda t: t.repeat(k, *([1] * (t.dim() - 1))), x)


def stack(structures: list[Any]) -> Any:
    """Structures of the same shape stacked leaf by leaf along a new dim 0."""
    flat, spec = zip(*(pytree.tree_flatten(s) for s in structures))
    if any(s != spec[0] for s in spec):
        raise ValueError("the model returned outputs of different structure at different points")
    return pytree.tree_unflatten([torch.stack(column) for column in zip(*flat)], spec[0])


def flatten_points(out: Any, k: int, n: int) -> Any:
    """``[k, n, ...]`` outputs of ``k`` points as line-major ``[k·n, ...]`` (every tensor).

    Raises:
        ValueError: a tensor that is not ``[k, n, ...]``.
    """
    def merge(t: Tensor) -> Tensor:
        if t.dim() < 2 or tuple(t.shape[:2]) != (k, n):
            raise ValueError(f"outputs of {k} points x {n} samples must be [{k}, {n}, ...], got {tuple(t.shape)}")
        return t.reshape(k * n, *t.shape[2:])

    return pytree.tree_map(merge, out)


def equal(a: Any, b: Any) -> bool:
    """Are two structures equal: the same structure and every tensor bit for bit, NaN where the
    other has NaN (a diverged model outputs NaN, the same at every evaluation)? (Leaves that are
    not tensors, e.g. a cache object a model returns, are not compared.)"""
    fa, sa = pytree.tree_flatten(a)
    fb, sb = pytree.tree_flatten(b)
    if sa != sb:
        return False
    pairs = [(u, v) for u, v in zip(fa, fb) if isinstance(u, Tensor) or isinstance(v, Tensor)]
    return all(isinstance(u, Tensor) and isinstance(v, Tensor) and _equal_tensors(u, v) for u, v in pairs)


def _equal_tensors(u: Tensor, v: Tensor) -> bool:
    if torch.equal(u, v):
        return True
    if u.shape != v.shape or u.dtype != v.dtype or not (u.is_floating_point() or u.is_complex()):
        return False
    return bool(((u == v) | (u.isnan() & v.isnan())).all())


def numel_per_row(x: Any) -> int:
    """Elements per row (sample) over every tensor of a ``[n, ...]`` structure."""
    return sum(int(t[0].numel()) if t.dim() else 1 for t in pytree.tree_leaves(x) if isinstance(t, Tensor))


def call(model: nn.Module, x: Any, params_and_buffers: tuple[Mapping[str, Tensor], Mapping[str, Tensor]] | None = None):
    """The model's forward on ``x``: ``model(x)``, ``model(*x)`` or ``model(**x)``; with
    ``params_and_buffers``, through ``torch.func.functional_call`` on those values."""
    args, kwargs = _arguments(x)
    if params_and_buffers is None:
        return model(*args, **kwargs)
    return functional_call(model, params_and_buffers, args, kwargs)


def _arguments(x: Any) -> tuple[tuple, dict]:
    if isinstance(x, Tensor):
        return (x,), {}
    if isinstance(x, (tuple, list)):
        return tuple(x), {}
    if isinstance(x, Mapping):
        return (), dict(x)
    raise ValueError(f"model inputs must be a tensor, a tuple/list or a dict of tensors, got {type(x).__name__}")
