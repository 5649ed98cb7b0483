package ctrstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labbake/labbake/builders/tree"
	"github.com/labbake/labbake/internal/golden"
	bolt "go.etcd.io/bbolt"
)

// dump prints a bolt database as an indented tree: keys in order, times
// and varints decoded, so that the golden file shows the schema.
func dump(t *testing.T, path string) string {
	t.Helper()
	db, err := bolt.Open(path, 0o444, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out strings.Builder
	var walk func(b *bolt.Bucket, depth int)
	value := func(k, v []byte) string {
		switch string(k) {
		case "createdat", "updatedat":
			var tm time.Time
			if err := tm.UnmarshalBinary(v); err != nil {
				return fmt.Sprintf("bad time %x: %v", v, err)
			}
			return "time " + tm.Format(time.RFC3339Nano)
		case "size", "version":
			n, l := binary.Varint(v)
			if l != len(v) {
				return fmt.Sprintf("bad varint %x", v)
			}
			return fmt.Sprintf("varint %d", n)
		}
		return fmt.Sprintf("%q", v)
	}
	walk = func(b *bolt.Bucket, depth int) {
		_ = b.ForEach(func(k, v []byte) error {
			ind := strings.Repeat("  ", depth)
			if v == nil {
				fmt.Fprintf(&out, "%s%s/\n", ind, k)
				walk(b.Bucket(k), depth+1)
				return nil
			}
			fmt.Fprintf(&out, "%s%s: %s\n", ind, k, value(k, v))
			return nil
		})
	}
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(k []byte, b *bolt.Bucket) error {
			fmt.Fprintf(&out, "%s/\n", k)
			walk(b, 1)
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestMetaDBGolden checks the database against testdata/metadb.golden, a
// dump of what containerd's bolt store reads: the schema, the records CRI
// makes and the labels of a pull.
func TestMetaDBGolden(t *testing.T) {
	images := fileImages(t)
	p := filepath.Join(t.TempDir(), "meta.db")
	if _, err := MetaDB(p, DefaultNamespace, epoch, images); err != nil {
		t.Fatal(err)
	}
	got := dump(t, p)
	golden.Check(t, filepath.Join("testdata", "metadb.golden"), []byte(got))
	// The facts the golden file must show, checked on their own so that
	// an -update cannot bless a wrong schema.
	a, b := images[0], images[1]
	for _, s := range []string{
		"v1/\n  k8s.io/\n    content/\n      blob/\n",
		"  version: varint 4\n",
		"        " + a.Manifest.Digest + "/\n          createdat: time 2026-12-01T00:00:00Z\n",
		`containerd.io/gc.ref.content.config: "` + a.Config.Digest + `"`,
		`containerd.io/gc.ref.content.l.0: "` + a.Layers[0].Digest + `"`,
		`containerd.io/distribution.source.registry.labbake.test: "pause"`,
		`containerd.io/distribution.source.registry.labbake.test: "coredns/coredns"`,
		"      registry.labbake.test/pause:3.10.2/\n",
		"      registry.labbake.test/pause@" + a.Manifest.Digest + "/\n",
		"      " + a.Config.Digest + "/\n",
		"      registry.labbake.test:5000/coredns/coredns:v1.14.6/\n",
		"      registry.labbake.test:5000/coredns/coredns@" + b.Manifest.Digest + "/\n",
		`io.cri-containerd.image: "managed"`,
		`io.cri-containerd.pinned: "pinned"`,
		"          mediatype: \"application/vnd.oci.image.manifest.v1+json\"\n",
	} {
		if !strings.Contains(got, s) {
			t.Errorf("meta.db lacks %q", s)
		}
	}
	if n := strings.Count(got, `io.cri-containerd.pinned: "pinned"`); n != 3 {
		t.Errorf("%d records pinned, want the 3 of the pause image", n)
	}
}

// TestReproducible builds the store twice, in different work dirs: the
// meta.db bytes and the trees are the same.
func TestReproducible(t *testing.T) {
	images := fileImages(t)
	var dbs [][]byte
	var digests []string
	for range 2 {
		tr := tree.New(epoch)
		s := &Store{Images: images}
		if _, err := s.Add(tr, t.TempDir()); err != nil {
			t.Fatal(err)
		}
		e := entry(t, tr, "/var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db")
		b, err := os.ReadFile(e.Content.Path)
		if err != nil {
			t.Fatal(err)
		}
		dbs = append(dbs, b)
		d, err := tr.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
	}
	if !bytes.Equal(dbs[0], dbs[1]) {
		t.Error("two builds wrote different meta.db bytes")
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds made different trees: %s, %s", digests[0], digests[1])
	}
	if len(dbs[0])%pageSize != 0 {
		t.Errorf("meta.db is %d bytes, not whole %d-byte pages", len(dbs[0]), pageSize)
	}
	// Another epoch or namespace is another database.
	p := filepath.Join(t.TempDir(), "meta.db")
	other, err := MetaDB(p, DefaultNamespace, epoch.Add(time.Second), images)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other, dbs[0]) {
		t.Error("the epoch does not show in meta.db")
	}
}

func TestMetaDBRefuses(t *testing.T) {
	images := fileImages(t)
	for _, tc := range []struct {
		name, ns string
		images   []Image
		want     string
	}{
		{"namespace version", "version", images, "namespace"},
		{"namespace with slash", "a/b", images, "namespace"},
		{"not normalized", "k8s.io", []Image{{Ref: "pause:3.10", Manifest: images[0].Manifest, Config: images[0].Config}}, "not normalized"},
		{"size disagrees", "k8s.io", []Image{images[0], func() Image {
			b := images[1]
			b.Layers = []Blob{images[0].Config}
			b.Layers[0].Size++
			return b
		}()}, "has size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := MetaDB(filepath.Join(t.TempDir(), "meta.db"), tc.ns, epoch, tc.images)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}
