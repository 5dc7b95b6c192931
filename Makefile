# mode: every stage is a `mode` subcommand that reads and writes Parquet; make chains them.
# Targets are the artifact files, so make re-runs only what is stale.
#
#   make all                      split → train → evaluate, then the MODE loop for all 21 arms
#                                 (one process, `mode experiment`) and the seed's two tables
#   make chain                    the same loop as one make target per stage, for ARMS
#   make select METRIC=cosine ITER=2   re-run one stage of one arm / iteration
#   make sweep SEEDS=10           every arm over many seeds, with CIs and p-values
#   make mnist-skewed | mnist-noisy | fashion    a buggy-model scenario: all + sweep
#   make bench                    per-stage wall times and scoring throughput
#   make report | report-check    the HTML report (part of all) | its headless-Chromium screenshot
#   make test                     the test suite
#   make clean                    remove output/<pipeline>
#   PIPELINE=<name> selects pipelines/<name>.toml (default mnist)

PIPELINE ?= mnist
METRIC   ?= dot
ITER     ?= 1
SEEDS    ?= 10
CFG      := pipelines/$(PIPELINE).toml
OUT      ?= output/$(PIPELINE)
SPLITS   := $(OUT)/splits
INITIAL  := $(OUT)/initial
BIN      ?= target/release/mode
MODE     := $(BIN) --pipeline $(CFG) --root $(OUT)
CARGO_BUILD ?= cargo build --release --locked
# mode.max_iter of the pipeline (the loop's length), read from the file; default 5.
MAX_ITER ?= $(or $(shell sed -n '/^\[mode\]/,/^\[/s/^max_iter *= *\([0-9][0-9]*\).*/\1/p' $(CFG) 2>/dev/null),5)
ITERS    := $(shell seq 1 $(MAX_ITER))
MODE_ARM := mode-$(METRIC)
ARM      ?= $(MODE_ARM)
# Arms of `make all` (`all` = the 21 of the full replication) and of `make chain`.
EXPERIMENT_ARMS ?= all
ARMS     ?= $(MODE_ARM) random
# Independent stages (arms, the input feature model) run in parallel.
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all chain chain-summary build test clean probe layers heatmap select retrain evaluate \
        sweep bench report report-check mnist-skewed mnist-noisy fashion
.DELETE_ON_ERROR:

all: build
	@t0=$$(date +%s%N); \
	$(MAKE) --no-print-directory -j$(JOBS) $(OUT)/report/index.html && \
	$(MODE) --quiet summary --out $(OUT)/summary.parquet && \
	t1=$$(date +%s%N) && echo "make all ($(PIPELINE)): wall time $$(( (t1 - t0) / 1000000 )) ms; report: $(OUT)/report/index.html"

report: build
	@rm -f $(OUT)/report/index.html
	$(MAKE) --no-print-directory $(OUT)/report/index.html

# Render the report in headless Chromium (Debian's chromium; installed when missing) to a
# screenshot beside it, to check the page and its figures as a person sees them.
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser)
report-check: $(OUT)/report/index.html
	@[ -n "$(CHROMIUM)" ] || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(or $(CHROMIUM),chromium) --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	  --disable-background-networking --disable-component-update --disable-sync \
	  --user-data-dir=$$(mktemp -d) --hide-scrollbars --window-size=1200,9000 \
	  --screenshot=$(abspath $(OUT))/report/screenshot.png file://$(abspath $(OUT))/report/index.html
	@echo "screenshot: $(OUT)/report/screenshot.png"

chain: build
	@t0=$$(date +%s%N); \
	$(MAKE) --no-print-directory -j$(JOBS) chain-summary && \
	t1=$$(date +%s%N) && echo "make chain ($(PIPELINE)): wall time $$(( (t1 - t0) / 1000000 )) ms"

sweep: build
	$(MODE) sweep --seeds $(SEEDS) $(if $(KEEP),--keep-artifacts)

