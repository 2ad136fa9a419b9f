"""Peak extra memory of measuring one line of a large model, beyond the model, θ_t and û.

    python bench/line_memory.py [--model transformer|mlp] [--dtype float32|bfloat16|float16]

Builds a model of about 100M parameters (``transformer``: ``byte_lm`` with dim 1024, 8 blocks,
16 heads; ``mlp``: 2048-8192-8192-2048, which losslines' older releases can measure too), a
random direction held by the caller (as a sampler holds θ_t and u), then measures one line of 3
points with its exact slope on 2 samples while a thread samples the resident set size every
0.5 ms. Prints JSON: parameters, parameter bytes, the peak extra resident memory during the
measurement and that peak per parameter byte. Run it in a fresh process (resident memory is
process-wide) with ``MALLOC_MMAP_THRESHOLD_=65536``: glibc otherwise raises its mmap threshold
after the first large free and keeps later freed tensors in its heap, which the resident size
counts as used. It measures the losslines that ``import losslines`` finds (set ``PYTHONPATH`` to
measure another checkout). ``tests/engine/test_engine_memory_scaling.py`` asserts the bound.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

import torch
from torch import nn

PAGE = os.sysconf("SC_PAGE_SIZE")


def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def build(kind: str, dtype: torch.dtype):
    torch.manual_seed(0)
    if kind == "transformer":
        from losslines.models import build_model

        model = build_model("byte_lm", num_classes=256, input_shape=(8,), dim=1024, depth=8, heads=16)
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(0, 256, (2, 9), generator=g)
        data, loss = (ids[:, :-1], ids[:, 1:]), "token_cross_entropy"
    else:
        model = nn.Sequential(nn.Linear(2048, 8192), nn.ReLU(), nn.Linear(8192, 8192), nn.ReLU(), nn.Linear(8192, 2048))
        g = torch.Generator().manual_seed(1)
        data, loss = (torch.randn(2, 2048, generator=g), torch.randint(0, 2048, (2,), generator=g)), "cross_entropy"
    model = model.to(dtype)
    g = torch.Generator().manual_seed(2)
    direction = {n: torch.randn(p.shape, generator=g).to(dtype) for n, p in model.named_parameters()}
    return model, data, loss, direction


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["transformer", "mlp"], default="transformer")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    model, (x, y), loss, direction = build(args.model, dtype)
    from losslines.engine import measure_line

    kwargs = {"loss": loss} if loss != "cross_entropy" else {}
    n_params = sum(p.numel() for p in model.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    base = resident()
    peak, done = [base], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident())
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    m = measure_line(model, x, y, direction, [-0.1, 0.0, 0.1], **kwargs)
    seconds = time.perf_counter() - t0
    done.set()
    watcher.join()
    extra = max(peak[0], resident()) - base
    result = {"model": args.model, "dtype": args.dtype, "parameters": n_params, "parameter_bytes": param_bytes,
              "extra_bytes": extra, "extra_per_parameter_byte": extra / param_bytes, "seconds": round(seconds, 2),
              "finite": bool(torch.isfinite(torch.as_tensor(m.loss)).all())}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
