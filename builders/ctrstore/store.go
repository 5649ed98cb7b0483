package ctrstore

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/labbake/labbake/builders/tree"
)

// Defaults of containerd 2.x and its CRI plugin.
const (
	DefaultNamespace = "k8s.io"
	DefaultRoot      = "/var/lib/containerd"
)

// Where containerd keeps content and metadata under its root, and the
// modes it gives them (root 0700 since 2.0; the content store's dirs
// 0755, its blobs 0444; the bolt plugin's dir 0711, meta.db 0644).
const (
	contentDir  = "io.containerd.content.v1.content"
	metadataDir = "io.containerd.metadata.v1.bolt"
	metaDB      = "meta.db"
	modeRoot    = 0o700
	modeDir     = 0o755
	modeBlob    = 0o444
	modeMetaDir = 0o711
	modeMetaDB  = 0o644
)

// Store is the state written: the images, in the namespace and root of the
// image's containerd.
type Store struct {
	Namespace string // "" is DefaultNamespace
	Root      string // containerd's root in the image; "" is DefaultRoot
	Images    []Image
}

// Result is what Add wrote.
type Result struct {
	Blobs     int   // content blobs (each digest once)
	BlobBytes int64 // their bytes
	MetaDB    int64 // bytes of meta.db
}

func (s *Store) namespace() string {
	if s.Namespace == "" {
		return DefaultNamespace
	}
	return s.Namespace
}

func (s *Store) root() (string, error) {
	r := s.Root
	if r == "" {
		r = DefaultRoot
	}
	if !path.IsAbs(r) || path.Clean(r) != r || r == "/" {
		return "", fmt.Errorf("containerd root %q: want a clean absolute path other than /", r)
	}
	return r, nil
}

// Add adds the content store and the metadata database to t, owned 0:0,
// at t's epoch: every blob from its host file (not copied), meta.db written
// by bbolt into workDir and added as an owned blob. Entries already at
// those paths are replaced; parents of the root that are missing are
// created 0755.
func (s *Store) Add(t *tree.Tree, workDir string) (*Result, error) {
	root, err := s.root()
	if err != nil {
		return nil, err
	}
	if len(s.Images) == 0 {
		return &Result{}, nil
	}
	for i := range s.Images {
		if err := s.check(&s.Images[i]); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return nil, fmt.Errorf("containerd store: %w", err)
	}
	db, err := os.CreateTemp(workDir, "meta-*.db")
	if err != nil {
		return nil, fmt.Errorf("containerd store: %w", err)
	}
	dbPath := db.Name()
	db.Close()
	os.Remove(dbPath)
	epoch := t.Epoch()
	b, err := MetaDB(dbPath, s.namespace(), epoch, s.Images)
	if err != nil {
		os.Remove(dbPath)
		return nil, fmt.Errorf("containerd store: %w", err)
	}
	res := &Result{MetaDB: int64(len(b))}

	dir := func(p string, mode uint32) error {
		return t.Add(tree.Entry{Path: p, Type: tree.Dir, Mode: mode, ModTime: epoch})
	}
	sha := path.Join(root, contentDir, "blobs", "sha256")
	for _, d := range []struct {
		p    string
		mode uint32
	}{
		{root, modeRoot},
		{path.Join(root, contentDir), modeDir},
		{path.Join(root, contentDir, "blobs"), modeDir},
		{sha, modeDir},
		{path.Join(root, metadataDir), modeMetaDir},
	} {
		if err := dir(d.p, d.mode); err != nil {
			os.Remove(dbPath)
			return nil, fmt.Errorf("containerd store: %w", err)
		}
	}
	// Each blob once, in digest order.
	var blobs []Blob
	seen := map[string]bool{}
	for i := range s.Images {
		for _, bl := range s.Images[i].blobs() {
			if !seen[bl.Digest] {
				seen[bl.Digest] = true
				blobs = append(blobs, bl)
			}
		}
	}
	slices.SortFunc(blobs, func(a, b Blob) int { return strings.Compare(a.Digest, b.Digest) })
	for _, bl := range blobs {
		e := tree.Entry{
			Path: path.Join(sha, strings.TrimPrefix(bl.Digest, "sha256:")), Type: tree.Regular, Mode: modeBlob, ModTime: epoch,
			Content: &tree.Blob{Path: bl.Path, Size: bl.Size},
		}
		if err := t.Add(e); err != nil {
			os.Remove(dbPath)
			return nil, fmt.Errorf("containerd store: %w", err)
		}
		res.Blobs++
		res.BlobBytes += bl.Size
	}
	e := tree.Entry{
		Path: path.Join(root, metadataDir, metaDB), Type: tree.Regular, Mode: modeMetaDB, ModTime: epoch,
		Content: &tree.Blob{Path: dbPath, Size: int64(len(b)), Owned: true},
	}
	if err := t.Add(e); err != nil {
		os.Remove(dbPath)
		return nil, fmt.Errorf("containerd store: %w", err)
	}
	return res, nil
}

// check makes sure an image's blobs are what its manifest says: each host
// file there with the size the descriptor gives.
func (s *Store) check(img *Image) error {
	if img.Manifest.MediaType == "" || img.Config.Digest == "" {
		return fmt.Errorf("image %s: no manifest or config", img.Ref)
	}
	for _, b := range img.blobs() {
		if !strings.HasPrefix(b.Digest, "sha256:") || len(b.Digest) != len("sha256:")+64 {
			return fmt.Errorf("image %s: blob digest %q: want sha256:HEX", img.Ref, b.Digest)
		}
		st, err := os.Stat(b.Path)
		if err != nil {
			return fmt.Errorf("image %s: blob %s: %w", img.Ref, b.Digest, err)
		}
		if !st.Mode().IsRegular() || st.Size() != b.Size {
			return fmt.Errorf("image %s: blob %s: %s holds %d bytes, the manifest says %d", img.Ref, b.Digest, filepath.Base(b.Path), st.Size(), b.Size)
		}
	}
	return nil
}