mnist-skewed mnist-noisy fashion:
	$(MAKE) --no-print-directory all sweep PIPELINE=$@

bench: build
	cargo bench --locked --bench stages

build:
	$(CARGO_BUILD)

$(BIN): build

test:
	python3 -m pip install --quiet --disable-pip-version-check duckdb polars
	cargo test --release --locked

clean:
	rm -rf $(OUT)

# ---- foundation: split → train → evaluate -------------------------------------------------

$(SPLITS)/train.parquet: $(CFG) | $(BIN)
	$(MODE) split --out $(SPLITS)
$(SPLITS)/pool.parquet $(SPLITS)/test.parquet: $(SPLITS)/train.parquet

$(INITIAL)/model.safetensors: $(SPLITS)/train.parquet
	$(MODE) train --data $< --out $(INITIAL)

$(INITIAL)/metrics.parquet: $(INITIAL)/model.safetensors $(SPLITS)/test.parquet
	$(MODE) evaluate --model $< --data $(SPLITS)/test.parquet --out $(INITIAL) --arm initial --iteration 0

# The input-pixel feature model depends only on the train split: fitted once, shared.
$(OUT)/input_head.parquet: $(SPLITS)/train.parquet
	$(MODE) layers --dir $(OUT) --input-head $@ --input-only

# ---- the MODE loop -------------------------------------------------------------------------
# iter_rules(arm, k, prev_dir, prev_pool, strategy, flags)
# Folder runs/<arm>/iter-<k> holds the analysis of model k-1 (activations, layers, heads,
# heat maps, diagnosis), the selection (scores, batch, pool) and model k with its metrics.

define iter_rules
$(OUT)/runs/$(1)/iter-$(2)/activations/train.parquet: $(3)/model.safetensors $(SPLITS)/train.parquet
	$(MODE) $(6) probe --model $(3)/model.safetensors --out $(OUT)/runs/$(1)/iter-$(2) $(if $(filter uncertainty,$(5)),--pool)

$(OUT)/runs/$(1)/iter-$(2)/layers.parquet: $(OUT)/runs/$(1)/iter-$(2)/activations/train.parquet $(OUT)/input_head.parquet
	$(MODE) $(6) layers --dir $(OUT)/runs/$(1)/iter-$(2) --input-head $(OUT)/input_head.parquet

$(OUT)/runs/$(1)/iter-$(2)/diagnosis.parquet: $(OUT)/runs/$(1)/iter-$(2)/layers.parquet
	$(MODE) $(6) heatmap --dir $(OUT)/runs/$(1)/iter-$(2)

$(OUT)/runs/$(1)/iter-$(2)/batch.parquet: $(if $(filter random,$(5)),,$(OUT)/runs/$(1)/iter-$(2)/diagnosis.parquet) $(4)
	$(MODE) $(6) select --dir $(OUT)/runs/$(1)/iter-$(2) --pool $(if $(filter 1,$(2)),$(SPLITS)/pool.parquet,$(OUT)/runs/$(1)/iter-$(shell echo $$(($(2)-1)))/pool.parquet) --arm $(1) --iteration $(2) --strategy $(5)

$(OUT)/runs/$(1)/iter-$(2)/model.safetensors: $(OUT)/runs/$(1)/iter-$(2)/batch.parquet $(3)/model.safetensors
	$(MODE) $(6) retrain --model $(3)/model.safetensors --batch $(OUT)/runs/$(1)/iter-$(2)/batch.parquet --out $(OUT)/runs/$(1)/iter-$(2)

$(OUT)/runs/$(1)/iter-$(2)/metrics.parquet: $(OUT)/runs/$(1)/iter-$(2)/model.safetensors
	$(MODE) $(6) evaluate --model $(OUT)/runs/$(1)/iter-$(2)/model.safetensors --data $(SPLITS)/test.parquet --out $(OUT)/runs/$(1)/iter-$(2) --arm $(1) --iteration $(2) --batch $(OUT)/runs/$(1)/iter-$(2)/batch.parquet
