package dpkg

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/labbake/labbake/builders/tree"
)

// Where dpkg keeps its database, as tree paths.
const (
	// InfoDir holds each installed package's file list, PKG.list (or
	// PKG:ARCH.list for a package of several architectures).
	InfoDir = "var/lib/dpkg/info"
	// StatusFile lists every package dpkg knows and its state.
	StatusFile = "var/lib/dpkg/status"
)

// Package is one package of the status file whose files are in the tree.
type Package struct {
	Name         string
	Version      string
	Architecture string // amd64, all …; "" when the status file has none
	// Source and SourceVersion name the source package it was built from;
	// Source is Name and SourceVersion is Version when the status file
	// gives no Source field (as dpkg does for a package named like its
	// source), and SourceVersion is Version when Source has no version.
	Source        string
	SourceVersion string
}

// Paragraph is one paragraph of a control file: its fields by name as
// written (dpkg and the archive write them in their canonical case:
// Package, Version …). A field's continuation lines are joined to its first
// line with "\n", each without its leading space or tab.
type Paragraph map[string]string

// maxLine is the longest line ReadParagraphs reads.
const maxLine = 16 << 20

// ReadParagraphs calls fn with each paragraph of the control file r, in
// order, and stops at fn's first error, which it returns. Lines starting
// with "#" are comments. A line that is neither a field, a continuation nor
// blank is an error naming its line number.
func ReadParagraphs(r io.Reader, fn func(Paragraph) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	p := Paragraph{}
	last := "" // the field continuation lines go to
	flush := func() error {
		if len(p) == 0 {
			return nil
		}
		err := fn(p)
		p, last = Paragraph{}, ""
		return err
	}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		switch {
		case strings.TrimSpace(line) == "":
			if err := flush(); err != nil {
				return err
			}
		case line[0] == '#':
		case line[0] == ' ' || line[0] == '\t':
			if last == "" {
				return fmt.Errorf("line %d: a continuation line outside a field", n)
			}
			p[last] += "\n" + strings.TrimSpace(line)
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok || k == "" || strings.ContainsAny(k, " \t") {
				return fmt.Errorf("line %d: %q is not a field", n, line)
			}
			p[k], last = strings.TrimSpace(v), k
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return flush()
}

// ReadStatus reads a dpkg status file and returns the packages whose files
// are in place: every state but not-installed and config-files (installed,
// and those dpkg left unpacked, half-installed or half-configured, whose
// files are there all the same). A paragraph without a Status field counts
// as installed, and one without a Package field is skipped; Version and
// Architecture may be "". They are sorted by name, then architecture; a
// package listed twice for one architecture (which dpkg never writes)
// counts once, as first listed. Only a file that is not a control file is
// an error.
func ReadStatus(r io.Reader) ([]Package, error) {
	var out []Package
	err := ReadParagraphs(r, func(p Paragraph) error {
		if pkg, ok := statusPackage(p); ok {
			out = append(out, pkg)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b Package) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Architecture, b.Architecture))
	})
	return slices.CompactFunc(out, func(a, b Package) bool { return a.Name == b.Name && a.Architecture == b.Architecture }), nil
}

// statusPackage is the package a status paragraph describes, and whether
// its files are in place.
func statusPackage(p Paragraph) (Package, bool) {
	name := p["Package"]
	if name == "" {
		return Package{}, false
	}
	// Status is "want flag state", e.g. install ok installed.
	if state := strings.Fields(p["Status"]); len(state) > 0 {
		if s := state[len(state)-1]; s == "not-installed" || s == "config-files" {
			return Package{}, false
		}
	}
	pkg := Package{Name: name, Version: p["Version"], Architecture: p["Architecture"]}
	pkg.Source, pkg.SourceVersion = name, pkg.Version
	if src := p["Source"]; src != "" {
		s, v, ok := strings.Cut(src, " ")
		pkg.Source = s
		if v = strings.TrimSpace(v); ok && strings.HasPrefix(v, "(") && strings.HasSuffix(v, ")") {
			pkg.SourceVersion = strings.TrimSpace(v[1 : len(v)-1])
		}
	}
	return pkg, true
}

// Installed returns the packages of the tree's dpkg status file (see
// ReadStatus); none, and no error, when the tree has no status file.
// It reads that one file and nothing else.
func Installed(t *tree.Tree) ([]Package, error) {
	blob, ok := statusBlob(t)
	if !ok {
		return nil, nil
	}
	f, err := os.Open(blob)
	if err != nil {
		return nil, fmt.Errorf("dpkg: reading /%s: %w", StatusFile, err)
	}
	defer f.Close()
	pkgs, err := ReadStatus(f)
	if err != nil {
		return nil, fmt.Errorf("dpkg: reading /%s: %w", StatusFile, err)
	}
	return pkgs, nil
}

// statusBlob is the host file holding the tree's status file, and whether
// the tree has one (a regular file, or a hardlink to one, at StatusFile
// resolved through the tree's symlinks).
func statusBlob(t *tree.Tree) (string, bool) {
	p, err := t.Resolve(StatusFile)
	if err != nil {
		return "", false
	}
	e, ok := t.Get(p)
	if ok && e.Type == tree.Hardlink {
		e, ok = t.Get(e.Linkname)
	}
	if !ok || e.Type != tree.Regular || e.Content == nil {
		return "", false
	}
	return e.Content.Path, true
}

// ResolveInfoDir returns InfoDir resolved through the tree's symlinks (the
// path its file lists' entries have), and whether it resolves.
func ResolveInfoDir(t *tree.Tree) (string, bool) {
	p, err := t.Resolve(InfoDir)
	return p, err == nil
}
