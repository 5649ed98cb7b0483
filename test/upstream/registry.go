package upstream

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
	"sync"
	"syscall"
	"time"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"

	digest "github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
)

// RegistryBinary is Debian's docker-registry (CNCF distribution 2.x).
const RegistryBinary = "/usr/bin/docker-registry"

// Registry is a docker-registry serving plain HTTP on 127.0.0.1, its storage
// in a directory of its own.
type Registry struct {
	Host string // 127.0.0.1:PORT
	dir  string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan error
}

// StartRegistry runs docker-registry with its configuration and storage under
// dir (which must exist) on a free port, and waits until it answers /v2/.
func StartRegistry(ctx context.Context, dir string) (*Registry, error) {
	if _, err := os.Stat(RegistryBinary); err != nil {
		return nil, fmt.Errorf("registry: %w (apt-get install docker-registry)", err)
	}
	var lastErr error
	for range 3 { // the free port may be taken between probe and start
		r, err := startRegistry(ctx, dir)
		if err == nil {
			return r, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startRegistry(ctx context.Context, dir string) (*Registry, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	host := l.Addr().String()
	if err := l.Close(); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	config := filepath.Join(dir, "config.yml")
	conf := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), host)
	if err := os.WriteFile(config, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	r := &Registry{Host: host, dir: dir, out: &lockedBuffer{}, done: make(chan error, 1)}
	r.cmd = exec.Command(RegistryBinary, "serve", config)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-r.done:
			r.done <- err
			return nil, fmt.Errorf("registry on %s exited: %v\n%s", host, err, r.out.String())
		case <-ctx.Done():
			_ = r.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := client.Get("http://" + host + "/v2/")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		if time.Now().After(deadline) {
			_ = r.Close()
			return nil, fmt.Errorf("registry on %s did not answer /v2/: %v\n%s", host, err, r.out.String())
		}
	}
}

// Close stops the registry (SIGTERM, then SIGKILL after 5 s).
func (r *Registry) Close() error {
	if r.cmd.Process == nil {
		return nil
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
	return nil
}

// Log is what the registry printed so far.
func (r *Registry) Log() string { return r.out.String() }

// Push copies img to the registry as REPOSITORY:TAG with containers/image
// and checks that the registry keeps the manifest digest computed locally
// (the layout's blobs go up unchanged).
func (r *Registry) Push(ctx context.Context, img *Image) error {
	ref := img.Reference(r.Host)
	if err := r.copy(ctx, "oci:"+img.Layout+":"+img.Spec.Tag, "docker://"+ref); err != nil {
		return err
	}
	d, err := r.ManifestDigest(ctx, img.Spec.Repository, img.Spec.Tag)
	if err != nil {
		return err
	}
	if d != img.Manifest {
		return fmt.Errorf("pushed %s: the registry has manifest %s, the layout %s", ref, d, img.Manifest)
	}
	return nil
}

// Pull copies REPOSITORY:TAG from the registry into an OCI layout at dir.
func (r *Registry) Pull(ctx context.Context, repository, tag, dir string) error {
	return r.copy(ctx, "docker://"+r.Host+"/"+repository+":"+tag, "oci:"+dir+":"+tag)
}

// ManifestDigest asks the registry for the digest of REPOSITORY:TAG's
// manifest (the Docker-Content-Digest header of a HEAD request).
func (r *Registry) ManifestDigest(ctx context.Context, repository, tag string) (digest.Digest, error) {
	u := "http://" + r.Host + "/v2/" + repository + "/manifests/" + tag
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", imgspec.MediaTypeImageManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("registry: %w", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("registry: HEAD %s: %s", u, resp.Status)
	}
	d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		return "", fmt.Errorf("registry: HEAD %s: %w", u, err)
	}
	return d, nil
}

// RegistriesConf is a registries.conf (containers-registries.conf(5)) that
// sends pulls from each of UpstreamRegistries to this registry, over plain
// HTTP. labbake reads it from $CONTAINERS_REGISTRIES_CONF.
func (r *Registry) RegistriesConf() string {
	var b strings.Builder
	for _, up := range UpstreamRegistries {
		fmt.Fprintf(&b, "[[registry]]\nprefix = %q\nlocation = %q\ninsecure = true\n\n", up, r.Host)
	}
	fmt.Fprintf(&b, "[[registry]]\nlocation = %q\ninsecure = true\n", r.Host)
	return b.String()
}

// copy runs containers/image's copy with an isolated configuration (no host
// registries.conf, policy or credentials) talking plain HTTP.
func (r *Registry) copy(ctx context.Context, src, dest string) error {
	srcRef, err := alltransports.ParseImageName(src)
	if err != nil {
		return err
	}
	destRef, err := alltransports.ParseImageName(dest)
	if err != nil {
		return err
	}
	sys, err := r.systemContext()
	if err != nil {
		return err
	}
	pc, err := signature.NewPolicyContext(&signature.Policy{
		Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()},
	})
	if err != nil {
		return err
	}
	defer func() { _ = pc.Destroy() }()
	if _, err := copy.Image(ctx, pc, destRef, srcRef, &copy.Options{SourceCtx: sys, DestinationCtx: sys}); err != nil {
		return fmt.Errorf("copying %s to %s: %w\n%s", src, dest, err, r.out.String())
	}
	return nil
}

func (r *Registry) systemContext() (*types.SystemContext, error) {
	base := filepath.Join(r.dir, "client")
	for _, d := range []string{"registries.conf.d", "registries.d", "tmp", "cache"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			return nil, err
		}
	}
	conf := filepath.Join(base, "registries.conf")
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		return nil, err
	}
	return &types.SystemContext{
		SystemRegistriesConfPath:    conf,
		SystemRegistriesConfDirPath: filepath.Join(base, "registries.conf.d"),
		RegistriesDirPath:           filepath.Join(base, "registries.d"),
		AuthFilePath:                filepath.Join(base, "auth.json"),
		BigFilesTemporaryDir:        filepath.Join(base, "tmp"),
		BlobInfoCacheDir:            filepath.Join(base, "cache"),
		DockerInsecureSkipTLSVerify: types.OptionalBoolTrue,
	}, nil
}

// lockedBuffer collects a child's output from two pipes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
