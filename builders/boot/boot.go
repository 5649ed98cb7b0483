package boot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/labbake/labbake/builders/disk"
	"github.com/labbake/labbake/builders/tree"
)

// Boot methods: the firmware an image boots under.
const (
	UEFI = "uefi" // an EFI system partition with a boot loader (OVMF, any UEFI firmware)
	BIOS = "bios" // GRUB in the MBR and the BIOS boot partition (SeaBIOS, legacy BIOS)
)

// Methods are the boot methods in the order they are installed.
var Methods = []string{UEFI, BIOS}

// Options are the inputs of Prepare besides the tree.
type Options struct {
	// Methods are the boot methods to install (UEFI, BIOS). None means
	// the image is not meant to boot: no kernel is needed and the boot
	// partitions stay empty.
	Methods []string
	// RootFSUUID is the UUID of the root file system (root=UUID=…).
	RootFSUUID string
	// Cmdline is the kernel command line after root=UUID=… ro, taken as
	// it is (the recipe's kernel.cmdline).
	Cmdline string
	// Pin is the kernel version to boot; "" takes the highest.
	Pin string
	// WorkDir is scratch space (the image's grub-mkimage runs there); the
	// caller removes it.
	WorkDir string
	Logger  *slog.Logger
}

// Result is what Prepare found and laid out.
type Result struct {
	Kernel Kernel // zero without boot methods
	// Loaders names the boot loaders installed, by method:
	// "uefi: systemd-boot", "bios: grub i386-pc".
	Loaders []string
	// ESPFiles are the files of the ESP, for disk.Options.ESPFiles.
	ESPFiles []disk.ESPFile
	// BIOS is the boot code for the MBR and the BIOS boot partition, nil
	// without BIOS boot.
	BIOS *BIOSCode
	// TreeFiles are files to add to the image before its root file system
	// is written (/boot/grub/grub.cfg for BIOS boot).
	TreeFiles []tree.File
	// Cmdline is the full kernel command line.
	Cmdline string
}

// Prepare makes the tree bootable by the given methods: it finds the kernel
// (see FindKernel) and lays out the boot loaders taken from the tree — for
// UEFI systemd-boot on the ESP, for BIOS GRUB i386-pc in the MBR and the
// BIOS boot partition with /boot/grub/grub.cfg. A method whose boot loader
// the tree lacks is an error naming the package to install. Nothing is
// written to a disk here; builders/disk writes the result.
func Prepare(ctx context.Context, t *tree.Tree, opts Options) (*Result, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, m := range opts.Methods {
		if !slices.Contains(Methods, m) {
			return nil, fmt.Errorf("boot: unknown boot method %q (known: %s)", m, strings.Join(Methods, ", "))
		}
	}
	if len(opts.Methods) == 0 {
		log.Debug("boot: no boot methods: the image gets no boot loader")
		return &Result{}, nil
	}
	k, err := FindKernel(t, opts.Pin)
	if err != nil {
		return nil, err
	}
	if opts.RootFSUUID == "" {
		return nil, errors.New("boot: no root file system UUID")
	}
	cmdline := "root=UUID=" + opts.RootFSUUID + " ro"
	if c := strings.Join(strings.Fields(opts.Cmdline), " "); c != "" {
		cmdline += " " + c
	}
	if strings.ContainsAny(opts.Cmdline, "\n\r\x00") {
		return nil, fmt.Errorf("boot: kernel command line %q has a line break", opts.Cmdline)
	}
	res := &Result{Kernel: k, Cmdline: cmdline}
	title := osName(t)
	grubCfg := false
	if slices.Contains(opts.Methods, UEFI) {
		switch {
		case exists(t, SystemdBoot):
			files, err := systemdBootFiles(t, title, k, cmdline)
			if err != nil {
				return nil, err
			}
			res.ESPFiles = files
			res.Loaders = append(res.Loaders, UEFI+": systemd-boot")
		case exists(t, GrubEFIDir+"/kernel.img"):
			if opts.WorkDir == "" {
				return nil, errors.New("boot: no work dir for GRUB")
			}
			files, err := grubEFIFiles(ctx, log, t, opts.RootFSUUID, opts.WorkDir)
			if err != nil {
				return nil, err
			}
			res.ESPFiles, grubCfg = files, true
			res.Loaders = append(res.Loaders, UEFI+": grub x86_64-efi")
		default:
			return nil, fmt.Errorf("%w (looked for /%s and /%s/kernel.img)", ErrNoUEFILoader, SystemdBoot, GrubEFIDir)
		}
		log.Debug("boot: UEFI", "loader", res.Loaders[len(res.Loaders)-1], "kernel", k.Version, "cmdline", cmdline)
	}
	if slices.Contains(opts.Methods, BIOS) {
		if opts.WorkDir == "" {
			return nil, errors.New("boot: no work dir for GRUB")
		}
		code, err := prepareBIOS(ctx, log, t, opts.RootFSUUID, opts.WorkDir)
		if err != nil {
			return nil, err
		}
		res.BIOS, grubCfg = code, true
		res.Loaders = append(res.Loaders, BIOS+": grub i386-pc")
		log.Debug("boot: BIOS with GRUB", "kernel", k.Version, "core_img", len(code.Core))
	}
	if grubCfg {
		if _, ok := t.Get(GrubCfg); ok {
			log.Debug("boot: replacing the image's GRUB configuration", "path", "/"+GrubCfg)
		}
		res.TreeFiles = append(res.TreeFiles, tree.File{Path: "/" + GrubCfg, Content: grubConfig(title, opts.RootFSUUID, k, cmdline), Mode: 0o644})
	}
	return res, nil
}

// IsImageError reports whether err says the image cannot boot the way it
// was asked to (no kernel, no initramfs, no boot loader, a pinned kernel it
// lacks): a problem of the recipe's inputs, not of the host.
func IsImageError(err error) bool {
	for _, target := range []error{ErrNoKernel, ErrNoInitramfs, ErrPinnedKernel, ErrNoUEFILoader, ErrNoGrubPC, ErrNoGrubMkimage} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// exists reports whether p is a regular file in the tree, symlinks followed.
func exists(t *tree.Tree, p string) bool {
	_, err := follow(t, p)
	return err == nil
}

// osName returns PRETTY_NAME from the tree's os-release, or "Linux".
func osName(t *tree.Tree) string {
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		e, err := follow(t, p)
		if err != nil {
			continue
		}
		f, err := os.Open(e.Content.Path)
		if err != nil {
			continue
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			v, ok := strings.CutPrefix(sc.Text(), "PRETTY_NAME=")
			if !ok {
				continue
			}
			v = strings.Trim(v, `"'`)
			if v != "" && !strings.ContainsAny(v, "\n\r") {
				return v
			}
		}
	}
	return "Linux"
}
