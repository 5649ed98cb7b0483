package disk

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/labbake/labbake/builders/tree"
)

// Options are the inputs of Build besides the tree.
type Options struct {
	Size    int64     // whole disk, a multiple of 1 MiB
	IDs     IDs       // every UUID/GUID written
	Epoch   time.Time // the only time written anywhere
	WorkDir string    // scratch space for staging; the caller removes it
	// ESPFiles are written into the EFI system partition (boot loader,
	// its configuration, kernel, initramfs); none leaves it empty.
	ESPFiles []ESPFile
	// MBRCode is boot code for the first bytes of the protective MBR
	// (at most 440: the disk signature and partition table stay), and
	// BIOSCore what goes into the BIOS boot partition (GRUB's boot.img
	// and core.img); none leaves both empty.
	MBRCode  []byte
	BIOSCore []byte
	Logger   *slog.Logger
	// Upper, when set, claims the entries added to the root file system
	// after the rest of it is made (see split): the recipe's own files,
	// whose edits then leave the rest as it was.
	Upper func(tree.Entry) bool
	// RootCache is the slot directory where the rest (the lower part) is
	// kept between builds; "" keeps nothing. It needs Upper and Hasher.
	RootCache string
	// Hasher digests the lower part for the cache key; it may have seen
	// the same blobs already.
	Hasher *Hasher
}

// Result describes a written raw disk.
type Result struct {
	Layout Layout
	Files  int // entries of the root filesystem (lost+found not counted)
}

