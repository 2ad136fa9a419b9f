"""Measure lines inside a HuggingFace Trainer run: one callback.

    python examples/huggingface_callback.py [--out runs/hf.zarr] [--steps 40]

``pip install 'losslines[hf]'``. A small GPT-2 (built from a config, no download) learns bytes
of Python source with the Trainer's SGD; a line every 10 steps goes into a store.
"""

from __future__ import annotations

import argparse
import inspect
import json

import numpy as np
import torch
import transformers

import losslines
from losslines.engine import LineSampler, Schedule, make_grid
from losslines.integrations.huggingface import LineSamplerCallback, causal_lm_batch
from losslines.store import StoreSink

T = 32


class Windows(torch.utils.data.Dataset):
    def __init__(self, ids: torch.Tensor):
        self.ids = ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/hf.zarr")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--spacing", type=float, default=0.02)
    args = parser.parse_args(argv)

    text = inspect.getsource(json).encode()  # real text on every machine
    ids = torch.tensor(np.frombuffer(text[: len(text) // T * T], dtype=np.uint8).reshape(-1, T).astype(np.int64))
    train, measured = ids[:-64], ids[-64:]  # the line is measured on 64 windows the model never trains on
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=256, n_positions=T, n_embd=64, n_layer=2, n_head=4, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")  # exact slopes

    inputs, targets = causal_lm_batch({"input_ids": measured, "labels": measured})
    sink = StoreSink.create(args.out, sample_ids={"train": np.arange(len(measured))},
                            attrs={"semantics": {"direction": "step", "optimizer": "hf sgd", "loss": "token CE"}})
    sampler = LineSampler(model, grid=make_grid(args.spacing, 0.5), schedule=Schedule.every(args.every),
                          train=(inputs, targets), loss="token_cross_entropy", bn="running", batch_size=16, sink=sink)
    training = transformers.TrainingArguments(
        output_dir=args.out + ".trainer", max_steps=args.steps, per_device_train_batch_size=16, learning_rate=0.5,
        optim="sgd", lr_scheduler_type="constant", report_to=[], save_strategy="no", logging_strategy="no",
        use_cpu=True, disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=training, train_dataset=Windows(train),
                                   callbacks=[LineSamplerCallback(sampler)])
    with sink.writer:
        trainer.train()

    store = losslines.open_store(args.out)
    print(f"{store.committed_lines} lines at steps {store['step'][...].tolist()} -> {args.out}")


if __name__ == "__main__":
    main()
