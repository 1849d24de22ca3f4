# seq2seq — `make help` lists the targets.
PYTHON ?= python
RUN ?=
BEAM ?= 1
CKPT ?=
DATA ?= multi30k
STEPS ?= 2000
SEEDS ?= 1
DEVICE ?=
CONCAT ?= 1
OUT ?=
VARIANT ?= bahdanau
VARIANTS ?= none,luong,bahdanau
PRECISION ?= fp32
HOST ?= localhost
PORT ?= 6006
REF ?=
ROUNDS ?= 3

.DEFAULT_GOAL := help
.PHONY: help install test test-fast test-browser lint format demo train eval explore bench bench-ab peers length-study profile tensorboard clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install:  ## install torch 2.13.0 first (CPU wheel here), then this package with its dev tools
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"

test:  ## the whole test suite (about 12 minutes on 2 CPU cores)
	$(PYTHON) -m pytest -q

test-fast:  ## the suite without the slow tests (real training and commands in subprocesses)
	$(PYTHON) -m pytest -q -m "not slow and not browser"

test-browser:  ## the explorer page in headless Chromium, driven by Playwright (needs Debian's chromium package)
	$(PYTHON) -m pytest -q -m browser tests/test_browser.py

lint:  ## ruff lint + format check
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format:  ## apply ruff formatting and autofixes
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

demo:  ## the attention lesson on random tensors: every score function, then self-attention (heads, causal, positions), printed and plotted (OUT=file.png, default outputs/attention_demo.png; self-attention's beside it)
	$(PYTHON) scripts/attention_demo.py $(if $(OUT),--out $(OUT))

train:  ## train the default model (Bahdanau attention on Multi30k de-en)
	$(PYTHON) train.py

eval:  ## score a run's best.pt on its test splits (RUN=outputs/...; BEAM=5; CONCAT=8 adds long inputs; DEVICE=cuda) -> RUN/eval/<mode>/, explorer.html included
	$(PYTHON) -m seq2seq.evaluate $(if $(RUN),--run $(RUN)) --beam $(BEAM) --concat $(CONCAT) $(if $(DEVICE),--device $(DEVICE))

explore:  ## a run's explorer page from its training history, without evaluating (RUN=outputs/..., default the latest; OUT=page.html) -> RUN/explorer.html
	$(PYTHON) -m seq2seq.explorer $(if $(RUN),--run $(RUN)) $(if $(OUT),--out $(OUT))

bench-ab:  ## this checkout's training loop against REF=<commit>, interleaved runs of train.py (ROUNDS=3, fp32 and bf16)
	$(PYTHON) scripts/ab_train.py --rev $(REF) --rounds $(ROUNDS) --loop

peers:  ## OpenNMT-py 3.5.1 on bench's peer model, on this host now -> outputs/peers/opennmt.json
	$(PYTHON) scripts/peer_opennmt.py

length-study:  ## none/luong/bahdanau (or VARIANTS=none,transformer,transformer-rope, ...), equal updates, natural and long training, BLEU by length (STEPS=2000, SEEDS=1, DATA=)
	$(PYTHON) scripts/length_study.py --data $(DATA) --steps $(STEPS) --seeds $(SEEDS) --variants $(VARIANTS)

bench:  ## training/decoding speed, memory and MFU -> outputs/bench.json (CKPT=best.pt for decoding; DEVICE=cuda)
	$(PYTHON) scripts/bench.py $(if $(CKPT),--ckpt $(CKPT)) $(if $(DEVICE),--device $(DEVICE))

profile:  ## one training step of bench's peer model, op by op (VARIANT=bahdanau PRECISION=fp32) -> outputs/profile/
	$(PYTHON) scripts/profile_step.py --variant $(VARIANT) --precision $(PRECISION)

tensorboard:  ## the dashboards of every run under outputs/ (HOST=0.0.0.0 PORT=6006)
	tensorboard --logdir outputs --host $(HOST) --port $(PORT)

clean:  ## remove caches (not runs: outputs/ is yours)
	rm -rf .pytest_cache .ruff_cache .hypothesis
