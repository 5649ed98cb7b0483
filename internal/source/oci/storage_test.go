//go:build !containers_image_storage_stub

package oci

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"go.podman.io/storage/pkg/reexec"
)

// TestMain lets containers/storage re-execute the test binary for its
// helpers (chrootarchive), as cmd/labbake must in builds with the transport.
func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

// TestPullContainersStorage runs only in builds with the containers-storage
// transport (without the containers_image_storage_stub tag). The store is a
// vfs one in a temporary directory, so no root and no mounts are needed.
func TestPullContainersStorage(t *testing.T) {
	fx := makeLayout(t, t.TempDir(), false)
	root := t.TempDir()
	ref := "containers-storage:[vfs@" + filepath.Join(root, "root") + "+" + filepath.Join(root, "run") + "]localhost/test/img:v1"
	reg := &testRegistry{}
	reg.copyTo(t, "oci:"+fx.layout+":v1", ref)

	src := testSource(t)
	store := newDirStore(t)
	res, err := src.Pull(context.Background(), store, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	// containers-storage keeps layers uncompressed: the blobs stored are
	// the diff IDs, under a manifest rewritten to name them.
	if want := digestStrings(fx.amd64.diffIDs); !reflect.DeepEqual(res.Layers, want) {
		t.Errorf("layers %v, want %v", res.Layers, want)
	}
	if res.Config != fx.amd64.config.String() {
		t.Errorf("config %s, want %s", res.Config, fx.amd64.config)
	}
	if res.ManifestDigest == fx.amd64.manifest.String() {
		t.Errorf("the manifest naming gzip layers was pinned")
	}
	checkStored(t, store, res)
	checkExtract(t, src, store, res, "/usr/local/bin/replaced", map[string]extracted{
		"/usr/local/bin/replaced": {typ: '0', body: "upper", mode: 0o755},
	})
	again, err := src.Pull(context.Background(), newDirStore(t), ref, res.ManifestDigest)
	if err != nil {
		t.Fatal(err)
	}
	checkResolved(t, again, res)
	off, err := offlineSource(t).Pull(context.Background(), store, ref, res.ManifestDigest)
	if err != nil {
		t.Fatal(err)
	}
	checkResolved(t, off, res)
}
