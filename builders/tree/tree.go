package tree

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// Type is the kind of a filesystem entry.
type Type uint8

// Entry types, as in a tar header or an ext4 inode.
const (
	Regular Type = iota
	Dir
	Symlink
	Hardlink
	CharDev
	BlockDev
	FIFO
)

func (t Type) String() string {
	switch t {
	case Regular:
		return "file"
	case Dir:
		return "dir"
	case Symlink:
		return "symlink"
	case Hardlink:
		return "hardlink"
	case CharDev:
		return "chardev"
	case BlockDev:
		return "blockdev"
	case FIFO:
		return "fifo"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Blob is the content of a regular file: a file on the host holding the
// bytes. Owned blobs live in the build's work dir and are referenced by
// exactly one entry, so a later stage may hard-link or move them instead of
// copying; blobs that are not owned (a dir base, an overlay) are read only.
type Blob struct {
	Path  string // absolute host path of the bytes
	Size  int64
	Owned bool
	// Digest is the hex sha256 of the bytes when it was taken as they were
	// written ("" when unknown): blobs never change once made, so a reader
	// that needs the digest can use it instead of reading them again.
	Digest string
}

// Entry is one path of the root filesystem.
type Entry struct {
	// Path is clean, relative to the root, without a leading slash, and
	// never leaves the root. The root itself is ".".
	Path string
	Type Type
	// Mode holds the permission bits including setuid, setgid and sticky
	// (mask 07777); the type lives in Type.
	Mode    uint32
	UID     int
	GID     int
	ModTime time.Time
	// Xattrs maps a full attribute name (e.g. "security.capability") to its
	// raw value.
	Xattrs map[string][]byte
	// Linkname is the target of a symlink (as written, may be absolute) or,
	// for a hardlink, the Path of the regular file it links to.
	Linkname string
	Devmajor uint32
	Devminor uint32
	// Content is set for regular files only.
	Content *Blob
	// Origin names the stage of the build that added or last replaced the
	// entry (see [Tree.SetOrigin]), e.g. "layers[1] layers/x.tar". It is a
	// label for messages only: it is not part of the image (Digest and the
	// staged files ignore it).
	Origin string
}

// Sentinel errors; match them with errors.Is.
var (
	// ErrLeavesRoot reports a path or hardlink target that leaves the root.
	ErrLeavesRoot = errors.New("leaves the root")
	// ErrSymlinkLoop reports more than maxSymlinks symlinks met while
	// resolving one path.
	ErrSymlinkLoop = errors.New("too many levels of symbolic links")
)

// maxSymlinks is the number of symlinks one resolution may follow, as in
// Linux (MAXSYMLINKS).
const maxSymlinks = 40

// node is one entry plus, for directories, the base names of its children.
type node struct {
	e    Entry
	kids map[string]struct{}
}

// Tree is the root filesystem as data: a map of clean relative path to
// Entry. The root "." always exists and is a directory.
//
// Invariants: every entry's parent exists and is a Dir; every Hardlink's
// Linkname names an existing Regular entry; every ModTime is at or before
// the epoch.
type Tree struct {
	epoch time.Time
	log   *slog.Logger
	nodes map[string]*node
	// links maps the path of a Regular entry to the paths of the Hardlink
	// entries that point at it.
	links map[string]map[string]struct{}
	// origin is stamped on entries added or replaced (see SetOrigin).
	origin string
}

// New returns a Tree holding only the root directory (0755, 0:0). Every
// entry's time is clamped to epoch; a zero epoch means the Unix epoch.
func New(epoch time.Time) *Tree {
	if epoch.IsZero() {
		epoch = time.Unix(0, 0)
	}
	epoch = epoch.UTC()
	t := &Tree{
		epoch: epoch,
		log:   slog.New(slog.DiscardHandler),
		nodes: make(map[string]*node, 1024),
		links: make(map[string]map[string]struct{}),
	}
	t.nodes["."] = &node{
		e:    Entry{Path: ".", Type: Dir, Mode: 0o755, ModTime: epoch},
		kids: make(map[string]struct{}),
	}
	return t
}

// SetLogger sets the logger for debug notes (skipped sockets, ignored unit
// keys, whiteouts, …). nil discards them.
func (t *Tree) SetLogger(l *slog.Logger) {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	t.log = l
}

// SetOrigin sets the label stamped on every entry added or replaced from now
// on (Entry.Origin), whatever adds it: Add, ApplyTar, ApplyDir, AddFiles,
// AddUnits, and the directories they create. The build calls it before each
// stage ("base debian:trixie", "layers[0] layers/k8s.tar", …) so a later check
// can say where a file came from. While the label is empty (the default), an
// entry keeps the Origin it was given. A hardlink that inherits the content
// of its removed target (see Add) inherits its Origin too. The label never
// changes the image: Digest ignores it.
func (t *Tree) SetOrigin(s string) { t.origin = s }

// Origin returns the label SetOrigin set last.
func (t *Tree) Origin() string { return t.origin }

// Epoch returns the time every entry's ModTime is clamped to.
func (t *Tree) Epoch() time.Time { return t.epoch }

// Len returns the number of entries, the root included.
func (t *Tree) Len() int { return len(t.nodes) }

// Add adds e to the tree, replacing what is at its path (tar semantics).
//
// e.Path may be in any form ("/a/b", "a/b/", "./a"): the leading "/" is
// dropped and the path cleaned; a path that leaves the root is an error.
// Symlinks in parent components are followed inside the tree (absolute
// targets are relative to the root, ".." clamps at the root); the final
// component is not followed. Missing parents are created as directories
// (0755, 0:0, epoch). A directory added over a directory updates its
// metadata and keeps its children; anything else replaces the old entry and
// its subtree. A Regular entry that is replaced or removed while hardlinks
// point at it hands its content and attributes to the first of them, so
// hardlinks keep what tar extraction would leave on disk; otherwise its
// owned blob is deleted. A Regular entry added over a Regular entry with the
// same Content.Path only updates the attributes.
//
// For a Hardlink, Linkname is resolved like a path and must name an
// existing Regular entry or a Hardlink to one; the entry is stored with the
// canonical Regular path as Linkname. ModTime is clamped to the epoch (a
// zero ModTime becomes the epoch) and Mode is masked to 07777. Errors name
// the entry.
func (t *Tree) Add(e Entry) error {
	if _, err := t.add(e, nil); err != nil {
		return fmt.Errorf("entry %q: %w", e.Path, err)
	}
	return nil
}

// Get returns the entry at path, which is cleaned and made relative but
// not resolved through symlinks (use Resolve for that).
func (t *Tree) Get(p string) (Entry, bool) {
	c, err := cleanRel(p)
	if err != nil {
		return Entry{}, false
	}
	n, ok := t.nodes[c]
	if !ok {
		return Entry{}, false
	}
	return copyEntry(n.e), true
}

// Resolve returns the canonical path Add would use for p: cleaned, parents
// resolved through symlinks inside the tree, final component not followed.
// The result need not exist.
func (t *Tree) Resolve(p string) (string, error) {
	c, err := cleanRel(p)
	if err != nil {
		return "", fmt.Errorf("path %q: %w", p, err)
	}
	r, err := t.resolve(c)
	if err != nil {
		return "", fmt.Errorf("path %q: %w", p, err)
	}
	return r, nil
}

// Remove removes the entry at p (resolved like Add does) and its subtree.
// A missing path, or one that leaves the root, is not an error. Removing
// "." removes everything but the root.
func (t *Tree) Remove(p string) {
	c, err := cleanRel(p)
	if err != nil {
		t.log.Debug("tree: remove: ignoring path", "path", p, "err", err)
		return
	}
	r, err := t.resolve(c)
	if err != nil {
		t.log.Debug("tree: remove: ignoring path", "path", p, "err", err)
		return
	}
	if r == "." {
		for _, k := range sortedKids(t.nodes["."]) {
			t.removeTree(k)
		}
		return
	}
	t.removeTree(r)
}

// Entries returns a copy of every entry, sorted by path with the root first
// and parents before their children. Every Hardlink in the result points at
// a Regular entry in the result.
func (t *Tree) Entries() []Entry {
	paths := make([]string, 0, len(t.nodes))
	for p := range t.nodes {
		if p != "." {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	out := make([]Entry, 0, len(t.nodes))
	out = append(out, copyEntry(t.nodes["."].e))
	for _, p := range paths {
		out = append(out, copyEntry(t.nodes[p].e))
	}
	return out
}

// copyEntry returns e with its own Xattrs map and Blob.
func copyEntry(e Entry) Entry {
	if e.Xattrs != nil {
		x := make(map[string][]byte, len(e.Xattrs))
		for k, v := range e.Xattrs {
			x[k] = slices.Clone(v)
		}
		e.Xattrs = x
	}
	if e.Content != nil {
		b := *e.Content
		e.Content = &b
	}
	return e
}

// normalize checks e and brings it into the stored form (mode masked, time
// clamped, fields that do not apply to its type cleared).
func (t *Tree) normalize(e *Entry) error {
	if e.UID < 0 || e.GID < 0 {
		return fmt.Errorf("negative owner %d:%d", e.UID, e.GID)
	}
	if t.origin != "" {
		e.Origin = t.origin
	}
	e.Mode &= 0o7777
	if e.ModTime.IsZero() || e.ModTime.After(t.epoch) {
		e.ModTime = t.epoch
	}
	e.ModTime = e.ModTime.UTC()
	for k := range e.Xattrs {
		if k == "" || strings.IndexByte(k, 0) >= 0 {
			return fmt.Errorf("invalid xattr name %q", k)
		}
	}
	if len(e.Xattrs) == 0 {
		e.Xattrs = nil
	}
	switch e.Type {
	case Regular:
		if e.Content == nil {
			return errors.New("regular file without content")
		}
		if e.Content.Size < 0 {
			return fmt.Errorf("negative size %d", e.Content.Size)
		}
	case Symlink, Hardlink:
		if e.Linkname == "" {
			return fmt.Errorf("%s with an empty target", e.Type)
		}
		if strings.IndexByte(e.Linkname, 0) >= 0 {
			return fmt.Errorf("%s target contains a NUL byte", e.Type)
		}
	case Dir, CharDev, BlockDev, FIFO:
	default:
		return fmt.Errorf("unknown entry type %d", uint8(e.Type))
	}
	if e.Type != Regular {
		e.Content = nil
	}
	if e.Type != Symlink && e.Type != Hardlink {
		e.Linkname = ""
	}
	if e.Type != CharDev && e.Type != BlockDev {
		e.Devmajor, e.Devminor = 0, 0
	}
	return nil
}

// add is Add without the error prefix. It returns the canonical path the
// entry was stored at. Every path it creates or updates is recorded in
// layer when layer is not nil (ApplyTar uses that for opaque directories).
// All checks happen before the tree is changed.
func (t *Tree) add(e Entry, layer map[string]struct{}) (string, error) {
	if err := t.normalize(&e); err != nil {
		return "", err
	}
	c, err := cleanRel(e.Path)
	if err != nil {
		return "", err
	}
	final, err := t.resolve(c)
	if err != nil {
		return "", err
	}
	if final == "." && e.Type != Dir {
		return "", fmt.Errorf("cannot replace the root directory with a %s", e.Type)
	}
	// linkPath is the resolved (not yet canonical) hardlink target.
	var linkPath string
	if e.Type == Hardlink {
		linkPath, err = t.linkTarget(e.Linkname)
		if err != nil {
			return "", err
		}
		if linkPath == final {
			return "", fmt.Errorf("hardlink to itself (%q)", e.Linkname)
		}
		if strings.HasPrefix(linkPath, final+"/") {
			return "", fmt.Errorf("hardlink target %q is inside the entry it replaces", e.Linkname)
		}
	}
	if final == "." {
		t.updateDir(t.nodes["."], e)
		mark(layer, ".")
		return ".", nil
	}
	dir, base := splitLast(final)
	if err := t.mkdirAll(dir, layer); err != nil {
		return "", err
	}
	if old, ok := t.nodes[final]; ok {
		if old.e.Type == Dir && e.Type == Dir {
			t.updateDir(old, e)
			mark(layer, final)
			return final, nil
		}
		if old.e.Type == Regular && e.Type == Regular && old.e.Content.Path == e.Content.Path {
			// The same file with new attributes (Get, change, Add):
			// update in place, hardlinks stay.
			e.Path = final
			old.e = e
			mark(layer, final)
			return final, nil
		}
		t.removeTree(final)
	}
	e.Path = final
	if e.Type == Hardlink {
		// Removing the old entry may have promoted the target; take the
		// canonical path only now.
		e.Linkname = t.canonical(linkPath)
		set := t.links[e.Linkname]
		if set == nil {
			set = make(map[string]struct{})
			t.links[e.Linkname] = set
		}
		set[final] = struct{}{}
	}
	n := &node{e: e}
	if e.Type == Dir {
		n.kids = make(map[string]struct{})
	}
	t.nodes[final] = n
	t.nodes[dir].kids[base] = struct{}{}
	mark(layer, final)
	return final, nil
}

func mark(layer map[string]struct{}, p string) {
	if layer != nil {
		layer[p] = struct{}{}
	}
}

// updateDir replaces the metadata of directory n by that of e.
func (t *Tree) updateDir(n *node, e Entry) {
	p := n.e.Path
	n.e = e
	n.e.Path = p
}

// linkTarget resolves a hardlink's Linkname to the path of an existing
// Regular or Hardlink entry.
func (t *Tree) linkTarget(linkname string) (string, error) {
	c, err := cleanRel(linkname)
	if err != nil {
		return "", fmt.Errorf("hardlink target %q: %w", linkname, err)
	}
	r, err := t.resolve(c)
	if err != nil {
		return "", fmt.Errorf("hardlink target %q: %w", linkname, err)
	}
	n, ok := t.nodes[r]
	if !ok {
		return "", fmt.Errorf("hardlink target %q does not exist", linkname)
	}
	if n.e.Type != Regular && n.e.Type != Hardlink {
		return "", fmt.Errorf("hardlink target %q is a %s, not a regular file", linkname, n.e.Type)
	}
	return r, nil
}

// canonical returns the Regular entry p is or links to.
func (t *Tree) canonical(p string) string {
	if n := t.nodes[p]; n != nil && n.e.Type == Hardlink {
		return n.e.Linkname
	}
	return p
}

// mkdirAll creates the missing directories of dir, a resolved path whose
// existing components are directories.
func (t *Tree) mkdirAll(dir string, layer map[string]struct{}) error {
	if dir == "." {
		return nil
	}
	if n, ok := t.nodes[dir]; ok {
		if n.e.Type != Dir {
			return fmt.Errorf("%q is a %s, not a directory", dir, n.e.Type)
		}
		return nil
	}
	parent, base := splitLast(dir)
	if err := t.mkdirAll(parent, layer); err != nil {
		return err
	}
	t.nodes[dir] = &node{
		e:    Entry{Path: dir, Type: Dir, Mode: 0o755, ModTime: t.epoch, Origin: t.origin},
		kids: make(map[string]struct{}),
	}
	t.nodes[parent].kids[base] = struct{}{}
	mark(layer, dir)
	return nil
}

// removeTree removes p (not the root) and its subtree. Regular entries
// removed while hardlinks outside the subtree point at them are handed over
// to those hardlinks (see promote); the owned blobs of the others are
// deleted, so replaced layers' files do not pile up in the blob dir.
func (t *Tree) removeTree(p string) {
	if p == "." {
		return
	}
	if _, ok := t.nodes[p]; !ok {
		return
	}
	dir, base := splitLast(p)
	if parent := t.nodes[dir]; parent != nil {
		delete(parent.kids, base)
	}
	var orphaned []Entry // regular entries hardlinks may need
	var dropped []*Blob  // content nobody references any more
	stack := []string{p}
	for len(stack) > 0 {
		q := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n := t.nodes[q]
		if n == nil {
			continue
		}
		delete(t.nodes, q)
		switch n.e.Type {
		case Hardlink:
			if set := t.links[n.e.Linkname]; set != nil {
				delete(set, q)
				if len(set) == 0 {
					delete(t.links, n.e.Linkname)
				}
			}
		case Regular:
			if len(t.links[q]) > 0 {
				orphaned = append(orphaned, n.e)
			} else {
				dropped = append(dropped, n.e.Content)
			}
		}
		for k := range n.kids {
			stack = append(stack, q+"/"+k)
		}
	}
	for _, e := range orphaned {
		t.promote(e)
	}
	for _, b := range dropped {
		dropBlob(b)
	}
}

// promote hands the content and attributes of the removed Regular entry old
// to the first (by path) remaining hardlink pointing at it; the other
// hardlinks then point at that one.
func (t *Tree) promote(old Entry) {
	set := t.links[old.Path]
	delete(t.links, old.Path)
	if len(set) == 0 {
		dropBlob(old.Content)
		return
	}
	ps := make([]string, 0, len(set))
	for q := range set {
		ps = append(ps, q)
	}
	slices.Sort(ps)
	first := ps[0]
	e := old
	e.Path = first
	t.nodes[first].e = e
	t.log.Debug("tree: hardlink target removed; hardlink keeps its content", "target", old.Path, "path", first)
	if len(ps) > 1 {
		ns := make(map[string]struct{}, len(ps)-1)
		for _, q := range ps[1:] {
			t.nodes[q].e.Linkname = first
			ns[q] = struct{}{}
		}
		t.links[first] = ns
	}
}

func sortedKids(n *node) []string {
	if n == nil {
		return nil
	}
	ks := make([]string, 0, len(n.kids))
	for k := range n.kids {
		ks = append(ks, join(n.e.Path, k))
	}
	slices.Sort(ks)
	return ks
}
