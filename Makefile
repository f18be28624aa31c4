# One command each on a fresh machine: `make train`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The standard registry pair (torchvision's operators need the torch they were built with);
# installed first, so the package's torch/torchvision ranges are already met and pip picks no other.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
ARGS   ?=
# make upscale: IN=file|folder|glob OUT=folder (CKPT as for eval)
IN     ?=
OUT    ?= outputs/upscaled
# make eval / make data: CKPT=path (default: newest best.ckpt under outputs/), DATA=paths.data_dir
CKPT   ?= latest
DATA   ?=
# make data: which sets (also DF2K = DIV2K + Flickr2K, ~20 GB more) and LR scales (README: Training on large datasets)
SETS   ?= Set5 Set14 BSD100 Urban100 Manga109 DIV2K DIV2K_valid
SCALES ?= 2 3 4
DATA_ARG := $(if $(DATA),paths.data_dir=$(DATA))
# make prepare IN=DIV2K/DIV2K_train_HR OUT=data/div2k_sub (ARGS="scale=[4] lr_dirs=[...]")
# make compare SWEEP=outputs/train/multiruns/<date_time> (several: SWEEP="dir1 dir2")
SWEEP  ?=

.PHONY: install train test test-fast eval upscale export data prepare bench bench-parity compare clean completion

install: $(STAMP)

# Everything for development (the dev extra pulls sweeps, deploy and tensorboard), at the versions
# in constraints.txt; a user's `pip install sr-experiments` gets only the core (README: Install).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install $(TORCH)
	$(PY) -m pip install -e '.[dev]' -c constraints.txt
	touch $(STAMP)

train: $(STAMP)
	$(PY) train.py $(ARGS)

# Tab completion of keys and values for `.venv/bin/python train.py ...` (and python, python3): prints
# the line to run, or to add to ~/.bashrc (sr_experiments/completion.py)
completion:
	@echo 'eval "$$($(abspath $(PY)) -m sr_experiments.completion bash)"'

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

eval: $(STAMP)
	$(PY) eval.py ckpt_path=$(CKPT) $(DATA_ARG) $(ARGS)

upscale: $(STAMP)
	$(PY) upscale.py ckpt_path=$(CKPT) input=$(IN) output=$(OUT) $(ARGS)

export: $(STAMP)
	$(PY) export.py ckpt_path=$(CKPT) $(ARGS)

data: $(STAMP)
	$(PY) -m sr_experiments.tools.download --dest $(or $(DATA),$(SR_DATA),data) --sets $(SETS) --scales $(SCALES)

# Sub-images + LR in litdata chunks for data=stream (resumable: run it again after an interruption).
prepare: $(STAMP)
	$(if $(and $(IN),$(filter-out outputs/upscaled,$(OUT))),,$(error set IN=<HR folder> OUT=<new folder>, e.g. make prepare IN=DIV2K/DIV2K_train_HR OUT=data/div2k_sub))
	$(PY) prepare.py input=$(IN) output=$(OUT) $(ARGS)

bench: $(STAMP)
	$(PY) bench/train_overhead.py
	$(PY) bench/eval_bicubic.py
	$(PY) bench/perceptual_metrics.py
	$(PY) bench/zoo.py
	$(PY) bench/upscale.py
	$(PY) bench/train_speed.py --compile

# Quality parity of the fast defaults with fp32 (two CPU-recipe trainings: tens of minutes).
bench-parity: $(STAMP)
	$(PY) bench/precision_parity.py $(DATA_ARG) $(ARGS)

# On a machine with a GPU (under 8 minutes): appends a "GPU check" section to BENCHMARKS.md.
.PHONY: gpu-check
gpu-check: $(STAMP)
	$(PY) bench/gpu_check.py $(ARGS)

compare: $(STAMP)
	$(if $(SWEEP),,$(error set SWEEP=<sweep directory>, e.g. make compare SWEEP=outputs/train/multiruns/<date_time>))
	$(PY) compare.py $(SWEEP) $(ARGS)

clean:
	rm -rf outputs multirun wandb lightning_logs .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
