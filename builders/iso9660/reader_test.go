package iso9660

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
)

// This file is a minimal, strict ISO 9660 reader for the tests, written
// from the standards rather than from the writer: it checks the structure
// as it reads (both-endian fields agree, records stay inside a sector and
// have even lengths, path tables point at the roots, directories are
// sorted, extents lie in the volume) and returns what a Rock Ridge reader
// and a Joliet reader would see.

// readFile is one file as a hierarchy shows it.
type readFile struct {
	id     string // primary identifier ("USER_DATA.;1") or Joliet name
	name   string // Rock Ridge NM (primary only)
	mode   uint32 // Rock Ridge PX (primary only)
	nlink  uint32
	uid    uint32
	gid    uint32
	date   [7]byte
	tf     [][7]byte // Rock Ridge TF times
	extent uint32
	data   []byte
}

// readVolume is what the reader found.
type readVolume struct {
	pvdID, jolietID string
	pvdDates        [4]string // creation, modification, expiration, effective
	rootMode        uint32
	rrID            string // the ER entry's extension identifier
	primary         []readFile
	joliet          []readFile
}

func le32be32(b []byte) (uint32, error) {
	l, m := binary.LittleEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
	if l != m {
		return 0, fmt.Errorf("both-endian field %d / %d", l, m)
	}
	return l, nil
}

func readISO(img []byte) (*readVolume, error) {
	const ss = 2048
	if len(img)%ss != 0 || len(img) < 19*ss {
		return nil, fmt.Errorf("image of %d bytes", len(img))
	}
	sector := func(n uint32) []byte { return img[int(n)*ss : int(n+1)*ss] }
	var pvd, svd []byte
	for n := uint32(16); ; n++ {
		if int(n+1)*ss > len(img) {
			return nil, errors.New("no volume descriptor set terminator")
		}
		vd := sector(n)
		if string(vd[1:6]) != "CD001" || vd[6] != 1 {
			return nil, fmt.Errorf("sector %d: not a volume descriptor", n)
		}
		if vd[0] == 255 {
			break
		}
		switch vd[0] {
		case 1:
			pvd = vd
		case 2:
			if string(vd[88:91]) == "%/E" {
				svd = vd
			}
		}
	}
	if pvd == nil || svd == nil {
		return nil, errors.New("no primary or no Joliet descriptor")
	}
	v := &readVolume{pvdID: string(bytes.TrimRight(pvd[40:72], " "))}
	for i := range 4 {
		v.pvdDates[i] = string(pvd[813+17*i : 813+17*i+16])
	}
	id := utf16Decode(svd[40:72])
	v.jolietID = string(bytes.TrimRight([]byte(id), " "))
	for _, vd := range [][]byte{pvd, svd} {
		size, err := le32be32(vd[80:])
		if err != nil {
			return nil, err
		}
		if int(size)*ss != len(img) {
			return nil, fmt.Errorf("volume size %d sectors, image %d bytes", size, len(img))
		}
		if binary.LittleEndian.Uint16(vd[128:]) != ss || binary.BigEndian.Uint16(vd[130:]) != ss {
			return nil, errors.New("logical block size is not 2048")
		}
	}

	dirs := [2][]readFile{}
	for h, vd := range [][]byte{pvd, svd} {
		root := vd[156:190]
		if root[0] != 34 || root[32] != 1 || root[33] != 0 || root[25] != 2 {
			return nil, fmt.Errorf("descriptor %d: bad root record % x", h, root)
		}
		extent, err := le32be32(root[2:])
		if err != nil {
			return nil, err
		}
		size, err := le32be32(root[10:])
		if err != nil {
			return nil, err
		}
		ptSize, err := le32be32(vd[132:])
		if err != nil {
			return nil, err
		}
		for _, pt := range []struct {
			at    uint32
			order binary.ByteOrder
		}{{binary.LittleEndian.Uint32(vd[140:]), binary.LittleEndian}, {binary.BigEndian.Uint32(vd[148:]), binary.BigEndian}} {
			if ptSize != 10 || int(pt.at+1)*ss > len(img) {
				return nil, fmt.Errorf("path table of %d bytes at %d", ptSize, pt.at)
			}
			p := sector(pt.at)
			if p[0] != 1 || pt.order.Uint32(p[2:]) != extent || pt.order.Uint16(p[6:]) != 1 || p[8] != 0 {
				return nil, fmt.Errorf("path table at %d: % x, root at %d", pt.at, p[:10], extent)
			}
		}
		files, err := readDir(img, extent, size, h == 1, v)
		if err != nil {
			return nil, fmt.Errorf("descriptor %d: %w", h, err)
		}
		dirs[h] = files
	}
	v.primary, v.joliet = dirs[0], dirs[1]
	return v, nil
}

