# Transfer learning with cached VGG16 bottleneck features: the Makefile is the table of contents.
# Every target creates .venv from pyproject.toml on first use.

PYTHON ?= python3
# QUALITY=max: the most accurate settings measured (bench/results/accuracy-*.md), 2.2-4.0x the
# extraction time of the defaults: 320 px, each image and its mirror.
ifeq ($(QUALITY),max)
IMAGE_SIZE ?= 320
VIEWS ?= 2
endif
# Stage one's settings: passed to `features` only when set, so its defaults (`--help`) hold.
DATA ?=
LAYOUT ?=
WEIGHTS ?=
IMAGE_SIZE ?=
PASSES ?=
VIEWS ?=
POOLING ?=
PRECISION ?=
CALIBRATION_IMAGES ?=
ENGINE ?=
SHARD_SIZE ?=
MAX_BAD ?=
FAST ?=
BACKEND ?= local
SCHEDULER ?=
HEAD ?= logreg
HEADS ?= all
# FINAL_FIT: the photos the saved heads learn from, auto (train+validation but for finetune), train or train+validation.
FINAL_FIT ?=
CACHE ?= cache
RUNS ?= runs
STORE ?= latest
IMAGES ?=
TOP_K ?= 1
FORMAT ?= text
# One .keras model for the Keras heads; a folder (for `predict --export`) for the others.
OUT ?= $(if $(filter dense finetune,$(HEAD)),model.keras,model)
FORCE ?=
BENCH_ARGS ?=
# Test processes: most tests wait on a subprocess or on Python more than they compute, so two
# share two cores well.
TEST_WORKERS ?= 2

VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
FAST_INSTALLED := $(VENV)/.installed-fast
DASK_INSTALLED := $(VENV)/.installed-dask
# The OpenVINO engine (int8) is a core dependency, installed with the rest; FAST=1 (and int8 or
# openvino asked for) still re-installs it into a .venv made before it was.
NEEDS_FAST := $(or $(FAST),$(filter int8,$(PRECISION)),$(filter openvino,$(ENGINE)))
# The optional Dask backend: installed on BACKEND=dask.
RUNTIME := $(INSTALLED) $(if $(NEEDS_FAST),$(FAST_INSTALLED)) $(if $(filter dask,$(BACKEND)),$(DASK_INSTALLED))
# Where stage one and the heads' search run: BACKEND=dask [SCHEDULER=tcp://host:8786].
DISTRIBUTE := $(strip --backend $(BACKEND) $(if $(SCHEDULER),--scheduler "$(SCHEDULER)"))
CLI := $(BIN)/python -m pipeline
FINAL_FIT_OPTION := $(if $(FINAL_FIT),--final-fit $(FINAL_FIT))
# Commands that use a store: the last finished one (or STORE), built first only when DATA is given.
USES_STORE := $(if $(DATA),features,$(RUNTIME))
# compare alone also builds the built-in demo when there is no store yet, so a fresh clone's
# `make compare` runs end to end.
NO_STORE_YET := $(and $(filter latest,$(STORE)),$(if $(wildcard $(CACHE)/LATEST),,yes))

.DEFAULT_GOAL := help

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(INSTALLED)

$(FAST_INSTALLED): $(INSTALLED)
	$(BIN)/pip install --quiet -e ".[test,fast]"
	touch $(FAST_INSTALLED)

$(DASK_INSTALLED): $(INSTALLED)
	$(BIN)/pip install --quiet -e ".[test,dask]"
	touch $(DASK_INSTALLED)

# features' options, those set only (one line, so that make echoes no empty continuation lines).
FEATURES_OPTIONS = $(strip $(if $(DATA),--data "$(DATA)") $(if $(LAYOUT),--layout $(LAYOUT)) \
	$(if $(WEIGHTS),--weights "$(WEIGHTS)") $(if $(IMAGE_SIZE),--image-size $(IMAGE_SIZE)) \
	$(if $(PASSES),--passes $(PASSES)) $(if $(VIEWS),--views $(VIEWS)) $(if $(POOLING),--pooling $(POOLING)) \
	$(if $(SHARD_SIZE),--shard-size $(SHARD_SIZE)) $(if $(MAX_BAD),--max-bad $(MAX_BAD)) \
	$(if $(PRECISION),--precision $(PRECISION)) $(if $(ENGINE),--engine $(ENGINE)) \
	$(if $(CALIBRATION_IMAGES),--calibration-images $(CALIBRATION_IMAGES)))

## Stage one: cache VGG16 features of DATA (default: the built-in digits demo)
.PHONY: features
features: $(RUNTIME)
	$(CLI) features $(FEATURES_OPTIONS) $(DISTRIBUTE) --cache "$(CACHE)"

