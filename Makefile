# pno: the two commands of the README's quick start, and a few helpers.
#   make demo   install deps, build, run the demo (pno bench on the quick config:
#               Darcy data, FNO, PNO-D and MC dropout trained and evaluated)
#   make test   install deps, build, run the whole suite, then again under
#               AddressSanitizer + UndefinedBehaviorSanitizer, then each
#               libFuzzer harness for FUZZ_SECONDS over its kept corpus
BUILD      ?= build
BUILD_SAN  ?= build-asan
BUILD_FUZZ ?= build-fuzz
FUZZ_SECONDS ?= 20
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

.PHONY: all deps build test test-fast test-asan test-fuzz demo bench install clean

all: build

deps:
	@sh scripts/deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Test programs run one at a time: each uses every core through OpenMP,
# and running them side by side oversubscribes the cores (OpenMP threads
# spin-waiting for each other then slow every test down many times).
test-fast: build
	cd $(BUILD) && ctest --output-on-failure

$(BUILD_SAN)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD_SAN) -DCMAKE_BUILD_TYPE=Debug -DPNO_SANITIZE=ON $(CMAKE_ARGS)

test-asan: deps $(BUILD_SAN)/CMakeCache.txt
	cmake --build $(BUILD_SAN) -j $(JOBS)
	cd $(BUILD_SAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  PNO_SANITIZED=1 ctest --output-on-failure -LE nosan

# libFuzzer harnesses (tests/fuzz, docs/fuzzing.md): their own build dir
# with clang, every library and server object instrumented; each harness
# runs FUZZ_SECONDS over a copy of its kept corpus and any crash, leak or
# sanitizer report fails the target.
$(BUILD_FUZZ)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD_FUZZ) -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_BUILD_TYPE=Debug -DPNO_FUZZ=ON -DPNO_BUILD_TESTS=OFF -DPNO_MPI=OFF $(CMAKE_ARGS)

test-fuzz: deps $(BUILD_FUZZ)/CMakeCache.txt
	cmake --build $(BUILD_FUZZ) -j $(JOBS) --target fuzz
	OMP_NUM_THREADS=1 sh tests/fuzz/run.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

test: test-fast test-asan test-fuzz

demo: build
	sh scripts/demo.sh $(BUILD)/pno

bench: build
	$(BUILD)/bench_step

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_SAN) $(BUILD_FUZZ)
