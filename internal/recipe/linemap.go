package recipe

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// lineMap maps a line and column of a template's rendered text back to the
// template source, so that a YAML problem found in the rendered text is
// reported where the user wrote it.
//
// How: the rendered lines are aligned to the source lines with a weighted
// longest common subsequence (LCS), the classic line diff. A rendered line
// that is identical to a source line scores 2; one that fits the "skeleton"
// of a source line holding template actions scores 1. The skeleton of
// `    content: "hello {{ .lab.name }}\n"` is the literal text around the
// actions, `    content: "hello ` … `\n"`, and a rendered line fits it when
// it starts with the first piece, ends with the last and holds the others in
// order (trim markers {{- and -}} are honoured within the line). A skeleton
// with no literal text at all fits nothing, so a line like
// `{{- range .nodes }}` is never paired with an arbitrary output line.
// Identical leading and trailing lines are paired first, so the quadratic
// table is built only for the part in between; when that is still larger
// than maxLCSCells a greedy in-order match (nearest fitting source line
// within greedyWindow lines ahead) is used instead. The alignment is made
// only when a position is first asked for.
//
// A rendered line left unpaired (e.g. the second and later iterations of a
// range, which the LCS cannot pair again) is given the nearest source line,
// at or up to backWindow lines before the source line of the nearest
// preceding paired line, that it is identical to or fits: the range body.
// When there is none it gets the source line of the nearest preceding paired
// line itself (the first line when there is none) and keeps its column.
//
// A rendered line paired with a source line keeps its column when it is
// identical; when it fits a skeleton its column is moved to the same place
// in the literal text, or to the `{{` of the action whose output holds it.
type lineMap struct {
	srcText  []byte
	outText  []byte
	built    bool
	identity bool
	src      []string
	out      []string
	pats     []*linePattern // per source line; nil when it has no action
	to       []int          // rendered line index → source line index
	kind     []matchKind    // how each rendered line was paired
}

type matchKind uint8

const (
	unpaired matchKind = iota
	fitsPattern
	identical
)

const (
	maxLCSCells  = 1 << 21
	greedyWindow = 256
	backWindow   = 32
)

// newLineMap returns the map of out, rendered from src. The alignment is
// only computed when a position is first asked for: most renders have no
// problem to report.
func newLineMap(src, out []byte) *lineMap {
	return &lineMap{srcText: src, outText: out}
}

func (m *lineMap) build() {
	m.built = true
	if bytes.Equal(m.srcText, m.outText) {
		m.identity = true
		return
	}
	m.src = strings.Split(string(m.srcText), "\n")
	m.out = strings.Split(string(m.outText), "\n")
	m.pats = make([]*linePattern, len(m.src))
	for i, l := range m.src {
		if strings.Contains(l, "{{") {
			m.pats[i] = parsePattern(l)
		}
	}
	m.to = make([]int, len(m.out))
	m.kind = make([]matchKind, len(m.out))
	m.align()
	last := 0
	for i := range m.to {
		if m.kind[i] != unpaired {
			last = m.to[i]
			continue
		}
		m.to[i] = last
		// A later iteration of a range body: pair it with the nearest
		// source line at or before the last paired one that it fits.
		for j := last; j >= 0 && j > last-backWindow; j-- {
			if w := m.weight(i, j); w > 0 {
				m.to[i] = j
				m.kind[i] = kindOf(w)
				break
			}
		}
	}
}

func kindOf(w uint8) matchKind {
	if w == 2 {
		return identical
	}
	return fitsPattern
}

// weight scores pairing rendered line i with source line j.
func (m *lineMap) weight(i, j int) uint8 {
	if m.out[i] == m.src[j] {
		return 2
	}
	if p := m.pats[j]; p != nil && p.matchable && p.match(m.out[i], nil) {
		return 1
	}
	return 0
}

func (m *lineMap) pair(i, j int, w uint8) {
	m.to[i] = j
	m.kind[i] = kindOf(w)
}

func (m *lineMap) align() {
	n, k := len(m.out), len(m.src)
	lo := 0
	for lo < n && lo < k && m.out[lo] == m.src[lo] {
		m.pair(lo, lo, 2)
		lo++
	}
	hiO, hiS := n, k
	for hiO > lo && hiS > lo && m.out[hiO-1] == m.src[hiS-1] {
		hiO--
		hiS--
		m.pair(hiO, hiS, 2)
	}
	a, b := hiO-lo, hiS-lo
	if a == 0 || b == 0 {
		return
	}
	if (a+1)*(b+1) > maxLCSCells {
		m.greedy(lo, hiO, lo, hiS)
		return
	}
	// dp[i*W+j] is the best score aligning out[lo+i:hiO] with src[lo+j:hiS].
	W := b + 1
	dp := make([]int32, (a+1)*W)
	ws := make([]uint8, a*b)
	for i := a - 1; i >= 0; i-- {
		for j := b - 1; j >= 0; j-- {
			w := m.weight(lo+i, lo+j)
			ws[i*b+j] = w
			best := max(dp[(i+1)*W+j], dp[i*W+j+1])
			if w > 0 {
				best = max(best, int32(w)+dp[(i+1)*W+j+1])
			}
			dp[i*W+j] = best
		}
	}
	for i, j := 0, 0; i < a && j < b; {
		if w := ws[i*b+j]; w > 0 && dp[i*W+j] == int32(w)+dp[(i+1)*W+j+1] {
			m.pair(lo+i, lo+j, w)
			i++
			j++
		} else if dp[i*W+j+1] >= dp[(i+1)*W+j] {
			// On a tie skip the source line, so that a rendered line
			// pairs with the earliest source line it can.
			j++
		} else {
			i++
		}
	}
}

