package iso9660

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf16"
)

// Rock Ridge 1.09 as its ER entry names it: the identifier, descriptor and
// source texts the RRIP specification asks for.
const (
	rripID         = "RRIP_1991A"
	rripDescriptor = "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS"
	rripSource     = "PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE. SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION."

	applicationID = "LABBAKE"
)

// RR entry flags: which Rock Ridge entries a record has.
const (
	rrPX = 0x01
	rrNM = 0x08
	rrTF = 0x80
)

// both16 and both32 write v in both byte orders (ISO 9660 7.2.3, 7.3.3).
func both16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
}

func both32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
}

// recordTime is t as the 7-byte date of a directory record and of Rock
// Ridge TF: years since 1900, month, day, hour, minute, second, offset
// from UTC in 15-minute units (t is in UTC, so 0).
func recordTime(t time.Time) []byte {
	return []byte{byte(t.Year() - 1900), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0}
}

// descriptorTime is t as the 17-byte date of a volume descriptor:
// "YYYYMMDDHHMMSScc" and the offset from UTC.
func descriptorTime(t time.Time) []byte {
	s := fmt.Sprintf("%04d%02d%02d%02d%02d%02d%02d", t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/10_000_000)
	return append([]byte(s), 0)
}

// dirRecord renders a directory record (ISO 9660 9.1) with its system use
// field su, padded to an even length.
func dirRecord(extent, size uint32, flags byte, id []byte, su []byte, t time.Time) []byte {
	n := 33 + len(id)
	if len(id)%2 == 0 {
		n++ // padding field: the system use field starts at an even offset
	}
	r := make([]byte, n, n+len(su)+1)
	r = append(r, su...)
	if len(r)%2 == 1 {
		r = append(r, 0)
	}
	if len(r) > 255 {
		panic(fmt.Sprintf("iso9660: a directory record of %d bytes", len(r))) // names are bounded: cannot happen
	}
	r[0] = byte(len(r))
	both32(r[2:], extent)
	both32(r[10:], size)
	copy(r[18:25], recordTime(t))
	r[25] = flags
	both16(r[28:], 1) // volume sequence number
	r[32] = byte(len(id))
	copy(r[33:], id)
	return r
}

// SUSP and Rock Ridge entries.

func suspEntry(sig string, data ...[]byte) []byte {
	e := []byte{sig[0], sig[1], 0, 1}
	for _, d := range data {
		e = append(e, d...)
	}
	e[2] = byte(len(e))
	return e
}

func spEntry() []byte { return suspEntry("SP", []byte{0xBE, 0xEF, 0}) }

func rrEntry(flags byte) []byte { return suspEntry("RR", []byte{flags}) }

func nmEntry(name string) []byte { return suspEntry("NM", []byte{0}, []byte(name)) }

func pxEntry(mode, nlink uint32) []byte {
	b := make([]byte, 32)
	both32(b[0:], mode)
	both32(b[8:], nlink)
	// uid and gid 0
	return suspEntry("PX", b)
}

// tfEntry records t as modification, access and attribute change time.
func tfEntry(t time.Time) []byte {
	rt := recordTime(t)
	return suspEntry("TF", []byte{0x02 | 0x04 | 0x08}, rt, rt, rt)
}

// ceEntry points at a continuation area of length bytes at sector.
func ceEntry(sector, length uint32) []byte {
	b := make([]byte, 24)
	both32(b[0:], sector)
	both32(b[8:], 0)
	both32(b[16:], length)
	return suspEntry("CE", b)
}

// erEntry names the Rock Ridge version; it fills the root's continuation area.
func erEntry() []byte {
	return suspEntry("ER", []byte{byte(len(rripID)), byte(len(rripDescriptor)), byte(len(rripSource)), 1},
		[]byte(rripID), []byte(rripDescriptor), []byte(rripSource))
}