## Stage two: fit HEAD (dense, logreg, svm, ensemble; finetune on a POOLING=block4_pool store) on the last store (or STORE; DATA: that folder's)
.PHONY: head
head: $(USES_STORE)
	$(CLI) head --head $(HEAD) $(FINAL_FIT_OPTION) $(DISTRIBUTE) --store $(STORE) --cache "$(CACHE)" --runs "$(RUNS)"

## Fit HEADS (default all) on one store and rank them (no store yet: the built-in demo)
.PHONY: compare
compare: $(if $(or $(DATA),$(NO_STORE_YET)),features,$(RUNTIME))
	$(CLI) compare --heads $(HEADS) $(FINAL_FIT_OPTION) $(DISTRIBUTE) --store $(STORE) --cache "$(CACHE)" --runs "$(RUNS)"

## Classify IMAGES (files or folders; read as shell words: quote a name with spaces or ( ), IMAGES='"my photos (2)/" a.jpg') with a fitted HEAD
.PHONY: predict
# stdout is the predictions alone, so `make predict FORMAT=csv > out.csv` is a CSV: the command is
# not echoed, and with DATA, building its store first writes to stderr.
predict: $(RUNTIME)
	$(if $(strip $(IMAGES)),,@echo 'error: set IMAGES, e.g. make predict IMAGES="a.jpg photos/"' >&2; exit 2)
	$(if $(DATA),@$(MAKE) --no-print-directory features >&2)
	@$(CLI) predict $(IMAGES) --head $(HEAD) --format $(FORMAT) --top-k $(TOP_K) --store $(STORE) \
		--cache "$(CACHE)" --runs "$(RUNS)"

## Package a fitted HEAD for use away from the store: OUT=NAME.keras (dense, finetune; logreg with normalize=none) or a folder
.PHONY: export
export: $(USES_STORE)
	$(CLI) export --head $(HEAD) --out "$(OUT)" $(if $(FORCE),--force) --store $(STORE) \
		--cache "$(CACHE)" --runs "$(RUNS)"

## Re-check a store in full (hashes, rows, labels, splits)
.PHONY: verify
verify: $(USES_STORE)
	$(CLI) verify --store $(STORE) --cache "$(CACHE)"

## Run the test suite (TEST_WORKERS processes, each taking whole test files; 1: in this process)
.PHONY: test
test: $(FAST_INSTALLED) $(DASK_INSTALLED)
	$(BIN)/python -m pytest $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

## Measure extraction against the recipe and the CPU's ceilings, and the whole wait for 1,000 photos per path (goals marked); writes bench/results/<cpu>/
.PHONY: bench
bench: $(FAST_INSTALLED)
	$(BIN)/python bench/extraction.py $(BENCH_ARGS)

## Accuracy ablation (the recipe, views, sqrt_l2, dense refit, SVM calibration, ensemble, int8, finetune) on cats_and_dogs and monkeys_10
.PHONY: accuracy
accuracy: $(RUNTIME)
	$(BIN)/python bench/accuracy.py --weights "$(if $(filter-out auto,$(WEIGHTS)),$(WEIGHTS),../shared/weights/vgg16_notop.weights.h5)"

## Delete cached features and fitted heads (the demo images and .venv stay)
.PHONY: clean
clean:
	rm -rf "$(CACHE)" "$(RUNS)"

## List targets and variables
.PHONY: help
help:
	@echo "Targets:"
	@awk '/^## /{doc=substr($$0,4); next} /^[a-z]+:/ && doc {split($$1,t,":"); printf "  %-9s %s\n", t[1], doc; doc=""}' $(MAKEFILE_LIST)
	@echo "Variables (current value, empty: the command's default; docs/cli.md explains each):"
	@echo "  stage one:  DATA=$(DATA)  LAYOUT=$(LAYOUT)  WEIGHTS=$(WEIGHTS)  IMAGE_SIZE=$(IMAGE_SIZE)  QUALITY=$(QUALITY)"
	@echo "              PASSES=$(PASSES)  VIEWS=$(VIEWS)  POOLING=$(POOLING)  SHARD_SIZE=$(SHARD_SIZE)  MAX_BAD=$(MAX_BAD)"
	@echo "              PRECISION=$(PRECISION)  ENGINE=$(ENGINE)  CALIBRATION_IMAGES=$(CALIBRATION_IMAGES)  FAST=$(FAST)"
	@echo "  stage two:  HEAD=$(HEAD)  HEADS=$(HEADS)  STORE=$(STORE)  FINAL_FIT=$(FINAL_FIT)"
	@echo "  predict:    IMAGES=$(IMAGES)  FORMAT=$(FORMAT)  TOP_K=$(TOP_K)"
	@echo "  export:     OUT=$(OUT)  FORCE=$(FORCE)"
	@echo "  everywhere: CACHE=$(CACHE)  RUNS=$(RUNS)  BACKEND=$(BACKEND)  SCHEDULER=$(SCHEDULER)"
