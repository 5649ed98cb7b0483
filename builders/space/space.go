package space

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/labbake/labbake/builders/dpkg"
	"github.com/labbake/labbake/builders/tree"
)

// Defaults of [Options].
const (
	DefaultDepth    = 3  // /usr/lib/modules, /usr/local/bin, /var/lib/containerd
	DefaultDirs     = 25 // directories listed
	DefaultLargest  = 15 // files listed
	DefaultPackages = 25 // packages listed
)

// NoPackage names, in [Report.Packages], the files of a stage with a dpkg
// database that no package lists (the initramfs, udev's hwdb.bin, caches
// made by maintainer scripts …). No Debian package can have this name.
const NoPackage = "(no package)"

// Options say how much a [Report] lists. A zero field takes its default.
type Options struct {
	// Depth is how many path components a directory of Report.Dirs has at
	// most: every file counts in the directory its path has at that depth,
	// or in its own directory when that is shallower (/etc/passwd in /etc).
	Depth    int
	Dirs     int // how many directories Report.Dirs lists
	Largest  int // how many files Report.Largest lists
	Packages int // how many packages Report.Packages lists
}

func (o Options) withDefaults() Options {
	if o.Depth <= 0 {
		o.Depth = DefaultDepth
	}
	if o.Dirs <= 0 {
		o.Dirs = DefaultDirs
	}
	if o.Largest <= 0 {
		o.Largest = DefaultLargest
	}
	if o.Packages <= 0 {
		o.Packages = DefaultPackages
	}
	return o
}

// Report is what takes the space in a root file system: the bytes of its
// regular files' content, grouped several ways. Every list is sorted by
// Bytes (largest first), then by name; the lists that are cut at the
// Options' counts leave the smallest out (Bytes minus a list's sum is what
// it leaves out).
type Report struct {
	Bytes int64 `json:"bytes"` // content of every regular file, a hardlinked one once
	Files int   `json:"files"` // regular files, a hardlinked one once
	// Origins are the build stages the files came from (tree.Entry.Origin;
	// "-" for a file without one), all of them.
	Origins []Use `json:"origins"`
	// Depth is the Options' Depth the Dirs were grouped at.
	Depth int `json:"depth"`
	// Dirs are the largest directories at Depth (see Options.Depth): each
	// file counts in exactly one.
	Dirs []Use `json:"dirs"`
	// Packages are the files of the stages that brought a dpkg database
	// (/var/lib/dpkg/info/*.list) by the package that lists them, or
	// NoPackage. Empty when no stage did.
	Packages []Use `json:"packages,omitempty"`
	// Largest are the largest files.
	Largest []File `json:"largest"`
}

// Use is the space one group of files takes.
type Use struct {
	Name  string `json:"name"` // a stage, an absolute directory path or a package
	Bytes int64  `json:"bytes"`
	Files int    `json:"files"`
}

// File is one large file.
type File struct {
	Path    string `json:"path"` // absolute
	Bytes   int64  `json:"bytes"`
	Origin  string `json:"origin"`
	Package string `json:"package,omitempty"` // the dpkg package that lists it
}

// Measure reports what takes the space in t. It reads the files of t's
// dpkg databases (the *.list files) and nothing else.
func Measure(t *tree.Tree, o Options) (*Report, error) {
	o = o.withDefaults()
	info, ok := dpkg.ResolveInfoDir(t)
	if !ok {
		info = "" // no usable dpkg database
	}
	var (
		files = make([]file, 0, t.Len())
		lists []list
		paths = make(map[string]int32, t.Len()) // every entry: index in files, -1 when not regular
	)
	for e := range t.All() {
		if e.Type != tree.Regular {
			paths[e.Path] = -1
			continue
		}
		paths[e.Path] = int32(len(files))
		files = append(files, file{path: e.Path, size: e.Content.Size, origin: e.Origin})
		if dir, base := path.Split(e.Path); info != "" && dir == info+"/" && strings.HasSuffix(base, ".list") {
			lists = append(lists, list{pkg: strings.TrimSuffix(base, ".list"), origin: e.Origin, blob: e.Content.Path})
		}
	}
	if err := own(t, files, paths, lists); err != nil {
		return nil, fmt.Errorf("space: reading /%s/%w", info, err)
	}
	r := &Report{Depth: o.Depth}
	origins := map[string]*Use{}
	dirs := map[string]*Use{}
	pkgs := map[string]*Use{}
	top := make([]*file, 0, o.Largest+1)
	for i := range files {
		f := &files[i]
		r.Bytes += f.size
		r.Files++
		add(origins, cmp.Or(f.origin, "-"), f.size)
		add(dirs, dirAt(f.path, o.Depth), f.size)
		if f.pkg != "" {
			add(pkgs, f.pkg, f.size)
		}
		top = largest(top, f, o.Largest)
	}
	r.Origins = sorted(origins, 0)
	r.Dirs = sorted(dirs, o.Dirs)
	if len(lists) > 0 {
		r.Packages = sorted(pkgs, o.Packages)
	}
	r.Largest = make([]File, len(top))
	for i, f := range top {
		r.Largest[i] = File{Path: "/" + f.path, Bytes: f.size, Origin: cmp.Or(f.origin, "-"), Package: f.pkg}
	}
	return r, nil
}

