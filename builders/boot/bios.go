package boot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/labbake/labbake/builders/disk"
	"github.com/labbake/labbake/builders/tree"
)

// GRUB for BIOS: Debian's grub-pc-bin puts the i386-pc images and modules
// here, and grub-common the grub-mkimage that assembles them.
const GrubPCDir = "usr/lib/grub/i386-pc"

// grubMkimages are the names grub-mkimage goes by (Debian, Fedora).
var grubMkimages = []string{"usr/bin/grub-mkimage", "usr/bin/grub2-mkimage"}

// GrubCfg is where the GRUB configuration goes in the image: core.img
// finds the root file system by UUID and reads it from there.
const GrubCfg = "boot/grub/grub.cfg"

// grubModules are built into GRUB's image: the disk, partition table and
// file system to find the root, the search by UUID, the normal mode that
// reads grub.cfg, the Linux loader and the commands grub.cfg uses. Their
// dependencies are added by grub-mkimage. Nothing is loaded from the root
// file system, so the image needs no /boot/grub/i386-pc.
var grubModules = []string{"part_gpt", "ext2", "search_fs_uuid", "search", "normal", "linux", "echo", "test", "serial", "terminal"}

// Fields of GRUB's i386-pc boot.img (the MBR code, include/grub/i386/pc/boot.h)
// and diskboot.img (the first sector of core.img).
const (
	mbrCode        = 0x1B8 // boot.img bytes before the disk signature and partition table
	bpbStart       = 0x03  // the BIOS parameter block space: kept as the disk has it
	bpbEnd         = 0x5A
	kernelSector   = 0x5C // uint64: the LBA of core.img's first sector
	bootDrive      = 0x64 // 0xFF: the drive the BIOS booted from
	driveCheck     = 0x66 // a jump over the boot drive check, NOPed for hard disks
	sectorSize     = 512
	blocklistEntry = 12     // uint64 start, uint16 sectors, uint16 segment, from the sector's end down
	coreSegment    = 0x0820 // where the sectors after the first are loaded (0x8000 + 512)
)

// BIOSCode is GRUB's BIOS boot code, patched for labbake's disk layout.
type BIOSCode struct {
	// MBRCode goes into the first 440 bytes of the disk (the protective
	// MBR keeps its disk signature and partition table).
	MBRCode []byte
	// Core is core.img padded to whole sectors, for the start of the BIOS
	// boot partition.
	Core []byte
}

// prepareBIOS makes GRUB's BIOS boot code from the image's own GRUB: the
// image's grub-mkimage, run on the host with the image's libraries, builds
// core.img with the modules above and an early configuration that finds the
// root by UUID and reads /boot/grub/grub.cfg; then boot.img and core.img
// get the sector pointers grub-setup would write. Equal inputs give equal
// bytes.
func prepareBIOS(ctx context.Context, log *slog.Logger, t *tree.Tree, rootUUID, workDir string) (*BIOSCode, error) {
	bootImg, err := follow(t, GrubPCDir+"/boot.img")
	if err != nil {
		return nil, fmt.Errorf("%w (looked for /%s/boot.img: %v)", ErrNoGrubPC, GrubPCDir, err)
	}
	core, err := grubImage(ctx, log, t, "i386-pc", GrubPCDir, rootUUID, workDir, "biosdisk")
	if err != nil {
		return nil, fmt.Errorf("bios: %w", err)
	}
	boot, err := os.ReadFile(bootImg.Content.Path)
	if err != nil {
		return nil, fmt.Errorf("bios: %w", err)
	}
	return patchGRUB(boot, core, uint64(disk.BIOSOffset/sectorSize), disk.BIOSSize)
}

