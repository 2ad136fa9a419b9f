"""Config fuzzing: generated broken configs are refused by ``losslines run`` like a user error.

Each case starts from the valid tiny config (``tiny_config`` in conftest, every key written out)
and corrupts one or a few keys: a value of the wrong type, a negative, zero or out-of-range size,
an unknown key (a near-miss typo, a key of another table, any text) at the top level or in a
table, a grid or a schedule of lines too large to allocate, NaN / ±inf, an empty string, a value
outside an enum or registry, a dataset or model factory that cannot be imported, a dataset folder
or config file that does not exist. The TOML file is run in-process through
``losslines.cli.main(["-q", "run", PATH])`` and must give:

* exit code 2 and exactly one stderr line, ``losslines: error: ...``, with no traceback;
* the offending key in that line (``'train.steps'``; an unknown key as its repr, ``'train.lrr'``);
* the refusal from ``load_config`` itself, i.e. before the run is entered, so before any dataset
  is loaded or model built (the unknown dataset and model *options* are the exception: the
  registries check those when building, after the config and before any store: see
  ``test_unknown_dataset_or_model_option_exits_2_naming_it``);
* nothing beside the config file: no store, no ``.ckpt``.

A config the validation wrongly accepts must not train for hours (a huge ``train.steps``): the
run is a stub that fails at once, except where a case is meant to reach it.

Reproducible (``derandomize=True``); ``test_at_least_200_generated_configs_ran`` counts the cases
(``-s`` prints the count per test).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import io
import math
import os
import tempfile
import tomllib
import typing
from collections import Counter
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import losslines.runner.config as config_mod
from losslines.cli import main
from losslines.runner.config import ConfigError, RunConfig, config_to_dict, load_config, parse_config

CASES: Counter[str] = Counter()  # generated configs run, per test
FUZZ_TESTS = ("wrong_type", "bad_size", "unknown_key", "huge", "nonfinite", "empty_string", "bad_choice",
              "missing_file", "several")

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.filter_too_much, HealthCheck.data_too_large])


# ---------------------------------------------------------------------------------------------
# The keys of a config, from the dataclasses: dotted key -> kind.
def _kind(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "choice"
    if origin is list:
        return f"list[{typing.get_args(annotation)[0].__name__}]"
    if annotation is dict or origin is dict:
        return "dict"
    if dataclasses.is_dataclass(annotation):
        return "table"
    return annotation.__name__


def _catalogue(cls=RunConfig, prefix="") -> dict[str, str]:
    keys = {}
    for name, annotation in typing.get_type_hints(cls).items():
        keys[prefix + name] = _kind(annotation)
        if dataclasses.is_dataclass(annotation):
            keys.update(_catalogue(annotation, f"{prefix}{name}."))
    return keys


KEYS = _catalogue()
TABLES = [k for k, kind in KEYS.items() if kind == "table"]
FIELDS = {table: [k.rpartition(".")[2] for k in KEYS if k.rpartition(".")[0] == table] for table in ["", *TABLES]}


def _literal_choices() -> dict[str, tuple[str, ...]]:
    out = {}
    for table in ["", *TABLES]:
        cls = RunConfig if not table else typing.get_type_hints(RunConfig)[table]
        for name, annotation in typing.get_type_hints(cls).items():
            if typing.get_origin(annotation) is typing.Literal:
                out[(table + "." if table else "") + name] = typing.get_args(annotation)
    return out


CHOICES = _literal_choices()


def _registry_names() -> dict[str, tuple[str, ...]]:
    from losslines.data.registry import dataset_names
    from losslines.engine.strategies import STRATEGIES
    from losslines.losses import loss_names
    from losslines.models.registry import model_names
    from losslines.runner.lr_schedules import lr_schedule_names
    from losslines.runner.optimizers import optimizer_names

    return {"train.optimizer": optimizer_names(), "train.lr_schedule": lr_schedule_names(),
            "measure.loss": loss_names(), "measure.strategy": tuple(STRATEGIES), "data.name": dataset_names(),
            "model.name": model_names()}


VALID_NAMES = {**CHOICES, **_registry_names()}  # key -> its valid values (enums and registries)
INT64 = (-(2**63), 2**63 - 1)  # TOML integers


# ---------------------------------------------------------------------------------------------
# TOML out (every key quoted, every string escaped; conftest's dump_toml is for plain tables).
def _toml_string(text: str) -> str:
    escaped = "".join('\\"' if c == '"' else "\\\\" if c == "\\" else f"\\u{ord(c):04x}"
                      if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text)
    return f'"{escaped}"'


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else {math.inf: "inf", -math.inf: "-inf"}.get(value, repr(value))
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def to_toml(table: dict) -> str:
    lines = [f"{_toml_string(k)} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for key, value in table.items():
        if isinstance(value, dict):
            lines.append(f"[{_toml_string(key)}]")
            lines += [f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN (the TOML round trip of a case)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------------------------------------
# Running a case.
@dataclasses.dataclass
class Outcome:
    code: int
    err: str
    out: str
    parse_error: BaseException | None  # what load_config raised, if it did
    left: list[str]  # what the run left in its folder beside the config file


def _accepted(*args, **kwargs):
    raise AssertionError("the config was accepted: losslines.runner.driver.run was entered")


def run_case(table: dict, config_name: str | None = None, *, enter_run: bool = False) -> Outcome:
    """Write ``table`` (its ``store.path`` moved into a fresh folder) and ``losslines -q run`` it.

    Unless ``enter_run``, the run itself is a stub that fails: a config the validation wrongly
    accepts ends as exit 1 at once instead of training (a huge ``train.steps`` would run for hours).
    """
    with tempfile.TemporaryDirectory(prefix="losslines-fuzz-") as tmp:
        tmp = Path(tmp)
        table = copy.deepcopy(table)
        if isinstance(table.get("store"), dict) and table["store"].get("path") == "PLACEHOLDER":
            table["store"]["path"] = str(tmp / "store.zarr")
        path = tmp / "config.toml"
        text = to_toml(table)
        assert _same(tomllib.loads(text), table), text  # the file holds exactly the case
        path.write_text(text, encoding="utf-8")
        raised: list[BaseException] = []
        real_load = config_mod.load_config

        def spy(*args, **kwargs):
            try:
                return real_load(*args, **kwargs)
            except BaseException as err:
                raised.append(err)
                raise

        err, out = io.StringIO(), io.StringIO()
        target = str(path) if config_name is None else str(tmp / config_name)
        with contextlib.ExitStack() as stack:
            stack.enter_context(mock.patch.object(config_mod, "load_config", spy))
            if not enter_run:
                stack.enter_context(mock.patch("losslines.runner.driver.run", _accepted))
            stack.enter_context(contextlib.redirect_stderr(err))
            stack.enter_context(contextlib.redirect_stdout(out))
            code = main(["-q", "run", target])
        left = sorted(p for p in os.listdir(tmp) if p != "config.toml")
    return Outcome(code, err.getvalue(), out.getvalue(), raised[0] if raised else None, left)


def assert_refused(outcome: Outcome, names: list[str], *, by_parse: bool = True) -> None:
    """Exit 2, one stderr line naming one of ``names``, no traceback, nothing written."""
    report = f"exit {outcome.code}; stderr {outcome.err!r}; stdout {outcome.out!r}; left {outcome.left}"
    assert outcome.code == 2, report
    lines = outcome.err.strip().splitlines()
    assert len(lines) == 1, report
    assert lines[0].startswith("losslines: error: "), report
    assert "Traceback" not in outcome.err, report
    assert any(name in lines[0] for name in names), f"none of {names} named: {report}"
    assert outcome.left == [], report
    if by_parse:
        assert isinstance(outcome.parse_error, ConfigError), f"not refused by load_config: {report}"


def key_named(key: str) -> str:
    """How a message names a known key (and its list items: ``'train.betas[0]'``)."""
    return f"'{key}"


def _set(table: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        table = table[part]
    table[leaf] = value


@pytest.fixture(scope="module")
def base(tiny_config, tmp_path_factory) -> dict:
    """The valid tiny config with every key written out; its store goes into each case's folder."""
    table = config_to_dict(tiny_config(tmp_path_factory.mktemp("fuzz-base")))
    table["store"]["path"] = "PLACEHOLDER"
    return table


