# connected-registry: build, test and verify. Every tool is built from the Go module proxy into ./bin by
# ci/tools.sh; nothing is downloaded from release pages.
SHELL := /usr/bin/env bash
export GOPROXY ?= https://proxy.golang.org
export GOFLAGS ?= -mod=mod
export CGO_ENABLED ?= 0

GO_TEST_FLAGS ?= -count=1 -timeout 20m

.PHONY: all tools generate lint test verify demo clean

all: verify test

## tools: build the pinned helm v3/v4, kubeconform and Distribution binaries into ./bin
tools:
	bash ci/tools.sh

## generate: regenerate the chart's values.schema.json and README.md from values.yaml, and the golden files
generate:
	go run ./ci/valuesdoc
	go test ./tests/chart -run TestScenarioGolden -update >/dev/null

## lint: gofmt, go vet and the values documentation check
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go') $$(git ls-files -o --exclude-standard '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...
	go run ./ci/valuesdoc -check

## test: every test of the root module: unit, chart rendering, helm CLIs, kubeconform, real registries
test: tools
	go test $(GO_TEST_FLAGS) ./...

## verify: regenerate everything and fail when the tree is not clean afterwards
verify: generate lint
	@if [ -n "$$(git status --porcelain)" ]; then \
	  echo "verify: regeneration changed the tree; run 'make generate' and commit:"; git status --porcelain; git --no-pager diff --stat; exit 1; fi

clean:
	rm -rf bin _out

## demo: build everything, start the embedded single-node cluster and a parent registry, install the chart and
## pull an image through it (needs root)
demo: tools
	bash ci/demo.sh
