# jsplan: make demo runs a plan on the built-in virtual board; make test runs
# every test. Both install what they need on a Debian machine (as root).

GO        ?= go
BIN       := bin/jsplan
OUT       := out
# Caches live outside the checkout, so that a fresh clone on the same machine
# finds its image bases, ajv-cli and the cluster's binaries warm.
CACHE     ?= $(HOME)/.cache/jsplan
export JSPLAN_CACHE ?= $(CACHE)

# internal/deps/deps.sh holds the command -> Debian package map: it installs only what is
# missing and never replaces a toolchain the machine already has (Node.js/npm, Go, Python).
DEPS      := internal/deps/deps.sh

.PHONY: all build demo test test-go test-short test-usb test-tekton deps deps-npm vet lint schema bench fuzz soak clean \
	image image-dra test-image image-clean disk-image test-dra test-dra-e2e bench-dra bench-dra-e2e test-cluster proto

# The Tekton Task's image: its name and tag are set here and nowhere else
# (tekton/tests checks that the Task, the Pipeline, the samples, the
# Containerfile's VERSION and the READMEs say the same).
IMAGE_REF := ghcr.io/jsplan/jsplan:v0.1.0
IMAGE_OCI := $(OUT)/jsplan-image.oci.tar
IMAGE_SH  := internal/image/image.sh
# The DRA driver's image (tekton/dra/deploy/daemonset.yaml names it).
DRA_IMAGE_REF := ghcr.io/jsplan/jsplan-dra:v0.1.0
DRA_IMAGE_OCI := $(OUT)/jsplan-dra-image.oci.tar

all: build

build:
	$(GO) build -o $(BIN) ./cmd/jsplan

# deps installs the Debian packages the tests and the demo use, when missing.
deps:
	@$(DEPS) install

# ajv-cli, the third-party validator the schema is checked against.
deps-npm: deps
	@[ -x $(CACHE)/npm/node_modules/.bin/ajv ] || \
	  (mkdir -p $(CACHE)/npm && npm install --silent --no-audit --no-fund --prefix $(CACHE)/npm ajv-cli@5.0.0 >/dev/null)

vet:
	$(GO) vet ./...
	CGO_ENABLED=0 $(GO) build ./...

# staticcheck, pinned (the module proxy serves it; no tools module needed),
# on every module: main, tekton, tekton/dra, tekton/cluster.
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	$(STATICCHECK) ./...
	@if [ -f tekton/go.mod ]; then cd tekton && $(STATICCHECK) ./...; fi
	@if [ -f tekton/dra/go.mod ]; then cd tekton/dra && $(STATICCHECK) ./...; fi
	@if [ -f tekton/cluster/go.mod ]; then cd tekton/cluster && $(STATICCHECK) ./...; fi

# The agent protocol's generated Go (checked in): protoc from Debian's
# protobuf-compiler, the Go plugins at the versions the files name.
proto:
	@command -v protoc >/dev/null || { echo "make proto needs protoc (Debian: protobuf-compiler)" >&2; exit 2; }
	GOBIN=$(CURDIR)/bin $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	GOBIN=$(CURDIR)/bin $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
	cd drivers/remote/remotepb && PATH=$(CURDIR)/bin:$$PATH protoc --go_out=. --go_opt=paths=source_relative \
	  --go-grpc_out=. --go-grpc_opt=paths=source_relative remote.proto

schema:
	$(GO) run ./cmd/jsplan schema > schema/jsplan.schema.json

