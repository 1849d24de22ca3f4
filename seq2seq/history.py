"""Alignments forming over training: the attention of the fixed validation sentences at every validation.

At every validation the trainer appends one line to ``RUN/attention_history.jsonl``: the step and,
for each of the first ``train.n_heatmaps`` validation sentences (the ones TensorBoard shows as
``attention/<i>``), the greedy output's pieces and its attention rows, stored sparsely as the
explorer stores them (:func:`seq2seq.explorer.sparse_rows`)::

    {"step": 500, "sentences": [{"src": "...", "sp": [...], "hyp": "...", "op": [...], "att": [[[j, pm], ...], ...]}, ...]}

With multi-head attention each sentence also has ``"heads"``: every head's rows in the same form
(``"att"`` is then their mean). Each sentence also keeps what the explorer's step panel shows, every
score of every step (:func:`panel_fields`: the decoder replayed over its output, :mod:`seq2seq.lesson`):
``"sa"``, ``"m"``, ``"z"``, ``"cn"``, ``"vn"`` as a page record has them, or with heads
``"head_scores"``, one such dict per head. Histories written before hold the weights alone; the
slider needs no more, and ``make explore``'s step panel says what it lacks.

A line is written whole and flushed to disk before the checkpoint that follows it. When a run
resumes, lines after the restored step (a validation that a kill cut off before its checkpoint,
which the resumed run repeats) and a line a kill cut short are dropped (:func:`keep_until`), so
the file holds each validation once, in order. The explorer's training-step slider reads it
(:func:`page_history`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from seq2seq.attention_rows import step_fields
from seq2seq.lesson import Steps

HISTORY_FILE = "attention_history.jsonl"
SCORE_KEYS = ("sa", "m", "z", "cn", "vn", "head_scores")  # a sentence's step-panel fields (panel_fields)

log = logging.getLogger("seq2seq")


def append(run_dir: str | Path, step: int, sentences: list[dict[str, Any]]) -> None:
    """Add one validation's entry (``sentences``: ``{"src", "sp", "hyp", "op", "att"}`` each), durably."""
    line = json.dumps({"step": step, "sentences": sentences}, ensure_ascii=False, separators=(",", ":"))
    with open(Path(run_dir) / HISTORY_FILE, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def panel_fields(steps: Steps | None) -> dict[str, Any]:
    """A history sentence's step-panel fields: every score of every step (full rows,
    :func:`seq2seq.attention_rows.scored_rows`), per head where there are heads; none without ``steps``."""
    if steps is None or not len(steps.scores):
        return {}
    if steps.heads:
        return {"head_scores": [step_fields(head, full=True) for head in steps.heads]}
    return step_fields(steps, full=True)


def read(run_dir: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The entries of a run's history in step order (one per step), and a warning per damaged line."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.exists():
        return [], []
    entries: dict[int, dict[str, Any]] = {}
    warnings = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                step = int(entry["step"])
                if not isinstance(entry["sentences"], list):
                    raise TypeError("sentences is not a list")
            except (ValueError, KeyError, TypeError) as error:
                warnings.append(f"{path}: line {number} is damaged ({type(error).__name__}); skipped")
                continue
            entries[step] = entry  # a repeated step (a file from before resume kept it tidy) keeps the last
    return [entries[s] for s in sorted(entries)], warnings


def keep_until(run_dir: str | Path, step: int) -> None:
    """Drop the entries after ``step`` and any damaged line: the history of a run resumed at ``step``.

    Rewritten atomically (temporary file, fsync, rename), and only when something is dropped.
    """
    path = Path(run_dir) / HISTORY_FILE
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    kept = []
    for line in lines:
        try:
            if int(json.loads(line)["step"]) <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    if len(kept) == len(lines):
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in kept))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    log.info(
        "attention history: kept %d validation(s) up to step %d, dropped %d line(s)",
        len(kept),
        step,
        len(lines) - len(kept),
    )


def page_history(run_dir: str | Path, panel: bool = False) -> tuple[dict[str, Any] | None, str | None]:
    """The explorer's ``history`` (or None) and, where there is none or it is damaged, one line saying why.

    ``{"steps": [500, 1000, ...], "sentences": [{"src", "sp"}, ...], "frames": [[{"hyp", "op", "att"}, ...], ...]}``:
    ``frames[k][i]`` is sentence ``i`` at validation ``k`` (the weights: the slider draws heatmaps).
    With ``panel``, also ``"panel"``: the last validation's step-panel fields per sentence
    (:func:`panel_fields`; ``{}`` where the history holds none), for ``make explore``'s records.
    """
    entries, warnings = read(run_dir)
    for warning in warnings:
        log.warning("warning: %s", warning)
    note = f"{len(warnings)} damaged line(s) of {HISTORY_FILE} skipped." if warnings else None
    if not entries:
        if (Path(run_dir) / HISTORY_FILE).exists():
            return None, note or f"{HISTORY_FILE} holds no validation."
        return None, (
            f"No training history: this run has no {HISTORY_FILE} (written at every validation by "
            "attention models since this version of seq2seq)."
        )
    first = entries[0]["sentences"]
    frames = [[_frame(s) for s in e["sentences"]] for e in entries]
    sentences = [{"src": s.get("src", ""), "sp": s.get("sp", [])} for s in first]
    if any(len(f) != len(sentences) for f in frames):  # n_heatmaps changed on resume: keep what every entry has
        n = min(len(f) for f in frames)
        frames, sentences = [f[:n] for f in frames], sentences[:n]
    history = {"steps": [e["step"] for e in entries], "sentences": sentences, "frames": frames}
    if panel:
        last = entries[-1]["sentences"][: len(sentences)]
        history["panel"] = [{k: s[k] for k in SCORE_KEYS if k in s} for s in last]
    return history, note


def _frame(sentence: dict[str, Any]) -> dict[str, Any]:
    """What the page's slider needs of one sentence at one validation: output, pieces, rows (and heads)."""
    frame = {k: sentence.get(k) for k in ("hyp", "op", "att")}
    if "heads" in sentence:
        frame["heads"] = sentence["heads"]
    return frame
