package iso9660

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"
)

// File is a plain file in the root directory of the image.
type File struct {
	Name string      // 1..64 bytes of [A-Za-z0-9._-], unique; not "." or ".."
	Data []byte      // contents
	Mode fs.FileMode // permission bits recorded by Rock Ridge PX (e.g. 0o600); owner 0:0
}

// Options are the volume-wide settings.
type Options struct {
	// VolumeID is the volume label, 1..16 bytes of [A-Za-z0-9._-] (16 is
	// what Joliet's volume identifier holds). The primary descriptor
	// stores it upper-cased with '.' and '-' as '_' (d-characters); the
	// Joliet descriptor keeps it as given, and that is what blkid reports.
	VolumeID string
	// ModTime is every date in the image: volume descriptors, directory
	// records, Rock Ridge TF. It must lie in 1900..2155 (directory records
	// count years from 1900 in one byte); it is recorded in UTC.
	ModTime time.Time
}

const (
	sectorSize  = 2048
	padSectors  = 150 // zero sectors after the data, counted in the volume, as genisoimage pads
	maxName     = 64  // Joliet names hold 64 UCS-2 characters
	maxVolumeID = 16  // Joliet's 32-byte volume identifier holds 16 UCS-2 characters
	level2Max   = 30  // ISO 9660 level 2: characters of file name plus extension

	// The fixed sectors of the layout (see doc.go).
	sectorPVD      = 16
	sectorSVD      = 17
	sectorTerm     = 18
	sectorPathL    = 19
	sectorPathM    = 20
	sectorJPathL   = 21
	sectorJPathM   = 22
	sectorContinue = 23
	sectorRoot     = 24

	dirMode  = 0o40755 // the root directory's Rock Ridge mode (S_IFDIR | 0755)
	fileType = 0o100000
)

// entry is one file as laid out in the image.
type entry struct {
	File
	isoID  string // primary (level 2) identifier, e.g. "USER_DATA.;1"
	extent uint32 // first sector of the data
}

// Image returns the whole ISO image, padded to its volume size (a multiple
// of 2048 bytes, with 150 zero sectors after the data as genisoimage pads
// so readers that read ahead see no short read). Equal files and options
// give equal bytes, whatever the order of files.
func Image(files []File, opts Options) ([]byte, error) {
	if err := checkVolumeID(opts.VolumeID); err != nil {
		return nil, err
	}
	t := opts.ModTime.UTC()
	if y := t.Year(); y < 1900 || y > 2155 {
		return nil, fmt.Errorf("iso9660: ModTime %v is outside 1900..2155, which ISO 9660 directory records can hold", opts.ModTime)
	}
	entries, err := checkFiles(files)
	if err != nil {
		return nil, err
	}

	// Sizes first: records do not change length with the locations in them.
	primary := packDir(primaryRecords(entries, 0, 0, t))
	joliet := packDir(jolietRecords(entries, 0, 0, t))
	jolietRoot := sectorRoot + uint32(len(primary)/sectorSize)
	next := int64(jolietRoot) + int64(len(joliet)/sectorSize)
	for _, e := range entries {
		if len(e.Data) == 0 {
			continue
		}
		e.extent = uint32(next)
		next += (int64(len(e.Data)) + sectorSize - 1) / sectorSize
		if next > 1<<32-1-padSectors {
			return nil, errors.New("iso9660: the files do not fit in an ISO 9660 volume")
		}
	}
	dataEnd := uint32(next)
	for _, e := range entries {
		if len(e.Data) == 0 {
			e.extent = dataEnd // an empty file points at the zero padding
		}
	}
	total := dataEnd + padSectors

	img := make([]byte, int64(total)*sectorSize)
	at := func(sector uint32) []byte { return img[int64(sector)*sectorSize:] }
	primary = packDir(primaryRecords(entries, sectorRoot, uint32(len(primary)), t))
	joliet = packDir(jolietRecords(entries, jolietRoot, uint32(len(joliet)), t))
	copy(at(sectorRoot), primary)
	copy(at(jolietRoot), joliet)
	copy(at(sectorContinue), erEntry())
	copy(at(sectorPathL), pathTable(sectorRoot, false))
	copy(at(sectorPathM), pathTable(sectorRoot, true))
	copy(at(sectorJPathL), pathTable(jolietRoot, false))
	copy(at(sectorJPathM), pathTable(jolietRoot, true))
	for _, e := range entries {
		copy(at(e.extent), e.Data)
	}
	pvdRoot := dirRecord(sectorRoot, uint32(len(primary)), 0x02, []byte{0}, nil, t)
	svdRoot := dirRecord(jolietRoot, uint32(len(joliet)), 0x02, []byte{0}, nil, t)
	copy(at(sectorPVD), volumeDescriptor(false, opts.VolumeID, total, sectorPathL, sectorPathM, pvdRoot, t))
	copy(at(sectorSVD), volumeDescriptor(true, opts.VolumeID, total, sectorJPathL, sectorJPathM, svdRoot, t))
	copy(at(sectorTerm), []byte{255, 'C', 'D', '0', '0', '1', 1})
	return img, nil
}

