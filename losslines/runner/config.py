"""Run configuration: TOML in, typed frozen dataclasses out, every mistake named by its key.

A config is a TOML file with the tables ``[data]``, ``[model]``, ``[train]``, ``[measure]`` and
``[store]`` plus a few top-level keys (``name``, ``seed``, ``device``, ``threads``). Parsing is
strict, unlike the original research code that silently ignored misspelt keys:

* an unknown key is an error that names it and suggests the closest valid key;
* a value of the wrong type is an error that names the key, the expected and the given type;
* an impossible value (a negative learning rate, a fraction above 1, an unknown mode) is an
  error that names the key and the valid range or choices.

All errors are :class:`ConfigError` (a ``ValueError``) with a one-line message; the CLI turns
them into exit code 2. ``--set key=value`` overrides use dotted keys (``train.lr=0.05``) and
TOML literals for values (bare words are taken as strings: ``data.name=mnist``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "MeasureConfig",
    "StoreConfig",
    "RunConfig",
    "load_config",
    "parse_config",
    "parse_size",
    "memory_budget",
    "apply_overrides",
    "config_to_dict",
]


class ConfigError(ValueError):
    """A config value is unknown, mistyped or impossible; the message names the key."""


@dataclass(frozen=True)
class DataConfig:
    """What to train on and what to measure on.

    Attributes:
        name: dataset registry name (``digits``, ``synthetic``, ``cifar10``, ...).
        root: cache directory for downloaded datasets ("" = ``$LOSSLINES_DATA`` or
            ``~/.cache/losslines``).
        fraction: share of the official training split used for training and measurement,
            seeded; 0.08 of CIFAR-10 = 4,000 images.
        n_val: held-out samples drawn (seeded) from the official test split; 0 = no held-out line.
        seed: seed of the subset selection.
        normalize: ``train`` (training-subset statistics for every split), ``per_split`` or ``none``.
        augment: training augmentation (``none`` or ``crop_flip``); measurement data never is.
        download: fetch a missing dataset into ``root`` (offline: a clear error instead).
        options: dataset-specific options (``upsample`` for digits; ``shape``, ``num_classes``,
            ``n_samples`` for synthetic).
    """

    name: str = "digits"
    root: str = ""
    fraction: float = 1.0
    n_val: int = 0
    seed: int = 0
    normalize: Literal["train", "per_split", "none"] = "train"
    augment: Literal["none", "crop_flip"] = "none"
    download: bool = True
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    """The architecture: a registry name (or ``torchvision:NAME``), width multiplier, options."""

    name: str = "small_cnn"
    width: float = 1.0
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    """The training run whose update steps are measured.

    Attributes:
        steps: number of optimizer steps.
        batch_size: mini-batch size B (also the direction batch).
        optimizer: a registered optimizer (``losslines.runner.optimizers``): ``sgd``, ``adam``,
            ``adamw``, or one added with ``register_optimizer``.
        lr: learning rate λ (the base value of the schedule).
        momentum: heavy-ball μ (sgd only).
        nesterov: Nesterov momentum (sgd only; needs ``direction = "step"``).
        weight_decay: L2 / decoupled decay as the optimizer defines it.
        betas: Adam β1, β2.
        lr_schedule: a registered schedule (``losslines.runner.lr_schedules``): ``constant``,
            ``step`` (× ``lr_gamma`` at each of ``lr_milestones``) or ``cosine`` (to 0 over
            ``steps``).
        checkpoint_every: steps between checkpoints (0: none on a step count).
        checkpoint_lines: checkpoint after every step that measured a line, once the line is
            committed (the default: a run killed at any moment, SIGKILL included, resumes having
            lost at most the line in flight).
        checkpoint_minutes: also checkpoint when this much wall time passed since the last one
            (0: never on time). Every run also checkpoints before its first step, on an
            interrupt and at the end; one checkpoint is kept, replaced atomically.
        on_nonfinite: what a diverging run does when its training loss, an update's norm or a
            measured line's loss at s = 0 is NaN or ±inf at step t: ``stop`` (the default: the
            step's line is stored as measured, a checkpoint is saved, the store is closed
            ``failed`` with a ``status_reason`` naming step t and the value, and
            ``losslines run`` exits with code 3) or ``continue`` (the run goes on). Either way
            the values are stored as they are and the store's ``nonfinite_steps`` lists the
            non-finite lines (``runner.nonfinite``).
    """

    steps: int = 100
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    lr_schedule: str = "constant"
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    checkpoint_every: int = 0
    checkpoint_lines: bool = True
    checkpoint_minutes: float = 5.0
    on_nonfinite: Literal["stop", "continue"] = "stop"


@dataclass(frozen=True)
class MeasureConfig:
    """Which steps are measured and how (docs/design.md, "The measurement").

    Attributes:
        direction: ``sgd`` (losslines computes u = −λ·buf itself: the paper's SGD_LS) or
            ``step`` (u = θ_{t+1} − θ_t of the torch optimizer; any optimizer).
        schedule: ``every`` (every ``every``-th step, from ``offset``), ``log`` (``count``
            log-spaced steps) or ``list`` (the steps in ``at``).
        spacing, half_width: the grid, in units of distance along the unit direction.
        max_enlargements: rings of the same spacing measured when the minimum is on the edge.
        bn: ``batch`` (train-mode statistics over groups of ``bn_group`` samples) or
            ``running`` (eval-mode running statistics).
        dropout: ``off`` (dropout is the identity while measuring), ``fixed`` (train-mode
            dropout, one mask per line drawn from the line's seed, the same at every point) or
            ``error`` (a model with active dropout is refused).
        loss: a registered per-sample loss (``losslines.losses``): ``cross_entropy``, ``mse``.
        strategy: a registered evaluation strategy (``engine.strategies``): ``loop`` (one
            forward per point; fastest on CPU), ``vmap`` (``torch.func.vmap`` over chunks of
            points), ``compiled`` (``torch.compile`` of the per-point forward, compiled once per
            run — tens of seconds on CPU, reported as ``compile_seconds`` in the store's
            ``strategy_report`` — and reused for every line; CUDA graphs on a GPU; no train-mode
            dropout) or ``auto`` (times loop and vmap on the first line, keeps the faster,
            records the choice in the store attributes).
        precision: ``fp32`` (default) or ``bf16``: the value forwards run under bfloat16
            autocast (fast on CPUs with AVX-512 BF16 and on GPUs), losses accumulated in float64
            as always, slopes in float32; a float32 model only. Its error against fp32 is
            measured on the first line and stored (``strategy_report.precision_error``) and logged.
        max_memory: memory budget of one evaluation chunk: ``auto`` (half of the free CUDA
            memory on a GPU, 256 MiB on CPU) or a size such as ``"512MiB"``, ``"8GiB"``.
        sample_losses: splits whose per-sample losses are stored (``train``, ``val``, ``batch``).
        sample_dtype: ``float16`` or ``float32``.
        n_train: measured training samples (0 = the whole training subset).
        directions_at: steps at which the "all directions" mode (paper Fig. 8) measures
            ``n_directions`` extra lines from θ_t along fresh mini-batch SGD directions
            (into the store's ``directions/`` group).
        n_directions: M, the number of directions per such step.
        per_step: also measure *every* training step cheaply — the loss and exact slope at
            s = 0 and the loss at the step taken, for every split — into the store's ``steps/``
            group (on scheduled steps taken from the dense line).
        mode: ``inline`` (the run measures its lines as it trains) or ``record`` (the run only
            records what each scheduled line needs — θ_t, the update, the buffers, the batch —
            into a recording at ``store.path``; ``losslines measure RECORDING --out STORE``
            measures the lines later, line-parallel over processes; ``runner.recording``).
        nodes: ``dense`` (every grid point is evaluated) or ``chebyshev`` (reduced evaluation,
            ``engine.reduced``: each interval of the grid is evaluated at ``chebyshev_nodes``
            Chebyshev–Lobatto nodes plus ``check_points`` grid points and reconstructed by
            barycentric interpolation; a line whose error at the check points exceeds
            ``max_interpolation_error`` (mean losses) or ``max_sample_interpolation_error``
            (kept per-sample losses) is measured densely; accuracies are stored only where
            evaluated; the store keeps every line's errors and whether it fell back).
        chebyshev_nodes: nodes per interval (odd: s = 0 is one).
        check_points: grid points per interval evaluated directly to measure the error.
        max_interpolation_error: largest relative error of a mean loss kept as interpolated.
        max_sample_interpolation_error: the same for per-sample losses (relative to
            max(|loss|, mean loss) at the point).
    """

    direction: Literal["sgd", "step"] = "sgd"
    schedule: Literal["every", "log", "list"] = "every"
    every: int = 1
    offset: int = 0
    count: int = 50
    at: list[int] = field(default_factory=list)
    spacing: float = 0.006
    half_width: float = 0.5
    max_enlargements: int = 0
    bn: Literal["batch", "running"] = "batch"
    bn_group: int = 128
    dropout: Literal["off", "fixed", "error"] = "off"
    loss: str = "cross_entropy"
    strategy: str = "loop"
    precision: Literal["fp32", "bf16"] = "fp32"
    max_memory: str = "auto"
    sample_losses: list[str] = field(default_factory=lambda: ["train", "batch"])
    sample_dtype: Literal["float16", "float32"] = "float16"
    n_train: int = 0
    directions_at: list[int] = field(default_factory=list)
    n_directions: int = 0
    per_step: bool = False
    mode: Literal["inline", "record"] = "inline"
    nodes: Literal["dense", "chebyshev"] = "dense"
    chebyshev_nodes: int = 17
    check_points: int = 4
    max_interpolation_error: float = 1e-4
    max_sample_interpolation_error: float = 1e-3


@dataclass(frozen=True)
class StoreConfig:
    """Where and how lines are stored (docs/store-format.md).

    Attributes:
        path: a local path or any fsspec URL (``s3://bucket/runs/{name}.zarr``); ``{name}`` is
            the run's name. The checkpoints go beside it (``<path>.ckpt``).
        storage_options: fsspec options for a URL (credentials, endpoint_url, ...).
        line_chunk, sample_block, max_queued_lines: see ``StoreLayout`` and ``StoreWriter``.
        commit_every: lines per commit (1: every line is visible to readers, and survives a kill,
            as soon as it is written; docs/store-format.md, "Commit protocol").
        tensorboard: a local directory (``{name}`` is the run's name) to which process 0 logs,
            per measured line and split, s_opt, s_opt / direction_norm, update_step / s_opt,
            the parabola fit's MAE and the loss at 0 as TensorBoard scalars at the line's step
            (``runner.tensorboard``; needs ``pip install 'losslines[tensorboard]'``).
            "" (the default): no TensorBoard log.
    """

    path: str = "runs/{name}.zarr"
    storage_options: dict = field(default_factory=dict)
    line_chunk: int = 64
    sample_block: int = 4096
    max_queued_lines: int = 8
    commit_every: int = 1
    tensorboard: str = ""


@dataclass(frozen=True)
class RunConfig:
    """A whole ``losslines run``: top-level keys plus one record per table."""

    name: str = "run"
    seed: int = 0
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    threads: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    store: StoreConfig = field(default_factory=StoreConfig)

    @property
    def store_path(self) -> Path | str:
        """The store path with ``{name}`` filled in: a ``Path``, or the URL of a remote store."""
        loc = self.store_location
        return loc.path if loc.is_local else loc.url

    @property
    def store_location(self):
        """The store's ``losslines.store.location.Location`` (path or URL, storage options)."""
        from losslines.store.location import location

        return location(self.store.path.format(name=self.name), self.store.storage_options or None)

    @property
    def tensorboard_dir(self) -> Path | None:
        """The TensorBoard log directory with ``{name}`` filled in; None when none is asked for."""
        return Path(self.store.tensorboard.format(name=self.name)) if self.store.tensorboard else None


# ---------------------------------------------------------------------------------------------
# Bounds that keep a valid config from crashing the run: the run seed is multiplied by ~10^6 into
# 64-bit generator seeds (runner.seeds); torch aborts the process on absurd thread counts; the
# schedule of lines is a list built before the run starts.
_MAX_SEED = 2**32 - 1
_MAX_THREADS = 1024
_MAX_LINES = 1_000_000

# Value constraints beyond types: key -> (predicate, description of the valid range).
_RULES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "name": (lambda v: bool(v.strip()) and "/" not in v, "a non-empty name without '/'"),
    "seed": (lambda v: 0 <= v <= _MAX_SEED, f"in [0, {_MAX_SEED}]"),
    "threads": (lambda v: 0 <= v <= _MAX_THREADS,
                f"in [0, {_MAX_THREADS}] (0 = the cores this process may use, runner.threads)"),
    "data.name": (lambda v: bool(v.strip()), "a dataset name"),
    "data.fraction": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "data.n_val": (lambda v: v >= 0, ">= 0"),
    "data.seed": (lambda v: v >= 0, ">= 0"),
    "model.name": (lambda v: bool(v.strip()), "a model name"),
    "model.width": (lambda v: 0 < v <= 16, "in (0, 16]"),
    "train.steps": (lambda v: v >= 1, ">= 1"),
    "train.batch_size": (lambda v: v >= 1, ">= 1"),
    "train.lr": (lambda v: 0 < v < 1e3, "in (0, 1000)"),
    "train.momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "train.weight_decay": (lambda v: v >= 0, ">= 0"),
    "train.betas": (lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two numbers in [0, 1)"),
    "train.lr_milestones": (lambda v: all(m >= 1 for m in v) and list(v) == sorted(set(v)),
                            "increasing step numbers >= 1"),
    "train.lr_gamma": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "train.checkpoint_every": (lambda v: v >= 0, ">= 0 (0 = only at the end)"),
    "train.checkpoint_minutes": (lambda v: 0 <= v <= 1e6, ">= 0 (0 = never on time)"),
    "measure.every": (lambda v: v >= 1, ">= 1"),
    "measure.offset": (lambda v: v >= 0, ">= 0"),
    "measure.count": (lambda v: v >= 1, ">= 1"),
    "measure.at": (lambda v: all(s >= 0 for s in v), "step numbers >= 0"),
    "measure.spacing": (lambda v: 0 < v <= 10, "in (0, 10]"),
    "measure.half_width": (lambda v: 0 < v <= 1e3, "in (0, 1000]"),
    "measure.max_enlargements": (lambda v: 0 <= v <= 100, "in [0, 100]"),
    "measure.bn_group": (lambda v: v >= 2, ">= 2 (train-mode BatchNorm needs 2 samples)"),
    "measure.sample_losses": (lambda v: set(v) <= {"train", "val", "batch"} and len(set(v)) == len(v),
                              "distinct entries of 'train', 'val', 'batch'"),
    "measure.n_train": (lambda v: v >= 0, ">= 0 (0 = the whole training subset)"),
    "measure.directions_at": (lambda v: all(s >= 0 for s in v) and list(v) == sorted(set(v)),
                              "increasing step numbers >= 0"),
    "measure.n_directions": (lambda v: 0 <= v <= 4096, "in [0, 4096]"),
    "measure.max_memory": (lambda v: v == "auto" or parse_size(v) is not None,
                           "'auto' or a size like '512MiB' or '8GiB'"),
    "measure.chebyshev_nodes": (lambda v: 3 <= v <= 10_001 and v % 2 == 1, "an odd number in [3, 10001]"),
    "measure.check_points": (lambda v: 1 <= v <= 1000, "in [1, 1000]"),
    "measure.max_interpolation_error": (lambda v: 0 < v <= 1, "a relative error in (0, 1]"),
    "measure.max_sample_interpolation_error": (lambda v: 0 < v <= 1, "a relative error in (0, 1]"),
    "store.path": (lambda v: bool(v.strip()) and _formats_with_name(v), "a path; '{name}' is the only placeholder"),
    "store.line_chunk": (lambda v: 1 <= v <= 65536, "in [1, 65536]"),
    "store.commit_every": (lambda v: v >= 1, ">= 1"),
    "store.sample_block": (lambda v: 1 <= v <= 1 << 20, "in [1, 1048576]"),
    "store.max_queued_lines": (lambda v: 1 <= v <= 4096, "in [1, 4096]"),
    "store.tensorboard": (lambda v: v == "" or (bool(v.strip()) and "://" not in v and _formats_with_name(v)),
                          "a local directory ('{name}' is the only placeholder), or '' for none"),
}


def _optimizer_names() -> tuple[str, ...]:
    from losslines.runner.optimizers import optimizer_names
    return optimizer_names()


def _lr_schedule_names() -> tuple[str, ...]:
    from losslines.runner.lr_schedules import lr_schedule_names
    return lr_schedule_names()


def _strategy_names() -> tuple[str, ...]:
    from losslines.engine.strategies import STRATEGIES
    return tuple(STRATEGIES)


def _loss_names() -> tuple[str, ...]:
    from losslines.losses import loss_names
    return loss_names()


# Keys whose valid values are the names of a registry (read when a config is parsed, so names
# registered by the user's own code are valid too).
_CHOICES: dict[str, typing.Callable[[], tuple[str, ...]]] = {
    "train.optimizer": _optimizer_names,
    "train.lr_schedule": _lr_schedule_names,
    "measure.loss": _loss_names,
    "measure.strategy": _strategy_names,
}


_SIZE_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def _formats_with_name(path: str) -> bool:
    try:
        path.format(name="run")
    except (KeyError, IndexError, ValueError):
        return False
    return True


def parse_size(text: str) -> int | None:
    """``"512MiB"`` -> bytes; None if ``text`` is not a positive size with a binary unit."""
    text = text.strip()
    for unit in sorted(_SIZE_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            number = text[: -len(unit)].strip()
            try:
                value = float(number)
            except ValueError:
                return None
            size = value * _SIZE_UNITS[unit]
            return int(size) if math.isfinite(size) and size >= 1 else None
    return None


def memory_budget(measure: "MeasureConfig") -> int | None:
    """The evaluator's memory budget in bytes (None: the device default)."""
    return None if measure.max_memory == "auto" else parse_size(measure.max_memory)


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "table"}.get(type(value), type(value).__name__)


def _convert(key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against ``annotation`` (resolved type hint); return the typed value."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if not isinstance(value, str) or value not in choices:
            raise ConfigError(f"config key '{key}': {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected a boolean (true/false), got {_type_name(value)} {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {_type_name(value)} {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {_type_name(value)} {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"config key '{key}': expected a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected a string, got {_type_name(value)} {value!r}")
        return value
    if annotation is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a table, got {_type_name(value)} {value!r}")
        return dict(value)
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}': expected an array, got {_type_name(value)} {value!r}")
        return [_convert(f"{key}[{i}]", v, item_type) for i, v in enumerate(value)]
    raise TypeError(f"unsupported config annotation {annotation!r} for {key}")  # a bug, not user input


def _build(cls: type, table: Mapping[str, Any], prefix: str) -> Any:
    """Build dataclass ``cls`` from ``table``, recursing into nested dataclass fields."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in table if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(fields), n=1)
        hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(fields)}"
        raise ConfigError(f"config key {prefix + key!r} is unknown{hint}")  # repr: a key may hold any character
    kwargs = {}
    for name, value in table.items():
        key = prefix + name
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{key}': expected a table [{key}], got {_type_name(value)} {value!r}")
            kwargs[name] = _build(annotation, value, key + ".")
            continue
        typed = _convert(key, value, annotation)
        choices = _CHOICES.get(key)
        if choices is not None and typed not in choices():
            raise ConfigError(f"config key '{key}': {value!r} is not one of {', '.join(map(repr, choices()))}")
        rule = _RULES.get(key)
        if rule is not None and not rule[0](typed):
            raise ConfigError(f"config key '{key}': {value!r} is impossible; expected {rule[1]}")
        kwargs[name] = typed
    return cls(**kwargs)


def _check_consistency(cfg: RunConfig) -> None:
    """Constraints that involve several keys."""
    t, m = cfg.train, cfg.measure
    if m.direction == "sgd" and t.optimizer != "sgd":
        raise ConfigError(
            f"config key 'measure.direction': 'sgd' needs train.optimizer = 'sgd' (got {t.optimizer!r}); "
            "use measure.direction = 'step' for other optimizers")
    if m.direction == "sgd" and t.nesterov:
        raise ConfigError("config key 'train.nesterov': Nesterov needs measure.direction = 'step'")
    if t.optimizer != "sgd" and (t.momentum or t.nesterov):
        raise ConfigError(f"config key 'train.momentum': only meaningful for train.optimizer = 'sgd' (got {t.optimizer!r})")
    if t.nesterov and t.momentum == 0:
        raise ConfigError("config key 'train.nesterov': Nesterov momentum needs train.momentum > 0")
    if t.lr_schedule == "step" and not t.lr_milestones:
        raise ConfigError("config key 'train.lr_milestones': lr_schedule = 'step' needs at least one milestone")
    if t.lr_milestones and t.lr_schedule != "step":
        raise ConfigError("config key 'train.lr_milestones': only used with train.lr_schedule = 'step'")
    if m.schedule == "list" and not m.at:
        raise ConfigError("config key 'measure.at': schedule = 'list' needs at least one step")
    if m.schedule == "list" and max(m.at) >= t.steps:
        raise ConfigError(f"config key 'measure.at': step {max(m.at)} is past the run (train.steps = {t.steps})")
    if m.schedule == "log" and m.count > t.steps:
        raise ConfigError(f"config key 'measure.count': {m.count} log-spaced lines need train.steps >= {m.count}")
    if m.directions_at and m.n_directions < 2:
        raise ConfigError("config key 'measure.n_directions': measure.directions_at needs n_directions >= 2")
    if m.n_directions and not m.directions_at:
        raise ConfigError("config key 'measure.directions_at': n_directions > 0 needs the steps to measure them at")
    if m.directions_at and max(m.directions_at) >= t.steps:
        raise ConfigError(f"config key 'measure.directions_at': step {max(m.directions_at)} is past the run "
                          f"(train.steps = {t.steps})")
    if m.mode == "record" and (m.per_step or m.directions_at):
        key = "per_step" if m.per_step else "directions_at"
        raise ConfigError(f"config key 'measure.{key}': measure.mode = 'record' records the scheduled lines only; "
                          "per-step values and the all-directions mode need measure.mode = 'inline'")
    if cfg.store.tensorboard and m.mode == "record":
        raise ConfigError("config key 'store.tensorboard': a run with measure.mode = 'record' measures no line to log; "
                          "log the lines of an inline run")
    if cfg.store.tensorboard and cfg.tensorboard_dir == Path(cfg.store.path.format(name=cfg.name)):
        raise ConfigError("config key 'store.tensorboard': the log directory must not be the store itself")
    if m.schedule == "every" and len(range(m.offset, t.steps, m.every)) > _MAX_LINES:
        raise ConfigError(f"config key 'measure.every': {len(range(m.offset, t.steps, m.every)):,} lines planned "
                          f"(train.steps = {t.steps}), more than {_MAX_LINES:,}; raise measure.every")
    if m.schedule == "log" and m.count > _MAX_LINES:
        raise ConfigError(f"config key 'measure.count': {m.count:,} lines planned, more than {_MAX_LINES:,}; "
                          "lower measure.count")
    if m.half_width < m.spacing:
        raise ConfigError(f"config key 'measure.half_width': {m.half_width} is below measure.spacing = {m.spacing}")
    if (m.half_width / m.spacing) * (m.max_enlargements + 1) > 100_000:
        raise ConfigError("config key 'measure.spacing': the widest grid (enlargement rings included) would have "
                          "more than 200,000 points; widen the spacing or allow fewer enlargements")
    if m.nodes == "chebyshev" and m.chebyshev_nodes + m.check_points >= 2 * int(
            m.half_width / m.spacing * (1 + 1e-9)) + 1:
        raise ConfigError(f"config key 'measure.chebyshev_nodes': {m.chebyshev_nodes} nodes + {m.check_points} check "
                          "points are not fewer than the grid core's points; lower them or use measure.nodes = 'dense'")
    if "val" in m.sample_losses and cfg.data.n_val == 0:
        raise ConfigError("config key 'measure.sample_losses': 'val' is listed but data.n_val = 0 (no held-out split)")
    if m.bn == "batch" and m.bn_group > t.batch_size * 64:
        raise ConfigError(f"config key 'measure.bn_group': {m.bn_group} is implausibly large for batch {t.batch_size}")


def _check_sources(cfg: RunConfig) -> None:
    """The dataset and the model exist: a registry name, or an importable ``package.module:name``
    (imported here, as the run would); a dataset that is not to be downloaded has its folder."""
    from losslines._imports import HF_PREFIX, is_import_path, load_object
    from losslines.data.registry import dataset_names
    from losslines.data.sources import IMAGE_SOURCES
    from losslines.models.registry import model_names
    from losslines.models.torchvision_models import PREFIX as TV_PREFIX, classification_names

    for key, name, names, what in (("data.name", cfg.data.name, dataset_names(), "dataset"),
                                   ("model.name", cfg.model.name, model_names(), "model")):
        if is_import_path(name):
            try:
                load_object(name, what)
            except ValueError as err:
                raise ConfigError(f"config key '{key}': {err}") from None
        elif what == "model" and name.startswith(TV_PREFIX):
            try:
                valid = classification_names()
            except ImportError:
                continue  # building the model says how to install torchvision
            if name[len(TV_PREFIX):] not in valid:
                raise ConfigError(f"config key '{key}': {name!r} is not a torchvision classification model; "
                                  f"valid names: {', '.join(valid)}")
        elif what == "model" and name.startswith(HF_PREFIX) and name[len(HF_PREFIX):].strip():
            continue  # a HuggingFace model type: checked when built (transformers is optional)
        elif name not in names or "<" in name:  # (model_names() lists the forms above as "<...>")
            raise ConfigError(f"config key '{key}': unknown {what} {name!r}; valid names: {', '.join(names)}")
    root = Path(cfg.data.root).expanduser()
    if cfg.data.root and not cfg.data.download and cfg.data.name in IMAGE_SOURCES and not root.is_dir():
        raise ConfigError(f"config key 'data.root': {str(root)!r} does not exist and data.download = false; "
                          f"point data.root at the folder that holds {cfg.data.name}, or set data.download = true")


def parse_config(table: Mapping[str, Any]) -> RunConfig:
    """Validate a parsed TOML table into a :class:`RunConfig`.

    Raises:
        ConfigError: naming the first unknown, mistyped or impossible key.
    """
    cfg = _build(RunConfig, table, "")
    _check_consistency(cfg)
    _check_sources(cfg)
    return cfg


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word such as mnist: a string


def apply_overrides(table: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides (dotted keys, TOML values) to a raw config table, in place.

    Raises:
        ConfigError: for a malformed override (no ``=``, empty key, a key below a non-table).
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} is malformed; write --set section.key=value")
        node = table
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: config key '{part}' is not a table")
            node = child
        node[parts[-1]] = _parse_value(text.strip())
    return table


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a TOML config file, apply ``--set`` overrides, validate.

    Raises:
        ConfigError: unreadable or invalid TOML, or any invalid key (named in the message).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        from losslines.runner.shipped import missing_hint

        raise ConfigError(f"config file {path} does not exist{missing_hint()}") from None
    except OSError as err:
        raise ConfigError(f"config file {path} cannot be read: {err.strerror}") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    apply_overrides(table, overrides)
    return parse_config(table)


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The resolved config as a plain, JSON- and TOML-serialisable dict."""
    return dataclasses.asdict(cfg)
