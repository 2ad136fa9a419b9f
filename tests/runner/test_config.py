"""Config parsing: every config in configs/ loads; every malformed config is exit 2 naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from losslines.cli import main
from losslines.runner.config import ConfigError, apply_overrides, config_to_dict, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.toml"))

BASE = """
name = "t"
[data]
name = "synthetic"
[train]
steps = 10
"""

# (TOML appended to BASE or replacing it, the key the error must name)
MALFORMED = [
    ("[train]\nlr = 0.1\nlearning_rate = 0.1\n", "train.learning_rate"),  # misspelt key
    ("[trian]\nlr = 0.1\n", "trian"),                                      # misspelt table
    ("[measure]\nspaceing = 0.01\n", "measure.spaceing"),
    ("[train]\nlr = 'fast'\n", "train.lr"),                                # wrong type
    ("[train]\nlr = -0.1\n", "train.lr"),                                  # impossible value
    ("[train]\nbatch_size = 0\n", "train.batch_size"),
    ("[train]\nbatch_size = 12.5\n", "train.batch_size"),
    ("[train]\nmomentum = 1.5\n", "train.momentum"),
    ("[train]\noptimizer = 'lbfgs'\n", "train.optimizer"),
    ("[data]\nfraction = 1.5\n", "data.fraction"),
    ("[data]\nfraction = 0\n", "data.fraction"),
    ("[measure]\nbn = 'train'\n", "measure.bn"),
    ("[measure]\nspacing = 0\n", "measure.spacing"),
    ("[measure]\nhalf_width = 0.001\nspacing = 0.01\n", "measure.half_width"),
    ("[measure]\nsample_losses = ['train', 'test']\n", "measure.sample_losses"),
    ("[measure]\nsample_dtype = 'float64'\n", "measure.sample_dtype"),
    ("[measure]\nschedule = 'list'\n", "measure.at"),
    ("[measure]\nschedule = 'list'\nat = [3, 50]\n", "measure.at"),
    ("[measure]\nbn_group = 1\n", "measure.bn_group"),
    ("[measure]\nevery = 'often'\n", "measure.every"),
    ("[store]\nline_chunk = 0\n", "store.line_chunk"),
    ("[train]\noptimizer = 'adam'\n", "measure.direction"),              # sgd direction needs sgd
    ("[train]\nlr_schedule = 'step'\n", "train.lr_milestones"),
    ("[train]\ndownload = true\n", "train.download"),                     # key in the wrong table
    ("[model]\nwidth = -1\n", "model.width"),
    ("[measure]\nsample_losses = ['val']\n", "measure.sample_losses"),   # no held-out split
    ("device = 'tpu'\n", "device"),
    ("seed = true\n", "seed"),
    ("data = 3\n", "data"),
    ("[measure]\nstrategy = 'fast'\n", "measure.strategy"),
    ("[measure]\nmax_memory = '12 bananas'\n", "measure.max_memory"),
    ("[measure]\nmax_memory = 512\n", "measure.max_memory"),
    ("[measure]\nmax_memory = '0.5B'\n", "measure.max_memory"),
    ("[measure]\nmax_memory = '1e400MiB'\n", "measure.max_memory"),
    ("[measure]\nspacing = 0.001\nhalf_width = 100.0\nmax_enlargements = 100\n", "measure.spacing"),
    ("[measure]\nn_directions = 4\n", "measure.directions_at"),
    ("[measure]\ndirections_at = [20]\nn_directions = 4\n", "measure.directions_at"),
    ("[measure]\ndirections_at = [2]\nn_directions = 1\n", "measure.n_directions"),
]


def _merged(extra: str) -> dict:
    """BASE with the tables of ``extra`` merged in (appending a table twice is a TOML error)."""
    import tomllib

    table = tomllib.loads(BASE)
    for key, value in tomllib.loads(extra).items():
        if isinstance(value, dict) and isinstance(table.get(key), dict):
            table[key].update(value)
        else:
            table[key] = value
    return table


@pytest.fixture
def write_config(tmp_path, toml_dumps):
    def write(extra: str) -> Path:
        path = tmp_path / "bad.toml"
        path.write_text(toml_dumps(_merged(extra)))
        return path

    return write


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_shipped_config_parses(config):
    cfg = load_config(config)
    assert cfg.name == config.stem
    assert config_to_dict(cfg)["train"]["steps"] == cfg.train.steps


def test_base_config_is_valid(write_config):
    cfg = load_config(write_config(""))
    assert cfg.data.name == "synthetic" and cfg.train.steps == 10


@pytest.mark.parametrize("extra,key", MALFORMED, ids=[k for _, k in MALFORMED])
def test_malformed_config_exits_2_naming_the_key(tmp_path, capsys, write_config, extra, key):
    path = write_config(extra)
    with pytest.raises(ConfigError, match=f"'{key}"):
        load_config(path)
    code = main(["run", str(path), "--out", str(tmp_path / "s.zarr"), "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"'{key}" in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s.zarr").exists()


def test_misspelt_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match="did you mean 'train.lr'"):
        parse_config({"train": {"lrr": 0.1}})


def test_overrides_parse_toml_values_and_bare_words():
    table = apply_overrides({}, ["train.lr=0.05", "data.name=mnist", "measure.sample_losses=['train']",
                                 "train.nesterov=true"])
    assert table == {"train": {"lr": 0.05, "nesterov": True}, "data": {"name": "mnist"},
                     "measure": {"sample_losses": ["train"]}}


@pytest.mark.parametrize("override", ["train.lr", "=3", "train..lr=1"])
def test_malformed_override_is_an_error(override):
    with pytest.raises(ConfigError, match="malformed"):
        apply_overrides({}, [override])


def test_missing_config_file_exits_2(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_invalid_toml_exits_2(tmp_path, capsys):
    path = tmp_path / "broken.toml"
    path.write_text("[train\nlr = 1\n")
    assert main(["run", str(path)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_console_script_exit_code(write_config):
    path = write_config("[train]\nlearning_rate = 1\n")
    proc = subprocess.run([sys.executable, "-m", "losslines.cli", "run", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "train.learning_rate" in proc.stderr


@pytest.mark.parametrize("text,expected", [("auto", None), ("512MiB", 512 << 20), ("1.5GiB", int(1.5 * (1 << 30))),
                                           ("64 KiB", 64 << 10)])
def test_max_memory_sizes(text, expected):
    from losslines.runner.config import memory_budget

    cfg = parse_config({"measure": {"max_memory": text}})
    assert memory_budget(cfg.measure) == expected


def test_store_path_placeholders_other_than_name_are_refused():
    with pytest.raises(ConfigError, match="'store.path'.*only placeholder"):
        parse_config({"store": {"path": "runs/{nme}.zarr"}})
    assert parse_config({"name": "x", "store": {"path": "out/{name}.zarr"}}).store_path.name == "x.zarr"
