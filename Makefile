# attnbench: one GNU Makefile. Objects go under $(BUILD); the sanitizer build lives in
# build/asan and never touches the normal build.
#
#   make            build/attnbench
#   make test       every cmocka test plus the shell-level CLI tests; fails if any fails
#   make asan       the same tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   make test-targets  the same tests built for x86-64-v3 (AVX2) and x86-64 (SSE2)
#   make fuzz       libFuzzer on every parser of outside data (clang), FUZZ_SECONDS each
#   make sweep      the default sweep suite and its report under results/local/default/,
#                   beside the committed reference run (RESUME=1 continues an interrupted one)
#   make docs       rewrites the generated tables of README.md and docs/ from results/
#   make docs-check fails, naming the block, where they differ from what results/ gives
#   make peers      ours beside PyTorch and Hugging Face (scripts/peers/), results/peers/
#   make peers-test our lsh and block_sparse against Hugging Face's code (makes .venv-peers)
#   make regression the CI suite, gated with `attnbench check` against results/baseline/
#   make slurm-test the sharded sweep as a job array on a real one-node Slurm
#   make clean

CC ?= cc
BUILD ?= build
PKG_CONFIG ?= pkg-config

# jemalloc is the allocator (its statistics are part of every record); a sanitizer build
# cannot use it, because ASan brings its own malloc.
HAVE_JEMALLOC ?= 1
SANITIZE ?=

PKGS := openblas papi jansson sleef cmocka
ifeq ($(HAVE_JEMALLOC),1)
PKGS += jemalloc
endif

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla \
        -Wformat=2 -Wundef -Werror
OPT ?= -O3 -march=native
CFLAGS := -std=c11 $(OPT) -g -fopenmp $(WARN) -D_GNU_SOURCE -DHAVE_JEMALLOC=$(HAVE_JEMALLOC) \
          -MMD -MP $(shell $(PKG_CONFIG) --cflags $(PKGS)) $(SANITIZE) $(EXTRA_CFLAGS)
# libsde: the PAPI software-defined events the attention library's counters are read through
LDLIBS := $(shell $(PKG_CONFIG) --libs $(PKGS)) -lsde -lm
LDFLAGS := -fopenmp $(SANITIZE)

