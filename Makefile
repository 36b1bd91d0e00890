# Faregate. `make run` runs the city simulator on embedded defaults;
# `make test` installs what a fresh Debian machine lacks and runs every test.

SHELL := /bin/bash
GO ?= go
export GOEXPERIMENT := simd
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBS := libdlib-dev libatlas-base-dev libdlib-data libjpeg-dev libpng-dev pkg-config gcc g++ chromium
SHARED ?= ../shared

.PHONY: all build run test test-race test-fuzz test-poa geth nats-server node-modules deps models contracts bench clean

all: build

# deps installs the Debian packages the cgo dlib binding needs; it does nothing when they are already there.
deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# models copies the dlib face models beside the binary (or fetches the
# official ones where a network allows), then checks each against the sha256
# recorded in ../shared/models/README.md: a truncated download or a different
# rebuild of the recognition network would otherwise only show up as faces that
# never match.
MODEL_SHA256 := \
	cdb1d47b961fe310ef1f3aa2974c5f65d29c079346760f6b6785c7e405f7266a=dlib_face_recognition_resnet_model_v1.dat \
	4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6=mmod_human_face_detector.dat
models:
	@mkdir -p models
	@if [ -d $(SHARED)/models ]; then cp -u $(SHARED)/models/*.dat models/; \
	else for f in dlib_face_recognition_resnet_model_v1 mmod_human_face_detector; do \
		[ -f models/$$f.dat ] || (curl -fsSL http://dlib.net/files/$$f.dat.bz2 | bunzip2 > models/$$f.dat); done; fi
	@cd models && for e in $(MODEL_SHA256); do echo "$${e%%=*}  $${e#*=}"; done | sha256sum --check --strict \
		|| { echo "models: checksum mismatch (expected values: $(SHARED)/models/README.md; remove the file and run make models again)" >&2; exit 1; }
	@ls -l models

build: deps
	$(GO) build -buildvcs=auto -o bin/faregate ./cmd/faregate

# run keeps the simulated city in data/run (replaced by the next make run) and
# ends by printing the commands that reopen and explore it.
run: build
	rm -rf data/run
	./bin/faregate simulate --duration 60s --rate 300 --period 10s --data data/run --report report.json --html report.html

# geth installs go-ethereum's geth v1.13.15 (the last release that still seals
# Clique proof-of-authority blocks) into bin/ for the 3-signer Clique test; it
# does nothing when bin/geth already reports that version.
GETH_VERSION := 1.13.15
geth:
	@if bin/geth version 2>/dev/null | grep -q '^Version: $(GETH_VERSION)-'; then :; else \
		echo "installing geth v$(GETH_VERSION) into bin/ (a few minutes of compiling)"; \
		GOBIN=$(CURDIR)/bin $(GO) install -ldflags=-checklinkname=0 github.com/ethereum/go-ethereum/cmd/geth@v$(GETH_VERSION); \
	fi

# nats-server builds the nats-server release go.mod requires (the one the
# embedded server is) into bin/, for TestExternalNATSServer and for running
# an external server with `faregate nats config`; it does nothing when
# bin/nats-server already reports that version.
nats-server:
	@v=$$($(GO) list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2); \
	if bin/nats-server --version 2>/dev/null | grep -qx "nats-server: $$v"; then :; else \
		echo "building nats-server $$v into bin/"; \
		$(GO) build -o bin/nats-server github.com/nats-io/nats-server/v2; \
	fi

# node-modules installs ledger/contracts' npm packages (the pinned
# @openzeppelin/merkle-tree the proof test verifies with) when they are
# missing; node and npm come from Debian where the machine lacks them.
node-modules:
	@if [ ! -f ledger/contracts/node_modules/@openzeppelin/merkle-tree/package.json ]; then \
		command -v npm >/dev/null || ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm); \
		npm ci --prefix ledger/contracts --no-audit --no-fund; \
	fi

test: deps geth nats-server node-modules
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 40m ./...
	$(MAKE) test-race
	$(MAKE) test-fuzz

# test-fuzz runs every fuzz target for FUZZTIME past its seeds (which the
# plain run above replays): a few seconds of new inputs each found a panic
# the seeds missed (FuzzRevertData: a node's error text in other scripts).
# A count, not a duration: Go 1.26's fuzzer can fail a target with "context
# deadline exceeded" as a duration ends (go.dev/issue/75804).
FUZZTIME ?= 10000x
test-fuzz: deps
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(cat $$dir/*_test.go 2>/dev/null | sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p'); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -parallel 2 $$pkg > /tmp/faregate-fuzz.log 2>&1 || { cat /tmp/faregate-fuzz.log; exit 1; }; \
	  done; \
	done

# test-race runs the race detector over the packages whose goroutines share
# state (the terminal, the pure cores) and over whole simulated cities (every
# part in one process: terminals, NATS, clearing, billing, the chain); the
# whole clearing suite under -race would take most of CI's time.
test-race: deps geth nats-server
	$(GO) test -race -count=1 -timeout 20m ./terminal ./fare ./ledger/merkle ./clearing/journeys ./clearing/fares/...
	$(GO) test -race -count=1 -timeout 20m -run '^TestRun' ./simulator
	$(GO) test -race -count=1 -timeout 20m -run 'TestPaymentsPostedTogether|TestSealFromMemory|TestParallelPricingMatchesSerial' ./clearing
	$(GO) test -race -count=1 -timeout 20m -run 'TestPostPaidDebt|TestDebtGrows|TestLiveFeedVersionTakesEffect' ./cmd/faregate

# test-poa runs only the ledger's 3-signer Clique proof-of-authority test.
test-poa: geth
	$(GO) test -count=1 -timeout 10m -run '^TestClique' -v ./ledger/

# contracts needs node and npm (on this machine kind they come with the
# image; elsewhere Debian's nodejs and npm packages are installed).
contracts:
	@command -v npm >/dev/null || ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm)
	bash ledger/contracts/build.sh

bench: deps geth
	$(GO) test -run '^$$' -bench . -count 5 ./fare ./clearing ./ledger/... ./clearing/fares/... ./biometrics/...

clean:
	rm -rf bin report.json
