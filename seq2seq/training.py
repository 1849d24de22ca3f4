"""The training loop: ``train(config, out_dir)``.

One run lives in one directory: TensorBoard events, ``train.log``, ``config.json``, ``best.pt``
(written at each validation that improves BLEU) and ``last.pt`` (every
``train.checkpoint_every`` steps, at each validation and at the end). ``train.resume=true``
continues from ``last.pt`` with the optimiser, scheduler, RNG and data position restored, so a
run killed at any moment (even with ``kill -9``) continues exactly as if it had never stopped.
Under ``torchrun`` the same loop trains data-parallel (see :mod:`seq2seq.distributed`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import math
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from seq2seq.averaging import WeightAverage
from seq2seq.batching import collate, epoch_batches, token_batches
from seq2seq.checkpoint import load_checkpoint, remove_partial_writes, save_checkpoint
from seq2seq.config import Config, parse_duration
from seq2seq.corpus import prepare_data
from seq2seq.devices import pick_device
from seq2seq.distributed import Distributed
from seq2seq.errors import CheckpointError, RunDirError, Seq2SeqError
from seq2seq.faults import crash_point
from seq2seq.loss import Objective, generator_loss
from seq2seq.metrics import attention_statistics, corpus_scores
from seq2seq.model import Seq2Seq, build_model
from seq2seq.plots import attention_figure
from seq2seq.precision import autocast, resolve_precision
from seq2seq.rundir import RunDirLock
from seq2seq.runtime import bound_kernel_caches
from seq2seq.search import decode_corpus
from seq2seq.tracking import Tracker
from seq2seq.vocab import Vocab

log = logging.getLogger("seq2seq")

MODEL_SECTIONS = ("data", "model", "attention")  # what a resumed run may not change ...
MOVABLE = ("data.root",)  # ... except where the corpus lives, which may move between sessions


class TrainingError(Seq2SeqError):
    """Training cannot go on (e.g. the loss became NaN)."""


@dataclass
class Progress:
    step: int = 0  # optimiser updates, counted across resumes
    epoch: int = 0
    batch: int = 0  # batches of the current epoch already trained on
    best_bleu: float = -1.0
    best_step: int = 0
    bad_validations: int = 0
    last_valid_step: int = -1
    train_seconds: float = 0.0  # wall time spent in this run's training processes
    skipped: int = 0  # batches dropped for a non-finite loss (train.nonfinite=skip)
    # how the epoch in progress was cut into batches: [batch_tokens, seed, pad_to_multiple]. A run
    # resumed mid-epoch with other values finishes the epoch as it was cut, so that `batch` counts
    # batches of the same list and no pair is trained twice or skipped; the new values start at the
    # next epoch
    epoch_batching: list[int] | None = None


def budget_lr(lr: float, min_lr: float, done: float, decay_start: float = 0.0) -> float:
    """The LR of ``train.scheduler=budget`` after a fraction ``done`` of the budget.

    Held at ``lr`` until ``decay_start``, then decayed linearly to ``min_lr`` at ``done = 1``.
    Under a fixed budget a decaying rate beats a constant or step-wise one (Li et al. 2020,
    "Budgeted training"): the run ends annealed instead of mid-descent. Holding the rate first
    (warmup-stable-decay) keeps the fast early progress and still anneals at the end.
    """
    decay = (min(done, 1.0) - decay_start) / (1.0 - decay_start)
    return max(min_lr, lr * (1.0 - max(decay, 0.0)))


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
        self.dist = dist = dist or Distributed()
        tc = config.train
        random.seed(tc.seed + dist.rank)  # ranks draw different dropout masks; rank 0 matches one process
        torch.manual_seed(tc.seed + dist.rank)
        if tc.threads is not None:
            torch.set_num_threads(tc.threads)
        self.device = pick_device(dist.device(tc.device), "train.device")
        self.precision = resolve_precision(tc.precision, self.device, "train.precision")
        if not dist.is_main:
            dist.barrier()  # rank 0 trains SentencePiece and fills the caches first; the others read them
        vocab_state, self.train_data, self.valid_data = prepare_data(config, resume["vocab"] if resume else None)
        self.data_fingerprint = {"train": self.train_data.fingerprint, "valid": self.valid_data.fingerprint}
        if resume:
            self._check_same_data(resume.get("data_fingerprint"))
        self.vocab = Vocab.from_state_dict(vocab_state)
        if dist.is_main:
            dist.barrier()
        self.model: Seq2Seq = build_model(len(self.vocab.src), len(self.vocab.tgt), config.model, config.attention)
        self.model.to(self.device)
        self.objective: torch.nn.Module = Objective(self.model)  # what the training step calls ...
        if dist.enabled:  # ... or its DDP wrapper, which broadcasts rank 0's initial weights to every rank
            self.objective = torch.nn.parallel.DistributedDataParallel(
                self.objective, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.optimizer = torch.optim.Adam(
            self.model.parameters(),
            lr=tc.lr,
            betas=tuple(tc.betas),
            weight_decay=tc.weight_decay,
            fused=self.device.type in ("cpu", "cuda"),  # one kernel for all parameters: 4x faster on CPU
        )
        # the weights that validation, best.pt and translation use: an average of the trained ones, or themselves
        self.average = WeightAverage(self.model, tc.ema) if tc.ema is not None else None
        self.time_budget = parse_duration(tc.max_time)  # training seconds in total, across resumes
        self.scheduler = self._make_scheduler()
        self.progress = Progress()
        self.metrics: dict[str, float] = {}
        if resume:
            self._restore(resume)
            if dist.is_main:
                self._repair_best()
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info(
            "model: attention=%s, %.2fM parameters, device %s, %s, %d threads%s",
            config.attention.type,
            n_params / 1e6,
            self.device,
            self.precision if tc.precision != "auto" else f"{self.precision} (precision=auto)",
            torch.get_num_threads(),
            f", {dist.world} processes" if dist.enabled else "",
        )
        self.tracker = Tracker(out_dir if dist.is_main else None)
        self._signal: int | None = None
        self._bad_in_a_row = 0

    def _check_same_data(self, saved: dict | None) -> None:
        """Refuse to resume on a corpus other than the checkpoint's, unless ``train.resume_data=changed``."""
        if not saved:
            log.warning("last.pt predates corpus fingerprints: cannot tell whether the corpus changed")
            return
        changes = [
            f"{split} split: {then['pairs']:,} pairs then, {now['pairs']:,} now"
            + ("" if then["pairs"] != now["pairs"] else " (same count, different text)")
            for split in ("train", "valid")
            if (then := saved.get(split)) and (now := self.data_fingerprint[split]) and then != now
        ]
        if not changes:
            return
        if self.config.train.resume_data == "changed":
            log.warning("resuming on a changed corpus (train.resume_data=changed): %s", "; ".join(changes))
            return
        raise RunDirError(
            f"train.resume=true but the corpus differs from the one {self.out_dir / 'last.pt'} was trained on "
            f"({'; '.join(changes)}); restore that corpus, or continue on this one with train.resume_data=changed"
        )

    def _make_scheduler(self):
        tc = self.config.train
        self.schedule = tc.scheduler
        if tc.scheduler == "auto":
            bounded = tc.max_steps is not None or tc.max_time is not None
            self.schedule = "budget" if bounded else "plateau"
        if self.schedule == "budget":
            return None  # a function of progress alone: see _budget_lr
        if self.schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="max", factor=tc.lr_factor, patience=tc.lr_patience, min_lr=tc.min_lr
            )
        if self.schedule == "warmup":  # linear warmup, then decay with 1/sqrt(step) (Vaswani et al. 2017)
            warmup = tc.warmup_steps
            return torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda step: min((step + 1) / warmup, math.sqrt(warmup / (step + 1)))
            )
        return None

    def _budget_lr(self) -> float:
        """:func:`budget_lr` at the run's progress through ``max_steps`` or ``max_time``, whichever is further."""
        tc, progress = self.config.train, self.progress
        done = 0.0
        if tc.max_steps is not None:
            done = progress.step / tc.max_steps
        if tc.max_time is not None:
            done = max(done, progress.train_seconds / self.time_budget)
        return budget_lr(tc.lr, tc.min_lr, done, tc.decay_start)

    def _autocast(self):
        return autocast(self.precision, self.device)

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> dict[str, float]:
        tc, progress = self.config.train, self.progress
        budget = self.time_budget
        start = time.monotonic()
        train_seconds_before = progress.train_seconds
        src_lens = [len(s) for s in self.train_data.src_ids]
        tgt_lens = [len(t) for t in self.train_data.tgt_ids]
        window = {"loss": 0.0, "nll": 0.0, "tokens": 0, "grad": 0.0, "steps": 0, "start": time.monotonic()}
        self._window, self._started, self._step_at_start = window, start, progress.step
        if self.dist.is_main:
            log.info("run dir: %s", self.out_dir)
        stop = None  # a resumed run may have finished already
        if tc.max_steps is not None and progress.step >= tc.max_steps:
            stop = "max_steps"
        elif progress.bad_validations >= tc.early_stopping:
            stop = "early stopping (raise train.early_stopping to go on)"
        with self._signals(), logging_redirect_tqdm():
            while stop is None:
                batch_tokens, seed, multiple = self._epoch_batching()
                batches = epoch_batches(src_lens, tgt_lens, batch_tokens, seed, progress.epoch, multiple)
                bar = tqdm(  # towards max_steps where it is set, else through the epoch
                    total=tc.max_steps or len(batches),
                    initial=progress.step if tc.max_steps else progress.batch,
                    desc=f"epoch {progress.epoch + 1}",
                    disable=None if self.dist.is_main else True,
                    leave=False,
                    unit="batch",
                )
                for index in batches[progress.batch :]:
                    n_tokens = sum(tgt_lens[i] + 1 for i in index)  # the whole batch's, over every rank
                    mine = self.dist.shard(index)
                    # a batch with fewer pairs than ranks: a rank with none still joins the gradient
                    # all-reduce, with one pair weighted 0
                    weight = 1.0 if mine else 0.0
                    mine = mine or index[:1]
                    batch = collate(
                        [self.train_data.src_ids[i] for i in mine],
                        [self.train_data.tgt_ids[i] for i in mine],
                        multiple,
                    )
                    result = self.train_step(batch, weight * self.dist.world / n_tokens)
                    loss_sum, nll_sum, grad_norm = result or (0.0, 0.0, 0.0)
                    loss_sum, nll_sum = weight * loss_sum, weight * nll_sum
                    progress.step += 1
                    progress.batch += 1
                    progress.train_seconds = train_seconds_before + time.monotonic() - start
                    out_of_time = budget is not None and progress.train_seconds >= budget
                    # ranks agree on the batch's loss and on whether to stop (one small all-reduce)
                    loss_sum, nll_sum, signalled, out_of_time = self.dist.sum(
                        [loss_sum, nll_sum, float(self._signal is not None), float(out_of_time)], self.device
                    )
                    bar.update()
                    if result is not None:  # a skipped batch (train.nonfinite=skip) is left out of the averages
                        window["loss"] += loss_sum
                        window["nll"] += nll_sum
                        window["grad"] += grad_norm
                        window["tokens"] += n_tokens
                        window["steps"] += 1
                    if progress.step % tc.log_every == 0:
                        self._log_train(window)
                        bar.set_postfix(loss=f"{self.metrics['train/loss']:.3f}")
                    if progress.step % tc.valid_every == 0:
                        if self._validate_and_save():
                            stop = "early stopping"
                        # a signal during validation stops here, not after one more step
                        (late,) = self.dist.sum([float(self._signal is not None)], self.device)
                        signalled = signalled or late
                    elif progress.step % tc.checkpoint_every == 0:
                        self._save_last()
                    if tc.max_steps is not None and progress.step >= tc.max_steps:
                        stop = stop or "max_steps"
                    if out_of_time:
                        stop = stop or "max_time"
                    if signalled:
                        self._signal = self._signal or signal.SIGTERM  # another rank was signalled
                        stop = stop or f"signal {signal.Signals(self._signal).name}"
                    if stop:
                        break
                bar.close()
                if stop is None:
                    progress.epoch += 1
                    progress.batch = 0
                    if progress.epoch >= tc.max_epochs:
                        stop = "max_epochs"
        return self._finish(stop)

    def _epoch_batching(self) -> list[int]:
        """``[batch_tokens, seed, pad_to_multiple]`` that cut the current epoch into batches."""
        tc, progress = self.config.train, self.progress
        current = [tc.batch_tokens, tc.seed, tc.pad_to_multiple]
        saved = progress.epoch_batching
        if progress.batch > 0 and saved is not None and list(saved) != current:
            log.warning(
                "epoch %d was cut into batches with batch_tokens=%d, seed=%d, pad_to_multiple=%d and is %d "
                "batches in: it finishes that way; the new values apply from epoch %d",
                progress.epoch + 1,
                *saved,
                progress.batch,
                progress.epoch + 2,
            )
            return list(saved)
        progress.epoch_batching = current
        return current

    def _finish(self, stop: str) -> dict[str, float]:
        progress = self.progress
        if self._window["steps"]:  # the last partial window: a run shorter than log_every still logs train/*
            self._log_train(self._window)
        log.info("stopping at step %d (epoch %d): %s", progress.step, progress.epoch + 1, stop)
        signalled = stop.startswith("signal")  # agreed by every rank, unlike self._signal
        if not signalled and progress.last_valid_step != progress.step:
            self._validate_and_save()  # also writes last.pt
        else:
            self._save_last()
        if signalled and self.dist.is_main:
            log.info(
                "saved %s; continue with: python train.py train.resume=true hydra.run.dir=%s",
                self.out_dir / "last.pt",
                self.out_dir,
            )
        final = {
            "best/valid_bleu": progress.best_bleu,
            "best/step": float(progress.best_step),
            **{k: v for k, v in self.metrics.items() if k.startswith("valid/")},
        }
        if progress.skipped:
            final["skipped_batches"] = float(progress.skipped)
        self.tracker.hparams(self._hparams(), final, progress.step)
        self.tracker.close()
        self.objective = Objective(self.model)  # release the DDP wrapper (and its hold on the process group)
        if self.dist.is_main:
            (self.out_dir / "metrics.json").write_text(
                json.dumps({**final, "stop": stop, "step": progress.step}, indent=2)
            )
            if progress.best_bleu >= 0 and not signalled:
                best = self.out_dir / "best.pt"
                log.info("best: %s (valid BLEU %.2f at step %d)", best, progress.best_bleu, progress.best_step)
                log.info("translate: seq2seq-translate --checkpoint %s", best)
                log.info("evaluate:  make eval RUN=%s", self.out_dir)
        return {**final, "stop": stop, "step": progress.step}

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
        with self._autocast():
            loss_sum, nll_sum = self.objective(
                batch.src, batch.src_lens, batch.tgt_in, batch.tgt_out, tc.teacher_forcing, tc.label_smoothing
            )
        self.optimizer.zero_grad(set_to_none=True)
        if self.schedule == "budget":
            for group in self.optimizer.param_groups:
                group["lr"] = self._budget_lr()
        (loss_sum * scale).backward()
        crash_point("step")  # tests: killed between the backward pass and the update
        max_norm = tc.clip_grad_norm if tc.clip_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if not torch.isfinite(grad_norm):  # checked before the update, so the weights stay good
            self._nonfinite(loss_sum.item())
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self._bad_in_a_row = 0
        self.optimizer.step()
        if self.average is not None:
            self.average.update(self.progress.step + 1)
        if isinstance(self.scheduler, torch.optim.lr_scheduler.LambdaLR):
            self.scheduler.step()
        return loss_sum.item(), nll_sum.item(), grad_norm.item()

    def _nonfinite(self, loss: float) -> None:
        """A NaN/inf loss or gradient (the same on every rank): stop, or skip the batch when configured."""
        tc, step = self.config.train, self.progress.step + 1
        self._bad_in_a_row += 1
        advice = "lower train.lr, keep train.clip_grad_norm on, or use train.precision=fp32"
        if tc.nonfinite == "stop":
            raise TrainingError(
                f"the loss or its gradient became {loss} at step {step}; the weights were not updated and the "
                f"last good checkpoint is {self.out_dir / 'last.pt'}; {advice} (or train.nonfinite=skip)"
            )
        if self._bad_in_a_row >= tc.max_skips:
            raise TrainingError(
                f"{self._bad_in_a_row} batches in a row had a non-finite loss or gradient (step {step}); "
                f"the last good checkpoint is {self.out_dir / 'last.pt'}; {advice}"
            )
        self.progress.skipped += 1
        log.warning("step %d: loss %s is not finite; batch skipped (%d so far)", step, loss, self.progress.skipped)

    def _log_train(self, window: dict) -> None:
        elapsed = time.monotonic() - window["start"]
        tokens = max(window["tokens"], 1)
        values = {
            "train/loss": window["loss"] / tokens,
            "train/ppl": math.exp(min(window["nll"] / tokens, 50.0)),
            "train/lr": self.optimizer.param_groups[0]["lr"],
            "train/grad_norm": window["grad"] / max(window["steps"], 1),
            "train/tokens_per_s": window["tokens"] / max(elapsed, 1e-9),
        }
        self.tracker.scalars(values, self.progress.step)
        self.metrics.update(values)
        window.update(loss=0.0, nll=0.0, tokens=0, grad=0.0, steps=0, start=time.monotonic())
        if self.dist.is_main:
            log.info(self._progress_line(values), extra={"progress_line": True})

    def _progress_line(self, values: dict[str, float]) -> str:
        """``step 250/2,000 | epoch 2 | loss 3.412 ppl 25.1 | lr 1.0e-03 | 7,650 tok/s | 0:35, ETA 4:05``."""
        tc, progress = self.config.train, self.progress
        elapsed = time.monotonic() - self._started
        done_here = max(progress.step - self._step_at_start, 1)
        remaining = []
        if tc.max_steps is not None:
            remaining.append((tc.max_steps - progress.step) * elapsed / done_here)
        if self.time_budget is not None:
            remaining.append(self.time_budget - progress.train_seconds)
        eta = f", ETA {_clock(max(min(remaining), 0.0))}" if remaining else ""
        total = f"/{tc.max_steps:,}" if tc.max_steps is not None else ""
        return (
            f"step {progress.step:,}{total} | epoch {progress.epoch + 1} | loss {values['train/loss']:.3f} "
            f"ppl {values['train/ppl']:.1f} | lr {values['train/lr']:.1e} | {values['train/tokens_per_s']:,.0f} tok/s "
            f"| {_clock(elapsed)} elapsed{eta}"
        )

    # -- validation -------------------------------------------------------------------------

    @torch.inference_mode()
    def validate(self) -> dict[str, Any]:
        """Validation loss/perplexity (teacher forcing) and greedy BLEU/chrF on the whole valid split."""
        tc, data = self.config.train, self.valid_data
        self.model.eval()
        nll_total, tokens = 0.0, 0
        entropy = distance = rows = 0  # attention statistics over the reference (teacher forcing)
        lens_src = [len(s) for s in data.src_ids]
        lens_tgt = [len(t) for t in data.tgt_ids]
        for index in token_batches(lens_src, lens_tgt, tc.batch_tokens * 2, multiple=tc.pad_to_multiple):
            src, tgt = [data.src_ids[i] for i in index], [data.tgt_ids[i] for i in index]
            batch = collate(src, tgt, tc.pad_to_multiple).to(self.device)
            with self._autocast():  # chunked like training: the batch's (B, T, V) logits never exist
                features, attention = self.model.features(batch.src, batch.src_lens, batch.tgt_in)
                nll_total += float(generator_loss(features, self.model.generator, batch.tgt_out)[1])
            if attention is not None:
                out_lens = torch.tensor([len(t) + 1 for t in tgt])  # + EOS
                e, d, n = attention_statistics(attention, batch.src_lens, out_lens)
                entropy, distance, rows = entropy + e, distance + d, rows + n
            tokens += batch.n_tokens
        crash_point("validation")  # tests: killed between the loss pass and decoding
        hyps = decode_corpus(
            self.model, data.src_ids, self.device, tc.valid_batch_size, tc.max_output_ratio, precision=self.precision
        )
        texts = [self.vocab.decode_tgt(h.tokens) for h in hyps]
        scores = corpus_scores(texts, data.tgt_texts)
        attention_figures = {"attention_entropy": entropy / rows, "attention_diagonal": distance / rows} if rows else {}
        return {
            "loss": nll_total / tokens,
            "ppl": math.exp(min(nll_total / tokens, 50.0)),
            **scores,
            **attention_figures,
            "hypotheses": texts,
        }

    def _validate_and_save(self) -> bool:
        """Validate, log, checkpoint; returns True when early stopping says stop."""
        tc, progress = self.config.train, self.progress
        start = time.monotonic()
        with self._evaluated_weights():
            result = self.validate() if self.dist.is_main else None  # other ranks wait for its BLEU
            if result:
                self._log_examples(result["hypotheses"], progress.step)
        bleu = self.dist.broadcast(result["bleu"] if result else None)
        step = progress.step
        if result:
            values = {
                "valid/loss": result["loss"],
                "valid/ppl": result["ppl"],
                "valid/bleu": result["bleu"],
                "valid/chrf": result["chrf"],
            }
            for key in ("attention_entropy", "attention_diagonal"):  # attention models only
                if key in result:
                    values[f"valid/{key}"] = result[key]
            self.tracker.scalars(values, step)
            self.metrics.update(values)
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(bleu)
        improved = bleu > progress.best_bleu
        if improved:
            progress.best_bleu, progress.best_step, progress.bad_validations = bleu, step, 0
        else:
            progress.bad_validations += 1
        progress.last_valid_step = step
        self._save_last()  # before best.pt: a crash between the two still leaves a resumable run
        if improved and self.dist.is_main:
            save_checkpoint(self._payload(full=False), self.out_dir / "best.pt")
        if not result:
            return progress.bad_validations >= tc.early_stopping
        log.info(
            "step %d | valid loss %.3f ppl %.2f | BLEU %.2f chrF %.2f%s | %.1fs | %s",
            step,
            result["loss"],
            result["ppl"],
            result["bleu"],
            result["chrf"],
            " (best)" if improved else "",
            time.monotonic() - start,
            result["bleu_signature"],
        )
        self.tracker.flush()
        return progress.bad_validations >= tc.early_stopping

    def _log_examples(self, hypotheses: list[str], step: int) -> None:
        """Sample translations as text, and labelled attention heatmaps for fixed sentences."""
        tc, data = self.config.train, self.valid_data
        lines = []
        for i in range(min(tc.n_samples, len(hypotheses))):
            lines.append(
                f"**source:** {data.src_texts[i]}  \n**reference:** {data.tgt_texts[i]}  \n**output:** {hypotheses[i]}"
            )
        self.tracker.text("valid/samples", "\n\n".join(lines), step)
        if not self.model.has_attention or tc.n_heatmaps == 0:
            return
        src_ids = data.src_ids[: tc.n_heatmaps]
        hyps = decode_corpus(
            self.model, src_ids, self.device, len(src_ids), tc.max_output_ratio, True, precision=self.precision
        )
        for i, (ids, hyp) in enumerate(zip(src_ids, hyps)):
            src_labels = self.vocab.src_pieces(ids) + ["</s>"]
            out_labels = self.vocab.tgt_pieces(hyp.tokens) + ["</s>"]
            fig = attention_figure(
                hyp.attention.numpy(),
                src_labels,
                out_labels[: hyp.attention.size(0)],
                title=f"valid sentence {i}, step {step}",
            )
            self.tracker.figure(f"attention/{i}", fig, step)

    def _evaluated_weights(self):
        """Inside the block the model holds the weights that are validated and kept (see ``train.ema``)."""
        return self.average.applied() if self.average is not None else contextlib.nullcontext()

    # -- checkpoints ------------------------------------------------------------------------

    def _payload(self, full: bool) -> dict[str, Any]:
        """A checkpoint. ``model`` holds the evaluated weights (the average under ``train.ema``), which
        translation and evaluation load; a full one adds what resuming needs, the trained weights
        (``trained_model``) among it when they differ."""
        payload = {
            "config": self.config.to_dict(),
            "vocab": self.vocab.state_dict(),
            "model": self.average.state_dict() if self.average is not None else self.model.state_dict(),
            "progress": asdict(self.progress),
            "metrics": dict(self.metrics),
            "data_fingerprint": self.data_fingerprint,
        }
        if full:
            if self.average is not None:
                payload["trained_model"] = self.model.state_dict()
            payload["optimizer"] = self.optimizer.state_dict()
            payload["scheduler"] = None if self.scheduler is None else self.scheduler.state_dict()
            payload["rng"] = _rng_state()
        return payload

    def _save_last(self) -> None:
        """Write last.pt (rank 0). Collective under DDP: every rank's RNG state goes into the file."""
        states = self.dist.gather(_rng_state())
        if not self.dist.is_main:
            return
        self.tracker.flush()  # what was logged up to this checkpoint survives a crash after it
        payload = self._payload(full=True)
        if self.dist.enabled:
            payload["rng_by_rank"] = states
        save_checkpoint(payload, self.out_dir / "last.pt")

    def _restore(self, payload: dict[str, Any]) -> None:
        trained = payload.get("trained_model", payload["model"])
        self.model.load_state_dict(trained)
        if self.average is not None:  # a run that had no average starts one from its weights
            self.average.load_state_dict(payload["model"] if "trained_model" in payload else trained)
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scheduler is not None and payload.get("scheduler") is not None:
            self.scheduler.load_state_dict(payload["scheduler"])
        self.progress = Progress(**payload["progress"])
        if self.progress.epoch_batching is None:  # written before the field existed: by its own config
            saved = payload["config"]["train"]
            self.progress.epoch_batching = [saved["batch_tokens"], saved["seed"], saved.get("pad_to_multiple", 1)]
        self.metrics = dict(payload.get("metrics", {}))
        saved_ranks = payload.get("rng_by_rank") or [payload["rng"]]
        if len(saved_ranks) == self.dist.world:
            rng = saved_ranks[self.dist.rank]
            torch.set_rng_state(rng["torch"])
            random.setstate(_as_tuple(rng["python"]))
            if rng["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
        else:  # resumed with another number of processes: same data order, new dropout draws
            seed = self.config.train.seed + 7919 * self.progress.step + self.dist.rank
            torch.manual_seed(seed)
            random.seed(seed)
            log.warning(
                "last.pt was written by %d processes and this run has %d: the data order continues exactly, "
                "dropout draws do not",
                len(saved_ranks),
                self.dist.world,
            )
        log.info(
            "resumed from %s at step %d (epoch %d, batch %d)",
            self.out_dir / "last.pt",
            self.progress.step,
            self.progress.epoch + 1,
            self.progress.batch,
        )

    def _repair_best(self) -> None:
        """Rewrite best.pt if a crash hit between writing last.pt and best.pt at the best validation."""
        progress, path = self.progress, self.out_dir / "best.pt"
        if progress.best_bleu < 0 or progress.best_step != progress.step:
            return  # the best model is not the one just restored, so best.pt was written before
        try:
            written = load_checkpoint(path)["progress"]["step"] if path.exists() else None
        except CheckpointError:
            written = None
        if written != progress.best_step:
            save_checkpoint(self._payload(full=False), path)
            log.info("rewrote %s with the step-%d model that a crash kept from it", path, progress.best_step)

    def _hparams(self) -> dict[str, Any]:
        flat = {}
        for section in ("model", "attention", "train"):
            for key, value in asdict(getattr(self.config, section)).items():
                if isinstance(value, (int, float, str, bool)):
                    flat[f"{section}.{key}"] = value
        flat["data.name"] = f"{self.config.data.name}:{self.config.data.src}-{self.config.data.tgt}"
        return flat

    def _signals(self):
        """SIGINT/SIGTERM finish the current step, save last.pt and stop (a second SIGINT aborts)."""
        trainer = self

        class Handlers:
            def __enter__(self):
                self.saved = {}
                if threading.current_thread() is not threading.main_thread():
                    return self
                for sig in (signal.SIGINT, signal.SIGTERM):
                    self.saved[sig] = signal.signal(sig, self.handle)
                return self

            def handle(self, signum, frame):
                if trainer._signal is not None and signum == signal.SIGINT:
                    raise KeyboardInterrupt
                trainer._signal = signum
                log.warning("received %s: saving and stopping after this step", signal.Signals(signum).name)

            def __exit__(self, *exc):
                for sig, handler in self.saved.items():
                    signal.signal(sig, handler)

        return Handlers()


def _clock(seconds: float) -> str:
    """``3725`` -> ``1:02:05``; ``65`` -> ``1:05``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _resume_config(config: Config, saved: dict[str, Any], overrides: list[str] | None) -> Config:
    """The checkpoint's data/model/attention with this invocation's train section.

    An override that would change the model or data is refused; with ``overrides=None``
    (a direct call) every difference counts as one.
    """
    current = config.to_dict()
    old = _flatten({k: saved[k] for k in MODEL_SECTIONS})
    new = _flatten({k: current[k] for k in MODEL_SECTIONS})
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k not in MOVABLE)
    if overrides is not None:
        keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
        changed = [k for k in changed if any(k == o or k.startswith(o + ".") for o in keys)]
    if changed:
        details = "; ".join(f"{k}: {old.get(k)!r} in the checkpoint, {new.get(k)!r} now" for k in changed[:5])
        raise RunDirError(
            f"train.resume=true cannot change the model or data of a run ({details}); "
            "drop those overrides or start a new run in another directory"
        )
    sections = {k: saved[k] for k in MODEL_SECTIONS}
    sections["data"] = {**sections["data"], "root": current["data"]["root"]}
    return Config.from_dict({**sections, "train": current["train"]})


def _open_run_dir(out_dir: Path, config: Config, overrides: list[str] | None) -> tuple[Config, dict | None]:
    """Refuse to overwrite a run; on resume, load ``last.pt`` and the config it was trained with."""
    has_checkpoint = (out_dir / "last.pt").exists() or (out_dir / "best.pt").exists()
    if not config.train.resume:
        if has_checkpoint:
            raise RunDirError(
                f"{out_dir} already holds a checkpoint; continue it with train.resume=true "
                "or choose another directory (hydra.run.dir=...)"
            )
        return config, None
    if not (out_dir / "last.pt").exists():
        raise RunDirError(
            f"train.resume=true but {out_dir / 'last.pt'} does not exist; point hydra.run.dir at the run to continue"
        )
    payload = load_checkpoint(out_dir / "last.pt")
    if "optimizer" not in payload:
        raise RunDirError(f"{out_dir / 'last.pt'} has no optimiser state, so it cannot be resumed")
    return _resume_config(config, payload["config"], overrides), payload


def train(config: Config, out_dir: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Train (or, with ``train.resume``, continue) one run in ``out_dir``; returns the final metrics.

    ``overrides`` are the command-line overrides, used to tell a deliberate change of the model on
    resume from a default that differs from the checkpoint's config.
    """
    dist = Distributed.from_env(config.train.device)
    try:
        result = _train_in(config, out_dir, overrides, dist)
    except BaseException:
        dist.close(wait=False)  # a peer may be stuck in a collective; torchrun stops it
        raise
    dist.close(wait=True)
    return result


def _train_in(config: Config, out_dir: str | Path, overrides: list[str] | None, dist: Distributed) -> dict[str, Any]:
    out_dir = Path(dist.broadcast(str(out_dir)))  # Hydra's ${now:} may differ by a second between ranks
    # a device the machine lacks, or a precision it cannot run, fails before the run dir is touched
    device = pick_device(dist.device(config.train.device), "train.device")
    resolve_precision(config.train.precision, device, "train.precision")
    with RunDirLock(out_dir) if dist.is_main else contextlib.nullcontext():  # before anything is written
        config, resume = _open_run_dir(out_dir, config, overrides)
        dist.barrier()  # every rank has checked the directory before rank 0 writes into it
        if not dist.is_main:
            return _run_quietly(config, out_dir, resume, dist)
        for path in remove_partial_writes(out_dir):
            log.info("removed %s, left by an interrupted checkpoint write", path.name)
        # nothing in the run dir changes until the run can start: the setup's log lines wait in memory
        held = logging.handlers.MemoryHandler(capacity=1_000_000, flushLevel=logging.CRITICAL + 1)
        log.addHandler(held)
        try:
            trainer = Trainer(config, out_dir, resume, dist)
        finally:
            log.removeHandler(held)
        handler = logging.FileHandler(out_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        held.setTarget(handler)
        held.close()  # writes the held lines into train.log
        log.addHandler(handler)
        try:
            (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
            return trainer.run()
        finally:
            log.removeHandler(handler)
            handler.close()


def _run_quietly(config: Config, out_dir: Path, resume: dict | None, dist: Distributed) -> dict[str, Any]:
    """Ranks other than 0 train without logging progress (warnings and errors still show)."""
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        return Trainer(config, out_dir, resume, dist).run()
    finally:
        log.setLevel(level)