// Build writes the raw GPT disk image rawPath (created, or an empty file):
// a BIOS boot partition with opts.BIOSCore, a FAT32 ESP with opts.ESPFiles
// and an ext4 root made from the tree with mke2fs -d and fixed up with
// debugfs, and opts.MBRCode in the protective MBR. Equal inputs give equal
// bytes.
func Build(ctx context.Context, t *tree.Tree, rawPath string, opts Options) (*Result, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	layout, err := NewLayout(opts.Size, opts.IDs)
	if err != nil {
		return nil, err
	}
	if len(opts.MBRCode) > mbrCodeMax {
		return nil, fmt.Errorf("MBR boot code is %d bytes, more than %d", len(opts.MBRCode), mbrCodeMax)
	}
	if int64(len(opts.BIOSCore)) > layout.BIOS.Size {
		return nil, fmt.Errorf("BIOS boot code is %d bytes, more than the %d-byte BIOS boot partition", len(opts.BIOSCore), layout.BIOS.Size)
	}
	f, err := os.OpenFile(rawPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating raw disk: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Size() != 0 {
		return nil, fmt.Errorf("raw disk %s: not an empty new file", rawPath)
	}
	if err := f.Truncate(layout.Size); err != nil {
		return nil, fmt.Errorf("sizing raw disk: %w", err)
	}

	entries := t.Entries()
	start := time.Now()
	if err := writeRoot(ctx, log, entries, rawPath, layout.Root, opts); err != nil {
		return nil, err
	}
	log.Debug("root filesystem written", "entries", len(entries), "took", time.Since(start).Round(time.Millisecond))
	step := time.Now()
	if err := writeESP(f, layout.ESP, opts.IDs.ESPVolumeID, opts.Epoch, opts.ESPFiles); err != nil {
		return nil, err
	}
	log.Debug("ESP written", "files", len(opts.ESPFiles), "took", time.Since(step).Round(time.Millisecond))
	if err := writeGPT(f, layout); err != nil {
		return nil, err
	}
	if len(opts.BIOSCore) > 0 {
		if _, err := f.WriteAt(opts.BIOSCore, layout.BIOS.Offset); err != nil {
			return nil, fmt.Errorf("writing the BIOS boot partition: %w", err)
		}
	}
	if len(opts.MBRCode) > 0 {
		if _, err := f.WriteAt(opts.MBRCode, 0); err != nil {
			return nil, fmt.Errorf("writing the MBR boot code: %w", err)
		}
	}
	if err := f.Close(); err != nil { // the deferred Close is then a no-op
		return nil, fmt.Errorf("writing raw disk: %w", err)
	}
	return &Result{Layout: layout, Files: len(entries)}, nil
}

// ErrRootFull is wrapped by Build's error when the tree does not fit the
// root partition (mke2fs ran out of blocks or inodes).
var ErrRootFull = errors.New("the files do not fit the root file system")

// writeRoot writes the root file system into the root partition of the
// raw disk: the lower part from the cache or by mke2fs -d and the debugfs
// fix-up script, then the upper part (if opts.Upper claims any) by debugfs.
func writeRoot(ctx context.Context, log *slog.Logger, entries []tree.Entry, rawPath string, root Partition, opts Options) error {
	lower, upper := entries, []tree.Entry(nil)
	if opts.Upper != nil {
		lower, upper = split(entries, opts.Upper)
	}
	env := append(os.Environ(), "E2FSPROGS_FAKE_TIME="+strconv.FormatInt(opts.Epoch.Unix(), 10))
	blocks := root.Size / 4096
	key, hit := "", false
	if opts.RootCache != "" && opts.Upper != nil && opts.Hasher != nil {
		step := time.Now()
		var err error
		if key, err = rootKey(ctx, lower, blocks, opts); err != nil {
			return err
		}
		if hit, err = loadRootInto(ctx, opts.RootCache, key, rawPath, root); err != nil {
			if !errors.Is(err, errDamaged) {
				return err
			}
			log.Warn("root cache: "+err.Error(), "slot", opts.RootCache)
		}
		log.Debug("root cache", "hit", hit, "key", key, "took", time.Since(step).Round(time.Millisecond))
	}
	if !hit {
		if err := makeRoot(ctx, log, lower, rawPath, root, opts, env, blocks); err != nil {
			return err
		}
		if key != "" {
			step := time.Now()
			if err := storeRootFrom(ctx, opts.RootCache, key, rawPath, root); errors.Is(err, errNoRoom) {
				log.Info("root cache: not kept", "reason", err)
			} else if err != nil {
				log.Warn("root cache: not kept", "error", err)
			} else {
				log.Debug("root cache: kept", "key", key, "took", time.Since(step).Round(time.Millisecond))
			}
		}
	}
	if len(upper) == 0 {
		return nil
	}
	step := time.Now()
	dirs := map[string]tree.Entry{}
	for _, e := range lower {
		if e.Type == tree.Dir {
			dirs[e.Path] = e
		}
	}
	kb, err := readKbytesWritten(rawPath, root.Offset)
	if err != nil {
		return err
	}
	n, err := writeUpper(ctx, upper, dirs, fmt.Sprintf("%s?offset=%d", rawPath, root.Offset), opts.WorkDir, env)
	if err != nil {
		return err
	}
	if err := writeKbytesWritten(rawPath, root.Offset, kb); err != nil {
		return err
	}
	log.Debug("upper files added", "files", len(upper), "commands", n, "took", time.Since(step).Round(time.Millisecond))
	return nil
}

func loadRootInto(ctx context.Context, slot, key, rawPath string, root Partition) (bool, error) {
	f, err := os.OpenFile(rawPath, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Errorf("opening raw disk: %w", err)
	}
	defer f.Close()
	hit, err := loadRoot(ctx, slot, key, f, root.Offset, root.Size)
	if err == nil {
		err = f.Close()
	}
	return hit, err
}

func storeRootFrom(ctx context.Context, slot, key, rawPath string, root Partition) error {
	f, err := os.Open(rawPath)
	if err != nil {
		return err
	}
	defer f.Close()
	return storeRoot(ctx, slot, key, f, root.Offset, root.Size)
}

// makeRoot stages entries, runs mke2fs -d into the root partition and
// applies the debugfs fix-up script.
func makeRoot(ctx context.Context, log *slog.Logger, entries []tree.Entry, rawPath string, root Partition, opts Options, env []string, blocks int64) error {
	stageDir := filepath.Join(opts.WorkDir, "stage")
	xattrDir := filepath.Join(opts.WorkDir, "xattr")
	for _, d := range []string{stageDir, xattrDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("staging: %w", err)
		}
	}
	step := time.Now()
	script, err := stage(ctx, entries, stageDir, xattrDir)
	if err != nil {
		return err
	}
	log.Debug("tree staged", "took", time.Since(step).Round(time.Millisecond))
	scriptPath := filepath.Join(opts.WorkDir, "fixup.debugfs")
	if err := os.WriteFile(scriptPath, script, 0o644); err != nil {
		return fmt.Errorf("writing fix-up script: %w", err)
	}
	mke2fs, err := findTool("mke2fs")
	if err != nil {
		return err
	}
	debugfs, err := findTool("debugfs")
	if err != nil {
		return err
	}
	conf := filepath.Join(opts.WorkDir, "mke2fs.conf")
	if err := os.WriteFile(conf, []byte(mke2fsConf), 0o644); err != nil {
		return fmt.Errorf("writing mke2fs.conf: %w", err)
	}
	env = append(env[:len(env):len(env)], "MKE2FS_CONFIG="+conf)
	args := []string{
		"-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256",
		"-L", "root", "-U", opts.IDs.RootFSUUID,
		"-E", fmt.Sprintf("offset=%d,hash_seed=%s,root_owner=0:0,lazy_itable_init=0,nodiscard", root.Offset, opts.IDs.RootFSUUID),
		"-d", stageDir, rawPath, strconv.FormatInt(blocks, 10),
	}
	step = time.Now()
	if err := run(ctx, log, env, mke2fs, args...); err != nil {
		if strings.Contains(err.Error(), "Could not allocate") {
			return fmt.Errorf("%w: %v", ErrRootFull, err)
		}
		return err
	}
	log.Debug("mke2fs done", "took", time.Since(step).Round(time.Millisecond))
	step = time.Now()
	dev := fmt.Sprintf("%s?offset=%d", rawPath, root.Offset)
	kb, err := readKbytesWritten(rawPath, root.Offset)
	if err != nil {
		return err
	}
	out, err := output(ctx, env, debugfs, "-w", "-f", scriptPath, dev)
	if err != nil {
		return err
	}
	// debugfs adds what it wrote to the superblock's lifetime-writes
	// counter, and that depends on how many fix-ups the staging user
	// needed (root needs fewer chowns). Put back mke2fs's value.
	if err := writeKbytesWritten(rawPath, root.Offset, kb); err != nil {
		return err
	}
	// debugfs reports failed commands on stderr but still exits 0.
	if msg := debugfsErrors(out); msg != "" {
		return fmt.Errorf("fixing up the root filesystem: %s", msg)
	}
	log.Debug("debugfs fix-up done", "commands", bytes.Count(script, []byte("\n")), "took", time.Since(step).Round(time.Millisecond))
	return nil
}

