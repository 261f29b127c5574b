# Thin wrapper over CMake/CTest for the common commands. See README.md.
BUILD_DIR ?= build
ASAN_BUILD_DIR ?= build-asan
ARM_BUILD_DIR ?= build-arm
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
CTEST_FLAGS ?= --output-on-failure

.PHONY: all deps build test demo asan-test tsan-test arm-test clang-build clean web

all: build

deps:
	@scripts/install-deps.sh --test

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: deps build
	cd $(BUILD_DIR) && ctest $(CTEST_FLAGS) -j $(JOBS)

asan-test: deps
	cmake -S . -B $(ASAN_BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGELLM_SANITIZE=ON $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD_DIR) -j $(JOBS)
	cd $(ASAN_BUILD_DIR) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest $(CTEST_FLAGS) -j $(JOBS)

# The tests labelled `threads` (the pool, cancels from another thread, contexts and a grammar on
# several threads) under ThreadSanitizer: every data race is a failure (docs/embedding.md,
# "Session 25"). Only the library and those tests are built.
TSAN_BUILD_DIR ?= build-tsan
tsan-test: deps
	cmake -S . -B $(TSAN_BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGELLM_TSAN=ON -DEDGELLM_BUILD_TOOLS=OFF $(CMAKE_FLAGS)
	cmake --build $(TSAN_BUILD_DIR) -j $(JOBS) --target thread_tests
	cd $(TSAN_BUILD_DIR) && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ctest $(CTEST_FLAGS) -j $(JOBS) -L threads

# libedgellm built by clang with -Werror: apps embed the library with either compiler, and GCC
# accepts things clang refuses (a __builtin_cpu_supports feature name once broke the clang build).
CLANG_BUILD_DIR ?= build-clang
clang-build: deps
	CC=clang cmake -S . -B $(CLANG_BUILD_DIR) -DCMAKE_BUILD_TYPE=Release -DEDGELLM_BUILD_TOOLS=OFF $(CMAKE_FLAGS)
	cmake --build $(CLANG_BUILD_DIR) -j $(JOBS) --target edgellm_shared

# ARM64: cross-compile the inference core and its C tests, run them under qemu-aarch64 (its default
# CPU has the dot-product extension: the neon-dotprod kernels), then run the kernel and model tests
# again on an emulated Cortex-A72 (ARMv8.0, no dot product: the plain neon kernels).
arm-test: deps
	cmake -S . -B $(ARM_BUILD_DIR) -DCMAKE_BUILD_TYPE=Release -DEDGELLM_BUILD_TOOLS=OFF \
		-DCMAKE_TOOLCHAIN_FILE=$(CURDIR)/cmake/aarch64-linux-gnu.cmake $(CMAKE_FLAGS)
	cmake --build $(ARM_BUILD_DIR) -j $(JOBS)
	cd $(ARM_BUILD_DIR) && ctest $(CTEST_FLAGS) -j $(JOBS)
	cd $(ARM_BUILD_DIR) && QEMU_CPU=cortex-a72 ctest $(CTEST_FLAGS) -j $(JOBS) -R 'test_quant|test_model|test_api'

# WebAssembly: web/dist/ gets edgellm.mjs, its worker and two builds of the core, single-threaded
# (st) and pthreads (mt), each also as edgellm-<variant>-relaxed.wasm (relaxed SIMD's dots,
# patched in by web/relaxed_patch.py: wasm-dis and python3 come with Debian's emscripten).
# Debian's emscripten runs its JavaScript tools with the node modules Debian installs under
# /usr/share/nodejs (acorn), which a non-Debian node does not search.
WEB_BUILD_DIR ?= build-web
web: deps
	for v in st mt; do \
	  NODE_PATH=/usr/share/nodejs emcmake cmake -S . -B $(WEB_BUILD_DIR)/$$v -DCMAKE_BUILD_TYPE=Release \
	    -DEDGELLM_BUILD_TOOLS=OFF -DEDGELLM_WEB_THREADS=$$([ $$v = mt ] && echo ON || echo OFF) \
	    $(CMAKE_FLAGS) >/dev/null && \
	  NODE_PATH=/usr/share/nodejs cmake --build $(WEB_BUILD_DIR)/$$v -j $(JOBS) --target edgellm_wasm \
	    || exit 1; \
	done

demo: deps build
	@scripts/demo.sh $(BUILD_DIR)

clean:
	rm -rf $(BUILD_DIR) $(ASAN_BUILD_DIR) $(TSAN_BUILD_DIR) $(ARM_BUILD_DIR) $(CLANG_BUILD_DIR) $(WEB_BUILD_DIR) web/dist

# The tests that need no network: `net` labels the ones that install npm packages.
.PHONY: test-offline install
test-offline: deps build
	cd $(BUILD_DIR) && ctest $(CTEST_FLAGS) -j $(JOBS) -LE net

# libedgellm (shared and static), edgellm.h, pkg-config and CMake package files, and the command,
# under PREFIX (docs/embedding.md).
PREFIX ?= /usr/local
install: build
	cmake --install $(BUILD_DIR) --prefix $(PREFIX)

# clang-format (.clang-format) over the project's own C sources; the Unicode tables are generated
# by scripts/gen_unicode_tables.py and stay as it writes them.
CLANG_FORMAT ?= clang-format
FORMAT_FILES = $(shell git ls-files -- 'src/*.[ch]' 'include/*.[ch]' 'tools/*.[ch]' 'tests/*.[ch]' \
	'examples/*.[ch]' 'web/*.[ch]' | grep -v -x 'src/tokenizer/unicode_tables.c')
.PHONY: format format-check format-tool
format-tool:
	@command -v $(CLANG_FORMAT) >/dev/null || { echo "error: $(CLANG_FORMAT) not found: scripts/install-deps.sh --test installs it" >&2; exit 1; }
	@[ -n "$(FORMAT_FILES)" ] || { echo "error: no sources listed: run make format in a git checkout" >&2; exit 1; }
format: format-tool
	$(CLANG_FORMAT) -i $(FORMAT_FILES)
format-check: format-tool
	@out=$$($(CLANG_FORMAT) --dry-run --Werror $(FORMAT_FILES) 2>&1) || { \
	  printf '%s\n' "$$out" | sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error.*/\1/p' | sort -u >&2; \
	  echo "error: the files above differ from .clang-format; 'make format' applies it" >&2; exit 1; }
