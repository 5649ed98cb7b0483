package upstream

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Published is one file Layout wrote, by its path below the tree's root
// (which is also its URL path below the server's base URL).
type Published struct {
	Path   string `json:"path"` // e.g. dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubelet
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Layout writes the built binaries under root in upstream's URL layout, with
// the checksum files each project publishes beside them:
//
//	dl.k8s.io/release/vX.Y.Z/bin/linux/amd64/NAME (+ NAME.sha256, NAME.sha512: the bare hex digest)
//	github.com/etcd-io/etcd/releases/download/vX/etcd-vX-linux-amd64.tar.gz (+ SHA256SUMS)
//	github.com/containerd/containerd/releases/download/vX/containerd-X-linux-amd64.tar.gz (+ .sha256sum)
//	github.com/kubernetes-sigs/cri-tools/releases/download/vX/crictl-vX-linux-amd64.tar.gz (+ .sha256, .sha512)
//	github.com/opencontainers/runc/releases/download/vX/runc.amd64 (+ runc.sha256sum)
//	github.com/containernetworking/plugins/releases/download/vX/cni-plugins-linux-amd64-vX.tgz (+ .sha256)
//	github.com/projectcalico/calico/releases/download/vX/calicoctl-linux-amd64, release-vX.tgz (+ SHA256SUMS)
//
// Archives have the members and top directories of upstream's, fixed times
// (the release's commit time), owner root and sorted entries, so the same
// binaries give the same archive bytes. CoreDNS, Headlamp and local programs have no
// download here: they ship as images (WriteImage). It returns the files
// written, sorted by path.
func Layout(root string, results []*Result) ([]Published, error) {
	var out []Published
	add := func(rel string, data []byte) error {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		out = append(out, Published{Path: rel, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
		return nil
	}
	for _, r := range results {
		var err error
		switch r.Component.Name {
		case "kubernetes":
			err = layoutKubernetes(r, add)
		case "etcd":
			err = layoutEtcd(r, add)
		case "containerd":
			err = layoutContainerd(r, add)
		case "crictl":
			err = layoutCrictl(r, add)
		case "runc":
			err = layoutRunc(r, add)
		case "cni":
			err = layoutCNI(r, add)
		case "calico":
			err = layoutCalico(r, add)
		}
		if err != nil {
			return nil, fmt.Errorf("layout of %s %s: %w", r.Component.Name, r.Component.Version, err)
		}
	}
	slices.SortFunc(out, func(a, b Published) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

type addFunc func(rel string, data []byte) error

func layoutKubernetes(r *Result, add addFunc) error {
	dir := "dl.k8s.io/release/" + r.Component.Version + "/bin/linux/amd64/"
	for _, f := range r.Files {
		data, err := os.ReadFile(f.Path)
		if err != nil {
			return err
		}
		// dl.k8s.io serves executables; its checksum files hold the bare
		// hex digest and no file name.
		if err := add(dir+f.Name, data); err != nil {
			return err
		}
		s256, s512 := sha256.Sum256(data), sha512.Sum512(data)
		if err := add(dir+f.Name+".sha256", []byte(hex.EncodeToString(s256[:]))); err != nil {
			return err
		}
		if err := add(dir+f.Name+".sha512", []byte(hex.EncodeToString(s512[:]))); err != nil {
			return err
		}
	}
	return nil
}

// layoutEtcd packs etcd-vX-linux-amd64/ with the binaries and the READMEs
// scripts/build-binary.sh copies, when the module zips carry them (the root
// README.md and Documentation/ live in the repository's root module, which
// the proxy does not serve for every release), and writes SHA256SUMS in
// `shasum -a 256` form.
func layoutEtcd(r *Result, add addFunc) error {
	v := r.Component.Version
	top := "etcd-" + v + "-linux-amd64"
	var members []member
	for _, f := range r.Files {
		members = append(members, member{name: top + "/" + f.Name, src: f.Path, mode: 0o755})
	}
	// README files of the etcdctl and etcdutl modules, as the script names them.
	for _, doc := range []struct{ module, file, as string }{
		{"go.etcd.io/etcd/etcdctl/v3", "README.md", "README-etcdctl.md"},
		{"go.etcd.io/etcd/etcdctl/v3", "READMEv2.md", "READMEv2-etcdctl.md"},
		{"go.etcd.io/etcd/etcdutl/v3", "README.md", "README-etcdutl.md"},
	} {
		dir := r.moduleDir(doc.module)
		if dir == "" {
			continue
		}
		src := filepath.Join(dir, doc.file)
		if _, err := os.Stat(src); err == nil {
			members = append(members, member{name: top + "/" + doc.as, src: src, mode: 0o644})
		}
	}
	name := top + ".tar.gz"
	data, err := tarGz(members, r.Module.Time, true)
	if err != nil {
		return err
	}
	dir := "github.com/etcd-io/etcd/releases/download/" + v + "/"
	if err := add(dir+name, data); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	return add(dir+"SHA256SUMS", fmt.Appendf(nil, "%s  %s\n", hex.EncodeToString(sum[:]), name))
}

// layoutContainerd packs bin/ as the Makefile's pack_release does and writes
// NAME.sha256sum in sha256sum's form.
func layoutContainerd(r *Result, add addFunc) error {
	v := r.Component.Version
	name := "containerd-" + strings.TrimPrefix(v, "v") + "-linux-amd64.tar.gz"
	var members []member
	for _, f := range r.Files {
		members = append(members, member{name: "bin/" + f.Name, src: f.Path, mode: 0o755})
	}
	data, err := tarGz(members, r.Module.Time, true)
	if err != nil {
		return err
	}
	dir := "github.com/containerd/containerd/releases/download/" + v + "/"
	if err := add(dir+name, data); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	return add(dir+name+".sha256sum", fmt.Appendf(nil, "%s  %s\n", hex.EncodeToString(sum[:]), name))
}

// layoutCrictl packs crictl at the archive's root as hack/release.sh does,
// with the bare-digest .sha256 and .sha512 files it writes.
func layoutCrictl(r *Result, add addFunc) error {
	v := r.Component.Version
	name := "crictl-" + v + "-linux-amd64.tar.gz"
	var members []member
	for _, f := range r.Files {
		members = append(members, member{name: f.Name, src: f.Path, mode: 0o755})
	}
	data, err := tarGz(members, r.Module.Time, false)
	if err != nil {
		return err
	}
	dir := "github.com/kubernetes-sigs/cri-tools/releases/download/" + v + "/"
	if err := add(dir+name, data); err != nil {
		return err
	}
	s256, s512 := sha256.Sum256(data), sha512.Sum512(data)
	if err := add(dir+name+".sha256", []byte(hex.EncodeToString(s256[:]))); err != nil {
		return err
	}
	return add(dir+name+".sha512", []byte(hex.EncodeToString(s512[:])))
}

// layoutRunc serves runc as runc's release does: runc.amd64 with
// runc.sha256sum beside it in sha256sum's form (upstream's lists every
// architecture; this one the file served).
func layoutRunc(r *Result, add addFunc) error {
	bin, err := r.file("runc")
	if err != nil {
		return err
	}
	data, err := os.ReadFile(bin.Path)
	if err != nil {
		return err
	}
	dir := "github.com/opencontainers/runc/releases/download/" + r.Component.Version + "/"
	if err := add(dir+"runc.amd64", data); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	return add(dir+"runc.sha256sum", fmt.Appendf(nil, "%s  runc.amd64\n", hex.EncodeToString(sum[:])))
}

// layoutCNI packs the plugins at the top of cni-plugins-linux-amd64-vX.tgz
// as the plugins' release script does (./bridge, ./host-local, …, after a
// "./" entry) and writes NAME.sha256 in sha256sum's form.
func layoutCNI(r *Result, add addFunc) error {
	v := r.Component.Version
	name := "cni-plugins-linux-amd64-" + v + ".tgz"
	var members []member
	for _, f := range r.Files {
		members = append(members, member{name: f.Name, src: f.Path, mode: 0o755})
	}
	raw, err := tarPrefixed(members, r.Module.Time, false, true)
	if err != nil {
		return err
	}
	data, err := gzipBytes(raw)
	if err != nil {
		return err
	}
	dir := "github.com/containernetworking/plugins/releases/download/" + v + "/"
	if err := add(dir+name, data); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	return add(dir+name+".sha256", fmt.Appendf(nil, "%s  %s\n", hex.EncodeToString(sum[:]), name))
}

// layoutCalico serves the stand-in calicoctl as calicoctl-linux-amd64 and
// release-vX.tgz holding release-vX/manifests/calico.yaml (CalicoManifest),
// both listed in SHA256SUMS in sha256sum's form, as Calico's release does.
func layoutCalico(r *Result, add addFunc) error {
	v := r.Component.Version
	bin, err := r.file("standin")
	if err != nil {
		return err
	}
	ctl, err := os.ReadFile(bin.Path)
	if err != nil {
		return err
	}
	manifest, err := CalicoManifest(v)
	if err != nil {
		return err
	}
	top := "release-" + v
	tgz, err := tarGz([]member{{name: top + "/manifests/calico.yaml", data: manifest, mode: 0o644}}, ProgramEpoch, true)
	if err != nil {
		return err
	}
	dir := "github.com/projectcalico/calico/releases/download/" + v + "/"
	var sums bytes.Buffer
	for _, f := range []struct {
		name string
		data []byte
	}{{"calicoctl-linux-amd64", ctl}, {top + ".tgz", tgz}} {
		if err := add(dir+f.name, f.data); err != nil {
			return err
		}
		sum := sha256.Sum256(f.data)
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(sum[:]), f.name)
	}
	return add(dir+"SHA256SUMS", sums.Bytes())
}

// moduleDir is where module's source of this build is, next to r.Module.Dir
// (modules of one release share the version and the module cache).
func (r *Result) moduleDir(module string) string {
	if r.Module.Dir == "" {
		return ""
	}
	// GOMODCACHE/go.etcd.io/etcd/server/v3@v3.6.17 → GOMODCACHE
	cache := r.Module.Dir
	for range strings.Split(r.Module.Path, "/") {
		cache = filepath.Dir(cache)
	}
	return filepath.Join(cache, filepath.FromSlash(module)+"@"+r.Component.Version)
}

// member is one regular file of an archive.
type member struct {
	name string // slash-separated path inside the archive
	src  string // file to read
	data []byte // or its content
	mode int64
	dir  bool // a directory (src and data unused)
	auto bool // a parent directory tarBytes added
	// xattrs are extended attributes (PAX SCHILY.xattr.*), e.g. a file
	// capability.
	xattrs map[string]string
}

// tarGz writes members (and, when dirs, their parent directories) sorted by
// name, owned by root, dated mtime, gzip-compressed without a name or time in
// the gzip header.
func tarGz(members []member, mtime time.Time, dirs bool) ([]byte, error) {
	raw, err := tarBytes(members, mtime, dirs)
	if err != nil {
		return nil, err
	}
	return gzipBytes(raw)
}

func gzipBytes(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tarBytes is tarGz without the compression.
func tarBytes(members []member, mtime time.Time, dirs bool) ([]byte, error) {
	return tarPrefixed(members, mtime, dirs, false)
}

// tarPrefixed is tarBytes, with every name written as "./NAME" after a
// "./" directory entry when dotSlash (as `tar -C DIR -czf X.tgz .` writes
// them, the CNI plugins' release archive among others).
func tarPrefixed(members []member, mtime time.Time, dirs, dotSlash bool) ([]byte, error) {
	mtime = mtime.UTC().Truncate(time.Second)
	entries := map[string]member{}
	for _, m := range members {
		name := path.Clean(m.name)
		if name == "." || strings.HasPrefix(name, "../") || path.IsAbs(name) {
			return nil, fmt.Errorf("archive member %q: not a relative path", m.name)
		}
		if m.dir {
			name += "/"
		}
		if old, dup := entries[name]; dup && !old.auto {
			return nil, fmt.Errorf("archive member %q twice", name)
		}
		entries[name] = m
		for d := path.Dir(strings.TrimSuffix(name, "/")); dirs && d != "."; d = path.Dir(d) {
			if _, ok := entries[d+"/"]; !ok {
				entries[d+"/"] = member{dir: true, auto: true, mode: 0o755}
			}
		}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	slices.Sort(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if dotSlash {
		h := &tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	for _, n := range names {
		m := entries[n]
		h := &tar.Header{Name: n, Mode: m.mode, ModTime: mtime, Format: tar.FormatPAX}
		if dotSlash {
			h.Name = "./" + n
		}
		if strings.HasSuffix(n, "/") {
			h.Typeflag = tar.TypeDir
			if err := tw.WriteHeader(h); err != nil {
				return nil, err
			}
			continue
		}
		data := m.data
		if m.src != "" {
			var err error
			if data, err = os.ReadFile(m.src); err != nil {
				return nil, err
			}
		}
		h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
		if len(m.xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range m.xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := io.Copy(tw, bytes.NewReader(data)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