func (m *lineMap) greedy(oLo, oHi, sLo, sHi int) {
	j := sLo
	for i := oLo; i < oHi && j < sHi; i++ {
		best, bw := -1, uint8(0)
		for s := j; s < min(sHi, j+greedyWindow); s++ {
			w := m.weight(i, s)
			if w == 2 {
				best, bw = s, w
				break
			}
			if w == 1 && best < 0 {
				best, bw = s, w
			}
		}
		if best >= 0 {
			m.pair(i, best, bw)
			j = best + 1
		}
	}
}

// pos returns the source position of line and column (from 1) of the
// rendered text of file.
func (m *lineMap) pos(file string, line, col int) Pos {
	line = max(line, 1)
	col = max(col, 1)
	if m != nil && !m.built {
		m.build()
	}
	if m == nil || m.identity {
		return Pos{File: file, Line: line, Col: col}
	}
	i := min(line-1, len(m.to)-1)
	j := m.to[i]
	if m.kind[i] == fitsPattern {
		col = m.pats[j].mapCol(m.out[i], m.src[j], col)
	}
	return Pos{File: file, Line: j + 1, Col: col}
}

// linePattern is the skeleton of a source line holding template actions:
// literal pieces with an action between each two.
type linePattern struct {
	pieces    []string
	offs      []int // byte offset of each piece in the source line
	actions   []int // byte offset of the "{{" of the action after each piece
	open      bool  // the line ends inside an action
	matchable bool  // some piece is not empty
}

func parsePattern(line string) *linePattern {
	p := &linePattern{}
	pos, trimLeft := 0, false
	for {
		k := strings.Index(line[pos:], "{{")
		if k < 0 {
			p.addPiece(line[pos:], pos, trimLeft, false)
			break
		}
		start := pos + k
		trimRight := len(line) > start+3 && line[start+2] == '-' && isSpace(line[start+3])
		p.addPiece(line[pos:start], pos, trimLeft, trimRight)
		p.actions = append(p.actions, start)
		e := strings.Index(line[start+2:], "}}")
		if e < 0 {
			p.open = true
			break
		}
		end := start + 2 + e
		trimLeft = end-2 >= start+2 && line[end-1] == '-' && isSpace(line[end-2])
		pos = end + 2
	}
	for _, s := range p.pieces {
		if s != "" {
			p.matchable = true
		}
	}
	return p
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func (p *linePattern) addPiece(text string, off int, trimLeading, trimTrailing bool) {
	if trimLeading {
		t := strings.TrimLeft(text, " \t\r")
		off += len(text) - len(t)
		text = t
	}
	if trimTrailing {
		text = strings.TrimRight(text, " \t\r")
	}
	p.pieces = append(p.pieces, text)
	p.offs = append(p.offs, off)
}

// match reports whether r fits the skeleton; when starts is not nil it
// receives the byte offset in r of each piece.
func (p *linePattern) match(r string, starts []int) bool {
	cur := 0
	last := len(p.pieces) - 1
	for k, piece := range p.pieces {
		var at int
		switch {
		case k == 0:
			if !strings.HasPrefix(r, piece) {
				return false
			}
			at = 0
		case k == last && !p.open:
			at = len(r) - len(piece)
			if at < cur || !strings.HasSuffix(r, piece) {
				return false
			}
		default:
			i := strings.Index(r[cur:], piece)
			if i < 0 {
				return false
			}
			at = cur + i
		}
		if starts != nil {
			starts[k] = at
		}
		cur = at + len(piece)
	}
	return true
}

// mapCol moves column col (from 1, in characters) of rendered line r to
// source line s.
func (p *linePattern) mapCol(r, s string, col int) int {
	starts := make([]int, len(p.pieces))
	if !p.match(r, starts) {
		return col
	}
	c := byteOffset(r, col-1)
	for k, piece := range p.pieces {
		if c < starts[k] {
			return runeCol(s, p.actions[k-1])
		}
		if c < starts[k]+len(piece) {
			return runeCol(s, p.offs[k]+c-starts[k])
		}
	}
	if p.open {
		return runeCol(s, p.actions[len(p.actions)-1])
	}
	last := len(p.pieces) - 1
	return runeCol(s, p.offs[last]+c-starts[last])
}

// byteOffset is the byte offset of the n-th character (from 0) of s; past
// the end it counts one byte a character.
func byteOffset(s string, n int) int {
	off := 0
	for i := 0; i < n; i++ {
		if off >= len(s) {
			return off + n - i
		}
		_, size := utf8.DecodeRuneInString(s[off:])
		off += size
	}
	return off
}

// runeCol is the column (from 1, in characters) of byte offset off of s.
func runeCol(s string, off int) int {
	off = max(off, 0)
	if off > len(s) {
		return utf8.RuneCountInString(s) + off - len(s) + 1
	}
	return utf8.RuneCountInString(s[:off]) + 1
}
