# connected-registry: build, test and verify. Every tool is built from the Go module proxy into ./bin by
# ci/tools.sh; nothing is downloaded from release pages.
SHELL := /usr/bin/env bash
export GOPROXY ?= https://proxy.golang.org
export GOFLAGS ?= -mod=mod
export CGO_ENABLED ?= 0

GO_TEST_FLAGS ?= -count=1 -timeout 20m

# helm-docs writes the chart's README.md from README.md.gotmpl and the `# --` comments of values.yaml.
HELM_DOCS := bin/helm-docs --chart-search-root chart/connected-registry --template-files README.md.gotmpl \
	--sort-values-order file --ignore-non-descriptions --skip-version-footer --log-level warning

.PHONY: chart-deps release release-test extension-bundle push-images all tools postrender plugin generate lint test unit e2e verify demo cluster-build cluster-up cluster-down clean bench-registry bench-postrender bench-sync bench-storage s3-store test-s3

all: verify test

## tools: build the pinned helm v3/v4, kubeconform, Distribution, kustomize and helm-docs binaries into ./bin
tools:
	bash ci/tools.sh

## postrender: build the kustomize post-renderer into ./bin (Helm 3: --post-renderer ./bin/connected-registry-postrender)
## and into the Helm 4 plugin directory (helm plugin install postrender/plugin/connected-registry-postrender)
POSTRENDER_PLUGIN_DIR := postrender/plugin/connected-registry-postrender
postrender:
	go build -trimpath -o bin/connected-registry-postrender ./cmd/connected-registry-postrender
	mkdir -p $(POSTRENDER_PLUGIN_DIR)/bin
	cp bin/connected-registry-postrender $(POSTRENDER_PLUGIN_DIR)/bin/

## plugin: build the workstation's kubectl plugin into ./bin (put it on PATH: `kubectl connected-registry check`)
plugin:
	go build -trimpath -o bin/kubectl-connected_registry ./cmd/kubectl-connected_registry

## generate: regenerate the chart's values.schema.json (ci/valuesdoc) and README.md (helm-docs) from values.yaml,
## the trust-distribution kustomize component, and the golden files
generate: tools postrender
	go run ./ci/valuesdoc
	$(HELM_DOCS)
	go run ./ci/trustcomponent
	go test ./tests/chart -run TestScenarioGolden -update >/dev/null
	go test ./tests/postrender -run TestGolden -update >/dev/null

