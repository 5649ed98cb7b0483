package disk

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

// FuzzFATNames builds an ESP directory from arbitrary names: a name FAT
// cannot hold is an error, never a panic; otherwise every 8.3 alias is
// valid and unique in its directory, and the long names read back from
// the rendered directory are the names given.
func FuzzFATNames(f *testing.F) {
	f.Add("BOOTX64.EFI\nloader.conf\nsystemd-bootx64.efi")
	f.Add("a b\na.b.c\n.hidden\nünïcode.txt\nthirteen-char")
	f.Add("long-name-one.txt\nlong-name-two.txt\nLONG-N~1.TXT")
	f.Fuzz(func(t *testing.T, list string) {
		names := strings.Split(list, "\n")
		if len(names) > 64 {
			return
		}
		var files []ESPFile
		for _, n := range names {
			files = append(files, ESPFile{Path: n})
		}
		root, err := fatTree(files)
		if err != nil {
			return
		}
		seen := map[[11]byte]bool{}
		for _, k := range root.kids {
			if seen[k.short] {
				t.Fatalf("8.3 alias %q used twice", k.short[:])
			}
			seen[k.short] = true
			for i, c := range k.short {
				ok := c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(" !#$%&'()-@^_`{}~", c) >= 0
				if !ok || (i == 0 && c == ' ') {
					t.Fatalf("8.3 alias %q of %q has %q at %d", k.short[:], k.name, c, i)
				}
			}
		}
		got := readLongNames(t, dirEntries(root, time.Unix(0, 0), true))
		if len(got) != len(root.kids) {
			t.Fatalf("read %d names back, want %d", len(got), len(root.kids))
		}
		for i, k := range root.kids {
			if got[i] != k.name {
				t.Fatalf("name %d read back as %q, want %q", i, got[i], k.name)
			}
		}
	})
}

// readLongNames decodes a directory's entries the way a FAT driver does:
// the long name when its entries and checksum match the 8.3 entry, else the
// 8.3 name. The volume label is skipped.
func readLongNames(t *testing.T, dir []byte) []string {
	var names []string
	var parts []uint16
	var sum byte
	for off := 0; off+fatDirEntry <= len(dir); off += fatDirEntry {
		e := dir[off : off+fatDirEntry]
		if e[0] == 0 {
			break
		}
		if e[11] == fatAttrLFN {
			var chunk []uint16
			for _, o := range []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30} {
				chunk = append(chunk, binary.LittleEndian.Uint16(e[o:]))
			}
			if e[0]&0x40 != 0 {
				parts = nil
			}
			parts = append(chunk, parts...)
			sum = e[13]
			continue
		}
		if e[11]&fatAttrVolume != 0 {
			parts = nil
			continue
		}
		var short [11]byte
		copy(short[:], e[:11])
		var want byte
		for _, c := range short {
			want = (want&1)<<7 + want>>1 + c
		}
		name := fatShortString(short)
		if parts != nil {
			if want != sum {
				t.Fatalf("long name checksum %#x, want %#x for %q", sum, want, short[:])
			}
			if i := indexOf(parts, 0); i >= 0 {
				parts = parts[:i]
			}
			name = string(utf16.Decode(parts))
		}
		names = append(names, name)
		parts = nil
	}
	return names
}

func indexOf(s []uint16, v uint16) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