// Superblock fields (the superblock sits 1024 bytes into the filesystem).
const (
	sbOffset        = 1024
	sbKbytesWritten = 0x178
	sbChecksum      = 0x3FC
	sbSize          = 1024
)

func readKbytesWritten(rawPath string, fsOffset int64) ([]byte, error) {
	f, err := os.Open(rawPath)
	if err != nil {
		return nil, fmt.Errorf("reading the root superblock: %w", err)
	}
	defer f.Close()
	b := make([]byte, 8)
	if _, err := f.ReadAt(b, fsOffset+sbOffset+sbKbytesWritten); err != nil {
		return nil, fmt.Errorf("reading the root superblock: %w", err)
	}
	return b, nil
}

// writeKbytesWritten stores the counter and re-computes the superblock's
// crc32c (metadata_csum: stored as the raw, un-inverted crc32c of the
// bytes before the checksum field).
func writeKbytesWritten(rawPath string, fsOffset int64, kb []byte) (err error) {
	f, err := os.OpenFile(rawPath, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("writing the root superblock: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("writing the root superblock: %w", cerr)
		}
	}()
	sb := make([]byte, sbSize)
	if _, err := f.ReadAt(sb, fsOffset+sbOffset); err != nil {
		return fmt.Errorf("reading the root superblock: %w", err)
	}
	copy(sb[sbKbytesWritten:], kb)
	sum := ^crc32.Checksum(sb[:sbChecksum], crc32.MakeTable(crc32.Castagnoli))
	binary.LittleEndian.PutUint32(sb[sbChecksum:], sum)
	if _, err := f.WriteAt(sb, fsOffset+sbOffset); err != nil {
		return fmt.Errorf("writing the root superblock: %w", err)
	}
	return nil
}