ATTN_SRC := $(wildcard attn/*.c)
BENCH_SRC := $(filter-out bench/main.c,$(wildcard bench/*/*.c))
BENCH_SRC := $(filter-out bench/mpi/%,$(BENCH_SRC))
REPORT_SRC := $(wildcard report/*.c)
LIB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(ATTN_SRC) $(BENCH_SRC) $(REPORT_SRC))
MAIN_OBJ := $(BUILD)/bench/main.o
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TEST_HELPER_OBJ := $(BUILD)/tests/helpers.o $(BUILD)/tests/reference.o
# Fuzz targets (tests/fuzz/fuzz_NAME.c): libFuzzer drives them under `make fuzz`; replay.c
# runs each over its corpus (seeds and every crash found) in every `make test`.
FUZZ_TARGETS := npy results suite values
REPLAY_BIN := $(patsubst %,$(BUILD)/tests/replay_%,$(FUZZ_TARGETS))

# The one program that links MPI: a rank of a `ring --ranks P` point, which the harness starts
# P times through mpirun (bench/launch/ranks.h). attnbench itself never initializes MPI.
RANK_BIN := $(BUILD)/attnbench-rank
RANK_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard bench/mpi/*.c))
MPI_CFLAGS = $(shell $(PKG_CONFIG) --cflags ompi-c)
MPI_LIBS = $(shell $(PKG_CONFIG) --libs ompi-c)

.PHONY: all test asan test-targets fuzz fuzz-run sweep peers peers-test regression slurm-test docs docs-check clean FORCE
.SECONDARY:
all: $(BUILD)/attnbench $(RANK_BIN)

$(BUILD)/attnbench: $(MAIN_OBJ) $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(RANK_BIN): $(RANK_OBJ) $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(MPI_LIBS)

$(BUILD)/bench/mpi/%.o: bench/mpi/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(MPI_CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# What every record says about the build: commit, whether tracked files were modified, and
# the flags. Rewritten only when it changes, so it does not force rebuilds. Files under
# results/ do not count: they are what the tool writes, and a measurement that appended to
# one must not make the next build of the same code say it is not the commit.
BUILDINFO := $(BUILD)/gen/buildinfo.h
CFLAGS += -I$(BUILD)/gen
$(BUILDINFO): FORCE
	@mkdir -p $(dir $@)
	@{ printf '#define BUILD_GIT_COMMIT "%s"\n' "$$(git rev-parse HEAD 2>/dev/null || echo unknown)"; \
	   printf '#define BUILD_GIT_DIRTY %s\n' "$$(git status --porcelain --untracked-files=no -- . ':(exclude)results' 2>/dev/null | grep -q . && echo 1 || echo 0)"; \
	   printf '#define BUILD_CFLAGS "%s"\n' '$(filter-out -MMD -MP -I%,$(subst ",,$(CFLAGS)))'; } >$@.tmp
	@if cmp -s $@.tmp $@; then rm $@.tmp; else mv $@.tmp $@; fi
$(BUILD)/bench/measure/context.o: $(BUILDINFO)
FORCE:

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_HELPER_OBJ) $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/replay_%: $(BUILD)/tests/fuzz/replay.o $(BUILD)/tests/fuzz/fuzz_%.o $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Each test binary runs on its own; the CLI tests drive build/attnbench from the shell.
test: $(BUILD)/attnbench $(RANK_BIN) $(TEST_BIN) $(REPLAY_BIN)
	@set -e; for t in $(TEST_BIN); do echo "== $$t"; $$t; done
	@set -e; for t in $(FUZZ_TARGETS); do echo "== fuzz corpus $$t"; $(BUILD)/tests/replay_$$t tests/fuzz/corpus/$$t; done
	@ATTNBENCH=$(BUILD)/attnbench bash tests/cli_test.sh
	@ATTNBENCH=$(BUILD)/attnbench /usr/bin/python3 tests/forward_numpy.py
	@if [ -x .venv-peers/bin/python ]; then ATTNBENCH=$(BUILD)/attnbench .venv-peers/bin/python tests/peers_test.py; \
	 else echo "peers_test: SKIPPED: no .venv-peers (make peers-test makes it and runs the test)"; fi

# Our lsh and block_sparse against Hugging Face's own code with the same structure injected. Its
# environment (PyTorch and transformers, several GB) is made on first use; CI does not run it:
# the install alone would take a tenth of CI's time. `make test` runs it when it exists.
peers-test: $(BUILD)/attnbench
	bash scripts/install-deps.sh --peers
	ATTNBENCH=$(BUILD)/attnbench .venv-peers/bin/python tests/peers_test.py

# float-cast-overflow is not part of gcc's "undefined": a NaN or huge float turned into an
# index is exactly what hostile inputs do.
asan:
	$(MAKE) BUILD=build/asan HAVE_JEMALLOC=0 OPT="-O1 -march=native" \
	    SANITIZE="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer" test

# Coverage-guided fuzzing of every parser of outside data, with clang's libFuzzer under
# AddressSanitizer and UndefinedBehaviorSanitizer, FUZZ_SECONDS per target. New inputs go to
# build/fuzz/work/NAME (the committed seeds stay as they are); a crash is written to
# build/fuzz/crash-NAME-* and fails the target: copy it into tests/fuzz/corpus/NAME/ with the
# fix, and every `make test` replays it from then on.
FUZZ_CC ?= clang-14
FUZZ_SECONDS ?= 20
FUZZ_SAN := -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all \
            -fno-omit-frame-pointer
fuzz:
	$(MAKE) BUILD=build/fuzz CC=$(FUZZ_CC) HAVE_JEMALLOC=0 OPT="-O1 -march=native" \
	    SANITIZE="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" fuzz-run

fuzz-run: $(patsubst %,$(BUILD)/fuzz_%,$(FUZZ_TARGETS))
	@set -e; for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(BUILD)/work/$$t; \
	    echo "== fuzzing $$t for $(FUZZ_SECONDS) s"; \
	    ASAN_OPTIONS=allocator_may_return_null=1 $(BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
	        -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix=$(BUILD)/crash-$$t- \
	        $(BUILD)/work/$$t tests/fuzz/corpus/$$t 2>$(BUILD)/fuzz_$$t.log || \
	        { tail -n 60 $(BUILD)/fuzz_$$t.log; exit 1; }; \
	    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" $(BUILD)/fuzz_$$t.log; \
	done

$(BUILD)/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(LIB_OBJ)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

# The same tests built for other instruction sets. -march=native compiles out the AVX2 and
# scalar paths on an AVX-512 machine (and AVX-512 elsewhere), so each build runs code the
# native one never does: x86-64-v3 is AVX2 with FMA, x86-64 is SSE2 alone.
TARGETS ?= x86-64-v3 x86-64
test-targets:
	@set -e; for t in $(TARGETS); do \
	    echo "== tests built with -march=$$t"; \
	    $(MAKE) --no-print-directory BUILD=build/$$t OPT="-O3 -march=$$t" test; \
	done

# The main job: the default suite and its report into results/local/default/ (ignored by git),
# with every point beside the same point of the committed reference run, results/default/.
# A fresh measurement starts over; `make sweep RESUME=1` continues an interrupted one.
RESUME ?= 0
SWEEP_OUT ?= results/local/default
sweep: $(BUILD)/attnbench
ifeq ($(RESUME),1)
	$(BUILD)/attnbench sweep --suite scripts/suites/default.suite --out $(SWEEP_OUT)/results.jsonl --resume
else
	rm -f $(SWEEP_OUT)/results.jsonl
	$(BUILD)/attnbench sweep --suite scripts/suites/default.suite --out $(SWEEP_OUT)/results.jsonl
endif
	$(BUILD)/attnbench report $(SWEEP_OUT)/results.jsonl --reference results/default/results.jsonl \
	    --out $(SWEEP_OUT)
	@echo "make sweep: the report is $(SWEEP_OUT)/report.md"

# The measured tables of the docs are generated: each is a block between marker lines naming
# its results files, rewritten by `make docs` and checked by `make docs-check` (CI).
DOCS := README.md $(wildcard docs/*.md)
docs: $(BUILD)/attnbench
	$(BUILD)/attnbench docs $(DOCS)
docs-check: $(BUILD)/attnbench
	$(BUILD)/attnbench docs --check $(DOCS)

# Ours beside the peers (scripts/peers/: PyTorch 2 SDPA, Hugging Face Reformer and BigBird):
# the peers suite into results/peers/ and its report. Needs `scripts/install-deps.sh --peers`.
# Peers are long benchmarks: each point first waits up to QUIET_WAIT seconds for a quiet machine.
QUIET_WAIT ?= 60
peers: $(BUILD)/attnbench
	@[ -x .venv-peers/bin/python ] || { echo "make peers: no .venv-peers; run scripts/install-deps.sh --peers first" >&2; exit 2; }
	rm -f results/peers/results.jsonl
	$(BUILD)/attnbench sweep --suite scripts/suites/peers.suite --quiet-wait $(QUIET_WAIT)
	$(BUILD)/attnbench report results/peers/results.jsonl --out results/peers

# The sharded sweep on a real one-node Slurm (installs slurm-wlm and munge when missing, starts
# and stops its own daemons on private ports): tests/slurm_test.sh.
slurm-test: $(BUILD)/attnbench
	ATTNBENCH=$(BUILD)/attnbench bash tests/slurm_test.sh

# The memory-regression gate CI runs: the CI suite against the committed baseline. Heap peak
# is deterministic and gated at the default 2%; peak RSS gets 8 MiB of absolute slack for the
# process's own pages, which differ a little from one machine to another.
regression: $(BUILD)/attnbench
	@rm -f $(BUILD)/ci/current.jsonl; mkdir -p $(BUILD)/ci
	$(BUILD)/attnbench sweep --suite scripts/suites/ci.suite --out $(BUILD)/ci/current.jsonl
	$(BUILD)/attnbench check --baseline results/baseline/ci.jsonl $(BUILD)/ci/current.jsonl \
	    --metric peak_rss:rtol=5%,atol=8MiB

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
