"""The training loop of ``losslines run``: train, measure the scheduled steps, checkpoint.

One step: the batch of the data order, λ from the schedule, forward and backward of the loss
record's training loss, the all-directions lines where asked (before the step: the model holds
θ_t), then the optimizer step inside ``sampler.measure`` (which records the line of a scheduled
step). A checkpoint (``runner.checkpoint.TrainingState``) is the loop's whole state between two
steps; ``TrainingLoop.restore`` puts a run back into it.

After each step the loop looks for a non-finite value (``runner.nonfinite``: the training loss,
then what the step measured) and follows ``train.on_nonfinite``: ``stop`` checkpoints after the
step (its line stored as measured) and closes the store ``failed``, naming the step; ``continue``
logs the first one and goes on. The store's ``nonfinite_steps`` and ``first_nonfinite`` say what
was seen.
"""

from __future__ import annotations

import time
from typing import Callable

from losslines import batched
from losslines.engine import LineSampler
from losslines.engine.all_directions import measure_all_directions
from losslines.engine.rng import global_rng_state, set_global_rng_state
from losslines.records import LineRecord
from losslines.runner.checkpoint import TrainingState, save_checkpoint
from losslines.runner.config import config_to_dict
from losslines.runner.lr_schedules import lr_at
from losslines.runner.nonfinite import NonFinite, find_nonfinite, is_nonfinite_line, read_later
from losslines.runner.parts import RunParts
from losslines.runner.progress import Progress
from losslines.runner.seeds import directions_seed
from losslines.runner.signals import InterruptBetweenSteps
from losslines.store.location import Location


def restore(parts: RunParts, state: TrainingState) -> None:
    """Put the model, the optimizer, the data order and the global generators back into ``state``."""
    parts.model.load_state_dict(state.model)
    parts.stepper.load_state_dict(state.stepper)
    parts.order.load_state_dict({"epoch_order": state.epoch_order, "generators": state.generators})
    set_global_rng_state(state.global_rng)


