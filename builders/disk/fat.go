package disk

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// FAT32 geometry of the ESP: 512-byte sectors and clusters (a 200 MiB
// FAT32 needs small clusters to reach the 65,525 clusters FAT32 requires),
// the usual 32 reserved sectors with the FSInfo sector at 1 and the backup
// boot sector at 6, two FATs, the root directory at cluster 2.
const (
	fatSector      = 512
	fatReserved    = 32
	fatCount       = 2
	fatFSInfo      = 1
	fatBackup      = 6
	fatRootCluster = 2
	fatEOC         = 0x0FFFFFFF
	fatDirEntry    = 32
	fatMinClusters = 65525
	fatAttrDir     = 0x10
	fatAttrArchive = 0x20
	fatAttrVolume  = 0x08
	fatAttrLFN     = 0x0F
	fatLabel       = "ESP"
)

// fatNode is a file or directory of the FAT file system being written.
type fatNode struct {
	name     string // long name; "" for the root
	dir      bool
	file     ESPFile
	size     int64
	kids     []*fatNode // sorted by name
	parent   *fatNode
	short    [11]byte // 8.3 name as stored
	cluster  uint32   // first cluster; 0 for an empty file
	clusters uint32   // clusters it takes
}

// writeFAT32 formats the partition p of f as FAT32 and writes files into
// it, all as bytes: the boot sector and its backup, FSInfo, both FATs, the
// directories (long names with generated 8.3 aliases) and the files'
// contents, each in one contiguous run. Clusters are handed out in a fixed
// order (directories in path order, then files in path order) and every
// time is epoch, so equal inputs give equal bytes. The partition must read
// as zeros (a fresh sparse file).
func writeFAT32(f *os.File, p Partition, volumeID uint32, epoch time.Time, files []ESPFile) error {
	total := p.Size / fatSector
	fatSectors := fatTableSectors(total)
	dataStart := int64(fatReserved + fatCount*fatSectors)
	clusterCount := total - dataStart
	if clusterCount < fatMinClusters || clusterCount > 0x0FFFFFF5 {
		return fmt.Errorf("a %d-byte partition makes a FAT32 of %d clusters", p.Size, clusterCount)
	}

	root, err := fatTree(files)
	if err != nil {
		return err
	}
	// Allocate: directories first, then file contents, each in path order.
	var dirs, regular []*fatNode
	var walk func(n *fatNode)
	walk = func(n *fatNode) {
		if n.dir {
			dirs = append(dirs, n)
		} else {
			regular = append(regular, n)
		}
		for _, k := range n.kids {
			walk(k)
		}
	}
	walk(root)
	next := uint32(fatRootCluster)
	for _, n := range append(slices.Clone(dirs), regular...) {
		bytes := n.size
		if n.dir {
			bytes = int64(len(dirEntries(n, epoch, false)))
		}
		n.clusters = uint32((bytes + fatSector - 1) / fatSector)
		if n.clusters == 0 {
			continue
		}
		n.cluster = next
		next += n.clusters
		if int64(next-fatRootCluster) > clusterCount {
			return fmt.Errorf("the files need more than the %d bytes of the ESP", p.Size)
		}
	}

	// The FAT: media and reserved entries, then one chain per node.
	table := make([]byte, fatSectors*fatSector)
	binary.LittleEndian.PutUint32(table[0:], 0x0FFFFFF8)
	binary.LittleEndian.PutUint32(table[4:], fatEOC)
	for _, n := range append(dirs, regular...) {
		for i := range n.clusters {
			v := n.cluster + i + 1
			if i == n.clusters-1 {
				v = fatEOC
			}
			binary.LittleEndian.PutUint32(table[4*(n.cluster+i):], v)
		}
	}
	used := int64(next - fatRootCluster)
	boot := fatBootSector(uint32(total), uint32(fatSectors), uint32(p.Offset/fatSector), volumeID)
	info := fatFSInfoSector(uint32(clusterCount-used), next)
	at := func(sector int64) int64 { return p.Offset + sector*fatSector }
	for _, w := range []struct {
		b      []byte
		sector int64
	}{
		{boot, 0}, {info, fatFSInfo}, {boot, fatBackup}, {info, fatBackup + 1},
		{table, fatReserved}, {table, fatReserved + fatSectors},
	} {
		if _, err := f.WriteAt(w.b, at(w.sector)); err != nil {
			return fmt.Errorf("writing the FAT: %w", err)
		}
	}
	clusterAt := func(c uint32) int64 { return at(dataStart + int64(c-fatRootCluster)) }
	for _, n := range dirs {
		if _, err := f.WriteAt(dirEntries(n, epoch, true), clusterAt(n.cluster)); err != nil {
			return fmt.Errorf("writing the ESP's directories: %w", err)
		}
	}
	for _, n := range regular {
		if err := writeFATFile(f, n, clusterAt(n.cluster)); err != nil {
			return fmt.Errorf("writing %s into the ESP: %w", n.file.Path, err)
		}
	}
	return nil
}

