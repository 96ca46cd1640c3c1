# conveyor — build, test, benchmark and demo. Everything runs from the checkout;
# `make install` links the tools onto PATH.
SHELL := /bin/bash
PREFIX ?= /usr/local
TOOLS := $(notdir $(wildcard tools/*))
APT_PACKAGES := docker-registry skopeo umoci runc crun busybox-static hyperfine \
	apache2-utils openssl zstd attr jq iproute2 util-linux procps ca-certificates curl tini gcc libc6-dev
PNPM_VERSION := 10.34.8

.PHONY: all setup deps build test bench demo install uninstall clean lint format

all: build

# Installs system packages (as root, when missing), pnpm and the node modules, then builds.
setup:
	@if [ "$$(id -u)" = 0 ]; then \
	  missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "setup: installing $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi; \
	else echo "setup: not root, skipping Debian packages ($(APT_PACKAGES))"; fi
	@command -v pnpm >/dev/null && [ "$$(pnpm --version)" = "$(PNPM_VERSION)" ] || npm install -g --silent pnpm@$(PNPM_VERSION)
	$(MAKE) build

deps:
	@command -v pnpm >/dev/null || npm install -g --silent pnpm@$(PNPM_VERSION)
	pnpm install --frozen-lockfile --reporter=silent

build: deps
	pnpm exec tsc -b

# Unit and integration tests (real registry, real runc, real overlays). Prints `N passed, N failed`.
test: build
	bash test/run.sh

# Biome: the linter and formatter (biome.json); `make format` rewrites, `make lint` checks.
# test/lint.test.ts runs the same check, so `make test` (and CI) enforce it.
lint: deps
	pnpm exec biome ci .

format: deps
	pnpm exec biome format --write .

bench: build
	bash bench/run.sh

# The README's first command: a local registry seeded with a small image, then pull-and-run of it.
demo: setup
	bash scripts/demo.sh

install: build
	@mkdir -p $(DESTDIR)$(PREFIX)/bin
	@for t in $(TOOLS); do ln -sf "$(CURDIR)/tools/$$t/bin/$$t.js" "$(DESTDIR)$(PREFIX)/bin/$$t"; done
	@for s in scripts/*.mjs; do n=$$(basename $$s .mjs); ln -sf "$(CURDIR)/$$s" "$(DESTDIR)$(PREFIX)/bin/conveyor-$$n"; done
	@echo "installed $(TOOLS) into $(DESTDIR)$(PREFIX)/bin"

uninstall:
	@for t in $(TOOLS); do rm -f "$(DESTDIR)$(PREFIX)/bin/$$t"; done
	@for s in scripts/*.mjs; do rm -f "$(DESTDIR)$(PREFIX)/bin/conveyor-$$(basename $$s .mjs)"; done

clean:
	rm -rf lib-common/dist lib-common/*/dist tools/*/dist tsconfig.tsbuildinfo lib-common/*.tsbuildinfo lib-common/*/*.tsbuildinfo tools/*/*.tsbuildinfo test/.fixtures