endef

# arm_rules(arm, strategy, flags)
define arm_rules
$(foreach k,$(ITERS),$(eval $(call iter_rules,$(1),$(k),$(if $(filter 1,$(k)),$(INITIAL),$(OUT)/runs/$(1)/iter-$(shell echo $$(($(k)-1)))),$(if $(filter 1,$(k)),$(SPLITS)/pool.parquet,$(OUT)/runs/$(1)/iter-$(shell echo $$(($(k)-1)))/batch.parquet),$(2),$(3))))
endef

# Arm name → strategy and flags: mode-<metric>[-nols], random, label-random[-nols], uncertainty[-nols].
arm_strategy = $(if $(filter random,$(1)),random,$(if $(filter label-random%,$(1)),label-random,$(if $(filter uncertainty%,$(1)),uncertainty,mode)))
arm_metric   = $(patsubst mode-%,%,$(patsubst %-nols,%,$(1)))
arm_flags    = $(if $(filter mode,$(call arm_strategy,$(1))),--set 'select.metric="$(call arm_metric,$(1))"') $(if $(filter %-nols,$(1)),--set layers.enabled=false)

$(foreach a,$(ARMS),$(eval $(call arm_rules,$(a),$(call arm_strategy,$(a)),$(call arm_flags,$(a)))))

ALL_METRICS := $(foreach a,$(ARMS),$(foreach k,$(ITERS),$(OUT)/runs/$(a)/iter-$(k)/metrics.parquet))

chain-summary: $(INITIAL)/metrics.parquet $(ALL_METRICS)
	$(MODE) --quiet summary --out $(OUT)/summary.parquet

# All arms in one process: the same stage functions, the same artifacts, shared data.
$(OUT)/experiment.stamp: $(INITIAL)/metrics.parquet $(OUT)/input_head.parquet
	$(MODE) experiment --arms $(EXPERIMENT_ARMS) --input-head $(OUT)/input_head.parquet
	@touch $@

$(OUT)/summary.parquet: $(OUT)/experiment.stamp
	$(MODE) --quiet summary --out $@ > /dev/null

$(OUT)/report/index.html: $(OUT)/summary.parquet
	$(MODE) report --arm $(MODE_ARM)

# ---- one stage of one arm and iteration: make <stage> [ARM=mode-dot | METRIC=cosine] ITER=k ----
RUN_DIR := $(OUT)/runs/$(ARM)/iter-$(ITER)
probe:    ; @rm -f $(RUN_DIR)/activations/train.parquet; $(MAKE) --no-print-directory $(RUN_DIR)/activations/train.parquet ARMS="$(sort $(ARMS) $(ARM))"
layers:   ; @rm -f $(RUN_DIR)/layers.parquet; $(MAKE) --no-print-directory $(RUN_DIR)/layers.parquet ARMS="$(sort $(ARMS) $(ARM))"
heatmap:  ; @rm -f $(RUN_DIR)/diagnosis.parquet; $(MAKE) --no-print-directory $(RUN_DIR)/diagnosis.parquet ARMS="$(sort $(ARMS) $(ARM))"
select:   ; @rm -f $(RUN_DIR)/batch.parquet; $(MAKE) --no-print-directory $(RUN_DIR)/batch.parquet ARMS="$(sort $(ARMS) $(ARM))"
retrain:  ; @rm -f $(RUN_DIR)/model.safetensors; $(MAKE) --no-print-directory $(RUN_DIR)/model.safetensors ARMS="$(sort $(ARMS) $(ARM))"
evaluate: ; @rm -f $(RUN_DIR)/metrics.parquet; $(MAKE) --no-print-directory $(RUN_DIR)/metrics.parquet ARMS="$(sort $(ARMS) $(ARM))"
