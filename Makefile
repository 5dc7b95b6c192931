# mode: every stage is a `mode` subcommand that reads and writes Parquet; make chains them.
# Targets are the artifact files, so make re-runs only what is stale. The rules themselves come
# from the binary (`mode info makefile`): it knows the layout, the arms and mode.max_iter after
# any --set, so nothing here repeats them.
#
#   make all                      split → train → evaluate, then the MODE loop for all arms in one
#                                 process (`mode experiment`), the seed's two tables and the report
#   make chain                    the same loop as one make target per stage, for ARMS
#   make select METRIC=cosine ITER=2   re-run one stage of one arm / iteration (chain rules)
#   make sweep SEEDS=10           every arm over many seeds, with CIs and p-values
#   make ablate                   protocol settings × arms × seeds ([ablate] of the pipeline)
#   make sweep-cluster SCHEDULER=tcp://host:8786   the sweep as SHARDS shards on a Dask cluster
#   make ablate-cluster SCHEDULER=…                the ablation likewise (scale/dask_sweep.py)
#   make mnist-skewed | mnist-noisy | fashion    a buggy-model scenario: all + sweep
#   make folders                  a generated image-folder dataset with a weak class, run with the defaults
#   make bench                    per-stage and end-to-end wall times, ONNX probe, selection and scoring speed
#   make report | report-check    the HTML report (part of all) | its headless-Chromium screenshot
#   make test                     the test suite (Python readers in a virtual environment under target/)
#   make clean                    remove output/<pipeline>
#   PIPELINE=<name> selects pipelines/<name>.toml (default mnist); SET="key=value …" overrides keys

PIPELINE ?= mnist
METRIC   ?= dot
ITER     ?= 1
SEEDS    ?= 10
CFG      := pipelines/$(PIPELINE).toml
OUT      ?= output/$(PIPELINE)
# The binary follows cargo's target directory (CARGO_TARGET_DIR when set).
BIN      ?= $(or $(CARGO_TARGET_DIR),target)/release/mode
# Pipeline overrides for every stage: SET="mode.theta=0.9 select.metric=cosine".
SET      ?=
MODE     := $(BIN) --pipeline $(CFG) --root $(OUT) $(foreach s,$(SET),--set '$(s)')
CARGO_BUILD ?= cargo build --release --locked
ARM      ?= mode-$(METRIC)
# Arms of `make all` (a list or a set: all) and of `make chain`.
EXPERIMENT_ARMS ?= all
ARMS     ?= $(ARM) random
# Independent stages (arms, the input feature model) run in parallel.
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
# The generated rules, read only by the inner make (after the build); one file per arm choice.
comma := ,
space := $() $()
RULES    = $(OUT)/.rules-$(subst $(space),_,$(strip $(ARMS)))-$(subst $(comma),_,$(EXPERIMENT_ARMS)).mk
SUB      := $(MAKE) --no-print-directory MODE_RULES=1

.PHONY: all chain check build test pyvenv clean sweep ablate sweep-cluster ablate-cluster cluster-check bench bench-keras report report-check mnist-skewed mnist-noisy fashion folders \
        probe layers heatmap select retrain evaluate all-inner chain-inner
.DELETE_ON_ERROR:

# The inner make (after the build) reads the rules the binary generates; make remakes them
# when the pipeline, the binary or this file change.
ifdef MODE_RULES
$(RULES): $(CFG) $(BIN) Makefile
	@mkdir -p $(dir $@)
	@$(MODE) info makefile --experiment '$(EXPERIMENT_ARMS)' --chain '$(subst $(space),$(comma),$(strip $(ARMS)))' > $@.tmp && mv $@.tmp $@
include $(RULES)
all-inner: $(MODE_REPORT)
chain-inner: $(MODE_INITIAL) $(MODE_CHAIN)
	$(MODE) --quiet summary
endif

# Checked before any rule is made: the pipeline (and its --set overrides) and the arm lists,
# so a typo is one clear error and a failed make, never "Nothing to be done".
check: build
	@$(MODE) info max-iter > /dev/null || { echo "make: pipelines: $(notdir $(basename $(wildcard pipelines/*.toml)))" >&2; exit 2; }
	@$(MODE) info arms '$(EXPERIMENT_ARMS)' > /dev/null
	@$(MODE) info arms '$(subst $(space),$(comma),$(strip $(ARMS)))' > /dev/null

# Ends with the verdict (mode summary): the faulty labels, who decided, the arms ranked.
all: check
	@t0=$$(date +%s%N); \
	$(SUB) -j$(JOBS) all-inner && \
	t1=$$(date +%s%N) && echo && $(MODE) --quiet summary && \
	echo "make all ($(PIPELINE)): wall time $$(( (t1 - t0) / 1000000 )) ms; report: $$($(MODE) info path report)"

report: check
	@rm -f "$$($(MODE) info path report)"
	@$(SUB) all-inner

