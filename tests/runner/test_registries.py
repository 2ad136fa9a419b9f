"""Optimizers and learning-rate schedules by name: one call registers one, the config accepts it."""

from __future__ import annotations

import pytest
import torch

import losslines.runner.lr_schedules as lr_schedules
import losslines.runner.optimizers as optimizers
from losslines.runner.config import ConfigError
from losslines.runner.driver import run
from losslines.runner.lr_schedules import lr_at, register_lr_schedule
from losslines.runner.optimizers import Stepper, build_optimizer, register_optimizer
from losslines.store import open_store


@pytest.fixture
def registries(monkeypatch):
    monkeypatch.setattr(optimizers, "_OPTIMIZERS", dict(optimizers._OPTIMIZERS))
    monkeypatch.setattr(lr_schedules, "_SCHEDULES", dict(lr_schedules._SCHEDULES))


def test_unknown_names_list_the_registered_ones(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="'train.optimizer': 'lion' is not one of 'sgd', 'adam', 'adamw'"):
        tiny_config(tmp_path, "train.optimizer=lion", "measure.direction=step", "train.momentum=0.0")
    with pytest.raises(ConfigError, match="'train.lr_schedule': 'linear' is not one of 'constant', 'step', 'cosine'"):
        tiny_config(tmp_path, "train.lr_schedule=linear")
    with pytest.raises(ValueError, match="unknown optimizer 'lion'; valid optimizers: sgd, adam, adamw"):
        build_optimizer("lion", [torch.nn.Parameter(torch.zeros(2))], tiny_config(tmp_path).train)


def test_a_registered_optimizer_and_schedule_run_a_study(registries, tiny_config, tmp_path):
    register_optimizer("rmsprop", lambda params, t: torch.optim.RMSprop(params, lr=t.lr))
    register_lr_schedule("halving", lambda t, step: t.lr / 2 ** (step // 4))
    cfg = tiny_config(tmp_path, "train.optimizer=rmsprop", "measure.direction=step", "train.momentum=0.0",
                      "train.lr=0.01", "train.lr_schedule=halving")
    assert [lr_at(cfg.train, s) for s in (0, 3, 4, 11)] == [0.01, 0.01, 0.005, 0.0025]
    model = torch.nn.Linear(2, 2)
    assert isinstance(Stepper(cfg, model).source, torch.optim.RMSprop)
    run(cfg, progress=False)
    store = open_store(cfg.store_path)
    assert store.committed_lines == 6 and store.status == "complete"
    assert store["lr"][...].tolist() == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025])
