package secrets

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/labbake/labbake/builders/dpkg"
	"github.com/labbake/labbake/builders/tree"
)

// Finding is a file of the image that holds private key material.
type Finding struct {
	// Path is the file's absolute path in the image.
	Path string
	// Kind says what was found, e.g. "OpenSSH private key".
	Kind string
	// Origin is the build stage that put the file there (tree.Entry.Origin),
	// e.g. "layers[0] layers/keys.tar"; empty when the tree has no label.
	Origin string
	// Package is the Debian package whose file list (the image's
	// /var/lib/dpkg/info/*.list) names the path, or "" (several are joined
	// with ", ").
	Package string
}

func (f Finding) String() string {
	var from []string
	if f.Origin != "" {
		from = append(from, "from "+f.Origin)
	}
	if f.Package != "" {
		from = append(from, "package "+f.Package)
	}
	s := f.Path + ": " + f.Kind
	if len(from) > 0 {
		s += " (" + strings.Join(from, "; ") + ")"
	}
	return s
}

// Error is returned by Scan when files hold private key material; match it
// with errors.As.
type Error struct {
	Findings []Finding
}

func (e *Error) Error() string {
	var b strings.Builder
	n := len(e.Findings)
	if n == 1 {
		b.WriteString("the image would hold private key material (1 file):\n")
	} else {
		fmt.Fprintf(&b, "the image would hold private key material (%d files):\n", n)
	}
	for _, f := range e.Findings {
		b.WriteString("  " + f.String() + "\n")
	}
	b.WriteString("an image is shared by every machine and may be published: give machines their secrets through their seeds;\n")
	b.WriteString("if a file is meant to be in the image (public test data), list its path under secrets.allow in the recipe")
	return b.String()
}

// Scan reads every regular file of t and reports those that hold private
// key material (see detect.go for what counts), sorted by path. Files whose
// absolute path — or the path of a hardlink to them — matches an entry of
// allow are skipped; an entry is an absolute clean path or a path.Match
// pattern ("/usr/share/doc/*/examples/*.pem"); a plain path is also matched
// after resolving it through the tree's symlinks (/lib/x → /usr/lib/x).
//
// When there are findings, Scan returns them and an *Error listing them; the
// Package of each is looked up in the tree's dpkg database then (only then:
// it reads every *.list). An unreadable file is an error: nothing is
// assumed clean. Contents are streamed from Blob.Path in windows of 1 MiB
// (plus an overlap that holds any key whole), holes of sparse files are
// skipped, and the files are shared among GOMAXPROCS workers; memory does
// not grow with the files' sizes. Compressed files (.gz man pages, archives)
// are not looked into.
func Scan(ctx context.Context, t *tree.Tree, allow []string) ([]Finding, error) {
	found, _, err := ScanKnown(ctx, t, allow, nil)
	return found, err
}

// ScanKnown is Scan that does not read the files whose Blob.Digest is in
// clean (contents an earlier scan found to hold no key: what a file holds
// is all that decides), and also returns the digests of the contents it
// read and found clean.
func ScanKnown(ctx context.Context, t *tree.Tree, allow []string, clean map[string]bool) ([]Finding, []string, error) {
	al, err := newAllower(t, allow)
	if err != nil {
		return nil, nil, err
	}
	entries := t.Entries()
	aliases := make(map[string][]string) // regular path -> hardlink paths
	for _, e := range entries {
		if e.Type == tree.Hardlink {
			aliases[e.Linkname] = append(aliases[e.Linkname], e.Path)
		}
	}
	var files []tree.Entry
	for _, e := range entries {
		if e.Type != tree.Regular || e.Content == nil || e.Content.Size < minKeySize || (e.Content.Digest != "" && clean[e.Content.Digest]) {
			continue
		}
		if al.allowed(e.Path, aliases[e.Path]) {
			continue
		}
		files = append(files, e)
	}
	kinds, err := scanFiles(ctx, files)
	if err != nil {
		return nil, nil, err
	}
	var found []Finding
	var scanned []string
	for i, k := range kinds {
		if k != "" {
			found = append(found, Finding{Path: "/" + files[i].Path, Kind: k, Origin: files[i].Origin})
		} else if d := files[i].Content.Digest; d != "" {
			scanned = append(scanned, d)
		}
	}
	if len(found) == 0 {
		return nil, scanned, nil
	}
	if err := lookupPackages(t, entries, found); err != nil {
		return nil, nil, err
	}
	return found, scanned, &Error{Findings: found}
}

// minKeySize is the size under which no key format fits (a DER Ed25519
// PKCS#8 key is 48 bytes).
const minKeySize = 40

// scanFiles returns the kind found in each file ("" for none). The files
// are handed to the workers biggest first, so one large file does not end
// the scan alone; the result does not depend on the order.
func scanFiles(ctx context.Context, files []tree.Entry) ([]string, error) {
	kinds := make([]string, len(files))
	errs := make([]error, len(files))
	order := make([]int, len(files))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(files[b].Content.Size, files[a].Content.Size)
	})
	jobs := make(chan int)
	workers := min(runtime.GOMAXPROCS(0), max(1, len(files)))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := newScanner()
			for i := range jobs {
				if err := ctx.Err(); err != nil {
					errs[i] = err
					continue
				}
				kinds[i], errs[i] = s.file(ctx, files[i].Content.Path)
			}
		}()
	}
	for _, i := range order {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("secrets: reading /%s: %w", files[i].Path, err)
		}
	}
	return kinds, nil
}

const (
	// window is how many new bytes each read brings.
	window = 1 << 20
	// overlap is what a window keeps of the previous one: any key (at most
	// maxBefore bytes before its anchor and maxKey after) lies whole in
	// some window.
	overlap = maxBefore + maxKey + 64
)

