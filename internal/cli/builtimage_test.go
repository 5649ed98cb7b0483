package cli

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/labbake/labbake/internal/source/gobuild/gobuildtest"
)

const builtRecipe = `base: {dir: rootfs}
disk: {size: 300MiB, boot: []}
images:
  - ref: registry.labbake.test/pause:3.10.2
    pinned: true
    build:
      files:
        - {file: bin/pause, dest: /pause, capabilities: [net_bind_service]}
        - {file: etc/motd, dest: /etc/motd, mode: "0640", owner: "65532:65532"}
      entrypoint: [/pause]
      user: "65535"
  - ref: registry.labbake.test/tools/hello:v1
    build:
      files:
        - go: {module: labbake.test/hello, version: v1.2.3, packages: [cmd/hello], ldflags: ["-X labbake.test/hello/version.Version=v1.2.3"]}
          dest: /usr/bin/hello
      entrypoint: [/usr/bin/hello]
      env: [PATH=/usr/bin]
`

// planInput is an input of labbake plan --json.
type planInput struct {
	Field, Kind, Name, Source, Digest, Config string
	Layers                                    []string
}

// Images built from a file: artifact and from a go: input, end to end:
// lock pins the go input, plan lists the files and the images (kind
// image-built), two bakes with other caches give the same qcow2 and the
// same manifests, the second bake in a cache builds nothing, the store in
// the image holds the image's blobs and records (read back with debugfs),
// the layer holds the files as the recipe says, /pause with its
// capability; a bundle carries it all into an empty cache where an
// offline, frozen build under unshare -n gives the same bytes; a changed
// file or other capabilities change the image and the plan; an
// entrypoint that is not a file is refused at its position.
func TestBuiltImages(t *testing.T) {
	requireTool(t, "mke2fs")
	requireTool(t, "debugfs")
	proxy := t.TempDir()
	gobuildtest.WriteProxy(t, proxy, gobuildtest.Hello()...)
	srv := gobuildtest.Serve(t, proxy)
	env := map[string]string{"GOPROXY": srv.URL, "GONOSUMDB": "labbake.test"}
	lab, cacheA := t.TempDir(), t.TempDir()
	writeFiles(t, lab, map[string]string{
		"lab.yaml":            "name: t\nnodes: [{name: m, role: master, ip: 172.18.0.2}]\n",
		"recipes/master.yaml": builtRecipe,
		"rootfs/etc/hostname": "m\n",
		"bin/pause":           "#!/bin/sh\nexec sleep infinity\n",
		"etc/motd":            "built by labbake\n",
	})
	log := goWrapper(t, false)
	if stdout, stderr, code := runEnv(t, env, "-C", lab, "--cache", cacheA, "lock"); code != 0 {
		t.Fatalf("lock: exit %d\n%s%s", code, stdout, stderr)
	}

	plan := func(cacheDir string, extra ...string) (string, []planInput) {
		t.Helper()
		stdout, stderr, code := runEnv(t, env, append([]string{"-C", lab, "--cache", cacheDir, "plan", "master", "--json"}, extra...)...)
		var p struct {
			Digest string
			Inputs []planInput
		}
		if err := json.Unmarshal([]byte(stdout), &p); code != 0 || err != nil {
			t.Fatalf("plan: exit %d %v\n%s%s", code, err, stdout, stderr)
		}
		return p.Digest, p.Inputs
	}
	planDigest, inputs := plan(cacheA, "--frozen")
	byField := map[string]planInput{}
	for _, in := range inputs {
		byField[in.Field] = in
	}
	for field, kind := range map[string]string{
		"images[0].build.files[0]": "artifact-file", "images[0].build.files[1]": "artifact-file", "images[0]": "image-built",
		"images[1].build.files[0]": "go", "images[1]": "image-built",
	} {
		if byField[field].Kind != kind {
			t.Errorf("plan %s: %+v, want kind %s", field, byField[field], kind)
		}
	}
	pause, hello := byField["images[0]"], byField["images[1]"]
	if pause.Name != "registry.labbake.test/pause:3.10.2" || pause.Config == "" || len(pause.Layers) != 1 || hello.Name != "registry.labbake.test/tools/hello:v1" {
		t.Errorf("plan images: %+v %+v", pause, hello)
	}
	if f := byField["images[0].build.files[0]"]; f.Name != "/pause" || f.Source != "bin/pause" || f.Digest != digestOf([]byte("#!/bin/sh\nexec sleep infinity\n")) {
		t.Errorf("plan file %+v", f)
	}
	if stdout, _, _ := runEnv(t, env, "-C", lab, "--cache", cacheA, "plan", "master", "--frozen"); !strings.Contains(stdout, "image-built") || !strings.Contains(stdout, pause.Digest) {
		t.Errorf("plan text:\n%s", stdout)
	}

	build := func(cacheDir string, extra ...string) (out, sha, stderr string) {
		t.Helper()
		out = t.TempDir()
		args := append([]string{"-C", lab, "--cache", cacheDir, "--out", out, "build", "master", "--keep-raw"}, extra...)
		stdout, stderr, code := runEnv(t, env, args...)
		if code != 0 {
			t.Fatalf("build %v: exit %d\n%s%s", extra, code, stdout, stderr)
		}
		sha, _ = imageSHA(t, out)
		return out, sha, stderr
	}
	outA, shaA, logA := build(cacheA, "--frozen")
	if strings.Contains(logA, "container image built") || !strings.Contains(logA, "container image preloaded") {
		t.Errorf("a bake after lock built the images again (or preloaded none):\n%s", logA)
	}
	cacheB := t.TempDir()
	before := goBuilds(t, log)
	_, shaB, logB := build(cacheB, "--frozen")
	for _, line := range strings.Split(logB, "\n") {
		if strings.Contains(line, "container image built") {
			t.Log(line)
		}
	}
	if n := strings.Count(logB, "container image built"); n != 2 || goBuilds(t, log)-before != 1 {
		t.Errorf("a bake with an empty cache built %d images and ran go build %d times, want 2 and 1", n, goBuilds(t, log)-before)
	}
	if shaA != shaB {
		t.Errorf("two caches, two qcow2: %s, %s", shaA, shaB)
	}
	if d, in := plan(cacheB, "--frozen"); d != planDigest || in[len(in)-1].Digest != hello.Digest {
		t.Errorf("the plan in another cache: %s (want %s)", d, planDigest)
	}

	// The image's containerd store, read back with debugfs.
	var m struct {
		Images []struct {
			Ref, Manifest, Config string
			Pinned, Built         bool
		}
		Partitions []struct{ Offset int64 }
	}
	b, _ := os.ReadFile(filepath.Join(outA, "master.manifest.json"))
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Images) != 2 || m.Images[0].Manifest != pause.Digest || !m.Images[0].Built || !m.Images[0].Pinned || m.Images[1].Manifest != hello.Digest || !m.Images[1].Built {
		t.Errorf("manifest images %+v", m.Images)
	}
	dev := fmt.Sprintf("%s?offset=%d", filepath.Join(outA, "master.raw"), m.Partitions[len(m.Partitions)-1].Offset)
	dir := t.TempDir()
	blobs := "/var/lib/containerd/io.containerd.content.v1.content/blobs/sha256/"
	script := fmt.Sprintf("dump /var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db %s/meta.db\n", dir)
	for _, in := range []planInput{pause, hello} {
		for _, d := range append([]string{in.Digest, in.Config}, in.Layers...) {
			h := strings.TrimPrefix(d, "sha256:")
			script += fmt.Sprintf("dump %s%s %s/%s\n", blobs, h, dir, h)
		}
	}
	os.WriteFile(filepath.Join(dir, "script"), []byte(script), 0o644)
	if dbg, err := exec.Command("debugfs", "-f", filepath.Join(dir, "script"), dev).CombinedOutput(); err != nil {
		t.Fatalf("debugfs: %v\n%s", err, dbg)
	}
	blob := func(d string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, strings.TrimPrefix(d, "sha256:")))
		if err != nil || digestOf(b) != d {
			t.Fatalf("blob %s in the image: %v (digest %s)", d, err, digestOf(b))
		}
		return b
	}
	var cfg struct {
		Architecture, OS string
		Created          string
		Config           struct {
			Entrypoint, Env []string
			User            string
		}
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		}
	}
	if err := json.Unmarshal(blob(pause.Config), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Architecture != "amd64" || cfg.OS != "linux" || cfg.Created != "2025-01-01T00:00:00Z" || cfg.Config.User != "65535" ||
		len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/pause" || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != pause.Layers[0] {
		t.Errorf("pause config %+v", cfg)
	}
	if !bytes.Contains(blob(pause.Digest), []byte(pause.Config)) {
		t.Errorf("the manifest does not name its config")
	}
	members := layerMembers(t, blob(pause.Layers[0]))
	for _, want := range []string{
		"d etc/ 0755 0:0 1735689600", "f etc/motd 0640 65532:65532 1735689600 built by labbake\n",
		"f pause 0755 0:0 1735689600 #!/bin/sh\nexec sleep infinity\n",
	} {
		if !strings.Contains(members, want+"|") {
			t.Errorf("pause layer lacks %q:\n%s", want, members)
		}
	}
	// /pause has its capability, as setcap cap_net_bind_service=+ep
	// writes it (builders/tree's TestFileCapabilities); etc/motd none.
	xattrs := map[string]string{}
	for tr := tar.NewReader(bytes.NewReader(blob(pause.Layers[0]))); ; {
		h, err := tr.Next()
		if err != nil {
			break
		}
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				xattrs[h.Name+" "+k] = fmt.Sprintf("%x", v)
			}
		}
	}
	if want := map[string]string{"pause SCHILY.xattr.security.capability": "0100000200040000000000000000000000000000"}; fmt.Sprint(xattrs) != fmt.Sprint(want) {
		t.Errorf("pause layer xattrs %v, want %v", xattrs, want)
	}
	// The go program in the other image runs.
	hl := layerMembers(t, blob(hello.Layers[0]))
	if !strings.Contains(hl, "f usr/bin/hello 0755 0:0 1735689600 ") {
		t.Errorf("hello layer:\n%.300s", hl)
	}
	tr := tar.NewReader(bytes.NewReader(blob(hello.Layers[0])))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no usr/bin/hello in the layer: %v", err)
		}
		if h.Name == "usr/bin/hello" {
			exe := filepath.Join(dir, "hello")
			body, _ := io.ReadAll(tr)
			os.WriteFile(exe, body, 0o755)
			if got, err := exec.Command(exe).Output(); err != nil || string(got) != "hello, lab v1.2.3\n" {
				t.Errorf("hello from the image says %q, %v", got, err)
			}
			break
		}
	}
	blob(hello.Digest)
	db, err := bolt.Open(filepath.Join(dir, "meta.db"), 0o444, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		for _, in := range []planInput{pause, hello} {
			img := tx.Bucket([]byte("v1")).Bucket([]byte("k8s.io")).Bucket([]byte("images")).Bucket([]byte(in.Name))
			if img == nil {
				return fmt.Errorf("no image record for %s", in.Name)
			}
			if got := string(img.Bucket([]byte("target")).Get([]byte("digest"))); got != in.Digest {
				return fmt.Errorf("%s: target %s, want %s", in.Name, got, in.Digest)
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Errorf("meta.db in the image: %v", err)
	}

	// A bundle into an empty cache; the proxy gone; no network for go.
	bundle := filepath.Join(t.TempDir(), "lab.bundle")
	if stdout, stderr, code := runEnv(t, env, "-C", lab, "--cache", cacheA, "bundle", "export", bundle, "--all", "--offline"); code != 0 {
		t.Fatalf("bundle export: exit %d\n%s%s", code, stdout, stderr)
	}
	srv.Close()
	log = goWrapper(t, true)
	cacheC := t.TempDir()
	if _, stderr, code := runEnv(t, env, "-C", lab, "--cache", cacheC, "bundle", "import", bundle); code != 0 {
		t.Fatalf("bundle import: %s", stderr)
	}
	if _, shaC, _ := build(cacheC, "--offline", "--frozen"); shaC != shaA || goBuilds(t, log) != 0 {
		t.Errorf("offline frozen build from the bundle: %s (want %s), %d go builds", shaC, shaA, goBuilds(t, log))
	}
	// cache prune keeps the built images' blobs: the next bake is a lookup.
	if stdout, stderr, code := runEnv(t, env, "-C", lab, "--cache", cacheC, "cache", "prune"); code != 0 {
		t.Errorf("cache prune: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, _, logC := build(cacheC, "--offline", "--frozen"); strings.Contains(logC, "container image built") {
		t.Errorf("after cache prune the images were built again")
	}

	// Another file: another image, another plan.
	writeFiles(t, lab, map[string]string{"etc/motd": "changed\n"})
	d2, in2 := plan(cacheC, "--offline", "--frozen")
	for _, in := range in2 {
		if in.Field == "images[0]" && (in.Digest == pause.Digest || d2 == planDigest) {
			t.Errorf("a changed file left the image at %s and the plan at %s", in.Digest, d2)
		}
	}

	// Other capabilities: another image, another plan.
	var pause2 string
	for _, in := range in2 {
		if in.Field == "images[0]" {
			pause2 = in.Digest
		}
	}
	writeFiles(t, lab, map[string]string{"recipes/master.yaml": strings.Replace(builtRecipe, "capabilities: [net_bind_service]", "capabilities: [NET_RAW, cap_net_bind_service]", 1)})
	d3, in3 := plan(cacheC, "--offline", "--frozen")
	for _, in := range in3 {
		if in.Field == "images[0]" && (in.Digest == pause2 || d3 == d2) {
			t.Errorf("other capabilities left the image at %s and the plan at %s", in.Digest, d3)
		}
	}

	// An entrypoint that is not a file of the image.
	writeFiles(t, lab, map[string]string{"recipes/master.yaml": strings.Replace(builtRecipe, "entrypoint: [/pause]", "entrypoint: [/bin/pause]", 1)})
	_, stderr, code := runEnv(t, env, "-C", lab, "--cache", cacheC, "plan", "master", "--offline", "--frozen")
	if code != 2 || !strings.Contains(stderr, "recipes/master.yaml:4:5: images[0]: image-built registry.labbake.test/pause:3.10.2: images[0].build.entrypoint: /bin/pause is not a file of the image (its files: /pause /etc/motd)") {
		t.Errorf("entrypoint not a file: exit %d\n%s", code, stderr)
	}
}

// layerMembers lists a tar layer: "TYPE NAME MODE UID:GID MTIME CONTENT|"
// per member.
func layerMembers(t *testing.T, layer []byte) string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(layer))
	var b strings.Builder
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		typ := "f"
		if h.Typeflag == tar.TypeDir {
			typ = "d"
		}
		fmt.Fprintf(&b, "%s %s %04o %d:%d %d", typ, h.Name, h.Mode, h.Uid, h.Gid, h.ModTime.Unix())
		if typ == "f" && len(body) < 100 {
			fmt.Fprintf(&b, " %s", body)
		} else if typ == "f" {
			b.WriteString(" ")
		}
		b.WriteString("|")
	}
	return b.String()
}