// grubImage runs the image's grub-mkimage (in its sandbox, see
// treeProgram) to build a GRUB image for target (i386-pc, x86_64-efi) from
// the tree's modules in modDir: the modules above plus extra, and an early
// configuration that finds the root by UUID and sets the prefix to its
// /boot/grub.
func grubImage(ctx context.Context, log *slog.Logger, t *tree.Tree, target, modDir, rootUUID, workDir string, extra ...string) ([]byte, error) {
	mkimage, err := firstRegular(t, grubMkimages)
	if err != nil {
		return nil, fmt.Errorf("%w (looked for /%s)", ErrNoGrubMkimage, strings.Join(grubMkimages, ", /"))
	}
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(workDir, "grub-"+target+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	mods, err := copyDir(t, modDir, filepath.Join(dir, target))
	if err != nil {
		return nil, err
	}
	prog, err := copyProgram(t, mkimage, dir)
	if err != nil {
		return nil, err
	}
	early := filepath.Join(dir, "early.cfg")
	if err := writeReadable(early, earlyConfig(rootUUID)); err != nil {
		return nil, err
	}
	img, err := prog.output(ctx, log, "grub-mkimage", func(at func(string) string) []string {
		args := append([]string{"-O", target, "-d", at(mods), "-c", at(early), "-p", "/boot/grub"}, extra...)
		return append(args, grubModules...)
	})
	if err != nil {
		return nil, err
	}
	if len(img) == 0 {
		return nil, errors.New("the image's grub-mkimage wrote nothing")
	}
	return img, nil
}

// Sentinel errors of BIOS boot.
var (
	// ErrNoGrubPC reports an image without GRUB's i386-pc files.
	ErrNoGrubPC = errors.New("bios: no GRUB for BIOS in the image: install grub-pc-bin")
	// ErrNoGrubMkimage reports an image with GRUB's modules but not the
	// tool that assembles them.
	ErrNoGrubMkimage = errors.New("no grub-mkimage in the image: install grub-common")
)

// earlyConfig is built into core.img: it finds the root file system by
// UUID and points GRUB at /boot/grub there (what grub-install's load.cfg
// does).
func earlyConfig(rootUUID string) []byte {
	return []byte("search.fs_uuid " + rootUUID + " root\nset prefix=($root)/boot/grub\n")
}

// patchGRUB lays out boot.img and core.img for core.img at sector
// coreLBA, contiguous, in a partition of maxSize bytes, like grub-setup
// does when it embeds core.img in a BIOS boot partition (without
// Reed-Solomon codes: the partition is GRUB's alone).
func patchGRUB(boot, core []byte, coreLBA uint64, maxSize int64) (*BIOSCode, error) {
	if len(boot) != sectorSize {
		return nil, fmt.Errorf("bios: boot.img is %d bytes, not %d", len(boot), sectorSize)
	}
	if len(core) < 2*sectorSize {
		return nil, fmt.Errorf("bios: core.img is only %d bytes", len(core))
	}
	sectors := (len(core) + sectorSize - 1) / sectorSize
	if int64(sectors)*sectorSize > maxSize {
		return nil, fmt.Errorf("bios: core.img is %d bytes, more than the %d-byte BIOS boot partition", len(core), maxSize)
	}
	c := make([]byte, sectors*sectorSize)
	copy(c, core)
	// Clear diskboot.img's default block lists, then list the rest of
	// core.img as one run of sectors right after the first.
	for off := sectorSize - blocklistEntry; off > 0x10; off -= blocklistEntry {
		if binary.LittleEndian.Uint16(c[off+8:]) == 0 {
			break
		}
		clear(c[off : off+blocklistEntry])
	}
	first := sectorSize - blocklistEntry
	binary.LittleEndian.PutUint64(c[first:], coreLBA+1)
	binary.LittleEndian.PutUint16(c[first+8:], uint16(sectors-1))
	binary.LittleEndian.PutUint16(c[first+10:], coreSegment)

	m := make([]byte, mbrCode)
	copy(m, boot)
	clear(m[bpbStart:bpbEnd]) // a protective MBR has no BPB
	binary.LittleEndian.PutUint64(m[kernelSector:], coreLBA)
	m[bootDrive] = 0xFF
	m[driveCheck], m[driveCheck+1] = 0x90, 0x90
	return &BIOSCode{MBRCode: m, Core: c}, nil
}

// grubConfig renders /boot/grub/grub.cfg: the serial console, no menu,
// one entry that boots the kernel from the root file system.
func grubConfig(title, rootUUID string, k Kernel, cmdline string) []byte {
	var b strings.Builder
	b.WriteString("# Written by labbake. GRUB's core.img finds this file on the root file system by its UUID.\n")
	// Output to the serial port only: QEMU's SeaBIOS and OVMF copy the
	// screen to it under -nographic, so both would print every line twice.
	b.WriteString("serial --unit=0 --speed=115200\n")
	b.WriteString("terminal_input console serial\n")
	b.WriteString("terminal_output serial\n")
	b.WriteString("set timeout=0\nset default=0\n\n")
	fmt.Fprintf(&b, "menuentry %s --id labbake {\n", grubQuote(title))
	fmt.Fprintf(&b, "\tsearch --no-floppy --fs-uuid --set=root %s\n", rootUUID)
	fmt.Fprintf(&b, "\techo %s\n", grubQuote("Loading Linux "+k.Version+" ..."))
	fmt.Fprintf(&b, "\tlinux %s", grubQuote("/"+k.Linux))
	for _, w := range strings.Fields(cmdline) {
		b.WriteString(" " + grubQuote(w))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "\techo %s\n", grubQuote("Loading initial ramdisk ..."))
	fmt.Fprintf(&b, "\tinitrd %s\n", grubQuote("/"+k.Initrd))
	b.WriteString("}\n")
	return []byte(b.String())
}

// grubQuote quotes a word for GRUB's script parser when it needs it:
// single quotes keep everything literal, a single quote is written '\”.
func grubQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.,:/=+@%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// firstRegular returns the canonical path of the first of paths that is a
// regular file in the tree (symlinks followed).
func firstRegular(t *tree.Tree, paths []string) (string, error) {
	var errs []error
	for _, p := range paths {
		e, err := follow(t, p)
		if err == nil {
			return e.Path, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

// copyDir makes a host directory dst holding a copy of every regular file
// directly in the tree directory dir (symlinks followed), readable by
// everyone, for tools that read a directory of the image.
func copyDir(t *tree.Tree, dir, dst string) (string, error) {
	canon, err := canonicalDir(t, dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		return "", err
	}
	n := 0
	for _, e := range t.Entries() {
		if path.Dir(e.Path) != canon || e.Type == tree.Dir {
			continue
		}
		f, err := follow(t, e.Path)
		if err != nil {
			continue // a dangling link or a special file: not GRUB's
		}
		b, err := os.ReadFile(f.Content.Path)
		if err != nil {
			return "", err
		}
		if err := writeReadable(filepath.Join(dst, path.Base(e.Path)), b); err != nil {
			return "", err
		}
		n++
	}
	if n == 0 {
		return "", fmt.Errorf("/%s is empty", dir)
	}
	return dst, nil
}

// writeReadable writes a new file readable by everyone (the sandbox's
// user), whatever the umask.
func writeReadable(p string, b []byte) error {
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return err
	}
	return os.Chmod(p, 0o644)
}