// readDir reads the root directory at extent; for the primary hierarchy
// it also reads the Rock Ridge entries and checks SP and ER in ".".
func readDir(img []byte, extent, size uint32, joliet bool, v *readVolume) ([]readFile, error) {
	const ss = 2048
	if size == 0 || size%ss != 0 || int64(extent)*ss+int64(size) > int64(len(img)) {
		return nil, fmt.Errorf("directory of %d bytes at %d", size, extent)
	}
	dir := img[int64(extent)*ss : int64(extent)*ss+int64(size)]
	var files []readFile
	n := 0
	for off := 0; off < len(dir); {
		l := int(dir[off])
		if l == 0 {
			next := (off/ss + 1) * ss
			if !allZero(dir[off:next]) {
				return nil, fmt.Errorf("bytes after the last record of a sector at %d", off)
			}
			off = next
			continue
		}
		if l < 34 || l%2 == 1 || off%ss+l > ss {
			return nil, fmt.Errorf("record of %d bytes at %d", l, off)
		}
		r := dir[off : off+l]
		off += l
		f := readFile{}
		var err error
		if f.extent, err = le32be32(r[2:]); err != nil {
			return nil, err
		}
		dataLen, err := le32be32(r[10:])
		if err != nil {
			return nil, err
		}
		copy(f.date[:], r[18:25])
		if binary.LittleEndian.Uint16(r[28:]) != 1 || binary.BigEndian.Uint16(r[30:]) != 1 {
			return nil, errors.New("volume sequence number is not 1")
		}
		lenID := int(r[32])
		if 33+lenID > l {
			return nil, fmt.Errorf("identifier of %d bytes in a %d-byte record", lenID, l)
		}
		rawID := r[33 : 33+lenID]
		suAt := 33 + lenID
		if lenID%2 == 0 {
			if r[suAt] != 0 {
				return nil, errors.New("padding byte is not zero")
			}
			suAt++
		}
		su := r[suAt:]
		switch n {
		case 0, 1:
			if lenID != 1 || rawID[0] != byte(n) || r[25] != 2 || f.extent != extent || dataLen != size {
				return nil, fmt.Errorf("record %d is not the root's \".\"/\"..\": % x", n, r[:34])
			}
		default:
			if r[25] != 0 {
				return nil, fmt.Errorf("file flags %#x", r[25])
			}
			if int64(f.extent)*ss+int64(dataLen) > int64(len(img)) {
				return nil, fmt.Errorf("extent %d+%d beyond the volume", f.extent, dataLen)
			}
			f.data = img[int64(f.extent)*ss : int64(f.extent)*ss+int64(dataLen)]
			if joliet {
				if lenID%2 != 0 {
					return nil, errors.New("odd Joliet identifier")
				}
				f.id = utf16Decode(rawID)
			} else {
				f.id = string(rawID)
			}
		}
		if joliet {
			if len(su) > 1 || len(su) == 1 && su[0] != 0 {
				return nil, fmt.Errorf("system use data in a Joliet record: % x", su)
			}
		} else if err := readSUSP(img, su, n == 0, &f, v); err != nil {
			return nil, fmt.Errorf("record %d: %w", n, err)
		}
		if n == 0 && !joliet {
			v.rootMode = f.mode
		}
		if n >= 2 {
			if len(files) > 0 && !idLess(files[len(files)-1].id, f.id, joliet) {
				return nil, fmt.Errorf("%q sorts after %q", files[len(files)-1].id, f.id)
			}
			files = append(files, f)
		}
		n++
	}
	if n < 2 {
		return nil, errors.New("no \".\" and \"..\"")
	}
	return files, nil
}

