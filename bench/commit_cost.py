"""What crash safety costs: the shipped quickstart run with the default policy (commit every line,
checkpoint after every measured line) against the old one (commit every 64 lines, checkpoints only
at the start, on interrupt and at the end), in one process, alternating (the fastest of ``--repeats`` runs of each counts).

    python bench/commit_cost.py [--steps 100] [--repeats 2] [--out bench/results/commit_cost.json]

Reports the wall time of each run, the time spent in checkpoints (flush + save, on the training
thread) and in the writer's commits (small arrays + metadata, on the writer thread, overlapped
with measuring) as fractions of the wall time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from losslines.runner.config import load_config
from losslines.runner.driver import run
from losslines.runner.loop import TrainingLoop
from losslines.store.writer import StoreWriter

POLICIES = {
    "default (commit every line, checkpoint every line)": [],
    "before (commit every 64 lines, no per-line checkpoint)": [
        "store.commit_every=64", "train.checkpoint_lines=false", "train.checkpoint_minutes=0", "train.checkpoint_every=0"],
}


class _Timer:
    """Sums the time spent in one method (wrapped in place, restored by ``undo``)."""

    def __init__(self, owner: type, name: str) -> None:
        self.owner, self.name, self.original, self.seconds, self.calls = owner, name, getattr(owner, name), 0.0, 0
        timer = self

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return timer.original(*args, **kwargs)
            finally:
                timer.seconds += time.perf_counter() - t0
                timer.calls += 1

        setattr(owner, name, timed)

    def undo(self) -> None:
        setattr(self.owner, self.name, self.original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2, help="runs per policy, alternating; the fastest counts")
    parser.add_argument("--out", default="bench/results/commit_cost.json")
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, overrides in [item for _ in range(args.repeats) for item in POLICIES.items()]:
            cfg = load_config("configs/quickstart.toml", overrides=[f"train.steps={args.steps}",
                                                                     f"store.path={tmp}/{time.monotonic_ns()}.zarr", *overrides])
            checkpoints, commits = _Timer(TrainingLoop, "checkpoint"), _Timer(StoreWriter, "_write_buffer")
            try:
                result = run(cfg, progress=False)
            finally:
                checkpoints.undo()
                commits.undo()
            if label in results and results[label]["wall_s"] <= result.wall_s:
                continue
            results[label] = {"wall_s": round(result.wall_s, 2), "lines": result.lines,
                              "checkpoints": checkpoints.calls, "checkpoint_s": round(checkpoints.seconds, 3),
                              "checkpoint_fraction": round(checkpoints.seconds / result.wall_s, 4),
                              "commits": commits.calls, "commit_s": round(commits.seconds, 3),
                              "commit_fraction": round(commits.seconds / result.wall_s, 4)}
            print(label, results[label])
    default, before = results.values()
    results["wall_ratio_default_over_before"] = round(default["wall_s"] / before["wall_s"], 3)
    print("wall time, default / before:", results["wall_ratio_default_over_before"])
    Path(args.out).write_text(json.dumps({"steps": args.steps, "config": "configs/quickstart.toml", **results}, indent=2))


if __name__ == "__main__":
    main()
