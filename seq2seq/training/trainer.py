"""The :class:`Trainer`: one process's training loop, read top to bottom.

:meth:`Trainer.run` trains epoch after epoch until a stop rule fires (``max_steps``,
``max_time``, ``max_epochs``, early stopping, a signal); each step is :meth:`Trainer.train_step`
on this rank's share of a token-budgeted batch, then logging, validation and checkpoints when
they are due. The run directory around it is :func:`seq2seq.training.run.train`'s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import signal
import time
from pathlib import Path
from typing import Any

import torch

from seq2seq.config import Config, parse_duration
from seq2seq.data.batching import collate, epoch_batches
from seq2seq.data.prepare import prepare_data
from seq2seq.data.vocab import Vocab
from seq2seq.errors import TrainingError
from seq2seq.hardware import autocast, bound_kernel_caches, pick_device, release_free_memory, resolve_precision
from seq2seq.history import keep_until as keep_history_until
from seq2seq.model import Seq2Seq, build_model, describe
from seq2seq.tracking import Tracker, hparams_of
from seq2seq.training.averaging import WeightAverage
from seq2seq.training.distributed import Distributed
from seq2seq.training.faults import crash_point
from seq2seq.training.loss import NonFinitePolicy, Objective
from seq2seq.training.progress import (
    Bar,
    Progress,
    SlowdownWatch,
    Window,
    epoch_batching,
    eta_seconds,
    final_metrics,
    lines_above_the_bar,
    progress_line,
)
from seq2seq.training.schedule import LearningRate
from seq2seq.training.signals import StopSignals, scheduler
from seq2seq.training.state import Checkpointer, check_same_data, rng_state
from seq2seq.training.validation import log_examples, scalars, summary_line, validate

__all__ = ["Trainer", "TrainingError"]

log = logging.getLogger("seq2seq")


class Trainer:
    def __init__(
        self,
        config: Config,
        out_dir: Path,
        resume: dict[str, Any] | None = None,
        dist: Distributed | None = None,
    ):
        bound_kernel_caches()  # before this process's first oneDNN kernel
        self.config, self.out_dir = config, out_dir
        self.dist = dist or Distributed()
        self._setup_process()
        self._load_data(resume)
        self._build()
        self.progress, self.metrics = Progress(), {}
        trained = (self.model, self.optimizer, self.lr, self.average)
        self.checkpoints = Checkpointer(config, out_dir, self.dist, trained, self.vocab, self.data_fingerprint)
        if resume:
            self.progress, self.metrics = self.checkpoints.restore(resume)
            if self.dist.is_main:
                self.checkpoints.repair_best(self.progress, self.metrics)
        if self.dist.is_main:  # validations a kill cut off after their entry are repeated, not doubled
            keep_history_until(out_dir, self.progress.step)
        log.info(_description(self))
        self.tracker = Tracker(out_dir if self.dist.is_main else None)
        self.signals = StopSignals()
        self.nonfinite = NonFinitePolicy(config.train)
        watched = self.dist.is_main and self.device.type == "cpu"  # where other programs take the cores
        self.slowdown = SlowdownWatch(torch.get_num_threads(), str(out_dir)) if watched else None

    # -- setting up -------------------------------------------------------------------------

    def _setup_process(self) -> None:
        """Seeds (ranks draw different dropout masks; rank 0 matches one process), threads, device, precision."""
        tc, rank = self.config.train, self.dist.rank
        random.seed(tc.seed + rank)
        torch.manual_seed(tc.seed + rank)
        if tc.threads is not None:
            torch.set_num_threads(tc.threads)
        self.device = pick_device(self.dist.device(tc.device), "train.device")
        self.precision = resolve_precision(tc.precision, self.device, "train.precision")

    def _load_data(self, resume: dict[str, Any] | None) -> None:
        """The run's encoded data; rank 0 trains SentencePiece and fills the caches first, the others read them."""
        if not self.dist.is_main:
            self.dist.barrier()
        vocab_state, self.train_data, self.valid_data = prepare_data(self.config, resume["vocab"] if resume else None)
        self.data_fingerprint = {"train": self.train_data.fingerprint, "valid": self.valid_data.fingerprint}
        if resume:
            check_same_data(
                resume.get("data_fingerprint"), self.data_fingerprint, self.config, self.out_dir / "last.pt"
            )
        self.vocab = Vocab.from_state_dict(vocab_state)
        if self.dist.is_main:
            self.dist.barrier()

    def _build(self) -> None:
        """The model, what the step calls (DDP-wrapped under torchrun), the optimiser, the average, the LR."""
        config, tc = self.config, self.config.train
        self.model: Seq2Seq = build_model(
            len(self.vocab.src), len(self.vocab.tgt), config.model, config.attention, self.vocab
        )
        self.model.to(self.device)
        self.objective: torch.nn.Module = Objective(self.model)
        if self.dist.enabled:  # the wrapper broadcasts rank 0's initial weights to every rank
            self.objective = torch.nn.parallel.DistributedDataParallel(
                self.objective,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                gradient_as_bucket_view=True,  # the gradients live in the all-reduce buckets: no second copy
            )
        self.optimizer = torch.optim.Adam(
            self.model.parameters(),
            lr=tc.lr,
            betas=tuple(tc.betas),
            weight_decay=tc.weight_decay,
            fused=self.device.type in ("cpu", "cuda"),  # one kernel for all parameters
        )
        # the weights that validation, best.pt and translation use: an average of the trained ones, or themselves
        self.average = WeightAverage(self.model, tc.ema) if tc.ema is not None else None
        self.time_budget = parse_duration(tc.max_time)  # training seconds in total, across resumes
        self.lr = LearningRate(self.optimizer, tc, self.time_budget, config.model.family)

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> dict[str, float]:
        tc, progress = self.config.train, self.progress
        self._started, self._step_at_start = time.monotonic(), progress.step
        self._seconds_before = progress.train_seconds
        self._src_lens, self._tgt_lens = self.train_data.lengths()  # arrays: the ids stay in the mapped cache
        self.window = Window()
        if self.dist.is_main:
            log.info("run dir: %s", self.out_dir)
        if self.slowdown is not None:
            self.slowdown.start()
        stop = None  # a resumed run may have finished already
        if tc.max_steps is not None and progress.step >= tc.max_steps:
            stop = "max_steps"
        elif progress.bad_validations >= tc.early_stopping:
            stop = "early stopping (raise train.early_stopping to go on)"
        self.bar = Bar(tc.max_steps, progress.step, self.dist.is_main)
        with self.signals, lines_above_the_bar():
            try:
                while stop is None:
                    stop = self._train_epoch()
                    if stop is None:
                        progress.epoch, progress.batch = progress.epoch + 1, 0
                        if progress.epoch >= tc.max_epochs:
                            stop = "max_epochs"
            finally:
                self.bar.close()
        return self._finish(stop)

    def _train_epoch(self) -> str | None:
        """The rest of the current epoch; returns why training stops, or None at the epoch's end."""
        tc, progress = self.config.train, self.progress
        batch_tokens, seed, multiple = epoch_batching(progress, tc)
        batches = epoch_batches(self._src_lens, self._tgt_lens, batch_tokens, seed, progress.epoch, multiple)
        release_free_memory()  # the plan's sorting buffers: tens of MB a rank with millions of pairs
        self.bar.epoch(progress.epoch, len(batches), progress.batch)
        stop = None
        for index in batches[progress.batch :]:
            signalled, out_of_time = self._train_on(index, multiple)
            self.bar.update()
            stop = self._after_step(signalled, out_of_time)
            if stop:
                break
        return stop

    def _train_on(self, index: list[int], multiple: int) -> tuple[bool, bool]:
        """One update on batch ``index``; returns whether any rank was signalled or ran out of time."""
        progress, dist = self.progress, self.dist
        n_tokens = int(self._tgt_lens[index].sum()) + len(index)  # the whole batch's (+ EOS), over every rank
        mine = dist.shard(index)
        # a batch with fewer pairs than ranks: a rank with none still joins the gradient all-reduce,
        # with one pair weighted 0
        weight = 1.0 if mine else 0.0
        mine = mine or index[:1]
        data = self.train_data
        batch = collate([data.src_ids[i] for i in mine], [data.tgt_ids[i] for i in mine], multiple)
        result = self.train_step(batch, weight * dist.world / n_tokens)
        loss_sum, nll_sum, grad_norm = result or (0.0, 0.0, 0.0)
        progress.step += 1
        progress.batch += 1
        progress.train_seconds = self._seconds_before + time.monotonic() - self._started
        out_of_time = self.time_budget is not None and progress.train_seconds >= self.time_budget
        # ranks agree on the batch's loss and on whether to stop (one small all-reduce)
        flags = [weight * loss_sum, weight * nll_sum, float(self.signals.received is not None), float(out_of_time)]
        loss_sum, nll_sum, signalled, out_of_time = dist.sum(flags, self.device)
        if result is not None:  # a skipped batch (train.nonfinite=skip) is left out of the averages
            self.window.add(loss_sum, nll_sum, grad_norm, n_tokens)
        return bool(signalled), bool(out_of_time)

    def _after_step(self, signalled: bool, out_of_time: bool) -> str | None:
        """Log, validate or checkpoint where due; returns why training stops after this step, or None."""
        tc, progress = self.config.train, self.progress
        stop = None
        if progress.step % tc.log_every == 0:
            self._log_train()
        if progress.step % tc.valid_every == 0:
            if self._validate_and_save():
                stop = "early stopping"
            # a signal during validation stops here, not after one more step
            (late,) = self.dist.sum([float(self.signals.received is not None)], self.device)
            signalled = signalled or bool(late)
        elif progress.step % tc.checkpoint_every == 0:
            self._save_last()
        if tc.max_steps is not None and progress.step >= tc.max_steps:
            stop = stop or "max_steps"
        if out_of_time:
            stop = stop or "max_time"
        if signalled:
            self.signals.received = self.signals.received or signal.SIGTERM  # another rank was signalled
            stop = stop or f"signal {self.signals.name}"
        return stop

    def train_step(self, batch, scale: float) -> tuple[float, float, float] | None:
        """One update on ``batch``, this rank's share of a whole batch, minimising ``scale * loss_sum``.

        With one process ``scale`` is 1 / target tokens. DDP averages gradients over N ranks, so
        each rank's scale is N / (the whole batch's target tokens) and the update is exactly that
        of one process on the whole batch. Returns this rank's summed loss and NLL and the
        gradient norm, or None when the batch was skipped.
        """
        tc = self.config.train
        self.model.train()
        batch = batch.to(self.device)
        with autocast(self.precision, self.device):
            loss_sum, nll_sum = self.objective(
                batch.src, batch.src_lens, batch.tgt_in, batch.tgt_out, tc.teacher_forcing, tc.label_smoothing
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.lr.before_update(self.progress.step, self.progress.train_seconds)
        (loss_sum * scale).backward()
        crash_point("step")  # tests: killed between the backward pass and the update
        max_norm = tc.clip_grad_norm if tc.clip_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if not torch.isfinite(grad_norm):  # checked before the update, so the weights stay good
            self.nonfinite.bad(loss_sum.item(), self.progress, self.out_dir / "last.pt")
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.nonfinite.good()
        self.optimizer.step()
        if self.average is not None:
            self.average.update(self.progress.step + 1)
        self.lr.after_update()
        return loss_sum.item(), nll_sum.item(), grad_norm.item()

    def _log_train(self) -> None:
        values = self.window.values(self.lr.current)
        self.tracker.scalars(values, self.progress.step)
        self.metrics.update(values)
        self.window.reset()
        self.bar.loss(values["train/loss"])
        if self.slowdown is not None:
            self.slowdown.window(values["train/tokens_per_s"])
        if not self.dist.is_main:
            return
        max_steps, elapsed = self.config.train.max_steps, time.monotonic() - self._started
        rate = elapsed / max(self.progress.step - self._step_at_start, 1)  # seconds per update in this process
        eta = eta_seconds(self.progress, max_steps, self.time_budget, rate)
        log.info(progress_line(self.progress, values, max_steps, eta, elapsed), extra={"progress_line": True})

    # -- validation and checkpoints ---------------------------------------------------------

    def validate(self) -> dict[str, Any]:
        """Validation loss/perplexity (teacher forcing) and greedy BLEU/chrF on the whole valid split."""
        return validate(self.model, self.valid_data, self.vocab, self.device, self.precision, self.config.train)

    def _validate_and_save(self) -> bool:
        """Validate, log, checkpoint; returns True when early stopping says stop."""
        tc, progress = self.config.train, self.progress
        start = time.monotonic()
        with self.average.applied() if self.average is not None else contextlib.nullcontext():
            result = self.validate() if self.dist.is_main else None  # other ranks wait for its BLEU
            if result:
                setting, examples = (self.device, self.precision, tc), (self.valid_data, self.vocab)
                log_examples(
                    self.tracker, self.model, *examples, setting, result["hypotheses"], progress.step, self.out_dir
                )
        bleu = self.dist.broadcast(result["bleu"] if result else None)
        if result:
            self.tracker.scalars(scalars(result), progress.step)
            self.metrics.update(scalars(result))
        self.lr.after_validation(bleu)
        improved = bleu > progress.best_bleu
        if improved:
            progress.best_bleu, progress.best_step, progress.bad_validations = bleu, progress.step, 0
        else:
            progress.bad_validations += 1
        progress.last_valid_step = progress.step
        self._save_last()  # before best.pt: a crash between the two still leaves a resumable run
        if improved and self.dist.is_main:
            self.checkpoints.save_best(progress, self.metrics)
        if result:
            log.info(summary_line(progress.step, result, improved, time.monotonic() - start))
            self.tracker.flush()
        self.window.pause(time.monotonic() - start)  # the train/* rates are training's alone
        return progress.bad_validations >= tc.early_stopping

    def _save_last(self) -> None:
        """Write last.pt (rank 0). Collective under DDP: every rank's RNG state goes into the file."""
        states = self.dist.gather(rng_state())
        if self.dist.is_main:
            self.tracker.flush()  # what was logged up to this checkpoint survives a crash after it
            self.checkpoints.save_last(self.progress, self.metrics, states)

    # -- the end ----------------------------------------------------------------------------

    def _finish(self, stop: str) -> dict[str, float]:
        progress = self.progress
        if self.window.steps:  # the last partial window: a run shorter than log_every still logs train/*
            self._log_train()
        signalled = stop.startswith("signal")  # agreed by every rank, unlike self.signals.received
        if not signalled and progress.last_valid_step != progress.step:
            self._validate_and_save()  # also writes last.pt
        else:
            self._save_last()
        log.info("stopping at step %d (epoch %d): %s", progress.step, progress.epoch + 1, stop)
        if signalled and self.dist.is_main:
            _how_to_continue(self.out_dir)
        final = final_metrics(progress, self.metrics)
        # no best/* before a first validation: a -1 would set the chart's scale after a resume
        shown = {k: v for k, v in final.items() if progress.best_bleu >= 0 or not k.startswith("best/")}
        self.tracker.hparams(hparams_of(self.config), shown, progress.step)
        self.tracker.close()
        self.objective = Objective(self.model)  # release the DDP wrapper (and its hold on the process group)
        if self.dist.is_main:
            _report(self.out_dir, progress, final, stop, signalled)
        return {**final, "stop": stop, "step": progress.step}


def _how_to_continue(out: Path) -> None:
    requeued_by = scheduler()
    if requeued_by is not None:
        log.info("saved %s; %s starts this command again to continue it", out / "last.pt", requeued_by)
    else:
        log.info("saved %s; continue with: python train.py train.resume=true hydra.run.dir=%s", out / "last.pt", out)


def _report(out: Path, progress: Progress, final: dict[str, float], stop: str, signalled: bool) -> None:
    """metrics.json, and the lines that say what to run next."""
    (out / "metrics.json").write_text(json.dumps({**final, "stop": stop, "step": progress.step}, indent=2))
    if progress.best_bleu >= 0 and not signalled:
        best = out / "best.pt"
        log.info("best: %s (valid BLEU %.2f at step %d)", best, progress.best_bleu, progress.best_step)
        log.info("translate: seq2seq-translate --checkpoint %s", best)
        log.info("evaluate:  make eval RUN=%s", out)


def _description(trainer: Trainer) -> str:
    """``model: attention=bahdanau, 1 head, 3.12M parameters, device cpu, bf16 (precision=auto), 2 threads``."""
    config, tc = trainer.config, trainer.config.train
    precision = trainer.precision if tc.precision != "auto" else f"{trainer.precision} (precision=auto)"
    n_params = sum(p.numel() for p in trainer.model.parameters()) / 1e6
    processes = f", {trainer.dist.world} processes" if trainer.dist.enabled else ""
    return (
        f"model: {describe(config)}, {n_params:.2f}M parameters, device {trainer.device}, "
        f"{precision}, {_count(torch.get_num_threads(), 'thread')}{processes}"
    )


def _count(n: int, thing: str) -> str:
    """``1 thread``, ``2 threads``."""
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"