@pytest.fixture(scope="module", autouse=True)
def report_count():
    yield
    print(f"\nconfig fuzz: {sum(CASES.values())} generated configs ({dict(CASES)})")


def test_the_base_config_is_valid_and_round_trips(base, tmp_path):
    path = tmp_path / "base.toml"
    table = copy.deepcopy(base)
    table["store"]["path"] = str(tmp_path / "s.zarr")
    path.write_text(to_toml(table))
    assert load_config(path) == parse_config(table)
    assert set(KEYS) >= {"train.steps", "measure.spacing", "store.line_chunk", "data.root"}


# ---------------------------------------------------------------------------------------------
# Strategies: each gives (key, value) pairs or whole corruptions (table edit, names expected).
scalars = st.one_of(st.integers(*INT64), st.floats(allow_nan=False), st.text(max_size=8), st.booleans())
datetimes = st.datetimes(min_value=datetime.datetime(1900, 1, 1), max_value=datetime.datetime(2100, 1, 1))
small_lists = st.lists(scalars, max_size=3)
small_dicts = st.dictionaries(st.text(min_size=1, max_size=5), scalars, min_size=0, max_size=2)
non_integral = st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: not v.is_integer())

WRONG = {  # kind -> values of another type
    "int": st.one_of(st.text(max_size=8), st.floats(allow_nan=False), st.booleans(), small_lists, small_dicts,
                     datetimes),
    "float": st.one_of(st.text(max_size=8), st.booleans(), small_lists, small_dicts, datetimes, st.dates()),
    "bool": st.one_of(st.integers(*INT64), st.floats(allow_nan=False), st.text(max_size=8), small_lists,
                      small_dicts),
    "str": st.one_of(st.integers(*INT64), st.floats(allow_nan=False), st.booleans(), small_lists, small_dicts,
                     datetimes),
    "list[int]": st.one_of(st.integers(*INT64), st.text(max_size=8), small_dicts,
                           st.lists(st.one_of(st.text(max_size=4), non_integral, st.booleans()),
                                    min_size=1, max_size=3)),
    "list[float]": st.one_of(st.floats(allow_nan=False), st.text(max_size=8), st.booleans(), small_dicts,
                             st.lists(st.one_of(st.text(max_size=4), st.booleans(), small_lists),
                                      min_size=1, max_size=3)),
    "list[str]": st.one_of(st.text(max_size=8), st.integers(*INT64), small_dicts,
                           st.lists(st.one_of(st.integers(*INT64), st.booleans(), st.floats(allow_nan=False)),
                                    min_size=1, max_size=3)),
    "dict": st.one_of(st.integers(*INT64), st.text(max_size=8), st.booleans(), small_lists, datetimes),
    "table": st.one_of(st.integers(*INT64), st.text(max_size=8), st.booleans(), small_lists),
}
WRONG["choice"] = WRONG["str"]


