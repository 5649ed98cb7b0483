package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"
)

// fixtureTime is the mtime of every entry of the test layers.
var fixtureTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// tf is one entry of a test layer.
type tf struct {
	name string
	typ  byte
	body string // content of a regular file
	link string // target of a symlink or hard link
	mode int64
}

func file(name, body string) tf { return tf{name: name, typ: tar.TypeReg, body: body, mode: 0o644} }
func exe(name, body string) tf  { return tf{name: name, typ: tar.TypeReg, body: body, mode: 0o755} }
func dir(name string) tf        { return tf{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) tf {
	return tf{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}
func hardlink(name, target string) tf {
	return tf{name: name, typ: tar.TypeLink, link: target, mode: 0o755}
}
func whiteout(name string) tf { return file(name, "") }

// lowerLayer and upperLayer are the two layers of the test image.
func lowerLayer() []tf {
	return []tf{
		dir("etc/"),
		file("etc/x", "x from the lower layer"),
		file("etc/keep", "kept"),
		dir("usr/"), dir("usr/local/"), dir("usr/local/bin/"),
		exe("usr/local/bin/kube-apiserver", "apiserver v1.31"),
		exe("usr/local/bin/replaced", "lower"),
		dir("opt/"), dir("opt/data/"),
		file("opt/data/a", "a lower"),
		file("opt/data/sub/b", "b lower"), // no entry for its directory
		dir("gone/"),
		file("gone/f", "f"),
		dir("lib/"),
		file("lib/thing", "thing"),
	}
}

func upperLayer() []tf {
	return []tf{
		whiteout("etc/.wh.x"),
		exe("usr/local/bin/replaced", "upper"),
		exe("usr/local/bin/kubectl", "kubectl v1.31"),
		hardlink("usr/local/bin/kubectl-hl", "usr/local/bin/kubectl"),
		symlink("usr/local/bin/apiserver-link", "/usr/local/bin/kube-apiserver"),
		dir("opt/data/"),
		whiteout("opt/data/.wh..wh..opq"),
		file("opt/data/c", "c upper"),
		symlink("bin", "usr/local/bin"),
		whiteout(".wh.gone"),
		symlink("lib", "/usr/local"), // a directory below replaced by a symlink
	}
}

func tarBytes(t *testing.T, files []tf) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{
			Name: f.name, Typeflag: f.typ, Mode: f.mode, Linkname: f.link,
			ModTime: fixtureTime, Uname: "root", Gname: "root", Format: tar.FormatPAX,
		}
		if f.typ == tar.TypeReg {
			h.Size = int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if f.typ == tar.TypeReg {
			if _, err := io.WriteString(tw, f.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf) // no name, zero mtime: deterministic
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testImage is one platform's image of a fixture.
type testImage struct {
	manifest    digest.Digest
	config      digest.Digest
	configBlob  []byte
	layers      []digest.Digest // gzip blobs
	layerTars   [][]byte        // uncompressed
	diffIDs     []digest.Digest
	manifestLen int64
}

// fixture is an OCI layout on disk: tag "v1" is the amd64 image with two
// gzip layers, tag "multi" (when made) an image index of the amd64 image and
// an arm64 one.
type fixture struct {
	layout string
	amd64  testImage
	arm64  testImage
	index  digest.Digest
}

type blobWriter struct {
	t   *testing.T
	dir string
}

func (w blobWriter) put(b []byte) (digest.Digest, int64) {
	w.t.Helper()
	d := digest.FromBytes(b)
	p := filepath.Join(w.dir, "blobs", d.Algorithm().String(), d.Encoded())
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		w.t.Fatal(err)
	}
	return d, int64(len(b))
}

func makeImage(t *testing.T, w blobWriter, arch string, layers ...[]tf) testImage {
	t.Helper()
	var img testImage
	var descs []imgspec.Descriptor
	for _, l := range layers {
		raw := tarBytes(t, l)
		gz := gzipBytes(t, raw)
		d, n := w.put(gz)
		img.layers = append(img.layers, d)
		img.layerTars = append(img.layerTars, raw)
		img.diffIDs = append(img.diffIDs, digest.FromBytes(raw))
		descs = append(descs, imgspec.Descriptor{MediaType: imgspec.MediaTypeImageLayerGzip, Digest: d, Size: n})
	}
	created := fixtureTime
	img.configBlob = mustJSON(t, imgspec.Image{
		Created:  &created,
		Platform: imgspec.Platform{Architecture: arch, OS: "linux"},
		Config:   imgspec.ImageConfig{Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}},
		RootFS:   imgspec.RootFS{Type: "layers", DiffIDs: img.diffIDs},
	})
	cd, cn := w.put(img.configBlob)
	img.config = cd
	man := mustJSON(t, imgspec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: imgspec.MediaTypeImageManifest,
		Config:    imgspec.Descriptor{MediaType: imgspec.MediaTypeImageConfig, Digest: cd, Size: cn},
		Layers:    descs,
	})
	img.manifest, img.manifestLen = w.put(man)
	return img
}

// makeLayout writes an OCI layout into dir; withMulti adds the "multi" tag.
func makeLayout(t *testing.T, dir string, withMulti bool) *fixture {
	t.Helper()
	w := blobWriter{t: t, dir: dir}
	fx := &fixture{layout: dir}
	fx.amd64 = makeImage(t, w, "amd64", lowerLayer(), upperLayer())
	entries := []imgspec.Descriptor{{
		MediaType:   imgspec.MediaTypeImageManifest,
		Digest:      fx.amd64.manifest,
		Size:        fx.amd64.manifestLen,
		Annotations: map[string]string{imgspec.AnnotationRefName: "v1"},
	}}
	if withMulti {
		fx.arm64 = makeImage(t, w, "arm64", []tf{file("arch", "arm64")})
		idx := mustJSON(t, imgspec.Index{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: imgspec.MediaTypeImageIndex,
			Manifests: []imgspec.Descriptor{
				{MediaType: imgspec.MediaTypeImageManifest, Digest: fx.arm64.manifest, Size: fx.arm64.manifestLen,
					Platform: &imgspec.Platform{Architecture: "arm64", OS: "linux"}},
				{MediaType: imgspec.MediaTypeImageManifest, Digest: fx.amd64.manifest, Size: fx.amd64.manifestLen,
					Platform: &imgspec.Platform{Architecture: "amd64", OS: "linux"}},
			},
		})
		d, n := w.put(idx)
		fx.index = d
		entries = append(entries, imgspec.Descriptor{
			MediaType: imgspec.MediaTypeImageIndex, Digest: d, Size: n,
			Annotations: map[string]string{imgspec.AnnotationRefName: "multi"},
		})
	}
	writeIndex(t, dir, entries)
	return fx
}

// writeIndex makes dir an OCI layout whose index lists entries.
func writeIndex(t *testing.T, dir string, entries []imgspec.Descriptor) {
	t.Helper()
	top := mustJSON(t, imgspec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: imgspec.MediaTypeImageIndex,
		Manifests: entries,
	})
	if err := os.WriteFile(filepath.Join(dir, imgspec.ImageIndexFile), top, 0o644); err != nil {
		t.Fatal(err)
	}
	layout := mustJSON(t, imgspec.ImageLayout{Version: imgspec.ImageLayoutVersion})
	if err := os.WriteFile(filepath.Join(dir, imgspec.ImageLayoutFile), layout, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tarDir packs a directory into a tar file (for oci-archive:).
func tarDir(t *testing.T, dir, out string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// dockerArchive writes img in "docker save" format: manifest.json, the
// config and one uncompressed layer.tar per layer.
func dockerArchive(t *testing.T, img testImage, out string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) {
		h := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b)), ModTime: fixtureTime}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	configName := img.config.Encoded() + ".json"
	var layerNames []string
	for i, raw := range img.layerTars {
		name := img.diffIDs[i].Encoded() + "/layer.tar"
		layerNames = append(layerNames, name)
		add(name, raw)
	}
	add(configName, img.configBlob)
	add("manifest.json", mustJSON(t, []map[string]any{{
		"Config":   configName,
		"RepoTags": []string{"test/img:v1"},
		"Layers":   layerNames,
	}}))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// isolatedSystemContext keeps containers/image away from the machine's
// configuration and state: empty registries.conf, no registries.d, no
// credentials, temporary files and the blob info cache in a temporary
// directory.
func isolatedSystemContext(t *testing.T) *types.SystemContext {
	t.Helper()
	dir := t.TempDir()
	regConf := filepath.Join(dir, "registries.conf")
	if err := os.WriteFile(regConf, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"registries.conf.d", "registries.d", "tmp", "cache"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &types.SystemContext{
		SystemRegistriesConfPath:    regConf,
		SystemRegistriesConfDirPath: filepath.Join(dir, "registries.conf.d"),
		RegistriesDirPath:           filepath.Join(dir, "registries.d"),
		AuthFilePath:                filepath.Join(dir, "auth.json"),
		BigFilesTemporaryDir:        filepath.Join(dir, "tmp"),
		BlobInfoCacheDir:            filepath.Join(dir, "cache"), // copy.Image writes one
	}
}

// acceptPolicy writes a policy.json that accepts any image.
func acceptPolicy(t *testing.T) string {
	t.Helper()
	return writePolicy(t, `{"default":[{"type":"insecureAcceptAnything"}]}`)
}

func writePolicy(t *testing.T, policy string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(p, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// testSource is a Source isolated from the machine's configuration.
func testSource(t *testing.T) *Source {
	t.Helper()
	return &Source{
		SystemContext: isolatedSystemContext(t),
		PolicyPath:    acceptPolicy(t),
		Log:           testLogger(t, nil),
	}
}

// testLogger logs to t.Log, and to buf too when it is not nil.
func testLogger(t *testing.T, buf *bytes.Buffer) *slog.Logger {
	var w io.Writer = tWriter{t}
	if buf != nil {
		w = io.MultiWriter(w, buf)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
