# A thin layer over CMake: every target first installs missing Debian
# packages (tools/deps.sh), then configures and builds in $(BUILD).
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
CMAKE_ARGS ?=
JOBS ?= $(shell nproc)

FUZZ_SECONDS ?= 45

.PHONY: all deps build run test test-sanitize fuzz bench deb clean

all: build

deps:
	@sh tools/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

run: build
	./$(BUILD)/pyqhost scripts/quickstart.lua
	@sh tools/demo.sh $(BUILD)

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) $(CTEST_ARGS)

# The whole suite again under AddressSanitizer, LeakSanitizer and UBSan.
test-sanitize: deps
	@cmake -S . -B build-asan -DPYQ_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build build-asan -j$(JOBS)
	cd build-asan && ctest --output-on-failure -j$(JOBS) $(CTEST_ARGS)

# libFuzzer over the host's input handling, the JSON codec, pyq.url and
# pyq.html, each from its seed corpus, FUZZ_SECONDS each.
fuzz:
	@sh tools/deps.sh fuzz
	@cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DPYQ_FUZZ=ON >/dev/null
	@cmake --build build-fuzz -j$(JOBS) --target fuzz_input fuzz_json fuzz_url fuzz_html
	@for t in input:corpus json:corpus_json url:corpus_url html:corpus_html; do \
	  work=$$(mktemp -d) && ./build-fuzz/fuzz_$${t%%:*} -max_total_time=$(FUZZ_SECONDS) \
	  -timeout=10 -rss_limit_mb=4096 -artifact_prefix=$$work/ -print_final_stats=1 \
	  $$work tests/fuzz/$${t#*:} 2>&1 | tail -25; \
	  if ls $$work/crash-* $$work/leak-* $$work/timeout-* $$work/oom-* >/dev/null 2>&1; then \
	    echo "fuzz: fuzz_$${t%%:*} found a failing input in $$work"; exit 1; fi; rm -rf $$work; \
	done

bench:
	@sh tools/deps.sh bench
	@$(MAKE) --no-print-directory build BUILD_TYPE=Release BUILD=build-release
	sh bench/run.sh build-release

# A Debian package (CPack), checked by unpacking and running it outside
# the checkout (tools/check_deb.sh).
deb: deps
	@cmake -S . -B build-deb -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
	@cmake --build build-deb -j$(JOBS)
	cd build-deb && cpack -G DEB >/dev/null
	sh tools/check_deb.sh build-deb/pyqhost_*.deb

clean:
	rm -rf $(BUILD) build-release build-asan build-fuzz build-deb
