package publish

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
)

// bakedImage writes what a bake leaves in dir for role: a qcow2 of a few
// MiB of seeded noise, its manifest JSON and an SBOM.
func bakedImage(t *testing.T, dir, role string, seed uint64) *Image {
	t.Helper()
	disk := make([]byte, 3<<20+12345)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range disk {
		disk[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(filepath.Join(dir, role+".qcow2"), disk, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(disk)
	m := map[string]any{
		"lab": "k8s-lab", "role": role, "plan_digest": digest.FromString(role + "plan").String(),
		"recipe_digest": digest.FromString(role + "recipe").String(), "epoch": 1735689600,
		"output": map[string]any{"file": role + ".qcow2", "format": "qcow2", "sha256": fmt.Sprintf("%x", sum), "size": len(disk)},
	}
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, role+".manifest.json"), mb, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, role+".spdx.json"), []byte(`{"spdxVersion":"SPDX-2.3","name":"`+role+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := Load(dir, role)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestBuildIsReproducible(t *testing.T) {
	dir := t.TempDir()
	img := bakedImage(t, dir, "master", 1)
	for _, f := range []Format{FormatArtifact, FormatContainerDisk} {
		t.Run(string(f), func(t *testing.T) {
			a, err := Build(img, f, "v1.0.0")
			if err != nil {
				t.Fatal(err)
			}
			b, err := Build(img, f, "v1.0.0")
			if err != nil {
				t.Fatal(err)
			}
			if a.Digest != b.Digest || !bytes.Equal(a.Manifest, b.Manifest) {
				t.Fatalf("two builds differ: %s %s", a.Digest, b.Digest)
			}
			var m ispec.Manifest
			if err := json.Unmarshal(a.Manifest, &m); err != nil {
				t.Fatal(err)
			}
			if m.Annotations[AnnotationRole] != "master" || m.Annotations[AnnotationPlanDigest] != img.Info.PlanDigest ||
				m.Annotations["org.opencontainers.image.created"] != "2025-01-01T00:00:00Z" || m.Annotations[AnnotationVersion] != "v1.0.0" {
				t.Errorf("annotations %v", m.Annotations)
			}
			if f == FormatArtifact && (m.ArtifactType != ArtifactType || len(m.Layers) != 3 ||
				m.Layers[0].Digest.Encoded() != img.Info.Output.SHA256) {
				t.Errorf("artifact manifest %s", a.Manifest)
			}
		})
	}
	// Another image: other digests.
	other := bakedImage(t, t.TempDir(), "master", 2)
	a, _ := Build(img, FormatContainerDisk, "")
	b, _ := Build(other, FormatContainerDisk, "")
	if a.Digest == b.Digest {
		t.Error("two different disks give the same containerDisk digest")
	}
}

func TestLoadRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(dir string)
		wants string
	}{
		{"no manifest", func(dir string) { os.Remove(filepath.Join(dir, "node.manifest.json")) }, "labbake build node first"},
		{"no qcow2", func(dir string) { os.Remove(filepath.Join(dir, "node.qcow2")) }, "not baked"},
		{"truncated qcow2", func(dir string) { os.Truncate(filepath.Join(dir, "node.qcow2"), 100) }, "its manifest says"},
		{"bad manifest", func(dir string) {
			os.WriteFile(filepath.Join(dir, "node.manifest.json"), []byte(`{"role":"node"}`), 0o644)
		}, "output.file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bakedImage(t, dir, "node", 3)
			tc.edit(dir)
			_, err := Load(dir, "node")
			if err == nil || !strings.Contains(err.Error(), tc.wants) {
				t.Fatalf("Load: %v, want %q", err, tc.wants)
			}
		})
	}
}

