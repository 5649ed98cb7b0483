package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"

	"github.com/labbake/labbake/internal/source"
)

// Options are how labbake talks to a registry, named like skopeo's flags.
type Options struct {
	// Creds is USER[:PASSWORD] for the registry (--creds); "" uses the
	// auth file.
	Creds string
	// AuthFile is the credentials file (--authfile); "" means
	// $REGISTRY_AUTH_FILE, else containers/image's defaults (auth.json
	// under XDG_RUNTIME_DIR, then ~/.docker/config.json).
	AuthFile string
	// CertDir holds ca.crt, client certs and keys for the registry
	// (--cert-dir); "" uses /etc/containers/certs.d/HOST and the system's.
	CertDir string
	// TLSVerify false allows plain HTTP and unverified certificates
	// (--tls-verify=false).
	TLSVerify bool
	// Getenv reads the environment (REGISTRY_AUTH_FILE); nil is os.Getenv.
	Getenv func(string) string

	Progress io.Writer // where progress goes; nil shows none
	Terminal bool      // Progress is a terminal: bars instead of lines
	Log      *slog.Logger
}

// systemContext is containers/image's view of o.
func (o *Options) systemContext() (*types.SystemContext, error) {
	sys := &types.SystemContext{
		AuthFilePath:       o.AuthFile,
		DockerCertPath:     o.CertDir,
		ArchitectureChoice: "amd64",
		OSChoice:           "linux",
	}
	if sys.AuthFilePath == "" && o.Getenv != nil {
		sys.AuthFilePath = o.Getenv("REGISTRY_AUTH_FILE")
	}
	if o.Creds != "" {
		user, pass, _ := strings.Cut(o.Creds, ":")
		if user == "" {
			return nil, fmt.Errorf("--creds %q: want USER[:PASSWORD]", o.Creds)
		}
		sys.DockerAuthConfig = &types.DockerAuthConfig{Username: user, Password: pass}
	}
	if !o.TLSVerify {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
	}
	return sys, nil
}

func (o *Options) log() *slog.Logger {
	if o.Log != nil {
		return o.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Repository parses a registry repository without tag or digest, e.g.
// ghcr.io/acme/labbake-master or 127.0.0.1:5000/lab/node.
func Repository(s string) (reference.Named, error) {
	s = strings.TrimPrefix(s, "docker://")
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", s, err)
	}
	if !reference.IsNameOnly(n) {
		return nil, fmt.Errorf("repository %q: give it without a tag or digest", s)
	}
	return n, nil
}

// SplitRef splits REPO[:TAG] into the repository and the tag ("" if none).
func SplitRef(s string) (reference.Named, string, error) {
	s = strings.TrimPrefix(s, "docker://")
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, "", fmt.Errorf("%q: %w", s, err)
	}
	if _, ok := n.(reference.Digested); ok {
		return nil, "", fmt.Errorf("%q: publish to a tag, not a digest (the digest is the image's own)", s)
	}
	tag := ""
	if t, ok := n.(reference.Tagged); ok {
		tag = t.Tag()
	}
	return reference.TrimNamed(n), tag, nil
}

// PlanTag is the tag Push adds so that an image is found by what it was
// built from: "plan-" and the first 32 hex digits of the plan digest (the
// manifest's plan_digest; `labbake plan ROLE --json` prints it).
func PlanTag(planDigest string, f Format) string {
	hex := strings.TrimPrefix(planDigest, "sha256:")
	if len(hex) > 32 {
		hex = hex[:32]
	}
	t := "plan-" + hex
	if f == FormatContainerDisk {
		t += "-disk"
	}
	return t
}

// Pushed is what Push did: the manifest's digest and the tags put.
type Pushed struct {
	Repository string
	Digest     string
	Tags       []string
	SentBlobs  int
	SentBytes  int64
}

// Push sends b to repo under every tag in tags (at least one): blobs the
// repository has already are not sent again; the manifest is put once
// per tag. Pushing the same Built twice sends nothing but the manifest.
func Push(ctx context.Context, o *Options, b *Built, repo reference.Named, tags []string) (*Pushed, error) {
	if len(tags) == 0 {
		return nil, errors.New("push: no tag")
	}
	sys, err := o.systemContext()
	if err != nil {
		return nil, err
	}
	out := &Pushed{Repository: repo.Name(), Digest: b.Digest.String(), Tags: tags}
	for i, tag := range tags {
		tagged, err := reference.WithTag(repo, tag)
		if err != nil {
			return nil, fmt.Errorf("tag %q: %w", tag, err)
		}
		ref, err := docker.NewReference(tagged)
		if err != nil {
			return nil, err
		}
		dest, err := ref.NewImageDestination(ctx, sys)
		if err != nil {
			return nil, registryError(tagged.String(), err)
		}
		if i == 0 {
			if err := putBlobs(ctx, o, dest, b, tagged.String(), out); err != nil {
				_ = dest.Close()
				return nil, err
			}
		}
		err = dest.PutManifest(ctx, b.Manifest, nil)
		if err == nil {
			err = dest.Commit(ctx, nil)
		}
		if cerr := dest.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, registryError(tagged.String(), err)
		}
		o.log().Debug("pushed", "ref", tagged.String(), "digest", b.Digest, "format", b.Format)
	}
	return out, nil
}

func putBlobs(ctx context.Context, o *Options, dest types.ImageDestination, b *Built, name string, out *Pushed) error {
	for i, bl := range b.blobs {
		info := types.BlobInfo{Digest: bl.desc.Digest, Size: bl.desc.Size, MediaType: bl.desc.MediaType}
		reused, _, err := dest.TryReusingBlob(ctx, info, none.NoCache, false)
		if err != nil {
			return registryError(name, err)
		}
		if reused {
			continue
		}
		rc, err := bl.open()
		if err != nil {
			return err
		}
		var r io.Reader = rc
		var p *source.Progress
		if bl.desc.Size > 1<<20 {
			p = source.NewProgress(o.Progress, o.Terminal, name+" "+bl.desc.Digest.Encoded()[:12], "pushing", "pushed", bl.desc.Size)
			r = &progressReader{r: rc, p: p}
		}
		_, err = dest.PutBlob(ctx, r, info, none.NoCache, i == 0)
		_ = rc.Close()
		if p != nil {
			if err != nil {
				p.Abort()
			} else {
				p.Done()
			}
		}
		if err != nil {
			return registryError(name, err)
		}
		out.SentBlobs++
		out.SentBytes += bl.desc.Size
	}
	return nil
}

type progressReader struct {
	r io.Reader
	p *source.Progress
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.p.Add(int64(n))
	return n, err
}

// registryError is one line: the reference and the innermost message,
// which is the registry's own ("unauthorized: authentication required",
// "manifest unknown") rather than every layer of wrapping around it.
func registryError(ref string, err error) error {
	inner := err
	for {
		u := errors.Unwrap(inner)
		if u == nil {
			break
		}
		inner = u
	}
	msg := strings.Join(strings.Fields(inner.Error()), " ")
	return &RegistryError{Ref: ref, Msg: msg, Err: err}
}

// RegistryError is a failure a registry reported for Ref.
type RegistryError struct {
	Ref string
	Msg string
	Err error
}

func (e *RegistryError) Error() string { return e.Ref + ": " + e.Msg }
func (e *RegistryError) Unwrap() error { return e.Err }

func newProgress(o *Options, name string, size int64) *source.Progress {
	return source.NewProgress(o.Progress, o.Terminal, name, "pulling", "pulled", size)
}
