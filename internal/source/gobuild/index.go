package gobuild

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/labbake/labbake/internal/iox"
)

// ModuleFile is one file of a module proxy's layout that a build read:
// MODULE/@v/VERSION.info, .mod or .zip, MODULE in the proxy's case
// encoding (an upper-case letter is "!" and the letter in lower case).
type ModuleFile struct {
	Path   string // slash path relative to the proxy's root
	Digest string // the blob holding it
}

// maxIndex bounds an index: a large program (Kubernetes) reads a few
// hundred modules, three files each.
const maxIndex = 8 << 20

// Index is the list of module files of one go.sum: what the build reads
// from the module proxy, and what a file:// proxy made from the cache must
// serve.
type Index []ModuleFile

// Bytes renders the index: "DIGEST PATH" lines sorted by path.
func (x Index) Bytes() []byte {
	s := slices.Clone(x)
	slices.SortFunc(s, func(a, b ModuleFile) int { return strings.Compare(a.Path, b.Path) })
	var b bytes.Buffer
	for _, f := range s {
		fmt.Fprintf(&b, "%s %s\n", f.Digest, f.Path)
	}
	return b.Bytes()
}

// Digests are the blobs the index names, in its order.
func (x Index) Digests() []string {
	out := make([]string, len(x))
	for i, f := range x {
		out[i] = f.Digest
	}
	return out
}

// ParseIndex checks data as an index, strictly: what Bytes writes, each
// path a module proxy file (see ModuleFile) and each once. An index comes
// from the cache, maybe from a bundle: a path that would leave the proxy's
// root is refused.
func ParseIndex(data []byte) (Index, error) {
	if len(data) > maxIndex {
		return nil, fmt.Errorf("module index: %d bytes, more than %d", len(data), maxIndex)
	}
	if len(data) == 0 {
		return nil, errors.New("module index: empty")
	}
	if data[len(data)-1] != '\n' {
		return nil, errors.New("module index: the last line has no newline")
	}
	var x Index
	for i, line := range strings.Split(string(data[:len(data)-1]), "\n") {
		d, p, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("module index: line %d: want DIGEST PATH", i+1)
		}
		if _, err := iox.ParseDigest(d); err != nil {
			return nil, fmt.Errorf("module index: line %d: %q is not a sha256 digest", i+1, d)
		}
		if err := checkProxyPath(p); err != nil {
			return nil, fmt.Errorf("module index: line %d: %w", i+1, err)
		}
		if len(x) > 0 && x[len(x)-1].Path >= p {
			return nil, fmt.Errorf("module index: line %d: %q is out of order or repeated", i+1, p)
		}
		x = append(x, ModuleFile{Path: p, Digest: d})
	}
	return x, nil
}

// checkProxyPath checks p is ESCAPED-MODULE/@v/VERSION.(info|mod|zip).
func checkProxyPath(p string) error {
	dir, file, ok := strings.Cut(p, "/@v/")
	if !ok || !cleanRel(p) || strings.Contains(file, "/") || strings.Contains(dir, "@") {
		return fmt.Errorf("%q is not MODULE/@v/VERSION.EXT", p)
	}
	ext := filepath.Ext(file)
	if ext != ".info" && ext != ".mod" && ext != ".zip" {
		return fmt.Errorf("%q: not a .info, .mod or .zip file", p)
	}
	if msg := checkVersion(strings.TrimSuffix(file, ext)); msg != "" {
		return fmt.Errorf("%q: %s", p, msg)
	}
	mod, err := unescape(dir)
	if err != nil {
		return fmt.Errorf("%q: %w", p, err)
	}
	if msg := checkModule(mod); msg != "" {
		return fmt.Errorf("%q: %s", p, msg)
	}
	return nil
}

// escape is the module proxy's case encoding of a module path.
func escape(p string) string {
	var b strings.Builder
	for _, r := range p {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// unescape reverses escape; upper case letters are not allowed in an
// escaped path.
func unescape(p string) (string, error) {
	var b strings.Builder
	bang := false
	for _, r := range p {
		switch {
		case bang && 'a' <= r && r <= 'z':
			b.WriteRune(r - ('a' - 'A'))
			bang = false
		case bang:
			return "", errors.New("\"!\" not followed by a lower-case letter")
		case r == '!':
			bang = true
		case 'A' <= r && r <= 'Z':
			return "", errors.New("upper-case letter in an escaped module path")
		default:
			b.WriteRune(r)
		}
	}
	if bang {
		return "", errors.New("\"!\" at the end")
	}
	return b.String(), nil
}

// harvest lists the module files under a GOMODCACHE's cache/download dir:
// every MODULE/@v/VERSION.info, .mod and .zip (not the checksum database's
// tiles, list files, locks or partial downloads), as path → file.
func harvest(download string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(download, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(download, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "sumdb" {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || checkProxyPath(rel) != nil {
			return nil
		}
		out[rel] = p
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the downloaded modules: %w", err)
	}
	return out, nil
}

// writeProxy lays the index out as a module proxy under dir, each file a
// symlink to path(digest) (a cache blob, verified by path).
func writeProxy(dir string, x Index, path func(ModuleFile) (string, error)) error {
	for _, f := range x {
		src, err := path(f)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(src, dst); err != nil {
			return err
		}
	}
	return nil
}

// moduleOf names the module and version of a proxy file, for errors.
func moduleOf(p string) string {
	dir, file, _ := strings.Cut(p, "/@v/")
	mod, err := unescape(dir)
	if err != nil {
		mod = dir
	}
	return mod + "@" + strings.TrimSuffix(file, filepath.Ext(file))
}