// fatTableSectors is the smallest FAT that maps every cluster left after
// the reserved sectors and both FATs (what mkfs.fat computes).
func fatTableSectors(total int64) int64 {
	s := int64(1)
	for {
		clusters := total - fatReserved - fatCount*s
		if s*fatSector/4 >= clusters+2 {
			return s
		}
		s++
	}
}

// fatTree builds the directory tree of the files, checking their paths.
func fatTree(files []ESPFile) (*fatNode, error) {
	root := &fatNode{dir: true}
	byPath := map[string]*fatNode{"": root}
	var mkdir func(p string) (*fatNode, error)
	mkdir = func(p string) (*fatNode, error) {
		if n, ok := byPath[p]; ok {
			if !n.dir {
				return nil, fmt.Errorf("%s: a file, not a directory", p)
			}
			return n, nil
		}
		parent, err := mkdir(parentOf(p))
		if err != nil {
			return nil, err
		}
		n := &fatNode{name: path.Base(p), dir: true, parent: parent}
		parent.kids = append(parent.kids, n)
		byPath[p] = n
		return n, nil
	}
	for _, ef := range files {
		clean := path.Clean("/" + ef.Path)
		if clean == "/" || clean != "/"+ef.Path {
			return nil, fmt.Errorf("ESP file %q: not a clean relative path", ef.Path)
		}
		if err := checkFATName(ef.Path); err != nil {
			return nil, fmt.Errorf("ESP file %q: %w", ef.Path, err)
		}
		if _, ok := byPath[ef.Path]; ok {
			return nil, fmt.Errorf("ESP file %q: written twice", ef.Path)
		}
		parent, err := mkdir(parentOf(ef.Path))
		if err != nil {
			return nil, fmt.Errorf("ESP file %q: %w", ef.Path, err)
		}
		size := int64(len(ef.Data))
		if ef.Source != "" {
			fi, err := os.Stat(ef.Source)
			if err != nil {
				return nil, fmt.Errorf("ESP file %q: %w", ef.Path, err)
			}
			size = fi.Size()
		}
		if size > 0xFFFFFFFF {
			return nil, fmt.Errorf("ESP file %q: %d bytes, more than FAT32 holds in a file", ef.Path, size)
		}
		n := &fatNode{name: path.Base(ef.Path), file: ef, size: size, parent: parent}
		parent.kids = append(parent.kids, n)
		byPath[ef.Path] = n
	}
	var order func(n *fatNode) error
	order = func(n *fatNode) error {
		slices.SortFunc(n.kids, func(a, b *fatNode) int { return strings.Compare(a.name, b.name) })
		taken := map[[11]byte]bool{}
		seen := map[string]bool{}
		for _, k := range n.kids {
			if up := strings.ToUpper(k.name); seen[up] {
				return fmt.Errorf("ESP: %q and another name differ only in case", k.name)
			} else {
				seen[up] = true
			}
			k.short = shortName(k.name, taken)
			taken[k.short] = true
			if k.dir {
				if err := order(k); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return root, order(root)
}

func parentOf(p string) string {
	if d := path.Dir(p); d != "." {
		return d
	}
	return ""
}

// checkFATName refuses names FAT cannot store.
func checkFATName(p string) error {
	for _, name := range strings.Split(p, "/") {
		switch {
		case !utf8.ValidString(name):
			return fmt.Errorf("name %q is not valid UTF-8", name)
		case len(utf16.Encode([]rune(name))) > 255:
			return fmt.Errorf("name %q is longer than 255 characters", name)
		case strings.ContainsAny(name, "\"*:<>?\\|") || strings.IndexFunc(name, func(r rune) bool { return r < 0x20 }) >= 0:
			return fmt.Errorf("name %q has a character FAT does not allow", name)
		case strings.HasSuffix(name, ".") || strings.HasSuffix(name, " "):
			return fmt.Errorf("name %q ends with a dot or a space", name)
		}
	}
	return nil
}

// shortName makes the 8.3 alias of a long name, unique among taken: the
// name itself when it is a valid upper-case 8.3 name, else upper-cased
// with invalid characters replaced and a numeric tail (~1, ~2…) when it
// had to be shortened or changed beyond case, as the FAT specification
// describes.
func shortName(long string, taken map[[11]byte]bool) [11]byte {
	upper := strings.ToUpper(long)
	base, ext := upper, ""
	if i := strings.LastIndexByte(upper, '.'); i > 0 {
		base, ext = upper[:i], upper[i+1:]
	}
	lossy := false
	clean := func(s string, max int) string {
		var b strings.Builder
		for _, r := range s {
			switch {
			case r == ' ' || r == '.':
				lossy = true
			case r > 0x7E || strings.ContainsRune("+,;=[]", r):
				b.WriteByte('_')
				lossy = true
			default:
				b.WriteRune(r)
			}
		}
		out := b.String()
		if len(out) > max {
			out, lossy = out[:max], true
		}
		return out
	}
	b, e := clean(base, 8), clean(ext, 3)
	if b == "" {
		b, lossy = "_", true
	}
	var s [11]byte
	fill := func(b, e string) {
		copy(s[:], "           ")
		copy(s[:8], b)
		copy(s[8:], e)
	}
	fill(b, e)
	if !lossy && !taken[s] {
		return s
	}
	for i := 1; ; i++ {
		tail := fmt.Sprintf("~%d", i)
		fill(b[:min(len(b), 8-len(tail))]+tail, e)
		if !taken[s] {
			return s
		}
	}
}

// dirEntries renders a directory: "." and ".." (not in the root), the
// volume label (only in the root), then each child as its long-name
// entries and its 8.3 entry; padded with zeros to whole clusters when pad.
// Called before clusters are assigned, it gives the right length only.
func dirEntries(n *fatNode, epoch time.Time, pad bool) []byte {
	var out []byte
	date, tm := fatTime(epoch)
	entry := func(name [11]byte, attr byte, cluster uint32, size uint32) {
		e := make([]byte, fatDirEntry)
		copy(e, name[:])
		e[11] = attr
		binary.LittleEndian.PutUint16(e[14:], tm)
		binary.LittleEndian.PutUint16(e[16:], date)
		binary.LittleEndian.PutUint16(e[18:], date)
		binary.LittleEndian.PutUint16(e[20:], uint16(cluster>>16))
		binary.LittleEndian.PutUint16(e[22:], tm)
		binary.LittleEndian.PutUint16(e[24:], date)
		binary.LittleEndian.PutUint16(e[26:], uint16(cluster))
		binary.LittleEndian.PutUint32(e[28:], size)
		out = append(out, e...)
	}
	if n.parent == nil {
		var label [11]byte
		copy(label[:], fmt.Sprintf("%-11s", fatLabel))
		entry(label, fatAttrVolume, 0, 0)
	} else {
		parent := n.parent.cluster
		if n.parent.parent == nil {
			parent = 0 // ".." of a directory in the root points at 0
		}
		entry([11]byte{'.', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}, fatAttrDir, n.cluster, 0)
		entry([11]byte{'.', '.', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}, fatAttrDir, parent, 0)
	}
	for _, k := range n.kids {
		out = append(out, longNameEntries(k.name, k.short)...)
		if k.dir {
			entry(k.short, fatAttrDir, k.cluster, 0)
		} else {
			entry(k.short, fatAttrArchive, k.cluster, uint32(k.size))
		}
	}
	if pad {
		if r := len(out) % fatSector; r != 0 || len(out) == 0 {
			out = append(out, make([]byte, fatSector-r)...)
		}
	}
	return out
}

// longNameEntries are the VFAT entries that carry a long name, last part
// first; none when the 8.3 name says it all.
func longNameEntries(long string, short [11]byte) []byte {
	if fatShortString(short) == long {
		return nil
	}
	var sum byte
	for _, c := range short {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	u := utf16.Encode([]rune(long))
	if len(u)%13 != 0 {
		u = append(u, 0)
	}
	for len(u)%13 != 0 {
		u = append(u, 0xFFFF)
	}
	parts := len(u) / 13
	var out []byte
	for i := parts; i >= 1; i-- {
		e := make([]byte, fatDirEntry)
		e[0] = byte(i)
		if i == parts {
			e[0] |= 0x40
		}
		e[11], e[13] = fatAttrLFN, sum
		chunk := u[(i-1)*13 : i*13]
		for j, off := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
			binary.LittleEndian.PutUint16(e[off:], chunk[j])
		}
		out = append(out, e...)
	}
	return out
}

// fatShortString is how an 8.3 name reads: "BOOTX64.EFI".
func fatShortString(s [11]byte) string {
	b := strings.TrimRight(string(s[:8]), " ")
	if e := strings.TrimRight(string(s[8:]), " "); e != "" {
		return b + "." + e
	}
	return b
}

// fatTime is t as a FAT date and time (two-second resolution, 1980 at the
// earliest).
func fatTime(t time.Time) (date, tm uint16) {
	t = t.UTC()
	if t.Year() < 1980 {
		return 1<<5 | 1, 0
	}
	if t.Year() > 2107 {
		t = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
	}
	date = uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day())
	tm = uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2)
	return date, tm
}

// fatBootSector renders the FAT32 boot sector: the BIOS parameter block,
// the volume ID and label, and code that halts if a BIOS ever runs it.
func fatBootSector(total, fatSectors, hidden, volumeID uint32) []byte {
	b := make([]byte, fatSector)
	copy(b, []byte{0xEB, 0x58, 0x90})
	copy(b[3:], "LABBAKE ")
	le := binary.LittleEndian
	le.PutUint16(b[0x0B:], fatSector)
	b[0x0D] = 1 // sectors per cluster
	le.PutUint16(b[0x0E:], fatReserved)
	b[0x10] = fatCount
	b[0x15] = 0xF8             // fixed disk
	le.PutUint16(b[0x18:], 32) // sectors per track, heads: nominal
	le.PutUint16(b[0x1A:], 64)
	le.PutUint32(b[0x1C:], hidden)
	le.PutUint32(b[0x20:], total)
	le.PutUint32(b[0x24:], fatSectors)
	le.PutUint32(b[0x2C:], fatRootCluster)
	le.PutUint16(b[0x30:], fatFSInfo)
	le.PutUint16(b[0x32:], fatBackup)
	b[0x40] = 0x80
	b[0x42] = 0x29
	le.PutUint32(b[0x43:], volumeID)
	copy(b[0x47:], fmt.Sprintf("%-11s", fatLabel))
	copy(b[0x52:], "FAT32   ")
	copy(b[0x5A:], []byte{0xFA, 0xF4, 0xEB, 0xFD}) // cli; hlt; jmp $-1
	b[0x1FE], b[0x1FF] = 0x55, 0xAA
	return b
}

// fatFSInfoSector renders the FSInfo sector with the free cluster count
// and the next free cluster.
func fatFSInfoSector(free, next uint32) []byte {
	b := make([]byte, fatSector)
	le := binary.LittleEndian
	le.PutUint32(b[0:], 0x41615252)
	le.PutUint32(b[0x1E4:], 0x61417272)
	le.PutUint32(b[0x1E8:], free)
	le.PutUint32(b[0x1EC:], next)
	le.PutUint32(b[0x1FC:], 0xAA550000)
	return b
}

// writeFATFile copies a file's bytes to off.
func writeFATFile(f *os.File, n *fatNode, off int64) error {
	if n.file.Source == "" {
		_, err := f.WriteAt(n.file.Data, off)
		return err
	}
	src, err := os.Open(n.file.Source)
	if err != nil {
		return err
	}
	defer src.Close()
	w := bufio.NewWriterSize(io.NewOffsetWriter(f, off), 4<<20)
	copied, err := io.Copy(w, src)
	if err == nil {
		err = w.Flush()
	}
	if err == nil && copied != n.size {
		err = errors.New("the file changed size while the ESP was written")
	}
	return err
}
