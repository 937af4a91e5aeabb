# Lifeboat build and test entry points. `make test` is THE test command, on a laptop and in CI
# (.ci/run): it installs missing test dependencies, checks formatting, vets, then runs every test.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

# A fresh CI shell may have Go installed without it being in PATH.
export PATH := $(PATH):/usr/local/go/bin

GO ?= go
GOFMT ?= gofmt
PKGS ?= ./...
# Tests marked t.Parallel run six per core: much of their time goes to waiting on the PostgreSQL
# servers, MinIO and lifeboat processes they start (fsync, WAL archiving, recovery, retry backoff,
# the daemon's schedule), not to the CPU, and the longest tests must start early rather than
# behind a queue of short ones.
TESTPARALLEL ?= $(shell echo $$(( $$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2) * 6 )))
GOTESTFLAGS ?= -count=1 -timeout 60m -parallel $(TESTPARALLEL)

.PHONY: build release deb vet fmt-check deps test demo

# build: every package compiles, and bin/lifeboat is stamped with this checkout's version and
# commit (`lifeboat version`). release: the static binary a release ships, in dist/. deb: the
# Debian package in dist/ (packaging/, docs/install.md). VERSION=1.2.0 COMMIT=... override git.
build:
	$(GO) build $(PKGS)
	@scripts/release.sh dev bin/lifeboat

release:
	@scripts/release.sh binary dist/lifeboat

deb:
	@scripts/release.sh deb dist

vet:
	$(GO) vet $(PKGS)

# testdata may hold deliberately malformed Go fixtures.
fmt-check:
	@files=$$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -not -path '*/vendor/*' -print0 \
		| xargs -0 -r $(GOFMT) -l); \
	if [[ -n $$files ]]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$files"; exit 1; fi

deps:
	@scripts/install-test-deps.sh

# The summary repeats the per-package ok/FAIL lines at the end, where CI logs are read first.
test:
	@scripts/install-test-deps.sh
	@$(MAKE) --no-print-directory fmt-check
	$(GO) vet $(PKGS)
	@log=$$(mktemp); trap 'rm -f "$$log"' EXIT; status=0; \
	echo "$(GO) test $(GOTESTFLAGS) $(PKGS)"; \
	$(GO) test $(GOTESTFLAGS) $(PKGS) 2>&1 | tee "$$log" || status=$$?; \
	echo; echo "=== go test summary (exit status $$status) ==="; \
	grep -E '^(ok|FAIL|--- FAIL)' "$$log" || true; \
	exit $$status

demo:
	scripts/demo.sh
