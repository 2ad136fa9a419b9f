"""The HuggingFace adapter measures the Trainer's own steps on the loss the Trainer trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from losslines.engine import LineSampler, Schedule, make_grid  # noqa: E402
from losslines.integrations.huggingface import LineSamplerCallback, causal_lm_batch  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")  # the Trainer's advice is not under test

VOCAB, T, N, BATCH = 13, 8, 32, 4


class Tokens(torch.utils.data.Dataset):
    def __init__(self, ids):
        self.ids = ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class StepWatch(transformers.TrainerCallback):
    """The parameters just before and after each optimizer step (the oracle of the direction)."""

    def __init__(self, model):
        self.model, self.moves = model, []

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._before = [p.detach().clone() for p in self.model.parameters()]

    def on_optimizer_step(self, args, state, control, **kwargs):
        after = [p.detach() for p in self.model.parameters()]
        self.moves.append(float(torch.sqrt(sum(((a - b).double() ** 2).sum() for a, b in zip(after, self._before)))))


def test_trainer_callback_measures_the_steps_taken_on_the_trained_loss(tmp_path):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=T, n_embd=16, n_layer=1, n_head=2,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")  # forward-mode AD
    ids = torch.randint(0, VOCAB, (N, T), generator=torch.Generator().manual_seed(1))
    inputs, targets = causal_lm_batch({"input_ids": ids[:16], "labels": ids[:16]})
    sampler = LineSampler(model, grid=make_grid(0.05, 0.2), schedule=Schedule.every(2), train=(inputs, targets),
                          loss="token_cross_entropy", bn="running", batch_size=BATCH)
    watch = StepWatch(model)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=5, per_device_train_batch_size=BATCH,
                                          learning_rate=0.5, optim="sgd", lr_scheduler_type="constant",
                                          max_grad_norm=0.0, weight_decay=0.0, warmup_steps=0, report_to=[],
                                          save_strategy="no", logging_strategy="no", use_cpu=True,
                                          disable_tqdm=True, seed=0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Tokens(ids),
                                   callbacks=[watch, LineSamplerCallback(sampler)])
    trainer.train()

    assert [r.step for r in sampler.records] == [0, 2, 4]
    zero = int(np.flatnonzero(sampler.grid.positions == 0)[0])
    for record in sampler.records:
        # the direction is the step the Trainer took
        assert record.update_step == pytest.approx(watch.moves[record.step], rel=1e-6)
        # plain SGD: the batch line falls at -‖g‖ when the measured batch loss is the trained loss on
        # that batch. The Trainer divides the summed token loss by num_items_in_batch counted before
        # the shift (T labels per sample, T - 1 predicted), so its loss is (T - 1)/T of the token
        # mean the sampler measures (equal counts: per-sample mean = token mean), and so is ‖g‖
        assert record["batch"].slope0 == pytest.approx(-record.direction_norm * T / (T - 1), rel=1e-4)
        assert np.isfinite(record["train"].loss[zero]) and record.lr == pytest.approx(0.5)


def test_shifted_targets_ignore_the_last_position():
    ids = torch.tensor([[5, 6, 7, 8]])
    inputs, targets = causal_lm_batch({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids})
    assert set(inputs) == {"input_ids", "attention_mask"}
    assert targets.tolist() == [[6, 7, 8, -100]]
    with pytest.raises(ValueError, match="no labels="):
        causal_lm_batch({"input_ids": ids})


def test_attention_without_forward_mode_ad_is_refused_before_training(tmp_path):
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=T, n_embd=16, n_layer=1, n_head=2,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    ids = torch.randint(0, VOCAB, (8, T), generator=torch.Generator().manual_seed(1))
    inputs, targets = causal_lm_batch({"input_ids": ids, "labels": ids})
    sampler = LineSampler(model, grid=make_grid(0.1, 0.2), schedule=Schedule.every(1), train=(inputs, targets),
                          loss="token_cross_entropy", bn="running", batch_size=BATCH)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=BATCH,
                                          report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Tokens(ids),
                                   callbacks=[LineSamplerCallback(sampler)])
    with pytest.raises(ValueError, match="attn_implementation='eager'"):
        trainer.train()
