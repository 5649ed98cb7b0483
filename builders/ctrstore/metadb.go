package ctrstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The schema of containerd's metadata database (core/metadata in
// containerd 2.x): a "v1" bucket holding its minor version and one bucket
// per namespace.
const (
	schemaVersion = "v1"
	// dbVersion is the minor version containerd 2.x writes (its last
	// migration, the sandboxes bucket moved under v1). A database at this
	// version is opened as it is, without a write.
	dbVersion = 4
	// pageSize is fixed, not the host's: the same bytes everywhere.
	pageSize = 4096
)

// Labels containerd and its CRI plugin set.
const (
	labelCRIImage        = "io.cri-containerd.image"
	labelCRIImageManaged = "managed"
	labelCRIPinned       = "io.cri-containerd.pinned"
	labelCRIPinnedValue  = "pinned"
	labelDistribution    = "containerd.io/distribution.source."
	labelGCContent       = "containerd.io/gc.ref.content."
	labelGCConfig        = "containerd.io/gc.ref.content.config"
	labelGCLayer         = "containerd.io/gc.ref.content.l."
	labelGCManifest      = "containerd.io/gc.ref.content.m."
	// maxLabel is containerd's bound on a label's key and value together;
	// it leaves out a distribution label that would pass it.
	maxLabel = 4096
)

// bucket is a bolt bucket to write: each value is []byte (a key) or bucket
// (a nested bucket).
type bucket map[string]any

// sub returns the nested bucket at key, creating it.
func (b bucket) sub(key string) bucket {
	if s, ok := b[key].(bucket); ok {
		return s
	}
	s := bucket{}
	b[key] = s
	return s
}

// schema is the content of the metadata database for images in namespace
// ns, every time set to at.
func schema(ns string, at time.Time, images []Image) (bucket, error) {
	if ns == "" || ns == "version" || strings.ContainsAny(ns, "/\x00") {
		return nil, fmt.Errorf("namespace %q: want a name other than version, without / ", ns)
	}
	stamp, err := at.UTC().MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encoding time %v: %w", at, err)
	}
	v1 := bucket{"version": varint(dbVersion)}
	space := v1.sub(ns)
	imagesBkt, blobsBkt := space.sub("images"), space.sub("content").sub("blob")

	// Content: one record per blob; a blob shared by images gets the
	// distribution source of each and the labels of the manifest it is.
	type content struct {
		size    int64
		labels  map[string]string
		sources map[string][]string // host → repositories
	}
	blobs := map[string]*content{}
	for i := range images {
		img := &images[i]
		host, repo, err := img.source()
		if err != nil {
			return nil, err
		}
		for _, b := range img.blobs() {
			c := blobs[b.Digest]
			if c == nil {
				c = &content{size: b.Size, labels: map[string]string{}, sources: map[string][]string{}}
				blobs[b.Digest] = c
			}
			if c.size != b.Size {
				return nil, fmt.Errorf("image %s: blob %s has size %d, another image says %d", img.Ref, b.Digest, b.Size, c.size)
			}
			if !slices.Contains(c.sources[host], repo) {
				c.sources[host] = append(c.sources[host], repo)
			}
		}
		for k, v := range gcLabels(img) {
			blobs[img.Manifest.Digest].labels[k] = v
		}
	}
	for d, c := range blobs {
		rec := bucket{"createdat": stamp, "updatedat": stamp, "size": varint(c.size)}
		for host, repos := range c.sources {
			slices.Sort(repos)
			key, value := labelDistribution+host, strings.Join(repos, ",")
			if len(key)+len(value) <= maxLabel {
				c.labels[key] = value
			}
		}
		if len(c.labels) > 0 {
			lb := rec.sub("labels")
			for k, v := range c.labels {
				lb[k] = []byte(v)
			}
		}
		blobsBkt[d] = rec
	}

	// Images: the records CRI makes; a name two images give (the image ID
	// of two tags of one image) is written once, pinned if either is.
	for i := range images {
		recs, err := images[i].records()
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if old, ok := imagesBkt[r.name].(bucket); ok {
				if r.pinned {
					old.sub("labels")[labelCRIPinned] = []byte(labelCRIPinnedValue)
				}
				continue
			}
			rec := bucket{
				"createdat": stamp,
				"updatedat": stamp,
				"target": bucket{
					"digest":    []byte(r.target.Digest),
					"mediatype": []byte(r.target.MediaType),
					"size":      varint(r.target.Size),
				},
				"labels": bucket{labelCRIImage: []byte(labelCRIImageManaged)},
			}
			if r.pinned {
				rec.sub("labels")[labelCRIPinned] = []byte(labelCRIPinnedValue)
			}
			imagesBkt[r.name] = rec
		}
	}
	return bucket{schemaVersion: v1}, nil
}

