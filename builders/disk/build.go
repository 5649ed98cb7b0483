package disk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
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
}

// Result describes a written raw disk.
type Result struct {
	Layout Layout
	Files  int // entries of the root filesystem (lost+found not counted)
}

// Build writes the raw GPT disk image rawPath (created, must not exist):
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
	f, err := os.OpenFile(rawPath, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating raw disk: %w", err)
	}
	defer f.Close()
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
	return &Result{Layout: layout, Files: len(entries)}, nil
}

// writeRoot stages the tree, runs mke2fs -d into the root partition and
// applies the debugfs fix-up script.
func writeRoot(ctx context.Context, log *slog.Logger, entries []tree.Entry, rawPath string, root Partition, opts Options) error {
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
	env := append(os.Environ(), "E2FSPROGS_FAKE_TIME="+strconv.FormatInt(opts.Epoch.Unix(), 10), "MKE2FS_CONFIG="+conf)
	blocks := root.Size / 4096
	args := []string{
		"-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256",
		"-L", "root", "-U", opts.IDs.RootFSUUID,
		"-E", fmt.Sprintf("offset=%d,hash_seed=%s,root_owner=0:0,lazy_itable_init=0,nodiscard", root.Offset, opts.IDs.RootFSUUID),
		"-d", stageDir, rawPath, strconv.FormatInt(blocks, 10),
	}
	step = time.Now()
	if err := run(ctx, log, env, mke2fs, args...); err != nil {
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
func writeKbytesWritten(rawPath string, fsOffset int64, kb []byte) error {
	f, err := os.OpenFile(rawPath, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("writing the root superblock: %w", err)
	}
	defer f.Close()
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

// espEnvMu guards SOURCE_DATE_EPOCH, which go-diskfs reads for the times
// of the FAT entries it writes.
var espEnvMu sync.Mutex

// ESPFile is one file of the EFI system partition: its bytes come from
// Source (a host file, e.g. a tree blob) or, when Source is "", from Data.
type ESPFile struct {
	Path   string // slash-separated, relative to the ESP's root: "EFI/BOOT/BOOTX64.EFI"
	Source string
	Data   []byte
}

// writeESP formats the EFI system partition as FAT32 with 512-byte
// clusters (larger ones leave a 200 MiB FAT32 with too few clusters) and a
// volume ID from the plan, and writes files into it, in path order so that
// the clusters are allocated the same way every time.
func writeESP(f *os.File, p Partition, volumeID uint32, epoch time.Time, files []ESPFile) error {
	espEnvMu.Lock()
	defer espEnvMu.Unlock()
	old, had := os.LookupEnv("SOURCE_DATE_EPOCH")
	os.Setenv("SOURCE_DATE_EPOCH", strconv.FormatInt(epoch.Unix(), 10))
	defer func() {
		if had {
			os.Setenv("SOURCE_DATE_EPOCH", old)
		} else {
			os.Unsetenv("SOURCE_DATE_EPOCH")
		}
	}()
	fs, err := fat32.Create(file.New(scratchFile{f}, false), p.Size, p.Offset, 512, "ESP", true)
	if err != nil {
		return fmt.Errorf("formatting the ESP: %w", err)
	}
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b ESPFile) int { return strings.Compare(a.Path, b.Path) })
	for _, ef := range sorted {
		if err := writeESPFile(fs, ef); err != nil {
			return fmt.Errorf("writing the ESP: %s: %w", ef.Path, err)
		}
	}
	if err := fixFATDirs(f, p.Offset, epoch); err != nil {
		return fmt.Errorf("writing the ESP: %w", err)
	}
	if err := fixFSInfo(f, p.Offset); err != nil {
		return fmt.Errorf("writing the ESP: %w", err)
	}
	// go-diskfs leaves the volume ID zero when asked for reproducible
	// output: write the plan's into the boot sector and its backup.
	var id [4]byte
	binary.LittleEndian.PutUint32(id[:], volumeID)
	for _, sector := range []int64{0, 6} {
		if _, err := f.WriteAt(id[:], p.Offset+sector*512+0x43); err != nil {
			return fmt.Errorf("writing the ESP volume ID: %w", err)
		}
	}
	return nil
}

// writeESPFile creates ef's parent directories and writes its bytes.
func writeESPFile(fs *fat32.FileSystem, ef ESPFile) error {
	clean := path.Clean("/" + ef.Path)
	if clean == "/" || clean != "/"+ef.Path {
		return errors.New("not a clean relative path")
	}
	if dir := path.Dir(clean); dir != "/" {
		if err := fs.Mkdir(dir); err != nil {
			return err
		}
	}
	var src io.Reader = bytes.NewReader(ef.Data)
	if ef.Source != "" {
		sf, err := os.Open(ef.Source)
		if err != nil {
			return err
		}
		defer sf.Close()
		src = bufio.NewReaderSize(sf, 1<<20)
	}
	out, err := fs.OpenFile(clean, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return err
	}
	// Large writes let go-diskfs allocate a file's clusters at once.
	if _, err := io.CopyBuffer(struct{ io.Writer }{out}, src, make([]byte, 8<<20)); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// FAT32 boot sector fields and directory entry layout.
const (
	fatDirEntry   = 32
	fatAttrLFN    = 0x0F
	fatAttrVolume = 0x08
	fatAttrDir    = 0x10
	fatEOC        = 0x0FFFFFF8
)

// fatBoot is what the fix-ups need from a FAT32 boot sector.
type fatBoot struct {
	bps, spc, reserved, nfats, total, fatSectors, fsinfo, backup int64
	rootCluster                                                  uint32
}

func readFATBoot(f *os.File, offset int64) (fatBoot, error) {
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, offset); err != nil {
		return fatBoot{}, fmt.Errorf("reading the FAT boot sector: %w", err)
	}
	b := fatBoot{
		bps:         int64(binary.LittleEndian.Uint16(bs[11:])),
		spc:         int64(bs[13]),
		reserved:    int64(binary.LittleEndian.Uint16(bs[14:])),
		nfats:       int64(bs[16]),
		total:       int64(binary.LittleEndian.Uint32(bs[32:])),
		fatSectors:  int64(binary.LittleEndian.Uint32(bs[36:])),
		rootCluster: binary.LittleEndian.Uint32(bs[44:]),
		fsinfo:      int64(binary.LittleEndian.Uint16(bs[48:])),
		backup:      int64(binary.LittleEndian.Uint16(bs[50:])),
	}
	if b.bps == 0 || b.spc == 0 {
		return fatBoot{}, errors.New("FAT boot sector: zero sector or cluster size")
	}
	return b, nil
}

// fixFATDirs walks every directory of the FAT32 filesystem at offset and
// sets the times of every short entry, "." and ".." included, to the epoch
// (go-diskfs gives ".." of a top-level directory the zero time), and points
// ".." of a top-level directory at cluster 0, as the FAT specification
// wants for the root (go-diskfs writes the root's cluster number).
func fixFATDirs(f *os.File, offset int64, epoch time.Time) error {
	b, err := readFATBoot(f, offset)
	if err != nil {
		return err
	}
	bps, spc, reserved, nfats, fatSectors, rootCluster := b.bps, b.spc, b.reserved, b.nfats, b.fatSectors, b.rootCluster
	clusterBytes := bps * spc
	fatOff := offset + reserved*bps
	dataOff := offset + (reserved+nfats*fatSectors)*bps
	maxCluster := uint32(fatSectors * bps / 4)
	chain := func(c uint32) ([]uint32, error) {
		var cs []uint32
		var b [4]byte
		for c >= 2 && c < fatEOC {
			if c >= maxCluster || len(cs) > int(maxCluster) {
				return nil, fmt.Errorf("FAT: bad cluster chain at %d", c)
			}
			cs = append(cs, c)
			if _, err := f.ReadAt(b[:], fatOff+int64(c)*4); err != nil {
				return nil, fmt.Errorf("reading the FAT: %w", err)
			}
			c = binary.LittleEndian.Uint32(b[:]) & 0x0FFFFFFF
		}
		return cs, nil
	}
	// FAT dates run from 1980 to 2107.
	ts := epoch.UTC()
	if ts.Year() < 1980 {
		ts = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	} else if ts.Year() > 2107 {
		ts = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
	}
	date := uint16((ts.Year()-1980)<<9 | int(ts.Month())<<5 | ts.Day())
	tod := uint16(ts.Hour()<<11 | ts.Minute()<<5 | ts.Second()/2)
	type dir struct {
		cluster uint32
		top     bool // a child of the root
	}
	queue := []dir{{cluster: rootCluster}}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		cs, err := chain(d.cluster)
		if err != nil {
			return err
		}
		buf := make([]byte, clusterBytes)
		for _, c := range cs {
			at := dataOff + int64(c-2)*clusterBytes
			if _, err := f.ReadAt(buf, at); err != nil {
				return fmt.Errorf("reading a FAT directory: %w", err)
			}
			end := false
			for i := 0; i < len(buf); i += fatDirEntry {
				e := buf[i : i+fatDirEntry]
				if e[0] == 0 {
					end = true
					break
				}
				attr := e[11]
				if e[0] == 0xE5 || attr == fatAttrLFN {
					continue
				}
				e[13] = 0 // creation time, tenths of a second
				binary.LittleEndian.PutUint16(e[14:], tod)
				binary.LittleEndian.PutUint16(e[16:], date)
				binary.LittleEndian.PutUint16(e[18:], date)
				binary.LittleEndian.PutUint16(e[22:], tod)
				binary.LittleEndian.PutUint16(e[24:], date)
				if attr&fatAttrVolume != 0 || attr&fatAttrDir == 0 {
					continue
				}
				name := string(e[:11])
				switch name {
				case ".          ":
				case "..         ":
					if d.top {
						binary.LittleEndian.PutUint16(e[20:], 0)
						binary.LittleEndian.PutUint16(e[26:], 0)
					}
				default:
					sub := uint32(binary.LittleEndian.Uint16(e[20:]))<<16 | uint32(binary.LittleEndian.Uint16(e[26:]))
					queue = append(queue, dir{cluster: sub, top: d.cluster == rootCluster})
				}
			}
			if _, err := f.WriteAt(buf, at); err != nil {
				return fmt.Errorf("writing a FAT directory: %w", err)
			}
			if end {
				break
			}
		}
	}
	return nil
}

// fixFSInfo stores the number of free clusters in the FSInfo sector and
// its backup, where go-diskfs leaves "unknown" (fsck.fat reports that as
// an uninitialized free cluster summary).
func fixFSInfo(f *os.File, offset int64) error {
	boot, err := readFATBoot(f, offset)
	if err != nil {
		return err
	}
	bps, spc, reserved, nfats, total, fatSectors, fsinfo, backup := boot.bps, boot.spc, boot.reserved, boot.nfats, boot.total, boot.fatSectors, boot.fsinfo, boot.backup
	clusters := (total - reserved - nfats*fatSectors) / spc
	fat := make([]byte, (clusters+2)*4)
	if _, err := f.ReadAt(fat, offset+reserved*bps); err != nil {
		return fmt.Errorf("reading the FAT: %w", err)
	}
	var free uint32
	for c := int64(2); c < clusters+2; c++ {
		if binary.LittleEndian.Uint32(fat[c*4:])&0x0FFFFFFF == 0 {
			free++
		}
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], free)
	for _, sector := range []int64{fsinfo, backup + fsinfo} {
		if _, err := f.WriteAt(b[:], offset+sector*bps+488); err != nil {
			return fmt.Errorf("writing the FSInfo sector: %w", err)
		}
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