@st.composite
def wrong_types(draw):
    key = draw(st.sampled_from(sorted(KEYS)))
    return key, draw(WRONG[KEYS[key]])


def _ints_below(minimum: int):
    return st.integers(INT64[0], minimum - 1)


def _ints_outside(lo: int, hi: int):
    return st.one_of(st.integers(INT64[0], lo - 1), st.integers(hi + 1, INT64[1]))


def _floats_at_most(value: float):
    return st.floats(max_value=value, allow_nan=False, allow_infinity=False)


def _floats_above(value: float):
    return st.floats(min_value=value, exclude_min=True, allow_nan=False, allow_infinity=False)


BAD_SIZES = {  # key -> values its range refuses (zero and negative sizes first of all)
    "seed": _ints_outside(0, 2**32 - 1),
    "threads": _ints_outside(0, 1024),
    "data.fraction": st.one_of(_floats_at_most(0.0), _floats_above(1.0)),
    "data.n_val": _ints_below(0),
    "data.seed": _ints_below(0),
    "model.width": st.one_of(_floats_at_most(0.0), _floats_above(16.0), st.integers(INT64[0], 0)),
    "train.steps": _ints_below(1),
    "train.batch_size": _ints_below(1),
    "train.lr": st.one_of(_floats_at_most(0.0), st.floats(min_value=1e3, allow_nan=False, allow_infinity=False)),
    "train.momentum": st.one_of(st.floats(max_value=0.0, exclude_max=True, allow_nan=False, allow_infinity=False),
                                st.floats(min_value=1.0, allow_nan=False, allow_infinity=False)),
    "train.weight_decay": st.floats(max_value=0.0, exclude_max=True, allow_nan=False, allow_infinity=False),
    "train.lr_gamma": st.one_of(_floats_at_most(0.0), _floats_above(1.0)),
    "train.checkpoint_every": _ints_below(0),
    "train.checkpoint_minutes": st.one_of(st.floats(max_value=0.0, exclude_max=True, allow_nan=False,
                                                    allow_infinity=False), _floats_above(1e6)),
    "measure.every": _ints_below(1),
    "measure.offset": _ints_below(0),
    "measure.count": _ints_below(1),
    "measure.spacing": st.one_of(_floats_at_most(0.0), _floats_above(10.0)),
    "measure.half_width": st.one_of(_floats_at_most(0.0), _floats_above(1e3)),
    "measure.max_enlargements": _ints_outside(0, 100),
    "measure.bn_group": _ints_below(2),
    "measure.n_train": _ints_below(0),
    "measure.n_directions": _ints_outside(0, 4096),
    "store.line_chunk": _ints_outside(1, 65536),
    "store.sample_block": _ints_outside(1, 1 << 20),
    "store.max_queued_lines": _ints_outside(1, 4096),
    "store.commit_every": _ints_below(1),
}


