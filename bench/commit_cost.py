"""What crash safety costs: the shipped quickstart run with the default policy (commit every line,
checkpoint after every measured line) against the old one (commit every 64 lines, checkpoints only
at the start, on interrupt and at the end), in one process, alternating (the fastest of ``--repeats`` runs of each counts).

    python bench/commit_cost.py [--steps 100] [--repeats 2] [--policies default,before] [--out bench/results/commit_cost.json]

Reports the wall time of each run, the time spent in checkpoints (flush + save, on the training
thread) and in the writer's commits (small arrays + metadata, on the writer thread, overlapped
with measuring) as fractions of the wall time, and how long the store writer held the training /
measuring thread up (issue 13: at most 5 % of wall time; ``store.stall``): ``writer_wait_s``
(inside the writer's calls: copies, waits for room in the queue, flushes before checkpoints),
its fraction of the run's wall time, and ``writer_bound_fraction``, which adds the writer
thread's busy time (its Python code competes for the GIL): an upper bound of the stall.
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

POLICIES = {  # name (the first word is its --policies key) -> overrides
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
    parser.add_argument("--policies", default="default,before", help="comma-separated: default, before")
    parser.add_argument("--config", default="configs/quickstart.toml")
    parser.add_argument("--out", default="bench/results/commit_cost.json")
    args = parser.parse_args()
    chosen = {label: o for label, o in POLICIES.items() if label.split()[0] in args.policies.split(",")}
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, overrides in [item for _ in range(args.repeats) for item in chosen.items()]:
            cfg = load_config(args.config, overrides=[f"train.steps={args.steps}",
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
                              "commit_fraction": round(commits.seconds / result.wall_s, 4),
                              **_stall(result)}
            print(label, results[label])
    if len(results) == 2:
        default, before = results.values()
        results["wall_ratio_default_over_before"] = round(default["wall_s"] / before["wall_s"], 3)
        print("wall time, default / before:", results["wall_ratio_default_over_before"])
    Path(args.out).write_text(json.dumps({"steps": args.steps, "config": args.config, **results}, indent=2))


def _stall(result) -> dict:
    """The writer's hold on the run (``RunResult.writer_stall``) as fractions of the run's wall time."""
    st = result.writer_stall
    return {"threads": result.threads.threads, "writer_wait_s": round(st.caller_s, 3),
            "writer_queue_wait_s": round(st.queue_wait_s, 3), "writer_flush_wait_s": round(st.flush_wait_s, 3),
            "writer_thread_s": round(st.write_s, 3),
            "writer_wait_fraction": round(st.caller_s / result.wall_s, 4),
            "writer_bound_fraction": round((st.caller_s + st.write_s) / result.wall_s, 4)}


if __name__ == "__main__":
    main()