# The demo keeps jsplan's default state and lock directories (JSPLAN_STATE_DIR,
# JSPLAN_LOCK_DIR when set), so the commands README shows next (power,
# console, boards list, lock) see the board it used.
demo: build
	@mkdir -p $(OUT)
	@id=demo-$$(date +%s); \
	( head -c 4194304 /dev/urandom; printf '\nJSPLAN_IMAGE_ID=%s\n' $$id ) > $(OUT)/demo.img; \
	echo "== jsplan validate plans/"; $(BIN) validate plans || exit 2; \
	echo "== jsplan apply plans/examples/virtual-smoke.yaml (image id $$id)"; \
	$(BIN) apply plans/examples/virtual-smoke.yaml --set image=$(OUT)/demo.img --set image-id=$$id \
	  --set sha256=$$(sha256sum $(OUT)/demo.img | cut -d' ' -f1) \
	  --artifacts $(OUT)/artifacts; st=$$?; \
	echo "== artifacts:"; ls -R $(OUT)/artifacts | head -30; \
	echo "== open $(OUT)/artifacts/report.html in a browser"; \
	echo "== jsplan apply plans/examples/two-boards.yaml: two virtual boards on one simulated bus"; \
	sed 's|\.\./\.\./out/simcan0|simcan0|g' plans/boards/pair.yaml > $(OUT)/pair.yaml; \
	$(BIN) apply plans/examples/two-boards.yaml --boards $(OUT)/pair.yaml --artifacts $(OUT)/artifacts-two-boards || \
	  { s2=$$?; [ $$st -ne 0 ] || st=$$s2; }; \
	echo "== next: export PATH=\"$$(cd $$(dirname $(BIN)) && pwd):\$$PATH\"; jsplan power sim-1 status; jsplan console sim-1 --power-on"; \
	exit $$st

test: deps deps-npm vet lint test-go test-usb test-tekton

test-go:
	JSPLAN_AJV=$(CACHE)/npm/node_modules/.bin/ajv $(GO) test -count=1 -timeout 25m ./...

# The everyday loop: skips QEMU, ansible, pre-commit and the other slow tests.
test-short:
	$(GO) test -short -count=1 ./...

# The USB build (cgo + libusb, as in the Tekton image): build and test it too.
test-usb:
	CGO_ENABLED=1 $(GO) vet -tags usb ./drivers/...
	CGO_ENABLED=1 $(GO) test -count=1 -tags usb ./drivers/dutlink/...

test-tekton:
	@if [ -f tekton/go.mod ]; then cd tekton && $(GO) test -count=1 -timeout 30m ./...; fi

# The fault soak, long form (make test runs a short one): SOAK_RUNS applies on two
# virtual boards with random faults, checked after every run; SOAK_SEED replays one.
SOAK_RUNS ?= 500
soak:
	SOAK_RUNS=$(SOAK_RUNS) $(GO) test -count=1 -timeout 0 -run '^TestSoak$$' -v ./cmd

# The DRA driver (nested module tekton/dra, Kubernetes v1.37 libraries): the
# scheduler's allocator over the driver's slices, the driver against a fake
# kubelet with CDI injection, and the manifests through Kubernetes' own
# validation. From an empty build cache: about 8 minutes on two busy cores;
# warm: about 20 seconds.
DRA_PKGS := ./driver/... ./deploy/... ./cmd/...
test-dra:
	cd tekton/dra && $(GO) vet $(DRA_PKGS) && $(GO) test -count=1 -timeout 30m $(DRA_PKGS)

# End to end in process: etcd (embedded), kube-apiserver, kube-scheduler and
# the ResourceClaim controller, with the driver publishing fake nodes' boards.
# Compiles about 2,400 Kubernetes packages (17 minutes from an empty build cache
# on two shared cores, about a minute warm); the test itself takes 10-15 seconds.
test-dra-e2e:
	cd tekton/dra && $(GO) vet ./e2e && $(GO) test -count=1 -timeout 30m ./e2e

# Scheduling throughput end to end with the in-process control plane (as
# Kubernetes' scheduler_perf measures it): farms of 100 and 500 nodes x 8
# boards, 4 Task-shaped pods per node, jsplan's slices against plain ones.
# make test-dra-e2e runs the same test on 5 nodes (about 50 s). About 30 minutes
# on 2 shared, loaded cores.
DRA_SCALE ?= 100,500
bench-dra-e2e:
	@mkdir -p $(OUT); log=$(abspath $(OUT))/bench-dra-e2e.log; echo "log: $$log"; \
	cd tekton/dra && JSPLAN_DRA_SCALE=$(DRA_SCALE) $(GO) test -count=1 -run '^TestSchedulingThroughput$$' -v -timeout 90m ./e2e >$$log 2>&1; \
	s=$$?; grep -E '^(\||--- |FAIL|ok)' $$log; exit $$s