@st.composite
def bad_sizes(draw):
    key = draw(st.sampled_from(sorted(BAD_SIZES)))
    return key, draw(BAD_SIZES[key])


def _typos(word: str) -> list[str]:
    """Near misses of ``word``: a letter dropped, doubled, swapped with the next, changed; case, dash."""
    out = {word[:i] + word[i + 1:] for i in range(len(word))}
    out |= {word[:i] + word[i] + word[i:] for i in range(len(word))}
    out |= {word[:i] + word[i + 1] + word[i] + word[i + 2:] for i in range(len(word) - 1)}
    out |= {word[:i] + "x" + word[i + 1:] for i in range(len(word))}
    out |= {word.upper(), word.capitalize(), word.replace("_", "-"), word + "s", " " + word, word + " "}
    return sorted(t for t in out if t)


@st.composite
def unknown_keys(draw):
    """(table, unknown key, value): a near-miss typo, a key of another table, an identifier, any text."""
    table = draw(st.sampled_from(["", *TABLES]))
    valid = set(FIELDS[table])
    elsewhere = sorted({f for t, fs in FIELDS.items() if t != table for f in fs} - valid)
    word = st.sampled_from(sorted(valid))
    key = draw(st.one_of(
        word.flatmap(lambda w: st.sampled_from(_typos(w))),
        st.sampled_from(elsewhere),
        st.from_regex(r"[a-z_][a-z0-9_]{0,14}", fullmatch=True),
        st.text(min_size=1, max_size=10),
    ).filter(lambda k: k not in valid))
    value = draw(st.one_of(scalars, small_dicts if not table else scalars))
    return table, key, value


