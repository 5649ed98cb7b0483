package recipe

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// utf16Problem names the encoding of b when it is UTF-16 or UTF-32
// (a byte order mark, or the NUL bytes ASCII text has in them), which
// labbake does not read: templates and YAML are read as UTF-8. It
// returns "" for anything else.
func utf16Problem(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte{0xFF, 0xFE, 0, 0}), bytes.HasPrefix(b, []byte{0, 0, 0xFE, 0xFF}):
		return "UTF-32 (it starts with a byte order mark)"
	case bytes.HasPrefix(b, []byte{0xFF, 0xFE}), bytes.HasPrefix(b, []byte{0xFE, 0xFF}):
		return "UTF-16 (it starts with a byte order mark)"
	case len(b) >= 2 && (b[0] == 0) != (b[1] == 0):
		return "UTF-16 (every other byte is NUL)"
	}
	return ""
}

// textProblem finds the first byte of b that a YAML file may not hold:
// invalid UTF-8, or a control character YAML forbids (all below U+0020
// but tab, line feed and carriage return; U+007F to U+009F but U+0085;
// U+FFFE and U+FFFF). It returns its offset and what it is, or -1.
func textProblem(b []byte) (int, string) {
	for off := 0; off < len(b); {
		r, size := utf8.DecodeRune(b[off:])
		switch {
		case r == utf8.RuneError && size == 1:
			return off, fmt.Sprintf("invalid UTF-8 (byte 0x%02X): save the file as UTF-8", b[off])
		case r < 0x20 && r != '\t' && r != '\n' && r != '\r',
			r >= 0x7F && r <= 0x9F && r != 0x85,
			r == 0xFFFE || r == 0xFFFF:
			return off, fmt.Sprintf("control character %U is not allowed in YAML", r)
		}
		off += size
	}
	return -1, ""
}

// lineCol is the line and column (from 1, in characters) of byte offset
// off of b.
func lineCol(b []byte, off int) (line, col int) {
	before := b[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	start := bytes.LastIndexByte(before, '\n') + 1
	// Invalid bytes count one column each, as utf8.RuneCount does.
	return line, utf8.RuneCount(before[start:]) + 1
}

// checkText reports the first encoding problem of a YAML file: in its
// template source src, where it is exact, else in out, the text src
// rendered to (a template can make bytes its source does not hold),
// mapped back to the source. It returns false when it found one.
func (d *decoder) checkText(f *srcFile, src, out []byte) bool {
	if what := utf16Problem(src); what != "" {
		d.add(Pos{File: f.name, Line: 1, Col: 1}, "", "the file is %s: labbake reads UTF-8, save it as UTF-8", what)
		return false
	}
	if off, what := textProblem(src); off >= 0 {
		line, col := lineCol(src, off)
		d.add(Pos{File: f.name, Line: line, Col: col}, "", "%s", what)
		return false
	}
	if off, what := textProblem(out); off >= 0 {
		line, col := lineCol(out, off)
		what, _, _ = strings.Cut(what, ":")
		d.add(f.lines.pos(f.name, line, col), "", "the template's output holds %s", what)
		return false
	}
	return true
}
