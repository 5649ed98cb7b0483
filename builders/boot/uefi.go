package boot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/labbake/labbake/builders/disk"
	"github.com/labbake/labbake/builders/tree"
)

// SystemdBoot is where Debian's systemd-boot-efi package puts the x86-64
// systemd-boot image.
const SystemdBoot = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"

// GrubEFIDir is where Debian's grub-efi-amd64-bin puts GRUB's x86-64 UEFI
// modules: the UEFI boot loader when the image has no systemd-boot.
const GrubEFIDir = "usr/lib/grub/x86_64-efi"

// ErrNoUEFILoader reports an image without a UEFI boot loader.
var ErrNoUEFILoader = errors.New("uefi: no UEFI boot loader in the image: install systemd-boot-efi (or grub-efi-amd64-bin)")

// ESP paths. The kernel and initramfs go under labbake/VERSION/ so that a
// later image with another kernel never mixes files of two versions.
const (
	espLoaderConf = "loader/loader.conf"
	espEntry      = "loader/entries/labbake.conf"
	espFallback   = "EFI/BOOT/BOOTX64.EFI"
	espSystemd    = "EFI/systemd/systemd-bootx64.efi"
)

// systemdBootFiles returns the ESP files that boot k with systemd-boot
// from the tree under UEFI:
//
//	EFI/BOOT/BOOTX64.EFI, EFI/systemd/systemd-bootx64.efi   systemd-boot
//	loader/loader.conf                                      default entry, no menu
//	loader/entries/labbake.conf                             title, linux, initrd, options
//	labbake/VERSION/linux, labbake/VERSION/initrd           kernel and initramfs
func systemdBootFiles(t *tree.Tree, title string, k Kernel, cmdline string) ([]disk.ESPFile, error) {
	loader, err := follow(t, SystemdBoot)
	if err != nil {
		return nil, err
	}
	dir := "labbake/" + k.Version
	return []disk.ESPFile{
		{Path: espFallback, Source: loader.Content.Path},
		{Path: espSystemd, Source: loader.Content.Path},
		{Path: espLoaderConf, Data: []byte("default labbake.conf\ntimeout 0\neditor no\n")},
		{Path: espEntry, Data: entry(title, k.Version, "/"+dir+"/linux", "/"+dir+"/initrd", cmdline)},
		{Path: dir + "/linux", Source: k.LinuxBlob},
		{Path: dir + "/initrd", Source: k.InitrdBlob},
	}, nil
}

// grubEFIFiles returns the ESP file that boots with GRUB from the tree
// under UEFI: EFI/BOOT/BOOTX64.EFI made by the image's grub-mkimage, which
// finds the root by UUID and reads /boot/grub/grub.cfg there (the same
// file BIOS boot reads), and loads the kernel from the root file system.
func grubEFIFiles(ctx context.Context, log *slog.Logger, t *tree.Tree, rootUUID, workDir string) ([]disk.ESPFile, error) {
	img, err := grubImage(ctx, log, t, "x86_64-efi", GrubEFIDir, rootUUID, workDir)
	if err != nil {
		return nil, fmt.Errorf("uefi: %w", err)
	}
	return []disk.ESPFile{{Path: espFallback, Data: img}}, nil
}

// entry renders a Boot Loader Specification type #1 entry.
func entry(title, version, linux, initrd, options string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "title %s\nversion %s\nlinux %s\ninitrd %s\noptions %s\n", title, version, linux, initrd, options)
	return b.Bytes()
}