@st.composite
def huge_plans(draw):
    """Measurement plans too large to allocate: grids of millions of points, or millions of lines."""
    kind = draw(st.sampled_from(["grid", "every", "log"]))
    if kind == "grid":  # (half_width / spacing) * (max_enlargements + 1) points per side > 100,000
        enlargements = draw(st.integers(0, 100))
        half_width = draw(st.floats(1e-3, 1e3))
        ratio = draw(st.floats(1.0001e5, 1e12))
        spacing = half_width * (enlargements + 1) / ratio
        return {"measure.half_width": half_width, "measure.spacing": spacing,
                "measure.max_enlargements": enlargements}, "measure.spacing"
    steps = draw(st.integers(10**7, INT64[1]))
    if kind == "every":
        every = draw(st.integers(1, max(1, steps // 1_000_001)))
        return {"train.steps": steps, "measure.every": every, "measure.offset": 0}, "measure.every"
    count = draw(st.integers(1_000_001, min(steps, 2**40)))
    return {"train.steps": steps, "measure.schedule": "log", "measure.count": count}, "measure.count"


FLOAT_KEYS = sorted(k for k, kind in KEYS.items() if kind in ("float", "int"))
EMPTY_INVALID = sorted({"name", "data.name", "model.name", "train.optimizer", "train.lr_schedule", "measure.loss",
                        "measure.strategy", "measure.max_memory", "store.path", *CHOICES})


@st.composite
def bad_choices(draw):
    key = draw(st.sampled_from(sorted(VALID_NAMES)))
    valid = [v for v in VALID_NAMES[key] if "<" not in v]
    value = draw(st.one_of(
        st.sampled_from(valid).flatmap(lambda v: st.sampled_from(_typos(v))),
        st.text(min_size=1, max_size=12),
    ).filter(lambda v: ":" not in v and v not in valid))  # ':': an import path (test_missing_module_...)
    return key, value


IMAGE_DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist", "svhn")
identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@st.composite
def missing_files(draw):
    """(edit of the table, names the error may give, config file name or None)."""
    kind = draw(st.sampled_from(["module", "attribute", "data_root", "config"]))
    key = draw(st.sampled_from(["model.name", "data.name"]))
    if kind == "module":  # no such module: 'nopkg_x.y:factory'
        parts = draw(st.lists(identifiers, min_size=1, max_size=3))
        name = "nopkg_" + ".".join(parts) + ":" + draw(identifiers)
        return {key: name}, [key_named(key)], None
    if kind == "attribute":  # an importable module without that attribute
        module = draw(st.sampled_from(["losslines.models", "losslines.data", "json", "math", "torch.nn"]))
        return {key: f"{module}:no_such_{draw(identifiers)}"}, [key_named(key)], None
    if kind == "data_root":
        root = str(Path(tempfile.gettempdir()) / "losslines-fuzz-no-such-dir" / draw(identifiers))
        return ({"data.name": draw(st.sampled_from(IMAGE_DATASETS)), "data.root": root, "data.download": False},
                [key_named("data.root")], None)
    name = draw(identifiers.map(lambda n: "no_" + n)) + draw(st.sampled_from([".toml", ".tml", "", ".TOML"]))
    return {}, ["does not exist"], name


# ---------------------------------------------------------------------------------------------
# The fuzz tests.
def _apply(base: dict, edits: dict) -> dict:
    table = copy.deepcopy(base)
    for key, value in edits.items():
        _set(table, key, value)
    return table


@settings(FUZZ, max_examples=60)
@given(case=wrong_types())
def test_wrong_type_exits_2_naming_the_key(base, case):
    CASES["wrong_type"] += 1
    key, value = case
    assert_refused(run_case(_apply(base, {key: value})), [key_named(key)])


@settings(FUZZ, max_examples=60)
@given(case=bad_sizes())
def test_negative_zero_or_out_of_range_size_exits_2_naming_the_key(base, case):
    CASES["bad_size"] += 1
    key, value = case
    assert_refused(run_case(_apply(base, {key: value})), [key_named(key)])


@settings(FUZZ, max_examples=45)
@given(case=unknown_keys())
def test_unknown_key_exits_2_naming_it(base, case):
    CASES["unknown_key"] += 1
    table_name, key, value = case
    table = copy.deepcopy(base)
    (table[table_name] if table_name else table)[key] = value
    dotted = f"{table_name}.{key}" if table_name else key
    assert_refused(run_case(table), [repr(dotted)])


@settings(FUZZ, max_examples=20)
@given(case=huge_plans())
def test_huge_grid_or_schedule_is_refused_before_allocating(base, case):
    CASES["huge"] += 1
    edits, key = case
    outcome = run_case(_apply(base, edits))
    assert_refused(outcome, [key_named(key)])
    assert "more than" in outcome.err, outcome.err  # the limit, and how to stay below it:
    assert {"measure.spacing": "widen the spacing", "measure.every": "raise measure.every",
            "measure.count": "lower measure.count"}[key] in outcome.err, outcome.err


@settings(FUZZ, max_examples=20)
@given(key=st.sampled_from(FLOAT_KEYS + ["train.betas"]), value=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_nan_or_inf_exits_2_naming_the_key(base, key, value):
    CASES["nonfinite"] += 1
    table = _apply(base, {key: [0.9, value] if key == "train.betas" else value})
    assert_refused(run_case(table), [key_named(key)])


@settings(FUZZ, max_examples=20)
@given(key=st.sampled_from(EMPTY_INVALID), value=st.sampled_from(["", " ", "\t", "  \n "]))
def test_empty_string_exits_2_naming_the_key(base, key, value):
    CASES["empty_string"] += 1
    assert_refused(run_case(_apply(base, {key: value})), [key_named(key)])


@settings(FUZZ, max_examples=30)
@given(case=bad_choices())
def test_value_outside_the_choices_exits_2_naming_the_key(base, case):
    CASES["bad_choice"] += 1
    key, value = case
    assert_refused(run_case(_apply(base, {key: value})), [key_named(key)])


@settings(FUZZ, max_examples=25)
@given(case=missing_files())
def test_missing_module_folder_or_config_exits_2(base, case):
    CASES["missing_file"] += 1
    edits, names, config_name = case
    outcome = run_case(_apply(base, edits), config_name=config_name)
    assert_refused(outcome, names)
    if config_name is not None:
        assert config_name in outcome.err


@settings(FUZZ, max_examples=20)
@given(cases=st.lists(st.one_of(wrong_types(), bad_sizes()), min_size=2, max_size=3, unique_by=lambda c: c[0]),
       extra=st.none() | unknown_keys())
def test_several_mistakes_exit_2_naming_one_of_them(base, cases, extra):
    CASES["several"] += 1
    table, names = copy.deepcopy(base), []
    for key, value in cases:
        parent = table
        for part in key.split(".")[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict):  # not below a table an earlier mistake replaced
            parent[key.rpartition(".")[2]] = value
            names.append(key_named(key))
    if extra is not None and isinstance(table.get(extra[0], table) if extra[0] else table, dict):
        (table[extra[0]] if extra[0] else table)[extra[1]] = extra[2]
        names.append(repr(f"{extra[0]}.{extra[1]}" if extra[0] else extra[1]))
    assert_refused(run_case(table), names)


def test_at_least_200_generated_configs_ran():
    """Runs after the fuzz tests above (file order); skipped when some were deselected."""
    if set(CASES) != set(FUZZ_TESTS):
        pytest.skip(f"only {sorted(CASES)} of the fuzz tests ran")
    assert sum(CASES.values()) >= 200, CASES


# ---------------------------------------------------------------------------------------------
# Options are forwarded to the dataset and model registries, which check them when building
# (after the config is parsed, before any store exists): still one line naming the option.
@settings(FUZZ, max_examples=6)
@given(where=st.sampled_from(["data", "model"]), option=st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True),
       value=st.integers(0, 9))
def test_unknown_dataset_or_model_option_exits_2_naming_it(base, where, option, value):
    valid = {"data": {"shape", "num_classes", "n_samples", "noise", "data_seed"}, "model": {"channels", "batch_norm"}}
    if option in valid[where]:
        option = option + "_x"
    table = copy.deepcopy(base)
    table[where]["options"][option] = value
    assert_refused(run_case(table, enter_run=True), [f"'{option}'"], by_parse=False)


# ---------------------------------------------------------------------------------------------
# Regressions: cases the fuzzing found (each was an internal error, a crash or a key left unnamed).
def test_regression_huge_threads_is_refused_not_a_crash_in_torch(base):
    # threads = 10**6 aborted the process inside libgomp; 2**62 was an internal OverflowError
    for threads in (10**6, 2**62):
        assert_refused(run_case(_apply(base, {"threads": threads})), ["'threads'"])


def test_regression_huge_seed_is_refused_not_an_overflow_in_the_generator(base):
    # seed = 2**63 - 1 overflowed the data-order generator's seed (seed * 7919 + 1): exit 1
    assert_refused(run_case(_apply(base, {"seed": 2**63 - 1})), ["'seed'"])
    assert parse_config({**_apply(base, {"seed": 2**32 - 1}), "store": {"path": "x.zarr"}}).seed == 2**32 - 1


def test_regression_millions_of_planned_lines_are_refused_not_a_memory_error(base):
    # train.steps = 10**12 with a line every 2 steps built a list of 5 * 10**11 steps: MemoryError, exit 1
    assert_refused(run_case(_apply(base, {"train.steps": 10**12})), ["'measure.every'"])
    assert_refused(run_case(_apply(base, {"train.steps": 10**12, "measure.schedule": "log",
                                          "measure.count": 10**9})), ["'measure.count'"])


def test_regression_unknown_key_with_a_newline_is_named_on_one_line(base):
    # the message quoted the key raw: a key holding '\n' split the message and the key was cut off
    table = copy.deepcopy(base)
    table["train"]["lr\nx"] = 1
    outcome = run_case(table)
    assert_refused(outcome, ["'train.lr\\nx'"])


@pytest.mark.parametrize("key,name", [("data.name", "imagenet9"), ("model.name", "resnet7"),
                                      ("model.name", "torchvision:no_such_net"),
                                      ("model.name", "nopkg_fuzz.models:factory"),
                                      ("model.name", "losslines.models:no_such_factory"),
                                      ("data.name", "nopkg_fuzz.data:loader")])
def test_regression_unknown_dataset_or_model_is_refused_by_the_config_naming_the_key(base, key, name):
    # these were refused only when the run loaded the data or built the model, without the key
    outcome = run_case(_apply(base, {key: name}))
    assert_refused(outcome, [f"'{key}'"])
    assert repr(name) in outcome.err


def test_regression_missing_data_root_without_download_names_data_root(base, tmp_path):
    # was: "cifar10 not found under ..." from the data layer, after the run started; data.root unnamed
    edits = {"data.name": "cifar10", "data.root": str(tmp_path / "absent"), "data.download": False}
    assert_refused(run_case(_apply(base, edits)), ["'data.root'"])
    (tmp_path / "absent").mkdir()  # a folder that exists is the data layer's to search
    assert parse_config({**_apply(base, edits), "store": {"path": "x.zarr"}}).data.root == str(tmp_path / "absent")
