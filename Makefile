# labbake: `make lab` bakes the lab, `make test` runs every test.
GO      ?= go
BIN     := bin/labbake
LAB     ?= examples/lab
FUZZTIME ?= 10s
export PATH := $(PATH):/usr/sbin:/sbin
# The OCI library (go.podman.io/image) in pure Go: OpenPGP signatures without
# gpgme, no cgo storage drivers. Every go command of the project needs these.
TAGS    := containers_image_openpgp,containers_image_storage_stub
export GOFLAGS := -tags=$(TAGS)
export CGO_ENABLED := 0

.PHONY: all build deps lab test unit fuzz lint bench clean

all: build

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/labbake

deps:
	./scripts/install-deps.sh

# The benchmark's root filesystem: Debian with a kernel and the boot loaders
# labbake installs by default (systemd-boot for UEFI, GRUB for BIOS), made
# once. --format=tar: mmdebstrap would take the .tmp name for a directory.
bench/out/bootable.tar:
	mkdir -p bench/out
	mmdebstrap --quiet --format=tar --variant=minbase \
	  --include=systemd-sysv,udev,linux-image-amd64,systemd-boot-efi,grub-pc-bin \
	  bookworm $@.tmp
	mv $@.tmp $@

lab: deps build
	$(BIN) -C $(LAB) build --all

test: deps lint unit fuzz

unit:
	$(GO) test -count=1 -timeout 30m ./...

# Each fuzz target for a short while; `make fuzz FUZZTIME=5m` for longer.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/recipe
	$(GO) test -run '^$$' -fuzz '^FuzzLab$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/recipe
	$(GO) test -run '^$$' -fuzz '^FuzzApplyTar$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./builders/tree
	$(GO) test -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./builders/qcow2
	$(GO) test -run '^$$' -fuzz '^FuzzFATNames$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./builders/disk
	$(GO) test -run '^$$' -fuzz '^FuzzImportBundle$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/cache
	$(GO) test -run '^$$' -fuzz '^FuzzParseChecksum$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./internal/source

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt -l:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench: deps build bench/out/bootable.tar
	./bench/bake.sh bench/out/bootable.tar

clean:
	rm -rf bin $(LAB)/output bench/out