## lint: gofmt, go vet, the values schema and chart README checks, and actionlint over .github/workflows
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go') $$(git ls-files -o --exclude-standard '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...
	go run ./ci/valuesdoc -check
	bash ci/tools.sh helm-docs
	@$(HELM_DOCS) --dry-run | diff -u chart/connected-registry/README.md - || \
	  { echo "chart/connected-registry/README.md is out of date: run make generate and commit it"; exit 1; }
	bash ci/tools.sh actionlint
	bin/actionlint .github/workflows/*.yaml

## test: every test: unit, chart rendering, helm CLIs, kubeconform, real registries, and end to end on the
## embedded cluster (needs root). The cluster's Kubernetes build (about 13 minutes on a cold 2-core machine) runs
## beside the unit tests, whose waits on processes leave cores idle.
test:
	$(MAKE) --no-print-directory -j2 unit cluster-build
	$(MAKE) --no-print-directory e2e

## unit: the tests that need no cluster
unit: tools postrender plugin
	bash ci/azurite.sh >/dev/null
	go test $(GO_TEST_FLAGS) ./...
	cd tests/cluster && go test $(GO_TEST_FLAGS) -vet=off .
	cd tests/distauth && go test $(GO_TEST_FLAGS) .

## e2e: end-to-end tests on the real single-node cluster of tests/cluster (needs root; brings it up or reuses it)
e2e: tools postrender
	bash ci/e2e-deps.sh
	@set -o pipefail; mkdir -p _out; rc=0; E2E=1 go test -count=1 -timeout 60m -v ./tests/e2e/ 2>&1 | tee _out/e2e.log || rc=$$?; \
	  if [ $$rc -ne 0 ]; then bash ci/test-failures.sh _out/e2e.log; fi; exit $$rc

## s3-store: build the S3-compatible store of the storage tests (MinIO from its Go module, about 17 minutes cold on
## 2 cores) into bin/minio; kept out of `make test` and .ci/run for its build time
s3-store:
	bash ci/s3-store.sh

## test-s3: the object store checks against a real MinIO (the preflight's storage check on the s3 driver)
test-s3: s3-store
	S3_REQUIRED=1 go test -count=1 -run 'TestS3' -v ./internal/storecheck/

## chart-deps: put cert-manager's chart (from its Go module, through the Go module proxy: no chart repository) into
## chart/connected-registry/charts/, which git ignores, so `helm install chart/connected-registry` works from a clone
chart-deps:
	go run ./ci/stagechart --vendor

## cluster-build: build the embedded cluster's binaries (Kubernetes v1.37.2 from the Go module proxy) into its
## state directory; a build already up to date costs seconds
cluster-build:
	@echo "cluster-build: building Kubernetes v1.37.2 for the embedded cluster (cold: about 13 minutes on 2 cores)"
	@bash ci/cluster.sh build 2>&1 | sed -u 's/^/cluster-build | /'; exit $${PIPESTATUS[0]}
	@echo "cluster-build: done"

cluster-up:
	bash ci/cluster.sh up

cluster-down:
	bash ci/cluster.sh down

## verify: regenerate everything and fail when the tree is not clean afterwards
verify: generate lint
	@if [ -n "$$(git status --porcelain)" ]; then \
	  echo "verify: regeneration changed the tree; run 'make generate' and commit:"; git status --porcelain; git --no-pager diff --stat; exit 1; fi

## bench-registry: the registry data-plane benchmark (raw TLS ceiling, direct, cold and warm pulls through the
## chart's registry configuration, concurrency, parent outages) on 127.0.0.1; writes _out/bench/registry.md.
## BENCH_RUNS, BENCH_LAYER_SIZE and the other flags of `go run ./ci/bench/registry -h` tune it.
bench-registry:
	bash ci/tools.sh registry
	go run ./ci/bench/registry --out _out/bench/registry.md

## bench-sync: the scheduled pre-sync (`connected-registry sync` with the chart's CronJob args) of about 1 GiB of
## new multi-arch content through a 50 MB/s uplink into the chart's registry, side by side with crane copy of the
## same content to a plain registry, then a re-sync of the unchanged set; on 127.0.0.1; writes _out/bench/sync.md.
## The flags of `go run ./ci/bench/sync -h` tune it.
bench-sync:
	bash ci/tools.sh registry
	go run ./ci/bench/sync --out _out/bench/sync.md

## bench-storage: a concurrent cold pull (8 clients, 3 large layers and 4 small, through a 50 MB/s uplink) into 1
## replica on filesystem storage (the PVC case), 1 and 3 replicas on Azure Blob (Azurite) with the chart's peer
## routing, and 3 without it; parent bytes per image and wall time against the PVC case, on loopback addresses;
## writes _out/bench/storage.md. BENCH_RUNS, BENCH_STORAGE_CLIENTS and the other flags of
## `go run ./ci/bench/registry -h` tune it.
bench-storage:
	bash ci/tools.sh registry
	bash ci/azurite.sh >/dev/null
	go run ./ci/bench/registry --sections storage --out _out/bench/storage.md

## bench-postrender: the post-renderer side by side with bare krusty and the kustomize v5.8.2 CLI on the chart's
## output (example site overlay) and synthetic inputs of 100 and 500 objects, with the cold-start cost;
## writes _out/bench/postrender.md. BENCH_SIZES and BENCH_RUNS tune it (go run ./ci/bench/postrender -h).
bench-postrender: tools postrender
	go run ./ci/bench/postrender --out _out/bench/postrender.md

clean:
	rm -rf bin _out $(POSTRENDER_PLUGIN_DIR)/bin

## release: build the product and registry images (RELEASE_PLATFORMS, default linux/amd64,linux/arm64), push them
## and the chart (cert-manager vendored in charts/, Helm provenance) to RELEASE_REGISTRY, write an SPDX SBOM per image
## (syft) and sign every image, SBOM attestation and the OCI chart with cosign (COSIGN_KEY, or keyless); writes
## _out/release/. ci/release/release.sh lists every variable; docs/release.md says how to verify what it publishes.
release:
	bash ci/release/release.sh

## release-test: run `make release` against a Distribution registry on 127.0.0.1 with throwaway keys, and verify
## every signature, SBOM attestation and the chart's provenance as a user would (tests/registry TestRelease)
release-test: tools
	bash ci/tools.sh syft cosign
	RELEASE_TEST=1 go test $(GO_TEST_FLAGS) -v -run TestRelease ./tests/registry

## push-images: build the product and registry images for linux/amd64 and linux/arm64 without Docker and push them
## to IMAGES_REGISTRY (HOST[:PORT], over TLS), each under its repository path; IMAGES_USERNAME, IMAGES_PASSWORD and
## IMAGES_CA from the environment
push-images:
	@test -n "$(IMAGES_REGISTRY)" || { echo "push-images: set IMAGES_REGISTRY=HOST[:PORT]"; exit 2; }
	go run ./ci/images build --only connected-registry,registry --platforms linux/amd64,linux/arm64
	go run ./ci/images push --only connected-registry,registry --registry $(IMAGES_REGISTRY)

## demo: build everything, start the embedded single-node cluster and a parent registry, install the chart and
## pull an image through it (needs root)
demo: tools
	bash ci/demo.sh

## extension-bundle: stage the chart as an Azure Arc / AKS cluster extension bundle in _out/extension/ for the Azure
## Marketplace's packaging tool (container-package-app: `cpa verify`, `cpa buildbundle`), then check it offline as
## that tool would. EXTENSION_IMAGES names the image lists ("REF DIGEST [ARCHIVE]" lines, as ci/images build writes
## images.txt; several allowed, space-separated); by default both project images are built for linux/amd64 and
## linux/arm64 into _out/extension/images. The images of cert-manager and of the acr engine cannot be built here:
## give them by digest in one more list. EXTENSION_REGISTRY_SERVER is the publisher's ACR.
EXTENSION_IMAGES ?=
EXTENSION_REGISTRY_SERVER ?=
EXTENSION_IMAGES_DIR := _out/extension/images
extension-bundle: tools
	@images="$(EXTENSION_IMAGES)"; \
	if [ -z "$$images" ]; then \
	  go run ./ci/images build --out $(EXTENSION_IMAGES_DIR) --only connected-registry,registry --platforms linux/amd64,linux/arm64 || exit 1; \
	  images=$(EXTENSION_IMAGES_DIR)/images.txt; \
	fi; \
	go run ./ci/extension stage --images "$$images" --out _out/extension --registry-server "$(EXTENSION_REGISTRY_SERVER)" && \
	go run ./ci/extension check --dir _out/extension --helm bin/helm3,bin/helm4
