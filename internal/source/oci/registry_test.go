package oci

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
)

// registryBinary is Debian's docker-registry (distribution) package.
const registryBinary = "/usr/bin/docker-registry"

// testRegistry is a docker-registry serving plain HTTP on 127.0.0.1.
type testRegistry struct {
	addr string // 127.0.0.1:PORT
	cmd  *exec.Cmd
	out  *bytes.Buffer
}

// startRegistry runs docker-registry with its storage in a temporary
// directory; the test is skipped when the binary is missing.
func startRegistry(t *testing.T) *testRegistry {
	t.Helper()
	if _, err := os.Stat(registryBinary); err != nil {
		t.Skipf("%s not found (apt-get install docker-registry): %v", registryBinary, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "config.yml")
	err = os.WriteFile(config, []byte(fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	r := &testRegistry{addr: addr, out: &bytes.Buffer{}}
	r.cmd = exec.Command(registryBinary, "serve", config)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get("http://" + addr + "/v2/")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry on %s did not come up: %v\n%s", addr, err, r.out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends the registry (only the process this test started).
func (r *testRegistry) stop() {
	if r.cmd.Process == nil || r.cmd.ProcessState != nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
}

// push copies src (every platform of a list) to docker://ADDR/dest.
func (r *testRegistry) push(t *testing.T, src, dest string) {
	t.Helper()
	r.copyTo(t, src, "docker://"+r.addr+"/"+dest)
}

// copyTo copies src (every platform of a list) to dest with containers/image.
func (r *testRegistry) copyTo(t *testing.T, src, dest string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srcRef, err := alltransports.ParseImageName(src)
	if err != nil {
		t.Fatal(err)
	}
	destRef, err := alltransports.ParseImageName(dest)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := signature.NewPolicyContext(&signature.Policy{
		Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pc.Destroy() }()
	sys := r.systemContext(t)
	_, err = copy.Image(ctx, pc, destRef, srcRef, &copy.Options{
		SourceCtx:          sys,
		DestinationCtx:     sys,
		ImageListSelection: copy.CopyAllImages,
	})
	if err != nil {
		t.Fatalf("copying %s to %s: %v\n%s", src, dest, err, r.out)
	}
}

// systemContext talks plain HTTP to the registry.
func (r *testRegistry) systemContext(t *testing.T) *types.SystemContext {
	sys := isolatedSystemContext(t)
	sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
	return sys
}

func TestPullRegistry(t *testing.T) {
	reg := startRegistry(t)
	ctx := context.Background()
	fx := makeLayout(t, t.TempDir(), true)
	reg.push(t, "oci:"+fx.layout+":v1", "test/img:v1")
	reg.push(t, "oci:"+fx.layout+":multi", "test/multi:v1")

	src := testSource(t)
	src.SystemContext = reg.systemContext(t)
	store := newDirStore(t)
	ref := "docker://" + reg.addr + "/test/img:v1"

	res, err := src.Pull(ctx, store, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	checkResolved(t, res, wantResolved(ref, fx.amd64))
	checkStored(t, store, res)

	t.Run("pinned", func(t *testing.T) {
		puts := store.putCount()
		got, err := src.Pull(ctx, store, ref, res.ManifestDigest)
		if err != nil {
			t.Fatal(err)
		}
		checkResolved(t, got, res)
		if store.putCount() != puts {
			t.Errorf("a pull of a cached image stored %d blobs", store.putCount()-puts)
		}
	})

	t.Run("by digest", func(t *testing.T) {
		byDigest := "docker://" + reg.addr + "/test/img@" + res.ManifestDigest
		got, err := src.Pull(ctx, newDirStore(t), byDigest, "")
		if err != nil {
			t.Fatal(err)
		}
		checkResolved(t, got, wantResolved(byDigest, fx.amd64))
	})

	t.Run("pinned to another digest", func(t *testing.T) {
		other := fx.arm64.manifest.String() // in the registry, but under test/multi
		_, err := src.Pull(ctx, newDirStore(t), ref, other)
		checkErr(t, err, ref)
	})

	t.Run("missing tag", func(t *testing.T) {
		missing := "docker://" + reg.addr + "/test/img:nope"
		_, err := src.Pull(ctx, newDirStore(t), missing, "")
		checkErr(t, err, missing)
	})

	t.Run("missing repository", func(t *testing.T) {
		missing := "docker://" + reg.addr + "/test/none:v1"
		_, err := src.Pull(ctx, newDirStore(t), missing, "")
		checkErr(t, err, missing)
	})

	t.Run("manifest list", func(t *testing.T) {
		multi := "docker://" + reg.addr + "/test/multi:v1"
		got, err := src.Pull(ctx, store, multi, "")
		if err != nil {
			t.Fatal(err)
		}
		checkResolved(t, got, wantResolved(multi, fx.amd64))
		if !store.Has(fx.index.String()) {
			t.Errorf("the manifest list %s is not stored", fx.index)
		}
	})

	t.Run("policy rejects", func(t *testing.T) {
		rej := testSource(t)
		rej.SystemContext = reg.systemContext(t)
		rej.PolicyPath = writePolicy(t, `{"default":[{"type":"insecureAcceptAnything"}],
			"transports":{"docker":{"`+reg.addr+`/test":[{"type":"reject"}]}}}`)
		_, err := rej.Pull(ctx, newDirStore(t), ref, "")
		checkErr(t, err, ref, rej.PolicyPath)
	})

	t.Run("mirror", func(t *testing.T) {
		sys := isolatedSystemContext(t)
		conf := fmt.Sprintf(`[[registry]]
prefix = "registry.example.invalid"
location = "registry.example.invalid"

[[registry.mirror]]
location = %q
insecure = true
`, reg.addr)
		if err := os.WriteFile(sys.SystemRegistriesConfPath, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		mir := testSource(t)
		mir.SystemContext = sys
		mirStore := newDirStore(t)
		viaMirror := "docker://registry.example.invalid/test/img:v1"
		got, err := mir.Pull(ctx, mirStore, viaMirror, "")
		if err != nil {
			t.Fatal(err)
		}
		checkResolved(t, got, wantResolved(viaMirror, fx.amd64))
		checkStored(t, mirStore, got)

		pinned, err := mir.Pull(ctx, newDirStore(t), viaMirror, res.ManifestDigest)
		if err != nil {
			t.Fatal(err)
		}
		checkResolved(t, pinned, got)
	})

	// With the registry gone, pinned images still resolve offline.
	reg.stop()
	t.Run("offline", func(t *testing.T) {
		off := offlineSource(t)
		got, err := off.Pull(ctx, store, ref, res.ManifestDigest)
		if err != nil {
			t.Fatal(err)
		}
		checkResolved(t, got, res)

		// A digest reference needs no pin: the stored list is used.
		byList := "docker://" + reg.addr + "/test/multi@" + fx.index.String()
		got, err = off.Pull(ctx, store, byList, "")
		if err != nil {
			t.Fatal(err)
		}
		checkResolved(t, got, wantResolved(byList, fx.amd64))

		// And online, the registry's absence is a clear error.
		_, err = src.Pull(ctx, newDirStore(t), ref, "")
		checkErr(t, err, ref)
		if strings.Count(err.Error(), "oci: ") != 1 {
			t.Errorf("error %q has nested prefixes", err)
		}
	})
}
