package oci

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"io/fs"
	"reflect"
	"testing"
)

// extracted is what ExtractPath handed to its callback for one file.
type extracted struct {
	typ  byte
	body string
	link string
	mode int64
}

func extract(t *testing.T, src *Source, store Store, img *Resolved, p string) (map[string]extracted, error) {
	t.Helper()
	got := map[string]extracted{}
	err := src.ExtractPath(context.Background(), store, img, p, func(h *tar.Header, r io.Reader) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if int64(len(b)) != h.Size {
			t.Errorf("%s: header says %d bytes, read %d", h.Name, h.Size, len(b))
		}
		if _, dup := got[h.Name]; dup {
			t.Errorf("%s handed over twice", h.Name)
		}
		got[h.Name] = extracted{typ: h.Typeflag, body: string(b), link: h.Linkname, mode: h.Mode}
		return nil
	})
	return got, err
}

func checkExtract(t *testing.T, src *Source, store Store, img *Resolved, p string, want map[string]extracted) {
	t.Helper()
	got, err := extract(t, src, store, img, p)
	if err != nil {
		t.Fatalf("ExtractPath(%s): %v", p, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ExtractPath(%s)\n got %+v\nwant %+v", p, got, want)
	}
}

func TestExtractPath(t *testing.T) {
	fx := makeLayout(t, t.TempDir(), false)
	src := testSource(t)
	store := newDirStore(t)
	img, err := src.Pull(context.Background(), store, "oci:"+fx.layout+":v1", "")
	if err != nil {
		t.Fatal(err)
	}
	// Extraction needs nothing but the store.
	off := offlineSource(t)

	apiserver := extracted{typ: tar.TypeReg, body: "apiserver v1.31", mode: 0o755}
	kubectl := extracted{typ: tar.TypeReg, body: "kubectl v1.31", mode: 0o755}
	binDir := func(prefix string) map[string]extracted {
		return map[string]extracted{
			prefix + "/kube-apiserver": apiserver,
			prefix + "/replaced":       {typ: tar.TypeReg, body: "upper", mode: 0o755},
			prefix + "/kubectl":        kubectl,
			prefix + "/kubectl-hl":     kubectl, // a hard link, with its target's content
			prefix + "/apiserver-link": {typ: tar.TypeSymlink, link: "/usr/local/bin/kube-apiserver", mode: 0o777},
		}
	}

	for _, tc := range []struct {
		name, path string
		want       map[string]extracted
	}{
		{"file from the lower layer", "/usr/local/bin/kube-apiserver",
			map[string]extracted{"/usr/local/bin/kube-apiserver": apiserver}},
		{"relative path", "usr/local/bin/kube-apiserver",
			map[string]extracted{"/usr/local/bin/kube-apiserver": apiserver}},
		{"file replaced by the upper layer", "/usr/local/bin/replaced",
			map[string]extracted{"/usr/local/bin/replaced": {typ: tar.TypeReg, body: "upper", mode: 0o755}}},
		{"file only in the upper layer", "/usr/local/bin/kubectl",
			map[string]extracted{"/usr/local/bin/kubectl": kubectl}},
		{"hard link", "/usr/local/bin/kubectl-hl",
			map[string]extracted{"/usr/local/bin/kubectl-hl": kubectl}},
		{"symlink followed", "/usr/local/bin/apiserver-link",
			map[string]extracted{"/usr/local/bin/apiserver-link": apiserver}},
		{"through a directory symlink", "/bin/kubectl",
			map[string]extracted{"/bin/kubectl": kubectl}},
		{"through a symlink that replaced a directory", "/lib/bin/kube-apiserver",
			map[string]extracted{"/lib/bin/kube-apiserver": apiserver}},
		{"dot-dot", "/usr/local/bin/../bin/kubectl",
			map[string]extracted{"/usr/local/bin/kubectl": kubectl}},
		{"directory with a whited-out file", "/etc",
			map[string]extracted{"/etc/keep": {typ: tar.TypeReg, body: "kept", mode: 0o644}}},
		{"opaque directory", "/opt/data",
			map[string]extracted{"/opt/data/c": {typ: tar.TypeReg, body: "c upper", mode: 0o644}}},
		{"directory of both layers", "/usr/local/bin", binDir("/usr/local/bin")},
		{"directory through a symlink", "/bin", binDir("/bin")},
		{"directory through a symlink, trailing slash", "/bin/", binDir("/bin")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkExtract(t, src, store, img, tc.path, tc.want)
			checkExtract(t, off, store, img, tc.path, tc.want)
		})
	}

	for _, p := range []string{
		"/etc/x",                    // whited out
		"/gone",                     // directory whited out
		"/gone/f",                   // below it
		"/opt/data/a",               // hidden by the opaque directory
		"/opt/data/sub/b",           // likewise, in an implicit directory
		"/lib/thing",                // the directory became a symlink
		"/usr/local/bin/nothing",    // never there
		"/etc/keep/below-a-file",    // below a regular file
		"/usr/local/bin/.wh.nosuch", // whiteouts are not files
	} {
		t.Run("not found "+p, func(t *testing.T) {
			_, err := extract(t, src, store, img, p)
			checkErr(t, err, img.Ref, p)
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error %v does not wrap fs.ErrNotExist", err)
			}
		})
	}

	t.Run("callback error", func(t *testing.T) {
		boom := errors.New("boom")
		err := src.ExtractPath(context.Background(), store, img, "/usr/local/bin", func(*tar.Header, io.Reader) error {
			return boom
		})
		if !errors.Is(err, boom) {
			t.Errorf("error %v does not wrap the callback's", err)
		}
	})

	t.Run("symlink loop", func(t *testing.T) {
		loop := makeImageInStore(t, store, []tf{symlink("a", "b"), symlink("b", "/a")})
		_, err := extract(t, src, store, loop, "/a")
		checkErr(t, err, "/a", "symbolic links")
	})

	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := src.ExtractPath(ctx, store, img, "/etc", func(*tar.Header, io.Reader) error { return nil })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
	})
}

// makeImageInStore puts gzip layers straight into the store and returns
// an image made of them (no manifest: ExtractPath does not need one).
func makeImageInStore(t *testing.T, store Store, layers ...[]tf) *Resolved {
	t.Helper()
	img := &Resolved{Ref: "test:layers"}
	for _, l := range layers {
		gz := gzipBytes(t, tarBytes(t, l))
		d, _, err := store.Put(context.Background(), bytesReader(gz), "")
		if err != nil {
			t.Fatal(err)
		}
		img.Layers = append(img.Layers, d)
	}
	return img
}

func TestExtractWhiteoutSemantics(t *testing.T) {
	store := newDirStore(t)
	src := testSource(t)
	// Three layers: whiteouts hide lower layers only, never their own.
	img := makeImageInStore(t, store,
		[]tf{file("d/a", "a0"), file("d/b", "b0"), file("f", "f0"), file("e/x", "x0")},
		[]tf{whiteout("d/.wh..wh..opq"), file("d/a", "a1"), whiteout(".wh.f"), file("f", "f1"), file("e", "now a file")},
		[]tf{whiteout("d/.wh.a"), file("d/c", "c2")},
	)
	checkExtract(t, src, store, img, "/", map[string]extracted{
		"/d/c": {typ: tar.TypeReg, body: "c2", mode: 0o644},
		"/f":   {typ: tar.TypeReg, body: "f1", mode: 0o644},
		"/e":   {typ: tar.TypeReg, body: "now a file", mode: 0o644},
	})
}