// scanner reads files through one reusable buffer.
type scanner struct {
	buf []byte
}

func newScanner() *scanner { return &scanner{buf: make([]byte, overlap+window)} }

// file returns the kind of the first key found in the host file p, or "".
func (s *scanner) file(ctx context.Context, p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", p)
	}
	size := st.Size()
	// Executables and shared libraries (ELF) are not scanned: they embed
	// well-known keys for self-tests and examples (libgnutls does), which
	// no recipe could usefully list, and a key compiled into a program is
	// not the configuration mistake this scan is for.
	var magic [4]byte
	if n, _ := f.ReadAt(magic[:], 0); n == 4 && string(magic[:]) == "\x7fELF" {
		return "", nil
	}
	for off := int64(0); off < size; {
		start, end, err := dataSegment(f, off, size)
		if err != nil {
			return "", err
		}
		if start >= size {
			break
		}
		if _, err := f.Seek(start, io.SeekStart); err != nil {
			return "", err
		}
		k, err := s.segment(ctx, io.LimitReader(f, end-start), start == 0 && end == size)
		if k != "" || err != nil {
			return k, err
		}
		off = end
	}
	return "", nil
}

// dataSegment returns the next range of f at or after off that may hold
// data: holes of sparse files (all zeros) are skipped. Without SEEK_DATA
// support the whole rest is one segment.
func dataSegment(f *os.File, off, size int64) (start, end int64, err error) {
	fd := int(f.Fd())
	start, err = unix.Seek(fd, off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return size, size, nil // only a hole is left
	}
	if err != nil {
		return off, size, nil
	}
	end, err = unix.Seek(fd, start, unix.SEEK_HOLE)
	if err != nil || end > size {
		end = size
	}
	return start, end, nil
}

// segment scans r window by window; whole says r is the whole file.
func (s *scanner) segment(ctx context.Context, r io.Reader, whole bool) (string, error) {
	n, err := io.ReadFull(r, s.buf)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return detect(s.buf[:n], whole), nil
	case err != nil:
		return "", err
	}
	for {
		if k := detect(s.buf[:n], false); k != "" {
			return k, nil
		}
		if err := ctx.Err(); err != nil {
			return "", err
		}
		copy(s.buf, s.buf[n-overlap:n])
		m, err := io.ReadFull(r, s.buf[overlap:])
		if m == 0 && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			return "", nil
		}
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return "", err
		}
		n = overlap + m
		if err != nil { // the last, short window
			return detect(s.buf[:n], false), nil
		}
	}
}

// allower matches paths against a recipe's allow list.
type allower struct {
	patterns []string
	resolved map[string]bool // plain entries resolved in the tree, "/"-rooted
}

func newAllower(t *tree.Tree, allow []string) (*allower, error) {
	a := &allower{resolved: make(map[string]bool)}
	for _, p := range allow {
		if !strings.HasPrefix(p, "/") || path.Clean(p) != p {
			return nil, fmt.Errorf("secrets.allow: %q is not an absolute clean path", p)
		}
		if _, err := path.Match(p, "/"); err != nil {
			return nil, fmt.Errorf("secrets.allow: %q: %w", p, err)
		}
		a.patterns = append(a.patterns, p)
		if !strings.ContainsAny(p, `*?[\`) {
			if r, err := t.Resolve(p); err == nil {
				a.resolved["/"+r] = true
			}
		}
	}
	return a, nil
}

// allowed reports whether the regular file p (tree form) or one of its
// hardlinks is allowed.
func (a *allower) allowed(p string, links []string) bool {
	if len(a.patterns) == 0 {
		return false
	}
	for _, q := range append([]string{p}, links...) {
		abs := "/" + q
		if a.resolved[abs] {
			return true
		}
		for _, pat := range a.patterns {
			if ok, _ := path.Match(pat, abs); ok {
				return true
			}
		}
	}
	return false
}

// lookupPackages sets the Package of each finding from the tree's dpkg
// file lists. A listed path is compared as written and, when its base name
// is one of the findings', after resolving it through the tree (a package
// may list /lib/x for /usr/lib/x on a merged-/usr system).
func lookupPackages(t *tree.Tree, entries []tree.Entry, found []Finding) error {
	info, ok := dpkg.ResolveInfoDir(t)
	if !ok {
		return nil // no usable dpkg database: nothing to name
	}
	want := make(map[string]int, len(found)) // "/"+canonical path -> finding
	bases := make(map[string]bool, len(found))
	for i, f := range found {
		want[f.Path] = i
		bases[path.Base(f.Path)] = true
	}
	owners := make([][]string, len(found))
	for _, e := range entries {
		dir, base := path.Split(e.Path)
		if dir != info+"/" || !strings.HasSuffix(base, ".list") || e.Type != tree.Regular {
			continue
		}
		pkg := strings.TrimSuffix(base, ".list")
		f, err := os.Open(e.Content.Path)
		if err != nil {
			return fmt.Errorf("secrets: reading /%s: %w", e.Path, err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			i, ok := want[line]
			if !ok && bases[path.Base(line)] {
				if r, err := t.Resolve(line); err == nil {
					i, ok = want["/"+r]
				}
			}
			if ok && !slices.Contains(owners[i], pkg) {
				owners[i] = append(owners[i], pkg)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return fmt.Errorf("secrets: reading /%s: %w", e.Path, err)
		}
	}
	for i := range found {
		slices.Sort(owners[i])
		found[i].Package = strings.Join(owners[i], ", ")
	}
	return nil
}
