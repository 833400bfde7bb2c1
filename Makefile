# jsplan: make demo runs a plan on the built-in virtual board; make test runs
# every test. Both install what they need on a Debian machine (as root).

GO        ?= go
BIN       := bin/jsplan
OUT       := out
CACHE     ?= $(CURDIR)/.cache
export JSPLAN_CACHE ?= $(CACHE)

# cmd/deps/deps.sh holds the command -> Debian package map: it installs only what is
# missing and never replaces a toolchain the machine already has (Node.js/npm, Go, Python).
DEPS      := cmd/deps/deps.sh

.PHONY: all build demo test test-go test-usb test-tekton test-dra test-dra-e2e bench-dra deps deps-npm vet schema bench fuzz clean image

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

schema:
	$(GO) run ./cmd/jsplan schema --generate > schema/jsplan.schema.json

demo: build
	@mkdir -p $(OUT)
	@id=demo-$$(date +%s); \
	( head -c 4194304 /dev/urandom; printf '\nJSPLAN_IMAGE_ID=%s\n' $$id ) > $(OUT)/demo.img; \
	echo "== jsplan validate plans/"; ./$(BIN) validate plans; \
	echo "== jsplan apply plans/examples/virtual-smoke.yaml (image id $$id)"; \
	./$(BIN) apply plans/examples/virtual-smoke.yaml --set image=$(OUT)/demo.img --set image-id=$$id \
	  --artifacts $(OUT)/artifacts --state-dir $(OUT)/state --lock-dir $(OUT)/locks; \
	echo "== artifacts:"; ls -R $(OUT)/artifacts | head -30

test: deps deps-npm vet test-go test-usb test-tekton

test-go:
	JSPLAN_AJV=$(CACHE)/npm/node_modules/.bin/ajv $(GO) test -count=1 -timeout 25m ./...

# The USB build (cgo + libusb, as in the Tekton image): build and test it too.
test-usb:
	CGO_ENABLED=1 $(GO) vet -tags usb ./drivers/...
	CGO_ENABLED=1 $(GO) test -count=1 -tags usb ./drivers/dutlink/...

test-tekton:
	@if [ -f tekton/go.mod ]; then cd tekton && $(GO) test -count=1 -timeout 30m ./...; fi

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

# The scale figures: 2000 claims on simulated farms of 25-200 nodes x 4-16 boards.
bench-dra:
	cd tekton/dra && $(GO) test -run '^$$' -bench Farm -benchtime 1x -timeout 60m ./driver

# A longer fuzz run by hand: make fuzz FUZZTIME=5m
FUZZTIME ?= 1m
fuzz:
	$(GO) test ./engine -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME)

bench: deps deps-npm build
	cmd/bench/validate-bench.sh
	@[ ! -x cmd/bench/flash-bench.sh ] || cmd/bench/flash-bench.sh
	$(GO) test -run '^$$' -bench . -benchmem ./engine/... ./steps/...

clean:
	rm -rf bin $(OUT)

# A bootable test image for the qemu board (and its .zst, .xz, .bmap).
image: deps
	IMAGE_PASSWORD=demo-password plans/images/build-image.sh $(OUT)/images
