package source

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/labbake/labbake/internal/iox"
)

// MaxChecksumFile is the largest checksum file Checksum reads.
const MaxChecksumFile = 1 << 20

// Checksum reads the checksum file at url (rewritten by the mirrors) and
// returns the "sha256:<hex>" digest it gives for fileName. See
// ParseChecksums for the formats and Sums.Lookup for how names match.
func (f *Fetcher) Checksum(ctx context.Context, url, fileName string) (string, error) {
	if f.Offline {
		return "", fmt.Errorf("checksum %s: %w", url, iox.ErrOffline)
	}
	target, where, err := f.target(url)
	if err != nil {
		return "", fmt.Errorf("checksum %s: %w", where, err)
	}
	var data []byte
	err = f.get(ctx, target, func(b *body, total int64, _ int) error {
		if total > MaxChecksumFile {
			return fmt.Errorf("the file has %d bytes, more than the %d a checksum file may have", total, MaxChecksumFile)
		}
		d, err := io.ReadAll(io.LimitReader(b, MaxChecksumFile+1))
		if err != nil {
			return err
		}
		if len(d) > MaxChecksumFile {
			return fmt.Errorf("the file has more than the %d bytes a checksum file may have", MaxChecksumFile)
		}
		data = d
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("checksum %s: %w", where, err)
	}
	d, err := ParseChecksums(data).Lookup(fileName)
	if err != nil {
		return "", fmt.Errorf("checksum %s: %w", where, err)
	}
	return d, nil
}

// Sum is one line of a checksum file.
type Sum struct {
	Name   string // as written in the file; "" for a file holding a lone sum
	Digest string // "sha256:<64 lowercase hex digits>"
}

// Sums is what a checksum file holds.
type Sums struct {
	Sums []Sum
	// Skipped counts the lines that are neither blank, nor comments, nor
	// sha256 sums: other algorithms, PGP armor, garbage.
	Skipped int
}

// ParseChecksums reads a checksum file. It understands
//
//	HEX  NAME              sha256sum, text mode
//	HEX *NAME              sha256sum, binary mode
//	HEX NAME               one space, as some projects write it
//	\HEX  NA\\ME\n         sha256sum's escaped names (\\, \n, \r)
//	SHA256 (NAME) = HEX    BSD style, sha256sum --tag
//	SHA256(NAME)= HEX      OpenSSL style
//	HEX                    a file holding a lone sum (its only line)
//	HEX  -                 the same, as sha256sum <FILE writes it
//
// where HEX is 64 hex digits in either case. Blank lines and lines starting
// with # are ignored; any other line (another algorithm's sum, the armor
// of a PGP-signed file) is skipped and counted. CRLF line ends are fine.
func ParseChecksums(data []byte) Sums {
	var s Sums
	var lone []string
	lines := 0
	for line := range bytes.Lines(data) {
		l := strings.TrimRight(string(line), "\n")
		l = strings.TrimSuffix(l, "\r")
		l = strings.TrimLeft(l, " \t")
		if strings.TrimSpace(l) == "" || l[0] == '#' {
			continue
		}
		lines++
		if h, ok := loneHex(l); ok {
			lone = append(lone, h)
			continue
		}
		if sum, ok := parseSumLine(l); ok {
			s.Sums = append(s.Sums, sum)
			continue
		}
		s.Skipped++
	}
	if lines == 1 && len(lone) == 1 {
		s.Sums = []Sum{{Digest: "sha256:" + lone[0]}}
		return s
	}
	if lines == 1 && len(s.Sums) == 1 && s.Sums[0].Name == "-" {
		s.Sums[0].Name = "" // sha256sum <file: a lone sum
	}
	s.Skipped += len(lone)
	return s
}

// loneHex reports whether l is a sum and nothing else.
func loneHex(l string) (string, bool) {
	l = strings.TrimRight(l, " \t")
	if !isHex(l, 64) {
		return "", false
	}
	return strings.ToLower(l), true
}

// parseSumLine reads a line in sha256sum, BSD or OpenSSL style.
func parseSumLine(l string) (Sum, bool) {
	if len(l) >= 6 && strings.EqualFold(l[:6], "sha256") {
		return parseBSD(l[6:])
	}
	escaped := l[0] == '\\'
	if escaped {
		l = l[1:]
	}
	if len(l) < 66 || !isHex(l[:64], 64) || l[64] != ' ' && l[64] != '\t' {
		return Sum{}, false
	}
	name := l[65:]
	if name != "" && (name[0] == ' ' || name[0] == '*') {
		name = name[1:]
	}
	if escaped {
		var ok bool
		if name, ok = unescapeName(name); !ok {
			return Sum{}, false
		}
	}
	if strings.TrimSpace(name) == "" {
		return Sum{}, false
	}
	return Sum{Name: name, Digest: "sha256:" + strings.ToLower(l[:64])}, true
}

// parseBSD reads what follows "SHA256" in " (NAME) = HEX" or "(NAME)= HEX".
func parseBSD(l string) (Sum, bool) {
	l = strings.TrimLeft(l, " ")
	i := strings.LastIndexByte(l, ')')
	if !strings.HasPrefix(l, "(") || i < 1 {
		return Sum{}, false
	}
	name := l[1:i]
	h, ok := strings.CutPrefix(strings.TrimLeft(l[i+1:], " "), "=")
	h = strings.TrimSpace(h)
	if !ok || strings.TrimSpace(name) == "" || !isHex(h, 64) {
		return Sum{}, false
	}
	return Sum{Name: name, Digest: "sha256:" + strings.ToLower(h)}, true
}

// unescapeName undoes sha256sum's escaping of \ and newlines in names.
func unescapeName(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i++; i == len(s) {
			return "", false
		}
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		default:
			return "", false
		}
	}
	return b.String(), true
}