class TrainingLoop:
    """Runs steps ``[start, cfg.train.steps)`` of a built run into ``writer`` (see the module docstring).

    Args:
        parts: the run's parts.
        sampler: the measurement hook, emitting into ``sink``.
        sink: the store's sink (``StoreSink``, or a ``RankSink`` with several processes); its
            ``writer`` is flushed before each checkpoint and closed at the end.
        checkpoint_dir: where checkpoints go.
        progress: the progress bar / log.
        on_step: called with each step number after the step is taken (tests, monitoring).
    """

    def __init__(self, parts: RunParts, sampler: LineSampler, sink, *, checkpoint_dir: Location,
                 progress: Progress, on_step: Callable[[int], None] | None = None):
        self.parts, self.sampler, self.sink, self.writer = parts, sampler, sink, sink.writer
        self.ranks = parts.ranks
        self.checkpoint_dir, self.progress, self.on_step = checkpoint_dir, progress, on_step
        self._config = config_to_dict(parts.cfg)
        self._directions_at = frozenset(parts.cfg.measure.directions_at)
        self._strategy_recorded = False  # a resumed run times `auto` again and records it again
        self._last_checkpoint = time.monotonic()
        self._nonfinite_steps: list[int] = []  # steps of the non-finite lines (`restore_nonfinite` on a resume)
        self._first_nonfinite: dict | None = None
        self.nonfinite: NonFinite | None = None  # what stopped the run (train.on_nonfinite = "stop")

    def restore_nonfinite(self, state: TrainingState) -> None:
        """Continue the non-finite record of the checkpoint ``state`` (a resume)."""
        self._nonfinite_steps, self._first_nonfinite = list(state.nonfinite_steps), state.first_nonfinite

    def state(self, next_step: int) -> TrainingState:
        """The run's state between steps (before ``next_step``), with the store's committed lines."""
        p, w = self.parts, self.writer
        order = p.order.state_dict()
        return TrainingState(
            step=next_step, committed_lines=w.committed_lines, epoch=next_step // p.order.steps_per_epoch,
            epoch_order=order["epoch_order"], model=p.model.state_dict(), stepper=p.stepper.state_dict(),
            generators=order["generators"], global_rng=global_rng_state(), config=self._config,
            committed_direction_lines=w.committed_direction_lines if p.cfg.measure.n_directions else 0,
            committed_steps=w.committed_steps if p.cfg.measure.per_step else 0,
            nonfinite_steps=tuple(self._nonfinite_steps), first_nonfinite=self._first_nonfinite)

    def checkpoint(self, next_step: int) -> None:
        """Commit every queued line, then save the state (atomically replacing the last one);
        with several processes, process 0 saves (every process holds the same state)."""
        self.writer.flush()
        if self.ranks.is_main:
            save_checkpoint(self.checkpoint_dir, self.state(next_step))
        self._last_checkpoint = time.monotonic()

    def run(self, start: int, stop_at_step: int | None = None) -> tuple[str, int]:
        """Train from step ``start``; return ``(status, step)``: ``"complete"`` and the number of
        steps, ``"interrupted"`` and the step before which the run stopped (Ctrl-C or
        ``stop_at_step``; the store is closed ``failed`` with a reason saying how to resume), or
        ``"nonfinite"`` and the number of steps taken, the last one's value not finite
        (``train.on_nonfinite = "stop"``; ``self.nonfinite`` says which, and so does the store's
        ``status_reason``)."""
        total = self.parts.cfg.train.steps
        step, between_steps = start, True
        with self.writer, InterruptBetweenSteps() as interrupt:
            try:
                self.writer.update_attrs(self._nonfinite_attrs())  # a resume drops the rolled-back lines' steps
                if start == 0:  # a kill before the first line leaves a state to resume from
                    self.checkpoint(0)
                for step in range(start, total):
                    between_steps = True
                    stop = interrupt.requested or (stop_at_step is not None and step >= stop_at_step)
                    if self.ranks.any(stop):  # every process stops before the same step
                        raise KeyboardInterrupt
                    between_steps = False
                    measured, nonfinite = self._step(step)
                    if self._stops_at(nonfinite, step):
                        self.checkpoint(step + 1)  # resumable, e.g. with train.on_nonfinite = "continue"
                        self.writer.close(status="failed", reason=self._stop_reason())
                        self.progress.log(f"stopped: {self.nonfinite} (train.on_nonfinite = 'stop'); the values "
                                          "are stored as measured")
                        return "nonfinite", step + 1
                    if self._checkpoint_due(step + 1, measured):
                        self.checkpoint(step + 1)
                    between_steps = True
            except KeyboardInterrupt:
                if between_steps:  # the state is consistent: checkpoint it
                    self.checkpoint(step)
                    by = f" by {interrupt.signal_name}" if interrupt.signal_name else ""
                    self.writer.close(status="failed", reason=f"interrupted{by} before step {step}; continue with --resume")
                    self.progress.log(f"interrupted{by} before step {step}; a checkpoint is saved: run the same "
                                      "command with --resume to continue")
                else:  # a second Ctrl-C inside a step: the last periodic checkpoint stays the one to resume
                    self.writer.close(status="failed", reason=f"aborted during step {step}; --resume continues "
                                                              "from the last checkpoint")
                return "interrupted", step
            finally:
                self.progress.close()
            self.checkpoint(total)
        return "complete", total

    def _checkpoint_due(self, next_step: int, measured: bool) -> bool:
        """After a step: a checkpoint of ``checkpoint_every``, of ``checkpoint_lines`` (a line was
        measured) or of ``checkpoint_minutes``? (The last step's is the final one, taken anyway.)"""
        train = self.parts.cfg.train
        if next_step >= train.steps:
            return False
        every = bool(train.checkpoint_every) and next_step % train.checkpoint_every == 0
        timed = bool(train.checkpoint_minutes) and time.monotonic() - self._last_checkpoint >= 60 * train.checkpoint_minutes
        # every process decides alike: the wall clocks of several processes differ
        return self.ranks.any(every or (train.checkpoint_lines and measured) or timed)

    def _nonfinite_attrs(self) -> dict:
        return {"nonfinite_steps": list(self._nonfinite_steps), "first_nonfinite": self._first_nonfinite}

    def _note_nonfinite(self, step: int, loss: float, measured: bool) -> NonFinite | None:
        """The step's first non-finite value, if any (``loss``: its training loss), recorded in the
        store's attributes."""
        record = getattr(self.sampler, "last_record", None)  # a recording run measures nothing
        if record is None or record.step != step:
            record = None
        zero = self.sampler.grid.zero_index if record is not None else 0
        found = find_nonfinite(step, loss, record, zero)
        if found is None:
            return None
        changed = False
        if measured and isinstance(record, LineRecord) and is_nonfinite_line(record, zero):
            self._nonfinite_steps.append(int(step))
            changed = True
        if self._first_nonfinite is None:
            self._first_nonfinite = found.as_attrs()
            changed = True
            if self.parts.cfg.train.on_nonfinite == "continue":
                self.progress.log(f"{found}; the run continues (train.on_nonfinite = 'continue'); the values are "
                                  "stored as measured and the store's nonfinite_steps lists the lines")
        if changed:
            self.writer.update_attrs(self._nonfinite_attrs())
        return found

    def _stops_at(self, nonfinite: NonFinite | None, step: int) -> bool:
        """Does ``train.on_nonfinite = "stop"`` end the run after this step? (Every process decides alike.)"""
        stop = self.parts.cfg.train.on_nonfinite == "stop" and nonfinite is not None
        if not self.ranks.any(stop):
            return False
        self.nonfinite = nonfinite if nonfinite is not None else NonFinite(step, "a value of another process",
                                                                           float("nan"))
        return True

    def _stop_reason(self) -> str:
        return (f"stopped: {self.nonfinite} (train.on_nonfinite = 'stop'); the values are stored as measured; "
                "--resume --set train.on_nonfinite=continue goes on")

    def _step(self, step: int) -> tuple[bool, NonFinite | None]:
        """Take training step ``step`` (measuring it when scheduled); return whether a line was
        measured and the step's first non-finite value (None: all finite)."""
        p, sampler = self.parts, self.sampler
        batch = p.order.batch(step)
        lr = lr_at(p.cfg.train, step)
        p.stepper.set_lr(lr)
        p.model.train()
        p.stepper.zero_grad()
        loss = p.loss.training_loss(batched.call(p.model, batch.inputs), batch.targets)
        training_loss = read_later(loss)  # for the non-finite check after the step
        loss.backward()
        train_ids = p.dataset.train.ids
        if step in self._directions_at:  # before the step: the model holds θ_t
            m = p.cfg.measure
            self.sink.append_directions(measure_all_directions(
                sampler, step, epoch=batch.epoch, lr=lr, train=p.train, train_ids=train_ids,
                batch_size=p.cfg.train.batch_size, count=m.n_directions, seed=directions_seed(p.cfg.seed, step),
                loss=p.loss))
        measured = sampler.should_measure(step)
        with sampler.measure(step, p.stepper.source, batch=(batch.inputs, batch.targets),
                             batch_ids=train_ids[batch.indices].numpy(), epoch=batch.epoch):
            p.stepper.step()
        if measured:
            self._record_strategy()
        nonfinite = self._note_nonfinite(step, training_loss(), measured)
        if self.on_step is not None:
            self.on_step(step)
        self.progress.step(measured=measured, lines=self.writer.committed_lines + self.writer.pending_lines, loss=loss)
        return measured or step in self._directions_at, nonfinite

    def _record_strategy(self) -> None:
        """Once per invocation: the evaluation strategy in the store attributes (and auto's choice in the log)."""
        report = self.sampler.strategy_report
        if self._strategy_recorded or report is None:
            return
        attrs = report.as_attrs()
        self.writer.update_attrs({"strategy_report": attrs})
        self._strategy_recorded = True
        if attrs["requested"] == "auto":
            timings = ", ".join(f"{k} {v * 1e3:.2f} ms/point" for k, v in attrs["seconds_per_point"].items())
            self.progress.log(f"strategy auto chose {attrs['chosen']} ({timings})")