// mke2fsConf pins the ext4 features, so that the host's own mke2fs.conf
// (which differs between distributions and releases) never changes the bytes.
const mke2fsConf = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
`

// debugfsErrors picks the first error line out of debugfs' output. Every
// command is echoed as "debugfs: CMD"; anything else is a complaint.
func debugfsErrors(out []byte) string {
	for _, line := range bytes.Split(out, []byte("\n")) {
		if len(line) == 0 || bytes.HasPrefix(line, []byte("debugfs ")) || bytes.HasPrefix(line, []byte("debugfs: ")) ||
			bytes.HasPrefix(line, []byte("Allocated inode: ")) {
			continue
		}
		return string(line)
	}
	return ""
}

// mbrCodeMax is the room for boot code in an MBR, before the disk
// signature at 440.
const mbrCodeMax = 440

// ESPFile is one file of the EFI system partition: its bytes come from
// Source (a host file, e.g. a tree blob) or, when Source is "", from Data.
type ESPFile struct {
	Path   string // slash-separated, relative to the ESP's root: "EFI/BOOT/BOOTX64.EFI"
	Source string
	Data   []byte
}

// writeESP writes the EFI system partition: FAT32 with a volume ID from
// the plan, holding files (see writeFAT32).
func writeESP(f *os.File, p Partition, volumeID uint32, epoch time.Time, files []ESPFile) error {
	if err := writeFAT32(f, p, volumeID, epoch, files); err != nil {
		return fmt.Errorf("writing the ESP: %w", err)
	}
	return nil
}

func writeGPT(f *os.File, l Layout) error {
	part := func(p Partition) *gpt.Partition {
		return &gpt.Partition{
			Index: p.Number,
			Start: uint64(p.Offset / 512),
			End:   uint64((p.Offset+p.Size)/512 - 1),
			Size:  uint64(p.Size),
			Type:  gpt.Type(p.Type),
			Name:  p.Name,
			GUID:  p.GUID,
		}
	}
	table := &gpt.Table{
		LogicalSectorSize:  512,
		PhysicalSectorSize: 512,
		GUID:               l.DiskGUID,
		ProtectiveMBR:      true,
		Partitions:         []*gpt.Partition{part(l.BIOS), part(l.ESP), part(l.Root)},
	}
	w, err := file.New(scratchFile{f}, false).Writable()
	if err != nil {
		return fmt.Errorf("writing the partition table: %w", err)
	}
	if err := table.Write(w, l.Size); err != nil {
		return fmt.Errorf("writing the partition table: %w", err)
	}
	return nil
}

// scratchFile is the raw disk as go-diskfs sees it, without a Sync method:
// the raw disk is scratch that is read right back, and go-diskfs would
// fsync it after every partition table write, forcing the whole image out
// to storage.
type scratchFile struct{ f *os.File }

func (s scratchFile) Stat() (fs.FileInfo, error)                { return s.f.Stat() }
func (s scratchFile) Read(p []byte) (int, error)                { return s.f.Read(p) }
func (s scratchFile) Close() error                              { return nil }
func (s scratchFile) ReadAt(p []byte, off int64) (int, error)   { return s.f.ReadAt(p, off) }
func (s scratchFile) WriteAt(p []byte, off int64) (int, error)  { return s.f.WriteAt(p, off) }
func (s scratchFile) Seek(off int64, whence int) (int64, error) { return s.f.Seek(off, whence) }

// findTool finds an e2fsprogs binary, also in the sbin directories that a
// normal user's PATH often lacks.
func findTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: install e2fsprogs (1.47 or newer)", name)
}

func run(ctx context.Context, log *slog.Logger, env []string, name string, args ...string) error {
	out, err := output(ctx, env, name, args...)
	if len(out) > 0 {
		log.Debug(filepath.Base(name), "output", string(out))
	}
	return err
}

func output(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out, fmt.Errorf("%s failed (%s): %s", filepath.Base(name), ee.ProcessState, bytes.TrimSpace(out))
		}
		return out, fmt.Errorf("running %s: %w", filepath.Base(name), err)
	}
	return out, nil
}