// idLess is the directory order: Joliet by UCS-2 code units, primary by
// name then extension (ISO 9660 9.3).
func idLess(a, b string, joliet bool) bool {
	if joliet {
		return a < b
	}
	an, ae, _ := cutID(a)
	bn, be, _ := cutID(b)
	return an < bn || an == bn && ae < be
}

func cutID(id string) (name, ext string, ok bool) {
	id, ver, ok1 := strings.Cut(id, ";")
	name, ext, ok2 := strings.Cut(id, ".")
	return name, ext, ok1 && ok2 && ver == "1"
}

// readSUSP reads a record's system use entries, following a continuation.
func readSUSP(img []byte, su []byte, rootDot bool, f *readFile, v *readVolume) error {
	if rootDot && (len(su) < 7 || string(su[:2]) != "SP" || su[2] != 7 || su[4] != 0xBE || su[5] != 0xEF || su[6] != 0) {
		return fmt.Errorf("the root's \".\" does not start with SP: % x", su)
	}
	seen := map[string]bool{}
	for area := 0; ; area++ {
		var next []byte
		for len(su) >= 4 {
			sig, l := string(su[:2]), int(su[2])
			if l < 4 || l > len(su) || su[3] != 1 {
				return fmt.Errorf("SUSP entry %q of %d bytes (%d left)", sig, l, len(su))
			}
			e := su[4:l]
			su = su[l:]
			seen[sig] = true
			switch sig {
			case "SP", "RR":
			case "ST":
				su = nil
			case "CE":
				if len(e) != 24 {
					return errors.New("CE of the wrong length")
				}
				at, err1 := le32be32(e)
				off, err2 := le32be32(e[8:])
				n, err3 := le32be32(e[16:])
				if err := errors.Join(err1, err2, err3); err != nil {
					return err
				}
				if int64(at)*2048+int64(off)+int64(n) > int64(len(img)) || off+n > 2048 {
					return errors.New("CE beyond the volume")
				}
				next = img[int64(at)*2048+int64(off) : int64(at)*2048+int64(off)+int64(n)]
			case "ER":
				if len(e) < 4 || 4+int(e[0])+int(e[1])+int(e[2]) != len(e) {
					return errors.New("malformed ER")
				}
				v.rrID = string(e[4 : 4+e[0]])
			case "NM":
				if len(e) < 1 || e[0] != 0 {
					return errors.New("NM with flags")
				}
				f.name += string(e[1:])
			case "PX":
				if len(e) != 32 {
					return fmt.Errorf("PX of %d bytes, want 36 (RRIP 1.09)", len(e)+4)
				}
				var errs [4]error
				f.mode, errs[0] = le32be32(e)
				f.nlink, errs[1] = le32be32(e[8:])
				f.uid, errs[2] = le32be32(e[16:])
				f.gid, errs[3] = le32be32(e[24:])
				if err := errors.Join(errs[:]...); err != nil {
					return err
				}
			case "TF":
				if len(e) < 1 || e[0]&0x80 != 0 || len(e) != 1+7*popcount(e[0]) {
					return errors.New("malformed TF")
				}
				for i := 1; i < len(e); i += 7 {
					f.tf = append(f.tf, [7]byte(e[i:i+7]))
				}
			default:
				return fmt.Errorf("unexpected SUSP entry %q", sig)
			}
		}
		if len(su) > 1 || len(su) == 1 && su[0] != 0 {
			return fmt.Errorf("%d stray bytes after the SUSP entries", len(su))
		}
		if next == nil || area > 0 {
			break
		}
		su = next
	}
	for _, sig := range []string{"RR", "PX", "TF"} {
		if !seen[sig] {
			return fmt.Errorf("no %s entry", sig)
		}
	}
	if rootDot && !seen["ER"] {
		return errors.New("no ER entry for the root")
	}
	return nil
}

func popcount(b byte) int {
	n := 0
	for ; b != 0; b &= b - 1 {
		n++
	}
	return n
}

func utf16Decode(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
