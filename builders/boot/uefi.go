package boot

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/labbake/labbake/builders/disk"
	"github.com/labbake/labbake/builders/tree"
)

// SystemdBoot is where Debian's systemd-boot-efi package puts the x86-64
// systemd-boot image.
const SystemdBoot = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"

// DefaultCmdline is the kernel command line after the root: the serial
// console (what QEMU -nographic and `labbake test` read) and the screen.
const DefaultCmdline = "console=ttyS0,115200 console=tty0"

// Options are the inputs of Prepare besides the tree.
type Options struct {
	// RootFSUUID is the UUID of the root filesystem (root=UUID=…).
	RootFSUUID string
	// Cmdline are kernel options added after root=UUID=… ro and
	// DefaultCmdline.
	Cmdline []string
	// Pin is the kernel version to boot; "" takes the highest.
	Pin    string
	Logger *slog.Logger
}

// Result is what Prepare found and laid out.
type Result struct {
	Kernel Kernel
	// Loader names the boot loader installed ("systemd-boot"), "" when
	// the tree has none and the ESP stays empty.
	Loader string
	// ESPFiles are the files of the ESP, for disk.Options.ESPFiles.
	ESPFiles []disk.ESPFile
	// Cmdline is the full kernel command line of the boot entry.
	Cmdline string
}

// ESP paths. The kernel and initramfs go under labbake/VERSION/ so that a
// later image with another kernel never mixes files of two versions.
const (
	espLoaderConf = "loader/loader.conf"
	espEntry      = "loader/entries/labbake.conf"
	espFallback   = "EFI/BOOT/BOOTX64.EFI"
	espSystemd    = "EFI/systemd/systemd-bootx64.efi"
)

// Prepare finds the kernel (see FindKernel) and, when the tree holds
// systemd-boot, returns the ESP files that boot it under UEFI:
//
//	EFI/BOOT/BOOTX64.EFI, EFI/systemd/systemd-bootx64.efi   systemd-boot
//	loader/loader.conf                                      default entry, no menu
//	loader/entries/labbake.conf                             title, linux, initrd, options
//	labbake/VERSION/linux, labbake/VERSION/initrd           kernel and initramfs
//
// Without systemd-boot UEFI is skipped (a debug log) and no files are
// returned. A tree with neither a kernel nor a boot loader is not meant to
// boot (a bare rootfs): that is logged and not an error, until recipes can
// say which boot methods they want. Every error names what is missing.
func Prepare(t *tree.Tree, opts Options) (*Result, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	loader, loaderErr := follow(t, SystemdBoot)
	k, err := FindKernel(t, opts.Pin)
	if err != nil {
		if errors.Is(err, ErrNoKernel) && loaderErr != nil {
			log.Warn("boot: no kernel and no boot loader in the image: it will not boot", "looked_for", "/boot/vmlinuz-*, /usr/lib/modules/*/vmlinuz, /"+SystemdBoot)
			return &Result{}, nil
		}
		return nil, err
	}
	if opts.RootFSUUID == "" {
		return nil, errors.New("boot: no root filesystem UUID")
	}
	cmdline := strings.Join(append([]string{"root=UUID=" + opts.RootFSUUID, "ro", DefaultCmdline}, opts.Cmdline...), " ")
	if strings.ContainsAny(cmdline, "\n\r") {
		return nil, fmt.Errorf("boot: kernel command line %q has a line break", cmdline)
	}
	res := &Result{Kernel: k, Cmdline: cmdline}
	if loaderErr != nil {
		log.Debug("boot: no systemd-boot in the image: UEFI skipped", "path", "/"+SystemdBoot, "err", loaderErr)
		return res, nil
	}
	dir := "labbake/" + k.Version
	res.Loader = "systemd-boot"
	res.ESPFiles = []disk.ESPFile{
		{Path: espFallback, Source: loader.Content.Path},
		{Path: espSystemd, Source: loader.Content.Path},
		{Path: espLoaderConf, Data: []byte("default labbake.conf\ntimeout 0\neditor no\n")},
		{Path: espEntry, Data: entry(osName(t), k.Version, "/"+dir+"/linux", "/"+dir+"/initrd", cmdline)},
		{Path: dir + "/linux", Source: k.LinuxBlob},
		{Path: dir + "/initrd", Source: k.InitrdBlob},
	}
	log.Debug("boot: UEFI with systemd-boot", "kernel", k.Version, "linux", "/"+k.Linux, "initrd", "/"+k.Initrd, "cmdline", cmdline)
	return res, nil
}

// entry renders a Boot Loader Specification type #1 entry.
func entry(title, version, linux, initrd, options string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "title %s\nversion %s\nlinux %s\ninitrd %s\noptions %s\n", title, version, linux, initrd, options)
	return b.Bytes()
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
