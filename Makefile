# pno: the two commands of the README's quick start, and a few helpers.
#   make demo   install deps, build, run the demo (pno bench on the quick config:
#               Darcy data, FNO, PNO-D and MC dropout trained and evaluated)
#   make test   install deps, build, run the whole suite, then again under
#               AddressSanitizer + UndefinedBehaviorSanitizer
BUILD      ?= build
BUILD_SAN  ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

.PHONY: all deps build test test-fast test-asan demo bench install clean

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

test: test-fast test-asan

demo: build
	sh scripts/demo.sh $(BUILD)/pno

bench: build
	$(BUILD)/bench_step

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_SAN)