// gcLabels are the labels a pull sets on a manifest so that containerd's
// garbage collector keeps what it references: its config and each layer,
// numbered per kind in manifest order (core/images ChildGCLabels).
func gcLabels(img *Image) map[string]string {
	labels := map[string]string{}
	seen := map[string]int{}
	for _, child := range append([]Blob{img.Config}, img.Layers...) {
		prefix := gcPrefix(child.MediaType)
		i := seen[prefix]
		seen[prefix] = i + 1
		key := prefix
		if i > 0 || strings.HasSuffix(prefix, ".") {
			key = fmt.Sprintf("%s%d", prefix, i)
		}
		labels[key] = child.Digest
	}
	return labels
}

// gcPrefix is the reference label containerd gives a child of this media
// type.
func gcPrefix(mediaType string) string {
	switch mediaType {
	case MediaTypeDockerConfig, "application/vnd.oci.image.config.v1+json":
		return labelGCConfig
	case MediaTypeDockerManifest, "application/vnd.oci.image.manifest.v1+json":
		return labelGCManifest
	}
	if strings.HasPrefix(mediaType, "application/vnd.oci.image.layer.") {
		return labelGCLayer
	}
	base, _, _ := strings.Cut(mediaType, "+")
	switch base {
	case "application/vnd.docker.image.rootfs.diff.tar",
		"application/vnd.docker.image.rootfs.diff.tar.gzip",
		"application/vnd.docker.image.rootfs.diff.tar.zstd",
		"application/vnd.docker.image.rootfs.foreign.diff.tar",
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
		"application/vnd.erofs":
		return labelGCLayer
	}
	return labelGCContent
}

// varint encodes an integer as containerd does: a signed varint.
func varint(v int64) []byte {
	var buf [binary.MaxVarintLen64]byte
	return slices.Clone(buf[:binary.PutVarint(buf[:], v)])
}

// MetaDB writes containerd's metadata database for images, in namespace
// ns with every time set to at, to path (which must not exist), and
// returns its bytes. Two calls with equal arguments write equal bytes.
func MetaDB(path, ns string, at time.Time, images []Image) ([]byte, error) {
	root, err := schema(ns, at, images)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("writing %s: %w", path, os.ErrExist)
	}
	db, err := bolt.Open(path, 0o644, &bolt.Options{
		PageSize:       pageSize,
		NoFreelistSync: true, // as containerd opens it
		NoSync:         true, // the file is read back and copied, not kept
		FreelistType:   bolt.FreelistArrayType,
	})
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	err = writeBuckets(db, nil, root)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s back: %w", path, err)
	}
	return b, nil
}

// writeBuckets writes m, the content of the bucket at path (the root of
// the database when path is empty). Each bucket is created, with its
// values, in a transaction of its own, its nested buckets after it: bbolt
// allocates the pages of the buckets a transaction changes in the order of
// a map, so a transaction that changes two nested buckets of one bucket
// may lay them out differently each time. One open bucket a level keeps
// the bytes the same.
func writeBuckets(db *bolt.DB, path []string, m bucket) error {
	if len(path) > 0 {
		err := db.Update(func(tx *bolt.Tx) error {
			var b *bolt.Bucket
			for i, k := range path {
				var err error
				switch {
				case i == 0 && len(path) == 1:
					b, err = tx.CreateBucket([]byte(k))
				case i == 0:
					b = tx.Bucket([]byte(k))
				case i == len(path)-1:
					b, err = b.CreateBucket([]byte(k))
				default:
					b = b.Bucket([]byte(k))
				}
				if err != nil {
					return err
				}
			}
			for _, k := range sortedKeys(m) {
				if v, ok := m[k].([]byte); ok {
					if err := b.Put([]byte(k), v); err != nil {
						return fmt.Errorf("%s: %w", k, err)
					}
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", strings.Join(path, "/"), err)
		}
	}
	for _, k := range sortedKeys(m) {
		switch v := m[k].(type) {
		case []byte:
			if len(path) == 0 {
				return fmt.Errorf("%s: a value at the top of the database", k)
			}
		case bucket:
			if err := writeBuckets(db, append(slices.Clip(path), k), v); err != nil {
				return err
			}
		default:
			return errors.New(k + ": neither a value nor a bucket")
		}
	}
	return nil
}

func sortedKeys(m bucket) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
