"""losslines installed as a user installs it (a wheel, not the source tree): the shipped configs
travel as package data, and ``losslines run quickstart`` works from an empty directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from losslines.cli import main
from losslines.runner.shipped import resolve_config, shipped_configs

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_configs_are_found_by_name(tmp_path, monkeypatch, capsys):
    configs = shipped_configs()
    assert {"quickstart", "vit_quickstart", "lm_quickstart"} <= set(configs)
    assert set(configs) == {p.stem for p in (ROOT / "configs").glob("*.toml")}  # every shipped config
    monkeypatch.chdir(tmp_path)  # no configs/ here
    assert resolve_config("quickstart") == configs["quickstart"]
    assert resolve_config("quickstart.toml") == configs["quickstart"]
    assert resolve_config("elsewhere/quickstart.toml") == Path("elsewhere/quickstart.toml")  # a path stays a path
    assert main(["configs"]) == 0
    listing = capsys.readouterr().out
    assert "quickstart  " in listing and "Quickstart: real handwritten digits" in listing
    assert main(["run", "quickstrat", "-q"]) == 2
    err = capsys.readouterr().err
    assert "config file quickstrat does not exist; shipped configs (losslines configs): " in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_wheel_install_runs_a_shipped_config_from_an_empty_directory(tmp_path):
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "empty"
    work.mkdir()
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", str(ROOT), "-w", str(wheels)], check=True, timeout=600,
                   capture_output=True)
    wheel = next(wheels.glob("losslines-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, timeout=300,
                   capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}  # the wheel first, dependencies from here

    def losslines(*args):
        return subprocess.run([sys.executable, "-m", "losslines", *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600)

    where = subprocess.run([sys.executable, "-c", "import losslines; print(losslines.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where  # the installed copy, not the source tree
    listing = losslines("configs")
    assert listing.returncode == 0 and str(site / "losslines" / "configs") in listing.stdout
    assert (site / "losslines" / "py.typed").exists()
    done = losslines("run", "quickstart", "--set", "train.steps=20", "--set", "measure.every=10", "-q")
    assert done.returncode == 0, done.stderr
    assert "complete: 2 lines over 20 steps" in done.stdout and (work / "runs" / "quickstart.zarr").is_dir()
