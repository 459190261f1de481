# govmm's build, demo and test entry points. The README's two commands are
# `make demo` and `make test`; .ci/run calls `make test`.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# E2E_TIMEOUT bounds the whole end-to-end run inside the test bed (seconds).
export E2E_TIMEOUT ?= 1800

.PHONY: all build deps test unit e2e guests rootfs demo bench bench-io bench-run fuzz vet clean

all: build

# A static binary: no cgo, so it runs anywhere, including inside the test
# bed's minimal L1 userspace.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/govmm ./cmd/govmm

# Debian packages the scripts and tests use (QEMU for the test bed, cpio,
# the kernel build tools, iasl for the ACPI table tests).
deps:
	scripts/install-deps.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }

# Tier 1 and 2: unit tests and KVM smoke tests on this host's /dev/kvm,
# under the race detector.
unit: vet
	$(GO) test -race -count=1 ./...

# Tier 3: boot real Linux kernels. Directly when this host's KVM is
# hardware-assisted, otherwise inside the nested test bed.
e2e: build guests
	scripts/e2e.sh

guests: rootfs
	scripts/guest-assets.sh all

# The ext4 root disk image (build/guests/rootfs/rootfs.img) for the virtio
# tests: busybox and the same init as the initramfs images.
rootfs:
	scripts/rootfs.sh

# All three tiers.
test: deps unit e2e

# Boot a stock Debian kernel to its userspace (in the test bed if needed).
demo: build
	scripts/install-deps.sh testbed
	scripts/demo.sh

bench: build guests
	scripts/bench-boot.sh

# virtio-blk and virtio-net throughput and VM exits, govmm against QEMU
# (VMMS=qemu for the QEMU half alone, PHASES=tcp-tx,... for some workloads,
# GOVMM_B=path for a second govmm build; see scripts/bench-io.sh).
bench-io: build guests
	scripts/bench-io.sh

bench-run: build guests
	scripts/bench-run.sh

# A short run of every fuzz target.
fuzz:
	scripts/fuzz.sh

clean:
	rm -rf bin build/e2e.test
