# conveyor — build, test, benchmark and demo. Everything runs from the checkout;
# `make install` links the tools onto PATH.
SHELL := /bin/bash
PREFIX ?= /usr/local
TOOLS := $(notdir $(wildcard tools/*))
# groff-base, man-db and zsh: test/help.test.ts renders the man pages and presses Tab in zsh. time (GNU): make bench's peak RSS.
APT_PACKAGES := docker-registry skopeo umoci runc crun busybox-static hyperfine \
	apache2-utils openssl zstd attr jq iproute2 util-linux procps ca-certificates curl tini gcc libc6-dev \
	groff-base man-db zsh buildah passt slirp4netns uidmap fuse-overlayfs fuse3 eatmydata e2fsprogs time
PNPM_VERSION := 10.34.8
# Where `make install` puts man pages and shell completion (bash-completion and zsh search these).
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
SCRIPTS := $(basename $(notdir $(wildcard scripts/*.mjs)))

.PHONY: all setup deps build test bench demo install uninstall clean lint format man completion

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

# tsc type-checks and emits dist/ (tests import its modules); then every tool is bundled into
# tools/<name>/bundle/ with a V8 code cache, which its bin runs (scripts/build/bundle.mjs).
build: deps
	pnpm exec tsc -b
	node scripts/build/bundle.mjs

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

# Man pages from the READMEs (tools/*/README.md; the scripts' from docs/conveyor-NAME.md or
# scripts/README.md when they have one) into man/man1. The generators live in scripts/build/, out of
# the scripts/*.mjs that install links as conveyor-* commands.
man:
	rm -rf man
	node scripts/build/gen-man.mjs man

# bash and zsh completion from each built tool's flag specification, into completion/.
completion: build
	rm -rf completion
	node scripts/build/gen-completion.mjs completion

install: build man completion
	@mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR)
	@for t in $(TOOLS); do ln -sf "$(CURDIR)/tools/$$t/bin/$$t.js" "$(DESTDIR)$(PREFIX)/bin/$$t"; done
	@for n in $(SCRIPTS); do ln -sf "$(CURDIR)/scripts/$$n.mjs" "$(DESTDIR)$(PREFIX)/bin/conveyor-$$n"; done
	@install -m 0644 man/man1/*.1 "$(DESTDIR)$(MANDIR)/man1/"
	@# bash-completion loads completions/<command> on first use: one file, a link per tool.
	@install -m 0644 completion/conveyor.bash "$(DESTDIR)$(BASHCOMPDIR)/conveyor"
	@for t in $(TOOLS); do ln -sf conveyor "$(DESTDIR)$(BASHCOMPDIR)/$$t"; done
	@install -m 0644 completion/_conveyor "$(DESTDIR)$(ZSHCOMPDIR)/_conveyor"
	@echo "installed $(TOOLS) into $(DESTDIR)$(PREFIX)/bin, their man pages and shell completion"

uninstall:
	@for t in $(TOOLS); do rm -f "$(DESTDIR)$(PREFIX)/bin/$$t" "$(DESTDIR)$(MANDIR)/man1/$$t.1" "$(DESTDIR)$(BASHCOMPDIR)/$$t"; done
	@for n in $(SCRIPTS); do rm -f "$(DESTDIR)$(PREFIX)/bin/conveyor-$$n" "$(DESTDIR)$(MANDIR)/man1/conveyor-$$n.1"; done
	@rm -f "$(DESTDIR)$(BASHCOMPDIR)/conveyor" "$(DESTDIR)$(ZSHCOMPDIR)/_conveyor"

clean:
	rm -rf man completion lib-common/dist lib-common/*/dist tools/*/dist tools/*/bundle tsconfig.tsbuildinfo lib-common/*.tsbuildinfo lib-common/*/*.tsbuildinfo tools/*/*.tsbuildinfo test/.fixtures