func TestRefs(t *testing.T) {
	for _, tc := range []struct{ in, repo, tag, err string }{
		{"127.0.0.1:5000/lab/master:v1", "127.0.0.1:5000/lab/master", "v1", ""},
		{"docker://ghcr.io/acme/labbake-node", "ghcr.io/acme/labbake-node", "", ""},
		{"ghcr.io/acme/x@sha256:" + strings.Repeat("a", 64), "", "", "not a digest"},
		{"Bad Name", "", "", "invalid reference"},
	} {
		repo, tag, err := SplitRef(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("SplitRef(%q) = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || repo.Name() != tc.repo || tag != tc.tag {
			t.Errorf("SplitRef(%q) = %v %q %v", tc.in, repo, tag, err)
		}
	}
	if got := PlanTag("sha256:"+strings.Repeat("ab", 32), FormatContainerDisk); got != "plan-"+strings.Repeat("ab", 16)+"-disk" {
		t.Errorf("PlanTag = %s", got)
	}
}

// TestPublishPull pushes both formats to a real registry (plain HTTP; basic
// auth over TLS from a test CA), pulls them back into empty dirs and
// compares bytes; publishing again sends no blob and gives the same
// digests; skopeo reads what was pushed.
func TestPublishPull(t *testing.T) {
	for _, rc := range []registryConfig{{}, {auth: true, tls: true}} {
		t.Run(fmt.Sprintf("auth=%v,tls=%v", rc.auth, rc.tls), func(t *testing.T) {
			reg := startRegistry(t, rc)
			ctx := context.Background()
			dir := t.TempDir()
			img := bakedImage(t, dir, "node", 7)
			repo, _, err := SplitRef(reg.addr + "/lab/labbake-node")
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []Format{FormatArtifact, FormatContainerDisk} {
				b, err := Build(img, f, "test")
				if err != nil {
					t.Fatal(err)
				}
				tags := []string{"v1-" + string(f), PlanTag(img.Info.PlanDigest, f)}
				first, err := Push(ctx, reg.options(), b, repo, tags)
				if err != nil {
					t.Fatalf("push %s: %v\n%s", f, err, reg.out)
				}
				again, err := Push(ctx, reg.options(), b, repo, tags)
				if err != nil {
					t.Fatal(err)
				}
				if first.Digest != again.Digest || again.SentBlobs != 0 || first.SentBlobs != 2+map[Format]int{FormatArtifact: 2}[f] {
					t.Errorf("%s: first push %+v, second %+v: want the same digest, nothing sent again", f, first, again)
				}
				for _, ref := range []string{repo.Name() + ":" + tags[0], repo.Name() + ":" + tags[1], repo.Name() + "@" + first.Digest} {
					out := t.TempDir()
					got, err := Pull(ctx, reg.options(), PullOptions{}, ref, out)
					if err != nil {
						t.Fatalf("pull %s: %v", ref, err)
					}
					if got.Role != "node" || got.Format != f || got.Digest != first.Digest {
						t.Errorf("pull %s: %+v", ref, got)
					}
					for _, n := range []string{"node.qcow2", "node.manifest.json", "node.spdx.json"} {
						want, _ := os.ReadFile(filepath.Join(dir, n))
						have, err := os.ReadFile(filepath.Join(out, n))
						if err != nil || !bytes.Equal(want, have) {
							t.Errorf("pull %s: %s differs from what was published (%v)", ref, n, err)
						}
					}
					if ents, _ := os.ReadDir(out); len(ents) != 3 {
						t.Errorf("pull %s left %d entries, want 3", ref, len(ents))
					}
				}
				skopeoInspect(t, reg, repo.Name()+":"+tags[0], first.Digest, f == FormatContainerDisk)
				if f == FormatContainerDisk {
					checkDiskLayer(t, reg, b)
				}
			}
		})
	}
}

// skopeoInspect: Debian's skopeo reads the pushed manifest and its digest;
// an image (not an artifact, which skopeo inspects only --raw) also as one.
func skopeoInspect(t *testing.T, reg *testRegistry, ref, want string, isImage bool) {
	t.Helper()
	requireTool(t, "skopeo")
	args := []string{"inspect", "--raw"}
	if reg.certDir != "" {
		args = append(args, "--cert-dir", reg.certDir)
	} else {
		args = append(args, "--tls-verify=false")
	}
	if reg.user != "" {
		args = append(args, "--creds", reg.user+":"+reg.pass)
	}
	out, err := exec.Command("skopeo", append(args, "docker://"+ref)...).Output()
	if err != nil {
		t.Fatalf("skopeo inspect %s: %v", ref, err)
	}
	if got := digest.FromBytes(out).String(); got != want {
		t.Errorf("skopeo reads a manifest of digest %s, pushed %s", got, want)
	}
	if !isImage {
		return
	}
	args[1] = "--format={{.Digest}} {{.Os}}/{{.Architecture}}"
	out, err = exec.Command("skopeo", append(args, "docker://"+ref)...).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect %s: %v\n%s", ref, err, out)
	}
	if string(out) != want+" linux/amd64\n" {
		t.Errorf("skopeo inspect: %s, want digest %s", out, want)
	}
}