# The scale figures: 2000 claims on simulated farms of 25-500 nodes x 4-16 boards.
bench-dra:
	cd tekton/dra && $(GO) test -run '^$$' -bench Farm -benchtime 1x -timeout 60m ./driver

# A longer fuzz run by hand: make fuzz FUZZTIME=5m
FUZZTIME ?= 1m
fuzz:
	$(GO) test ./engine -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME)
	$(GO) test ./internal/htmlreport -run '^$$' -fuzz '^FuzzReport$$' -fuzztime $(FUZZTIME)
	for f in FuzzKTAP FuzzTAP FuzzJUnit; do $(GO) test ./internal/results -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) || exit 1; done
	for f in FuzzLZMA2 FuzzLZMA2Tool FuzzBlockHeader; do \
	  $(GO) test ./internal/flash/internal/xz -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) || exit 1; done
	$(GO) test ./internal/flash -run '^$$' -fuzz '^FuzzXZIndex$$' -fuzztime $(FUZZTIME)
	for f in FuzzDecode FuzzParseAddress; do $(GO) test ./drivers/remote/remotepb -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) || exit 1; done
	$(GO) test ./drivers/remote/agent -run '^$$' -fuzz '^FuzzCodec$$' -fuzztime $(FUZZTIME)

bench: deps deps-npm build
	internal/bench/validate-bench.sh
	@[ ! -x internal/bench/flash-bench.sh ] || internal/bench/flash-bench.sh
	$(GO) test -run '^$$' -bench . -benchmem ./engine/... ./steps/...

clean:
	rm -rf bin $(OUT)

# The Task's container image, built offline from tekton/Containerfile with podman
# (local Debian bases, no network), exported as an OCI archive for skopeo copy.
image: deps
	$(IMAGE_SH) build tekton/Containerfile $(IMAGE_REF) $(IMAGE_OCI)

# The DRA driver's image, the same way, from tekton/dra/Containerfile.
image-dra: deps
	$(IMAGE_SH) build tekton/dra/Containerfile $(DRA_IMAGE_REF) $(DRA_IMAGE_OCI)

# A real one-node cluster (tekton/cluster): etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd with runc and CDI, a
# kubelet, Tekton Pipelines and the jsplan DRA driver as a pod, in network,
# mount and PID namespaces of their own; PipelineRuns of the shipped
# Pipeline run plans on the node's boards. Binaries are cached in
# ~/.cache/jsplan/cluster (JSPLAN_CLUSTER_CACHE).
# First a run killed (SIGKILL) while the node starts: the PID namespace takes
# every process with it, and the next run finds none and cleans up the rest;
# each run fails if it leaves anything on the host.
test-cluster: image image-dra
	cd tekton/cluster && $(GO) vet ./... && $(GO) test -c -o cluster.test .
	cd tekton/cluster && { timeout -s KILL 45 ./cluster.test -test.run '^TestPipelineOnRealNode$$' >/dev/null 2>&1; true; }
	cd tekton/cluster && ./cluster.test -test.v -test.count=1 -test.timeout 60m; s=$$?; rm -f cluster.test; exit $$s

# Runs the built image as the Task runs it (podman, runc, no network).
test-image: image
	$(IMAGE_SH) test $(IMAGE_REF)

# Drops the project's container storage (.cache/containers) and local bases.
image-clean:
	$(IMAGE_SH) clean

# A bootable test disk image for the qemu board (and its .zst, .xz, .bmap).
disk-image: deps
	IMAGE_PASSWORD=demo-password plans/images/build-image.sh $(OUT)/images
