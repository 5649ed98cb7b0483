# labbake: `make lab` bakes the lab, `make test` runs every test.
GO      ?= go
BIN     := bin/labbake
LAB     ?= .
FUZZTIME ?=
export PATH := $(PATH):/usr/sbin:/sbin
# The OCI library (go.podman.io/image) in pure Go: OpenPGP signatures without
# gpgme, no cgo storage drivers. Every go command of the project needs these.
TAGS    := containers_image_openpgp,containers_image_storage_stub
export GOFLAGS := -tags=$(TAGS)
export CGO_ENABLED := 0

.PHONY: all build deps lab test unit unit-fuzz e2e fuzz lint bench clean

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

# The shipped lab takes its programs from upstream's releases; where those
# cannot be reached, labbake says so in one line and bakes the from-source
# profile instead (Go module proxy and Debian only). PROFILE=from-source
# asks for it outright.
PROFILE ?=
PROFILE_VALUES = $(LAB)/values/$(PROFILE).yaml
FALLBACK_VALUES = $(wildcard $(LAB)/values/from-source.yaml)
lab: deps build
ifneq ($(PROFILE),)
	$(BIN) -C $(LAB) --values $(PROFILE_VALUES) build --all
else
	$(BIN) -C $(LAB) build --all $(if $(FALLBACK_VALUES),--fallback-values $(FALLBACK_VALUES))
endif

# The boot and cluster tests (test/e2e) mostly wait on VMs and on the Go
# programs the cluster's profile compiles, so they run beside the other
# packages and the fuzz targets instead of after them; each side's output
# is printed whole when it ends (-O).
test: deps lint
	@$(MAKE) --no-print-directory -j2 -O e2e unit-fuzz

unit-fuzz: unit
	@$(MAKE) --no-print-directory fuzz

e2e:
	$(GO) test -count=1 -timeout 80m ./test/e2e/

# Every package but test/e2e (make e2e); the boot test of internal/vmtest
# bakes bench/out/bootable.tar.
unit: bench/out/bootable.tar
	$(GO) test -count=1 -timeout 80m $$($(GO) list ./... | grep -v '/test/e2e$$')

# Each fuzz target for about 10 s on 2 cores, bounded by a number of
# executions: a duration bound can fail at its end with a bare "context
# deadline exceeded" and no crasher (Go's fuzz coordinator, go.dev/issue/75804,
# unfixed in Go 1.26). `make fuzz FUZZTIME=5m` (or 1000000x) for longer.
fuzz-one = $(GO) test -run '^$$' -fuzz '^$(1)$$' -fuzztime $(or $(FUZZTIME),$(3)) -fuzzminimizetime 5s $(2)
fuzz:
	$(call fuzz-one,FuzzLoad,./internal/recipe,10000x)
	$(call fuzz-one,FuzzLab,./internal/recipe,20000x)
	$(call fuzz-one,FuzzValues,./internal/recipe,10000x)
	$(call fuzz-one,FuzzApplyTar,./builders/tree,5000x)
	$(call fuzz-one,FuzzOpen,./builders/qcow2,30000x)
	$(call fuzz-one,FuzzZstdCluster,./builders/qcow2,200000x)
	$(call fuzz-one,FuzzFATNames,./builders/disk,60000x)
	$(call fuzz-one,FuzzImportBundle,./internal/cache,1000x)
	$(call fuzz-one,FuzzParseChecksum,./internal/source,100000x)
	$(call fuzz-one,FuzzExtract,./internal/source,3000x)
	$(call fuzz-one,FuzzImage,./builders/iso9660,100000x)
	$(call fuzz-one,FuzzParse,./internal/pki,20000x)
	$(call fuzz-one,FuzzRender,./builders/seed,100000x)
	$(call fuzz-one,FuzzValidate,./builders/kit,20000x)
	$(call fuzz-one,FuzzParseLock,./internal/resolve,50000x)
	$(call fuzz-one,FuzzParseKey,./internal/source/gobuild,50000x)
	$(call fuzz-one,FuzzParseIndex,./internal/source/gobuild,50000x)
	$(call fuzz-one,FuzzParseManifest,./builders/ctrstore,50000x)
	$(call fuzz-one,FuzzDetect,./builders/secrets,20000x)
	$(call fuzz-one,FuzzParsePackages,./test/upstream,20000x)

# actionlint checks the workflows (and, when shellcheck is on PATH, their
# run: scripts). It is pinned in tools/go.mod, a module of its own that
# keeps it out of labbake's go.mod and out of ./...
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt -l:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd tools && $(GO) tool actionlint ../.github/workflows/*.yml

# bake.sh: labbake against the plain tool pipeline; others.sh: against
# virt-make-fs, mkosi and qemu-img, peak memory, and with
# LABBAKE_BENCH_LAB_CACHE=DIR the shipped lab's master image too.
bench: deps build bench/out/bootable.tar
	./bench/bake.sh bench/out/bootable.tar
	./bench/others.sh bench/out/bootable.tar

clean:
	rm -rf bin $(LAB)/output bench/out