// checkVolumeID refuses a volume id the descriptors cannot hold.
func checkVolumeID(id string) error {
	if id == "" || len(id) > maxVolumeID {
		return fmt.Errorf("iso9660: volume id %q: want 1..%d characters", id, maxVolumeID)
	}
	if i := strings.IndexFunc(id, func(r rune) bool { return !nameChar(r) }); i >= 0 {
		return fmt.Errorf("iso9660: volume id %q: character %q is not one of [A-Za-z0-9._-]", id, id[i])
	}
	return nil
}

func nameChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// checkFiles validates the files and returns them sorted by name, each
// with its unique primary identifier.
func checkFiles(files []File) ([]*entry, error) {
	entries := make([]*entry, 0, len(files))
	for _, f := range files {
		switch {
		case f.Name == "" || len(f.Name) > maxName:
			return nil, fmt.Errorf("iso9660: file name %q: want 1..%d characters", f.Name, maxName)
		case f.Name == "." || f.Name == "..":
			return nil, fmt.Errorf("iso9660: file name %q is reserved", f.Name)
		case f.Mode&^fs.ModePerm != 0:
			return nil, fmt.Errorf("iso9660: file %s: mode %v has more than permission bits", f.Name, f.Mode)
		case int64(len(f.Data)) > 1<<32-1:
			return nil, fmt.Errorf("iso9660: file %s: %d bytes, more than an ISO 9660 extent holds", f.Name, len(f.Data))
		}
		if i := strings.IndexFunc(f.Name, func(r rune) bool { return !nameChar(r) }); i >= 0 {
			return nil, fmt.Errorf("iso9660: file name %q: character %q is not one of [A-Za-z0-9._-]", f.Name, f.Name[i])
		}
		entries = append(entries, &entry{File: f})
	}
	slices.SortFunc(entries, func(a, b *entry) int { return strings.Compare(a.Name, b.Name) })
	taken := map[string]bool{}
	for i, e := range entries {
		if i > 0 && entries[i-1].Name == e.Name {
			return nil, fmt.Errorf("iso9660: file name %q given twice", e.Name)
		}
		e.isoID = level2ID(e.Name, taken)
		taken[e.isoID] = true
	}
	return entries, nil
}

// level2ID is the ISO 9660 level 2 identifier of a name, unique among
// taken: upper-cased, split at the last dot into name and extension,
// other characters outside the d-characters as '_', shortened to 30
// characters, and given a numeric tail when that folds it onto a name
// already taken.
func level2ID(name string, taken map[string]bool) string {
	up := strings.ToUpper(name)
	base, ext := up, ""
	if i := strings.LastIndexByte(up, '.'); i >= 0 {
		base, ext = up[:i], up[i+1:]
	}
	dchars := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
				return r
			}
			return '_'
		}, s)
	}
	base, ext = dchars(base), dchars(ext)
	fit := func(b, tail, e string) string {
		for len(b)+len(tail)+len(e) > level2Max {
			if len(b) > 0 && len(b) >= len(e) {
				b = b[:len(b)-1]
			} else {
				e = e[:len(e)-1]
			}
		}
		return b + tail + "." + e + ";1"
	}
	id := fit(base, "", ext)
	for n := 1; taken[id]; n++ {
		id = fit(base, strconv.Itoa(n), ext)
	}
	return id
}

// compareISO orders primary identifiers as ISO 9660 (9.3) sorts a
// directory: by file name, then by extension, each padded with spaces
// (as every d-character sorts after a space, plain comparison does that).
func compareISO(a, b string) int {
	split := func(id string) (string, string) {
		id, _, _ = strings.Cut(id, ";")
		n, e, _ := strings.Cut(id, ".")
		return n, e
	}
	an, ae := split(a)
	bn, be := split(b)
	return cmp.Or(strings.Compare(an, bn), strings.Compare(ae, be))
}