// checkDiskLayer reads the containerDisk's layer from the registry's
// storage: /disk/node.qcow2 owned by 107:107, as KubeVirt expects.
func checkDiskLayer(t *testing.T, reg *testRegistry, b *Built) {
	t.Helper()
	var m ispec.Manifest
	if err := json.Unmarshal(b.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(reg.blobPath(m.Layers[0].Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "disk/node.qcow2" {
			found = true
			if h.Uid != 107 || h.Gid != 107 || h.Mode&0o777 != 0o440 {
				t.Errorf("disk/node.qcow2: uid %d gid %d mode %o, want 107 107 440", h.Uid, h.Gid, h.Mode)
			}
		}
	}
	if !found {
		t.Error("the layer has no disk/node.qcow2")
	}
}

// TestPullRefusesCorruption: a blob changed in the registry's storage
// makes pull fail naming the digest, and leaves the target dir as it was.
func TestPullRefusesCorruption(t *testing.T) {
	reg := startRegistry(t, registryConfig{})
	ctx := context.Background()
	img := bakedImage(t, t.TempDir(), "master", 9)
	repo, _, _ := SplitRef(reg.addr + "/lab/master")
	for _, f := range []Format{FormatArtifact, FormatContainerDisk} {
		t.Run(string(f), func(t *testing.T) {
			b, err := Build(img, f, "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Push(ctx, reg.options(), b, repo, []string{string(f)}); err != nil {
				t.Fatal(err)
			}
			var m ispec.Manifest
			_ = json.Unmarshal(b.Manifest, &m)
			big := m.Layers[0].Digest
			p := reg.blobPath(big.Encoded())
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 0xff
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			if err := os.WriteFile(filepath.Join(out, "keep"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = Pull(ctx, reg.options(), PullOptions{}, repo.Name()+":"+string(f), out)
			if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), big.String()) {
				t.Fatalf("pull of a corrupted blob: %v; want a verification error naming %s", err, big)
			}
			if ents, _ := os.ReadDir(out); len(ents) != 1 || ents[0].Name() != "keep" {
				t.Errorf("a failed pull left %v in the target dir", ents)
			}
		})
	}
}

// TestWrongPassword: the registry's own message, on one line.
func TestWrongPassword(t *testing.T) {
	reg := startRegistry(t, registryConfig{auth: true, tls: true})
	img := bakedImage(t, t.TempDir(), "node", 5)
	b, err := Build(img, FormatArtifact, "")
	if err != nil {
		t.Fatal(err)
	}
	repo, _, _ := SplitRef(reg.addr + "/lab/node")
	o := reg.options()
	o.Creds = reg.user + ":wrong"
	_, err = Push(context.Background(), o, b, repo, []string{"v1"})
	var re *RegistryError
	if !errors.As(err, &re) {
		t.Fatalf("push with a wrong password: %v", err)
	}
	if strings.Contains(err.Error(), "\n") || !strings.Contains(re.Msg, "unauthorized") || strings.Count(err.Error(), ": ") > 3 {
		t.Errorf("push with a wrong password says %q", err)
	}
	t.Logf("wrong password: %v", err)
	o.TLSVerify, o.CertDir = true, t.TempDir() // no CA: the certificate is not trusted
	o.Creds = reg.user + ":" + reg.pass
	_, err = Push(context.Background(), o, b, repo, []string{"v1"})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("push to an untrusted certificate: %v", err)
	}
	t.Logf("untrusted: %v", err)
}

// TestPullMirrorAndPolicy: a registries.conf mirror serves a name that
// does not resolve, and a signature policy that rejects the registry
// stops the pull before anything is fetched.
func TestPullMirrorAndPolicy(t *testing.T) {
	reg := startRegistry(t, registryConfig{})
	ctx := context.Background()
	img := bakedImage(t, t.TempDir(), "node", 11)
	repo, _, _ := SplitRef(reg.addr + "/lab/node")
	b, err := Build(img, FormatArtifact, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Push(ctx, reg.options(), b, repo, []string{"v1"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("[[registry]]\nprefix = \"registry.example.invalid\"\nlocation = \"registry.example.invalid\"\n\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n", reg.addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONTAINERS_REGISTRIES_CONF", conf)
	// containers/image caches registries.conf by path, not by environment.
	sysregistriesv2.InvalidateCache()
	t.Cleanup(sysregistriesv2.InvalidateCache)
	out := t.TempDir()
	got, err := Pull(ctx, reg.options(), PullOptions{}, "registry.example.invalid/lab/node:v1", out)
	if err != nil || got.Digest != b.Digest.String() {
		t.Fatalf("pull through the mirror: %+v, %v", got, err)
	}

	policy := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"reject"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	_, err = Pull(ctx, reg.options(), PullOptions{PolicyPath: policy}, repo.Name()+":v1", empty)
	if err == nil || !strings.Contains(err.Error(), "rejected by signature policy") {
		t.Fatalf("pull against a rejecting policy: %v", err)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("a rejected pull left %v", ents)
	}
}

// TestCredentialFiles: with no --creds, credentials come from
// $REGISTRY_AUTH_FILE, else from ~/.docker/config.json (what docker login
// writes), as skopeo takes them.
func TestCredentialFiles(t *testing.T) {
	reg := startRegistry(t, registryConfig{auth: true, tls: true})
	img := bakedImage(t, t.TempDir(), "node", 13)
	b, err := Build(img, FormatArtifact, "")
	if err != nil {
		t.Fatal(err)
	}
	repo, _, _ := SplitRef(reg.addr + "/lab/node")
	auth := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.addr, base64.StdEncoding.EncodeToString([]byte(reg.user+":"+reg.pass)))
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".docker"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".docker", "config.json"), []byte(auth), 0o600); err != nil {
		t.Fatal(err)
	}
	authFile := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(authFile, []byte(auth), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", "")
	os.Unsetenv("DOCKER_CONFIG")
	for _, tc := range []struct {
		name   string
		getenv func(string) string
	}{
		{"docker config.json", func(string) string { return "" }},
		{"REGISTRY_AUTH_FILE", func(k string) string {
			if k == "REGISTRY_AUTH_FILE" {
				return authFile
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := reg.options()
			o.Creds, o.AuthFile, o.Getenv = "", "", tc.getenv
			if tc.name == "REGISTRY_AUTH_FILE" {
				// Only the named file counts: config.json says otherwise.
				if err := os.WriteFile(filepath.Join(home, ".docker", "config.json"), []byte(`{"auths":{}}`), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := Push(context.Background(), o, b, repo, []string{"creds"}); err != nil {
				t.Fatalf("push: %v", err)
			}
		})
	}
}