func add(m map[string]*Use, name string, n int64) {
	u := m[name]
	if u == nil {
		u = &Use{Name: name}
		m[name] = u
	}
	u.Bytes += n
	u.Files++
}

// sorted returns the uses in m, largest first, then by name; at most limit
// of them unless limit is 0.
func sorted(m map[string]*Use, limit int) []Use {
	out := make([]Use, 0, len(m))
	for _, u := range m {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b Use) int {
		return cmp.Or(cmp.Compare(b.Bytes, a.Bytes), strings.Compare(a.Name, b.Name))
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// dirAt is the absolute path of the directory a file at p (a tree path)
// counts in: its first depth components, or its own directory when it has
// fewer than depth+1.
func dirAt(p string, depth int) string {
	end := -1
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			depth--
			if depth == 0 {
				return "/" + p[:i]
			}
			end = i
		}
	}
	if end < 0 {
		return "/"
	}
	return "/" + p[:end]
}

// file is a regular entry of the tree being measured.
type file struct {
	path   string // tree path
	size   int64
	origin string
	pkg    string // the dpkg package that lists it, NoPackage, or ""
}

// before orders files largest first, then by path.
func (f *file) before(g *file) bool {
	return f.size > g.size || f.size == g.size && f.path < g.path
}

// largest inserts f into top, the n largest files so far in order, when
// it is one of the n largest.
func largest(top []*file, f *file, n int) []*file {
	if len(top) == n && !f.before(top[n-1]) {
		return top
	}
	i, _ := slices.BinarySearchFunc(top, f, func(a, b *file) int {
		if a.before(b) {
			return -1
		}
		return 1
	})
	top = slices.Insert(top, i, f)
	if len(top) > n {
		top = top[:n]
	}
	return top
}

// list is a dpkg file list: /var/lib/dpkg/info/PKG.list.
type list struct {
	pkg, origin string
	blob        string // the list's content
}

// own sets the pkg of each file that a dpkg file list names and that came
// from the same stage as the list (a file a later stage replaced is not
// the package's any more); the other files of that stage get NoPackage.
// paths maps every entry's path to its index in files (-1: not regular).
// A path listed by several packages (diversions) goes to the first by
// name. A listed path is looked up as written and, when that is not an
// entry, resolved through the tree (a package may list /lib/x for
// /usr/lib/x on a merged-/usr system). Errors start with the list's name.
func own(t *tree.Tree, files []file, paths map[string]int32, lists []list) error {
	if len(lists) == 0 {
		return nil
	}
	slices.SortFunc(lists, func(a, b list) int { return strings.Compare(a.pkg, b.pkg) })
	stages := map[string]bool{}
	var buf []byte
	for _, l := range lists {
		stages[l.origin] = true
		var err error
		buf, err = readList(l.blob, buf, func(line []byte) {
			if len(line) > 0 && line[0] == '/' {
				line = line[1:]
			}
			i, ok := paths[string(line)]
			if !ok {
				r, err := t.Resolve(string(line))
				if err != nil {
					return
				}
				if i, ok = paths[r]; !ok {
					return
				}
			}
			if i < 0 {
				return
			}
			if f := &files[i]; f.pkg == "" && f.origin == l.origin {
				f.pkg = l.pkg
			}
		})
		if err != nil {
			return fmt.Errorf("%s.list: %w", l.pkg, err)
		}
	}
	for i := range files {
		if f := &files[i]; f.pkg == "" && stages[f.origin] {
			f.pkg = NoPackage
		}
	}
	return nil
}

// readList reads the file at blob into buf (grown as needed, returned for
// the next list) and calls fn with each of its lines but empty ones.
func readList(blob string, buf []byte, fn func([]byte)) ([]byte, error) {
	f, err := os.Open(blob)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	b := bytes.NewBuffer(buf[:0])
	if _, err := b.ReadFrom(f); err != nil {
		return buf, err
	}
	for line := range bytes.SplitSeq(b.Bytes(), []byte{'\n'}) {
		if len(line) > 0 {
			fn(line)
		}
	}
	return b.Bytes(), nil
}
