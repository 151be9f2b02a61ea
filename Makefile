# Transfer learning with cached VGG16 bottleneck features: the Makefile is the table of contents.
# Every target creates .venv from pyproject.toml on first use.

PYTHON ?= python3
DATA ?=
WEIGHTS ?= auto
IMAGE_SIZE ?=
PASSES ?= 0
POOLING ?= avg
PRECISION ?= fp32
SHARD_SIZE ?= 1024
HEAD ?= logreg
HEADS ?= all
CACHE ?= cache
RUNS ?= runs
STORE ?= latest
IMAGES ?=
OUT ?= model.keras

VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
CLI := $(BIN)/python -m pipeline

.DEFAULT_GOAL := help

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(INSTALLED)

## Stage one: cache VGG16 features of DATA (default: the built-in digits demo)
.PHONY: features
features: $(INSTALLED)
	$(CLI) features $(if $(DATA),--data "$(DATA)") $(if $(IMAGE_SIZE),--image-size $(IMAGE_SIZE)) \
		--weights "$(WEIGHTS)" --passes $(PASSES) --pooling $(POOLING) --shard-size $(SHARD_SIZE) \
		--precision $(PRECISION) \
		--cache "$(CACHE)"

## Stage two: fit HEAD (dense, logreg, svm) on the features and score it
.PHONY: head
head: features
	$(CLI) head --head $(HEAD) --store $(STORE) --cache "$(CACHE)" --runs "$(RUNS)"

## Fit HEADS (default all) on one extraction and print the leaderboard
.PHONY: compare
compare: features
	$(CLI) compare --heads $(HEADS) --store $(STORE) --cache "$(CACHE)" --runs "$(RUNS)"

## Classify IMAGES (files or folders) with a fitted HEAD
.PHONY: predict
predict: $(INSTALLED)
	@test -n "$(IMAGES)" || { echo 'error: set IMAGES, e.g. make predict IMAGES="a.jpg photos/"' >&2; exit 2; }
	$(CLI) predict $(IMAGES) --head $(HEAD) --store $(STORE) --cache "$(CACHE)" --runs "$(RUNS)"

## Package a fitted HEAD for use away from the store: OUT=model.keras (dense) or a folder
.PHONY: export
export: $(INSTALLED)
	$(CLI) export --head $(HEAD) --out "$(OUT)" --store $(STORE) --cache "$(CACHE)" --runs "$(RUNS)"

## Re-check a store in full (hashes, rows, labels, splits)
.PHONY: verify
verify: $(INSTALLED)
	$(CLI) verify --store $(STORE) --cache "$(CACHE)"

## Run the test suite
.PHONY: test
test: $(INSTALLED)
	$(BIN)/python -m pytest

## Delete cached features and fitted heads (the demo images and .venv stay)
.PHONY: clean
clean:
	rm -rf "$(CACHE)" "$(RUNS)"

## List targets and variables
.PHONY: help
help:
	@echo "Targets:"
	@awk '/^## /{doc=substr($$0,4); next} /^[a-z]+:/ && doc {split($$1,t,":"); printf "  %-9s %s\n", t[1], doc; doc=""}' $(MAKEFILE_LIST)
	@echo "Variables (current value):"
	@echo "  DATA=$(DATA)  WEIGHTS=$(WEIGHTS)  IMAGE_SIZE=$(IMAGE_SIZE)  PASSES=$(PASSES)  POOLING=$(POOLING)"
	@echo "  PRECISION=$(PRECISION)"
	@echo "  SHARD_SIZE=$(SHARD_SIZE)  HEAD=$(HEAD)  HEADS=$(HEADS)  CACHE=$(CACHE)  RUNS=$(RUNS)"
	@echo "  STORE=$(STORE)  IMAGES=$(IMAGES)  OUT=$(OUT)"
