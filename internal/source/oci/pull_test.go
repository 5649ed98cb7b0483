package oci

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/labbake/labbake/internal/iox"
	"github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
)

func digestStrings(ds []digest.Digest) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.String()
	}
	return out
}

func wantResolved(ref string, img testImage) *Resolved {
	return &Resolved{
		Ref:            ref,
		ManifestDigest: img.manifest.String(),
		Layers:         digestStrings(img.layers),
		Config:         img.config.String(),
	}
}

func checkResolved(t *testing.T, got, want *Resolved) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("resolved\n got %+v\nwant %+v", got, want)
	}
}

// checkStored checks that the manifest, config and layers of res are in the store.
func checkStored(t *testing.T, store *dirStore, res *Resolved) {
	t.Helper()
	for _, d := range append([]string{res.ManifestDigest, res.Config}, res.Layers...) {
		if !store.Has(d) {
			t.Errorf("blob %s not stored", d)
		}
	}
}

// checkErr checks that err is not nil, is one line and mentions every part.
func checkErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", parts)
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error is not one line: %q", msg)
	}
	if !strings.HasPrefix(msg, "oci: ") {
		t.Errorf("error %q does not start with \"oci: \"", msg)
	}
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("error %q does not mention %q", msg, p)
		}
	}
}

func offlineSource(t *testing.T) *Source {
	src := testSource(t)
	src.Offline = true
	return src
}

