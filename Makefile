# A thin layer over CMake: every target first installs missing Debian
# packages (tools/deps.sh), then configures and builds in $(BUILD).
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
CMAKE_ARGS ?=
JOBS ?= $(shell nproc)

.PHONY: all deps build run test bench clean

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

bench:
	@sh tools/deps.sh bench
	@$(MAKE) --no-print-directory build BUILD_TYPE=Release BUILD=build-release
	sh bench/run.sh build-release

clean:
	rm -rf $(BUILD) build-release
