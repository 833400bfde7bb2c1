# jsplan: make demo runs a plan on the built-in virtual board; make test runs
# every test. Both install what they need on a Debian machine (as root).

GO        ?= go
BIN       := bin/jsplan
OUT       := out
CACHE     ?= $(CURDIR)/.cache
export JSPLAN_CACHE ?= $(CACHE)

DEB_PKGS  := qemu-system-x86 busybox-static syslinux syslinux-common mtools dosfstools fdisk openssl \
             ansible-core openssh-server openssh-client pre-commit bmap-tools zstd xz-utils bzip2 \
             libusb-1.0-0-dev pkg-config socat hyperfine nodejs npm curl util-linux
# commands that prove each package is there (checked before installing)
DEB_CHECK := qemu-system-x86_64 busybox syslinux mcopy mkfs.vfat sfdisk openssl ansible-playbook sshd \
             pre-commit bmaptool zstd xz bzip2 pkg-config socat hyperfine node npm curl losetup

.PHONY: all build demo test test-go test-usb test-tekton deps deps-npm vet schema bench fuzz clean image

all: build

build:
	$(GO) build -o $(BIN) ./cmd/jsplan

# deps installs the Debian packages the tests and the demo use, when missing.
deps:
	@missing=""; for c in $(DEB_CHECK) ; do \
	  command -v $$c >/dev/null 2>&1 || [ -x /usr/sbin/$$c ] || missing="$$missing $$c"; done; \
	[ -f /usr/include/libusb-1.0/libusb.h ] || missing="$$missing libusb"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "jsplan: missing tools:$$missing"; \
	    echo "jsplan: run 'sudo make deps' (Debian: apt-get install $(DEB_PKGS))"; exit 1; fi; \
	  echo "installing Debian packages (missing:$$missing)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_PKGS) >/dev/null; \
	fi

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