func TestPullOCILayout(t *testing.T) {
	ctx := context.Background()
	fx := makeLayout(t, t.TempDir(), true)
	src := testSource(t)
	store := newDirStore(t)
	ref := "oci:" + fx.layout + ":v1"

	res, err := src.Pull(ctx, store, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	want := wantResolved(ref, fx.amd64)
	checkResolved(t, res, want)
	checkStored(t, store, res)
	if got, want := len(store.blobs(t)), 4; got != want { // manifest, config, 2 layers
		t.Errorf("store holds %d blobs, want %d: %v", got, want, store.blobs(t))
	}

	// Again: the same digest, and nothing stored twice.
	puts := store.putCount()
	again, err := src.Pull(ctx, store, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	checkResolved(t, again, want)
	if store.putCount() != puts {
		t.Errorf("second pull stored %d blobs again", store.putCount()-puts)
	}

	// Pinned to the right digest; pinned to another one.
	pinned, err := src.Pull(ctx, store, ref, res.ManifestDigest)
	if err != nil {
		t.Fatal(err)
	}
	checkResolved(t, pinned, want)
	_, err = src.Pull(ctx, store, ref, fx.arm64.manifest.String())
	checkErr(t, err, ref, fx.arm64.manifest.String(), res.ManifestDigest)
	if !errors.Is(err, iox.ErrDigestMismatch) {
		t.Errorf("error %v does not wrap iox.ErrDigestMismatch", err)
	}

	// Offline, pinned: from the store alone, with the layout gone.
	if err := os.RemoveAll(fx.layout); err != nil {
		t.Fatal(err)
	}
	off := offlineSource(t)
	offRes, err := off.Pull(ctx, store, ref, res.ManifestDigest)
	if err != nil {
		t.Fatal(err)
	}
	checkResolved(t, offRes, want)

	// Offline, not pinned.
	_, err = off.Pull(ctx, store, ref, "")
	checkErr(t, err, ref, "not pinned")
	if !errors.Is(err, iox.ErrOffline) {
		t.Errorf("error %v does not wrap iox.ErrOffline", err)
	}

	// Offline, empty store: the manifest is missing.
	_, err = off.Pull(ctx, newDirStore(t), ref, res.ManifestDigest)
	checkErr(t, err, ref, res.ManifestDigest)
	if !errors.Is(err, iox.ErrOffline) {
		t.Errorf("error %v does not wrap iox.ErrOffline", err)
	}

	// Offline, only the manifest and the config: the layers are named.
	partial := newDirStore(t)
	for _, d := range []string{res.ManifestDigest, res.Config} {
		copyBlob(t, store, partial, d)
	}
	_, err = off.Pull(ctx, partial, ref, res.ManifestDigest)
	checkErr(t, err, append([]string{ref}, res.Layers...)...)
	if !errors.Is(err, iox.ErrOffline) {
		t.Errorf("error %v does not wrap iox.ErrOffline", err)
	}
}

func copyBlob(t *testing.T, from, to *dirStore, d string) {
	t.Helper()
	rc, err := from.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, _, err := to.Put(context.Background(), rc, d); err != nil {
		t.Fatal(err)
	}
}

func TestPullMissingTag(t *testing.T) {
	fx := makeLayout(t, t.TempDir(), false)
	ref := "oci:" + fx.layout + ":nope"
	_, err := testSource(t).Pull(context.Background(), newDirStore(t), ref, "")
	checkErr(t, err, ref)
}

func TestPullIndexPicksPlatform(t *testing.T) {
	ctx := context.Background()
	fx := makeLayout(t, t.TempDir(), true)
	ref := "oci:" + fx.layout + ":multi"
	store := newDirStore(t)

	src := testSource(t)
	res, err := src.Pull(ctx, store, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	checkResolved(t, res, wantResolved(ref, fx.amd64))
	if !store.Has(fx.index.String()) {
		t.Errorf("the image index %s is not stored", fx.index)
	}
	if store.Has(fx.arm64.layers[0].String()) {
		t.Errorf("the arm64 layer was pulled for amd64")
	}

	arm := testSource(t)
	arm.Arch = "arm64"
	armRes, err := arm.Pull(ctx, store, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	checkResolved(t, armRes, wantResolved(ref, fx.arm64))

	// No such platform.
	s390 := testSource(t)
	s390.Arch = "s390x"
	_, err = s390.Pull(ctx, store, ref, "")
	checkErr(t, err, ref, "s390x")

	// Offline, pinned to each platform's manifest.
	if err := os.RemoveAll(fx.layout); err != nil {
		t.Fatal(err)
	}
	off := offlineSource(t)
	got, err := off.Pull(ctx, store, ref, fx.amd64.manifest.String())
	if err != nil {
		t.Fatal(err)
	}
	checkResolved(t, got, wantResolved(ref, fx.amd64))
	off.Arch = "arm64"
	got, err = off.Pull(ctx, store, ref, fx.arm64.manifest.String())
	if err != nil {
		t.Fatal(err)
	}
	checkResolved(t, got, wantResolved(ref, fx.arm64))
}

func TestPullOCIArchive(t *testing.T) {
	ctx := context.Background()
	fx := makeLayout(t, t.TempDir(), false)
	archive := filepath.Join(t.TempDir(), "img.tar")
	tarDir(t, fx.layout, archive)
	ref := "oci-archive:" + archive

	store := newDirStore(t)
	res, err := testSource(t).Pull(ctx, store, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	checkResolved(t, res, wantResolved(ref, fx.amd64))
	checkStored(t, store, res)

	// Another store, another pull: the same digest.
	again, err := testSource(t).Pull(ctx, newDirStore(t), ref+":v1", "")
	if err != nil {
		t.Fatal(err)
	}
	if again.ManifestDigest != res.ManifestDigest {
		t.Errorf("manifest digest %s, then %s", res.ManifestDigest, again.ManifestDigest)
	}

	if err := os.Remove(archive); err != nil {
		t.Fatal(err)
	}
	off, err := offlineSource(t).Pull(ctx, store, ref, res.ManifestDigest)
	if err != nil {
		t.Fatal(err)
	}
	checkResolved(t, off, res)
}

func TestPullDockerArchive(t *testing.T) {
	ctx := context.Background()
	fx := makeLayout(t, t.TempDir(), false)
	archive := filepath.Join(t.TempDir(), "img.tar")
	dockerArchive(t, fx.amd64, archive)
	ref := "docker-archive:" + archive

	store := newDirStore(t)
	res, err := testSource(t).Pull(ctx, store, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	// docker save stores layers uncompressed: their digests are the diff IDs.
	if want := digestStrings(fx.amd64.diffIDs); !reflect.DeepEqual(res.Layers, want) {
		t.Errorf("layers %v, want %v", res.Layers, want)
	}
	if res.Config != fx.amd64.config.String() {
		t.Errorf("config %s, want %s", res.Config, fx.amd64.config)
	}
	checkStored(t, store, res)

	again, err := testSource(t).Pull(ctx, newDirStore(t), ref, res.ManifestDigest)
	if err != nil {
		t.Fatal(err)
	}
	checkResolved(t, again, res)

	// The uncompressed layers read like the compressed ones.
	checkExtract(t, testSource(t), store, res, "/usr/local/bin/replaced", map[string]extracted{
		"/usr/local/bin/replaced": {typ: '0', body: "upper", mode: 0o755},
	})

	if err := os.Remove(archive); err != nil {
		t.Fatal(err)
	}
	off, err := offlineSource(t).Pull(ctx, store, ref, res.ManifestDigest)
	if err != nil {
		t.Fatal(err)
	}
	checkResolved(t, off, res)
}

func TestPullBadRefs(t *testing.T) {
	ctx := context.Background()
	store := newDirStore(t)
	src := testSource(t)
	fx := makeLayout(t, t.TempDir(), false)

	_, err := src.Pull(ctx, store, "nosuch:thing", "")
	checkErr(t, err, "nosuch:thing")

	_, err = src.Pull(ctx, store, "oci:"+fx.layout+":v1", "sha256:nothex")
	checkErr(t, err, "sha256:nothex")

	missing := filepath.Join(t.TempDir(), "missing.tar")
	_, err = src.Pull(ctx, store, "oci-archive:"+missing, "")
	checkErr(t, err, "oci-archive:"+missing)

	if got := store.blobs(t); len(got) != 0 {
		t.Errorf("failed pulls stored %v", got)
	}
}

func TestPolicy(t *testing.T) {
	ctx := context.Background()
	fx := makeLayout(t, t.TempDir(), false)
	ref := "oci:" + fx.layout + ":v1"
	reject := writePolicy(t, `{"default":[{"type":"reject"}]}`)

	t.Run("reject", func(t *testing.T) {
		src := testSource(t)
		src.PolicyPath = reject
		store := newDirStore(t)
		_, err := src.Pull(ctx, store, ref, "")
		checkErr(t, err, ref, reject, "rejected")
		if !errors.Is(err, ErrPolicyRejected) {
			t.Errorf("error %v does not wrap ErrPolicyRejected", err)
		}
		if got := store.blobs(t); len(got) != 0 {
			t.Errorf("a rejected image stored %v", got)
		}
	})

	t.Run("reject via SystemContext", func(t *testing.T) {
		src := testSource(t)
		src.PolicyPath = ""
		src.SystemContext.SignaturePolicyPath = reject
		_, err := src.Pull(ctx, newDirStore(t), ref, "")
		checkErr(t, err, ref, reject)
		if !errors.Is(err, ErrPolicyRejected) {
			t.Errorf("error %v does not wrap ErrPolicyRejected", err)
		}
	})

	t.Run("scoped to a transport", func(t *testing.T) {
		src := testSource(t)
		src.PolicyPath = writePolicy(t, `{"default":[{"type":"reject"}],
			"transports":{"oci":{"":[{"type":"insecureAcceptAnything"}]}}}`)
		if _, err := src.Pull(ctx, newDirStore(t), ref, ""); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("malformed", func(t *testing.T) {
		src := testSource(t)
		src.PolicyPath = writePolicy(t, `{"default":`)
		_, err := src.Pull(ctx, newDirStore(t), ref, "")
		checkErr(t, err, ref, src.PolicyPath)
	})

	t.Run("default accepts", func(t *testing.T) {
		// No policy.json anywhere: not in the (re-rooted) system
		// directories, not in the user's configuration.
		home := t.TempDir()
		t.Setenv("HOME", home)
		t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
		t.Setenv("CONTAINERS_POLICY_JSON", "")
		src := testSource(t)
		src.PolicyPath = ""
		src.SystemContext.RootForImplicitAbsolutePaths = t.TempDir()
		var logs bytes.Buffer
		src.Log = testLogger(t, &logs)
		if _, err := src.Pull(ctx, newDirStore(t), ref, ""); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(logs.String(), "insecureAcceptAnything") {
			t.Errorf("the built-in policy was not logged:\n%s", logs.String())
		}
	})
}

// TestPullBlobs: layers are fetched concurrently from transports that allow
// it; a layer listed twice is fetched once, and a missing layer fails the
// pull naming that layer, leaving it out of the store.
func TestPullBlobs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w := blobWriter{t: t, dir: dir}
	layers := [][]tf{lowerLayer(), upperLayer(), lowerLayer(), {file("a", "a")}, {file("b", "b")}, {file("c", "c")}}
	img := makeImage(t, w, "amd64", layers...)
	writeIndex(t, dir, []imgspec.Descriptor{{MediaType: imgspec.MediaTypeImageManifest, Digest: img.manifest, Size: img.manifestLen,
		Annotations: map[string]string{imgspec.AnnotationRefName: "v1"}}})
	ref := "oci:" + dir + ":v1"
	store := newDirStore(t)
	res, err := testSource(t).Pull(ctx, store, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	checkResolved(t, res, wantResolved(ref, img))
	checkStored(t, store, res)
	if got := len(store.blobs(t)); got != 2+5 { // manifest, config, 5 distinct layers
		t.Errorf("store holds %d blobs, want 7", got)
	}

	// A missing layer is named, and not stored.
	missing := img.layers[4]
	if err := os.Remove(filepath.Join(dir, "blobs", "sha256", missing.Encoded())); err != nil {
		t.Fatal(err)
	}
	fresh := newDirStore(t)
	_, err = testSource(t).Pull(ctx, fresh, ref, "")
	checkErr(t, err, ref, missing.String())
	if fresh.Has(missing.String()) {
		t.Error("the missing layer is in the store")
	}
}