// primaryRecords are the records of the primary root directory at extent
// (size bytes, both 0 when only lengths matter): "." with SUSP SP and a
// continuation to the ER entry, "..", then the files in ISO 9660 order,
// each with Rock Ridge PX, NM and TF.
func primaryRecords(entries []*entry, extent, size uint32, t time.Time) [][]byte {
	dot := slices.Concat(spEntry(), rrEntry(rrPX|rrTF), pxEntry(dirMode, 2), tfEntry(t),
		ceEntry(sectorContinue, uint32(len(erEntry()))))
	dotdot := slices.Concat(rrEntry(rrPX|rrTF), pxEntry(dirMode, 2), tfEntry(t))
	recs := [][]byte{
		dirRecord(extent, size, 0x02, []byte{0}, dot, t),
		dirRecord(extent, size, 0x02, []byte{1}, dotdot, t),
	}
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b *entry) int { return compareISO(a.isoID, b.isoID) })
	for _, e := range sorted {
		su := slices.Concat(rrEntry(rrPX|rrNM|rrTF), nmEntry(e.Name), pxEntry(fileType|uint32(e.Mode.Perm()), 1), tfEntry(t))
		recs = append(recs, dirRecord(e.extent, uint32(len(e.Data)), 0, []byte(e.isoID), su, t))
	}
	return recs
}

// jolietRecords are the records of the Joliet root directory: ".", "..",
// then the files by name, named in UCS-2 big-endian.
func jolietRecords(entries []*entry, extent, size uint32, t time.Time) [][]byte {
	recs := [][]byte{
		dirRecord(extent, size, 0x02, []byte{0}, nil, t),
		dirRecord(extent, size, 0x02, []byte{1}, nil, t),
	}
	for _, e := range entries { // sorted by name already
		recs = append(recs, dirRecord(e.extent, uint32(len(e.Data)), 0, ucs2(e.Name), nil, t))
	}
	return recs
}

// ucs2 is s in UCS-2 big-endian.
func ucs2(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.BigEndian.AppendUint16(b, u)
	}
	return b
}

// packDir lays records out in whole sectors, no record crossing a sector
// boundary (ISO 9660 6.8.1.1).
func packDir(recs [][]byte) []byte {
	var out []byte
	for _, r := range recs {
		if used := len(out) % sectorSize; used+len(r) > sectorSize {
			out = append(out, make([]byte, sectorSize-used)...)
		}
		out = append(out, r...)
	}
	if r := len(out) % sectorSize; r != 0 {
		out = append(out, make([]byte, sectorSize-r)...)
	}
	return out
}

// pathTable is the path table of a volume with only a root directory at
// extent, in big-endian (M) or little-endian (L) order.
func pathTable(extent uint32, bigEndian bool) []byte {
	b := []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	var order binary.ByteOrder = binary.LittleEndian
	if bigEndian {
		order = binary.BigEndian
	}
	order.PutUint32(b[2:], extent)
	order.PutUint16(b[6:], 1) // parent: the root itself
	return b
}

const pathTableSize = 10

// volumeDescriptor renders the primary volume descriptor, or the Joliet
// supplementary one (ISO 9660 8.4, 8.5; Joliet: UCS-2 identifiers and the
// escape sequence %/E).
func volumeDescriptor(joliet bool, volumeID string, total, pathL, pathM uint32, root []byte, t time.Time) []byte {
	b := make([]byte, sectorSize)
	b[0] = 1
	if joliet {
		b[0] = 2
	}
	copy(b[1:], "CD001")
	b[6] = 1
	text := func(off, n int, s string) {
		field := b[off : off+n]
		if !joliet {
			copy(field, fmt.Sprintf("%-*s", n, s))
			return
		}
		u := ucs2(s)
		for len(u)+2 <= n {
			u = append(u, 0, ' ')
		}
		copy(field, u) // a 37-byte file identifier keeps a last zero byte
	}
	text(8, 32, "") // system identifier
	if joliet {
		text(40, 32, volumeID)
		copy(b[88:], "%/E")
	} else {
		text(40, 32, strings.Map(func(r rune) rune {
			if r == '.' || r == '-' {
				return '_'
			}
			return r
		}, strings.ToUpper(volumeID)))
	}
	both32(b[80:], total)
	both16(b[120:], 1) // volume set size
	both16(b[124:], 1) // volume sequence number
	both16(b[128:], sectorSize)
	both32(b[132:], pathTableSize)
	binary.LittleEndian.PutUint32(b[140:], pathL)
	binary.BigEndian.PutUint32(b[148:], pathM)
	copy(b[156:190], root)
	text(190, 128, "") // volume set
	text(318, 128, "") // publisher
	text(446, 128, "") // data preparer
	text(574, 128, applicationID)
	text(702, 37, "") // copyright file
	text(739, 37, "") // abstract file
	text(776, 37, "") // bibliographic file
	date := descriptorTime(t)
	copy(b[813:], date) // creation
	copy(b[830:], date) // modification
	copy(b[847:], "0000000000000000")
	copy(b[864:], date) // effective
	b[881] = 1          // file structure version
	return b
}
