package ctrstore

import (
	"strings"
	"testing"
)

func TestNormalizeRef(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct{ in, want, err string }{
		{in: "registry.k8s.io/pause:3.10.2", want: "registry.k8s.io/pause:3.10.2"},
		{in: "docker://registry.k8s.io/pause:3.10.2", want: "registry.k8s.io/pause:3.10.2"},
		{in: "busybox", want: "docker.io/library/busybox:latest"},
		{in: "quay.io/a/b:1@" + d, want: "quay.io/a/b@" + d},
		{in: "localhost:5000/x", want: "localhost:5000/x:latest"},
		{in: "Upper/case", err: "must be lowercase"},
		{in: "", err: "image reference"},
	} {
		got, err := NormalizeRef(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("NormalizeRef(%q) = %q, %v; want an error saying %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizeRef(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestRecordsAndSource(t *testing.T) {
	d := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	base := Image{Manifest: Blob{Digest: d("a")}, Config: Blob{Digest: d("c")}}
	for _, tc := range []struct {
		ref, host, repo string
		names           []string
	}{
		{"registry.k8s.io/pause:3.10.2", "registry.k8s.io", "pause", []string{d("c"), "registry.k8s.io/pause:3.10.2", "registry.k8s.io/pause@" + d("a")}},
		{"localhost:5000/x/y:1", "localhost", "x/y", []string{d("c"), "localhost:5000/x/y:1", "localhost:5000/x/y@" + d("a")}},
		{"docker.io/library/busybox:latest", "docker.io", "library/busybox", []string{d("c"), "docker.io/library/busybox:latest", "docker.io/library/busybox@" + d("a")}},
		// a digest the manifest was chosen by (an index): its record too
		{"quay.io/a/b@" + d("e"), "quay.io", "a/b", []string{d("c"), "quay.io/a/b@" + d("a"), "quay.io/a/b@" + d("e")}},
		{"quay.io/a/b@" + d("a"), "quay.io", "a/b", []string{d("c"), "quay.io/a/b@" + d("a")}},
	} {
		img := base
		img.Ref = tc.ref
		recs, err := img.records()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range recs {
			names = append(names, r.name)
		}
		if strings.Join(names, " ") != strings.Join(tc.names, " ") {
			t.Errorf("%s: records %v, want %v", tc.ref, names, tc.names)
		}
		host, repo, err := img.source()
		if err != nil || host != tc.host || repo != tc.repo {
			t.Errorf("%s: source %q %q %v, want %q %q", tc.ref, host, repo, err, tc.host, tc.repo)
		}
	}
}

func TestGCLabels(t *testing.T) {
	d := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	img := &Image{
		Config: Blob{Digest: d("c"), MediaType: MediaTypeDockerConfig},
		Layers: []Blob{
			{Digest: d("1"), MediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip"},
			{Digest: d("2"), MediaType: "application/vnd.oci.image.layer.v1.tar+zstd"},
			{Digest: d("1"), MediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip"},
			{Digest: d("3"), MediaType: "application/vnd.example.other"},
		},
	}
	want := map[string]string{
		"containerd.io/gc.ref.content.config": d("c"),
		"containerd.io/gc.ref.content.l.0":    d("1"),
		"containerd.io/gc.ref.content.l.1":    d("2"),
		"containerd.io/gc.ref.content.l.2":    d("1"),
		"containerd.io/gc.ref.content.0":      d("3"),
	}
	got := gcLabels(img)
	if len(got) != len(want) {
		t.Errorf("gcLabels = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("gcLabels[%s] = %q, want %q", k, got[k], v)
		}
	}
}

func TestParseManifest(t *testing.T) {
	d := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	cfg := `"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + d("c") + `","size":10}`
	layer := `"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + d("1") + `","size":20}]`
	for _, tc := range []struct{ name, in, mediaType, err string }{
		{name: "oci", in: `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` + cfg + `,` + layer + `}`, mediaType: "application/vnd.oci.image.manifest.v1+json"},
		{name: "oci without mediaType", in: `{"schemaVersion":2,` + cfg + `,` + layer + `}`, mediaType: "application/vnd.oci.image.manifest.v1+json"},
		{name: "docker", in: `{"schemaVersion":2,"mediaType":"` + MediaTypeDockerManifest + `",` + cfg + `,` + layer + `}`, mediaType: MediaTypeDockerManifest},
		{name: "index", in: `{"schemaVersion":2,"manifests":[]}`, err: "index"},
		{name: "list", in: `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}`, err: "not an image manifest"},
		{name: "schema 1", in: `{"schemaVersion":1}`, err: "schemaVersion 1"},
		{name: "bad digest", in: `{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:00","size":1}}`, err: "config digest"},
		{name: "sha512", in: `{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha512:` + strings.Repeat("0", 128) + `","size":1}}`, err: "want sha256"},
		{name: "no media type", in: `{"schemaVersion":2,"config":{"digest":"` + d("c") + `","size":1}}`, err: "no media type"},
		{name: "negative size", in: `{"schemaVersion":2,` + cfg + `,"layers":[{"mediaType":"x","digest":"` + d("1") + `","size":-1}]}`, err: "size -1"},
		{name: "not json", in: `{`, err: "parsing manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, c, layers, err := ParseManifest([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.MediaType != tc.mediaType || m.Size != int64(len(tc.in)) || c.Digest != d("c") || c.Size != 10 || len(layers) != 1 || layers[0].Size != 20 {
				t.Errorf("got %+v %+v %+v", m, c, layers)
			}
		})
	}
}

// FuzzParseManifest: any bytes give an error or descriptors that name
// sha256 blobs with a media type and a size.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:` + strings.Repeat("c", 64) + `","size":1},"layers":[]}`))
	f.Add([]byte(`{"schemaVersion":2,"manifests":[]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, c, layers, err := ParseManifest(b)
		if err != nil {
			return
		}
		if m.Size != int64(len(b)) || !strings.HasPrefix(m.Digest, "sha256:") {
			t.Fatalf("manifest %+v", m)
		}
		for _, bl := range append([]Blob{c}, layers...) {
			if len(bl.Digest) != 71 || bl.MediaType == "" || bl.Size < 0 {
				t.Fatalf("descriptor %+v", bl)
			}
		}
	})
}