// Lookup returns the digest the file gives for fileName: the sum whose name
// is fileName (a leading "./" ignored on both), else the one whose
// name has fileName's base name (a file may list "bin/linux/amd64/kubectl");
// a lone sum matches any name. Base names that match several different
// sums are an error, and so is a name the file lacks: the error lists the
// names it has.
func (s Sums) Lookup(fileName string) (string, error) {
	if len(s.Sums) == 1 && s.Sums[0].Name == "" {
		return s.Sums[0].Digest, nil
	}
	want := strings.TrimPrefix(fileName, "./")
	for _, sum := range s.Sums {
		if strings.TrimPrefix(sum.Name, "./") == want {
			return sum.Digest, nil
		}
	}
	base := path.Base(fileName)
	var found []Sum
	for _, sum := range s.Sums {
		if path.Base(sum.Name) == base && !slices.ContainsFunc(found, func(f Sum) bool { return f.Digest == sum.Digest }) {
			found = append(found, sum)
		}
	}
	switch {
	case len(found) == 1:
		return found[0].Digest, nil
	case len(found) > 1:
		names := make([]string, len(found))
		for i, f := range found {
			names[i] = f.Name
		}
		return "", fmt.Errorf("%q is ambiguous: the file has different sums for %s", fileName, quoteList(names, 10))
	}
	skipped := ""
	switch {
	case s.Skipped == 1:
		skipped = " (and a line that is not a sha256 sum)"
	case s.Skipped > 1:
		skipped = fmt.Sprintf(" (and %d lines that are not sha256 sums)", s.Skipped)
	}
	if len(s.Sums) == 0 {
		return "", fmt.Errorf("no sha256 sum for %q: the file has no sha256 sums%s", fileName, skipped)
	}
	names := make([]string, len(s.Sums))
	for i, sum := range s.Sums {
		names[i] = sum.Name
	}
	return "", fmt.Errorf("no sha256 sum for %q: the file has %s%s", fileName, quoteList(names, 20), skipped)
}

// quoteList formats names as `"a", "b", "c"`, at most n of them.
func quoteList(names []string, n int) string {
	var b strings.Builder
	for i, name := range names {
		if i == n {
			fmt.Fprintf(&b, " and %d more", len(names)-n)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", name)
	}
	return b.String()
}
