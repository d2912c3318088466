# Thin wrapper over meson and the test runners. The README's two commands are `make demo`
# and `make test`; both install what is missing first, so they work on a fresh Debian host.
BUILD      ?= build
ASAN_BUILD ?= build-asan
PYTHON     := /usr/bin/python3
PYTEST     := $(PYTHON) -m pytest
FUZZ_SECONDS ?= 10

DEB_PACKAGES := meson ninja-build pkg-config gcc clang libclang-rt-14-dev \
	libfuse3-dev fuse3 libcurl4-openssl-dev libmicrohttpd-dev libcjson-dev libexpat1-dev \
	libssl-dev python3 python3-pytest python3-boto3 curl prometheus python3-yaml yamllint \
	man-db groff-base wrk valgrind gdb

.PHONY: all deps build build-asan demo test test-unit test-integration test-valgrind fuzz bench clean deb

all: build

# Install the missing Debian packages, then the test-only npm packages from the committed
# lock file (again only when the lock changed). Quiet when everything is there.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || \
	    missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "deps: installing$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; apt-get update -q && \
	  apt-get install -y -q --no-install-recommends $$missing; fi
	@# the machine may bring its own Node.js (with npm); Debian's is the fallback
	@command -v npm >/dev/null || { apt-get update -q && apt-get install -y -q nodejs npm; }
	@if ! cmp -s tests/package-lock.json tests/node_modules/.aibrix-lock; then \
	  echo "deps: npm ci (tests/)"; \
	  (cd tests && npm ci --no-audit --no-fund --loglevel=error) && \
	  cp tests/package-lock.json tests/node_modules/.aibrix-lock; fi

$(BUILD)/build.ninja:
	meson setup $(BUILD)

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) -Dsanitize_all=true -Db_lundef=false

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

build-asan: $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

demo: deps build
	./deploy/demo.sh $(BUILD)

test-unit: build build-asan
	meson test -C $(BUILD) --suite unit --print-errorlogs
	meson test -C $(ASAN_BUILD) --suite unit --print-errorlogs

# Integration tests run against the sanitizer build: every real-server scenario doubles as
# an ASan/UBSan run of the code it exercises.
test-integration: build-asan
	AIBRIX_BUILD_DIR=$(CURDIR)/$(ASAN_BUILD) $(PYTEST) -q tests/integration

# The stories marked `valgrind` (mount and reads, prefetch, /metrics with an engine, the API
# with a LoRA load, SIGTERM) with the runtime under valgrind memcheck, on the normal build:
# valgrind and ASan do not mix. A memcheck error or definite leak fails the test (exit 97 and
# the teardown's log check in tests/integration/runtime.py). fuse-compatible: the runtime
# stats its own mount (shutdown, LoRA loads), which deadlocks under valgrind without it.
VALGRIND := valgrind --tool=memcheck --error-exitcode=97 --leak-check=full \
	--errors-for-leak-kinds=definite --track-origins=yes --sim-hints=fuse-compatible \
	--num-callers=30 --suppressions=$(CURDIR)/tests/integration/valgrind.supp
test-valgrind: build
	AIBRIX_BUILD_DIR=$(CURDIR)/$(BUILD) AIBRIX_RUNTIME_WRAPPER="$(VALGRIND)" \
	  $(PYTEST) -q -m valgrind tests/integration

fuzz:
	./tests/fuzz/run.sh $(FUZZ_SECONDS)

test: deps
	$(MAKE) test-unit
	$(MAKE) fuzz FUZZ_SECONDS=5
	$(MAKE) test-integration
	$(MAKE) test-valgrind

bench: deps build
	./tests/bench/run

# build-deb/aibrix-runtime_<version>_<arch>.deb, offline, with dpkg-deb (deploy/debian/).
deb:
	./deploy/debian/build-deb.sh build-deb

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz build-deb