# Render the report in headless Chromium (Debian's chromium; installed when missing) to a
# screenshot beside it, to check the page and its figures as a person sees them.
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser)
report-check: report
	@[ -n "$(CHROMIUM)" ] || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	for shot in first-screen:1200,1000 screenshot:1200,9000; do \
	  $(or $(CHROMIUM),chromium) --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	    --disable-background-networking --disable-component-update --disable-sync \
	    --user-data-dir=$$(mktemp -d) --hide-scrollbars --window-size=$${shot#*:} \
	    --screenshot=$(abspath $(OUT))/report/$${shot%%:*}.png file://$(abspath $(OUT))/report/index.html 2>/dev/null || exit 1; \
	done
	@echo "screenshots: $(OUT)/report/first-screen.png (what a reader sees first), $(OUT)/report/screenshot.png (the page)"

chain: check
	@t0=$$(date +%s%N); \
	$(SUB) -j$(JOBS) chain-inner && \
	t1=$$(date +%s%N) && echo "make chain ($(PIPELINE)): wall time $$(( (t1 - t0) / 1000000 )) ms"

SWEEP_ARMS ?= all
sweep: build
	$(MODE) sweep --seeds $(SEEDS) --arms $(SWEEP_ARMS) $(if $(KEEP),--keep-artifacts)

ablate: build
	$(MODE) ablate

# Beyond one machine: one Dask task per shard (each runs this binary with --threads 1 on a
# worker, in this folder: the binary, pipelines/ and data/ must be at these paths on every
# worker, and OUT on storage every worker sees), then the merge. Parts of an earlier run of the
# same kind are removed first. PYTHON needs `pip install "dask[distributed]"`.
SCHEDULER ?=
SHARDS    ?= $(SEEDS)
PYTHON    ?= python3
DASK_SWEEP = $(PYTHON) scale/dask_sweep.py --scheduler '$(SCHEDULER)' --shards $(SHARDS) \
             --bin $(abspath $(BIN)) --clean -- --pipeline $(CFG) --root $(OUT) --threads 1
sweep-cluster: build cluster-check
	$(DASK_SWEEP) sweep --seeds $(SEEDS) --arms $(SWEEP_ARMS)
ablate-cluster: build cluster-check
	$(DASK_SWEEP) ablate
cluster-check:
	@[ -n "$(SCHEDULER)" ] || { echo "make: give the Dask scheduler, SCHEDULER=tcp://host:8786 (docs/scale.md)" >&2; exit 2; }

mnist-skewed mnist-noisy fashion:
	$(MAKE) --no-print-directory all sweep PIPELINE=$@

# A generated image-folder dataset with a known weak class ("shirt"; pipelines/folders.toml),
# written from Fashion-MNIST (apt-get install dataset-fashion-mnist), then `make all` on it.
FASHION_IDX ?= /usr/share/datasets/fashion-mnist
data/folders: examples/make_folders.py
	$(PYTHON) examples/make_folders.py --idx-dir $(FASHION_IDX) --out $@.tmp && rm -rf $@ && mv $@.tmp $@
folders: data/folders
	$(MAKE) --no-print-directory all PIPELINE=$@

# Python for the tests' external readers and the bench's ONNX fixture: a virtual environment
# under target/ (never the system's Python).
PYVENV ?= target/py-venv
PYPKGS := duckdb polars numpy pyarrow onnx
pyvenv:
	@[ -x $(PYVENV)/bin/python3 ] || python3 -m venv $(PYVENV) || { echo "make: python3 -m venv failed: install python3-venv (Debian) or a Python with venv" >&2; exit 2; }
	@$(PYVENV)/bin/python3 -c "import duckdb, polars, numpy, pyarrow, onnx" 2>/dev/null || \
	  $(PYVENV)/bin/pip install --quiet --disable-pip-version-check $(PYPKGS)

bench: build pyvenv
	PATH="$(abspath $(PYVENV))/bin:$$PATH" cargo bench --locked --bench stages
	bench/end_to_end.sh $(PIPELINE)

# The Keras/TensorFlow reference of `make bench` (its seed loop with and without layer
# selection, side by side with mode's), in a virtual environment under target/.
bench-keras:
	[ -x target/keras-venv/bin/python ] || python3 -m venv target/keras-venv
	target/keras-venv/bin/pip install --quiet --disable-pip-version-check -r bench/requirements-keras.txt

build:
	$(CARGO_BUILD)

test: pyvenv
	PATH="$(abspath $(PYVENV))/bin:$$PATH" cargo test --release --locked

clean:
	rm -rf $(OUT)

# ---- one stage of one arm and iteration: make <stage> [ARM=mode-dot | METRIC=cosine] ITER=k ----
# The stage's artifact is removed and made again (and whatever it needs that is stale), then
# the arm's later stages through its last iteration, so its run is whole again.
STAGE_ARTIFACT = $(MODE) info path $(1) --arm $(ARM) --iteration $(ITER)
probe layers heatmap select retrain evaluate: check
	@f=$$($(call STAGE_ARTIFACT,$(STAGE_OF_$@))) && rm -f "$$f" && \
	last=$$($(MODE) info path metrics --arm $(ARM) --iteration $$($(MODE) info max-iter)) && \
	$(SUB) ARMS="$(sort $(ARMS) $(ARM))" "$$f" "$$last"
STAGE_OF_probe    := activations
STAGE_OF_layers   := layers
STAGE_OF_heatmap  := diagnosis
STAGE_OF_select   := batch
STAGE_OF_retrain  := model
STAGE_OF_evaluate := metrics
