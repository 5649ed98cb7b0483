package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/labbake/labbake/internal/iox"
	"github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
)

// Store is the content-addressed cache the blobs of an image go to. The
// labbake cache satisfies it; digests are "sha256:<hex>".
type Store interface {
	// Has reports whether the blob is stored.
	Has(digest string) bool
	// Put stores the blob read from r, which must have the digest want, and
	// returns its digest and size.
	Put(ctx context.Context, r io.Reader, want string) (digest string, size int64, err error)
	// Open opens a stored blob; the reader verifies the digest while reading.
	Open(digest string) (io.ReadCloser, error)
}

// Source pulls OCI images into a Store. The zero value is usable: system
// registries.conf and policy.json, amd64/linux, online.
type Source struct {
	// SystemContext configures containers/image (registries.conf path,
	// credentials, TLS, temporary directories, …). nil means defaults. Its
	// ArchitectureChoice and OSChoice are used when Arch and OS are empty.
	SystemContext *types.SystemContext
	// PolicyPath is the signature policy (policy.json) to enforce. ""
	// means SystemContext.SignaturePolicyPath if set, else the system
	// policy.json if there is one, else accept any image.
	PolicyPath string
	// Offline serves pinned images from the Store alone and never touches
	// a transport.
	Offline bool
	// Log receives progress (Info) and decisions (Debug); nil discards.
	Log *slog.Logger
	// Arch and OS pick one image from a manifest list or OCI index; they
	// default to amd64 and linux.
	Arch, OS string
}

// Resolved is an image pinned by digest with its blobs stored in the cache.
type Resolved struct {
	Ref            string   // as written in the recipe
	ManifestDigest string   // "sha256:…" of the (platform-specific) image manifest
	Layers         []string // layer blob digests in order, root layer first (as stored: compressed or not)
	Config         string   // config blob digest
}

var (
	// ErrPolicyRejected is wrapped when the signature policy rejects an image.
	ErrPolicyRejected = errors.New("rejected by signature policy")
	// ErrUnsupportedTransport is wrapped for transports left out of this
	// build (containers-storage: without cgo).
	ErrUnsupportedTransport = errors.New("transport not supported in this build")
)

// maxManifestSize bounds manifests and manifest lists read from the Store.
const maxManifestSize = 8 << 20

func (s *Source) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Platform returns the architecture and OS that Pull picks from a manifest
// list or OCI index.
func (s *Source) Platform() (arch, os string) {
	arch, os = s.Arch, s.OS
	if arch == "" && s.SystemContext != nil {
		arch = s.SystemContext.ArchitectureChoice
	}
	if os == "" && s.SystemContext != nil {
		os = s.SystemContext.OSChoice
	}
	if arch == "" {
		arch = "amd64"
	}
	if os == "" {
		os = "linux"
	}
	return arch, os
}

// systemContext returns a copy of s.SystemContext with the platform set.
func (s *Source) systemContext() *types.SystemContext {
	var sys types.SystemContext
	if s.SystemContext != nil {
		sys = *s.SystemContext
	}
	sys.ArchitectureChoice, sys.OSChoice = s.Platform()
	return &sys
}

// Pull resolves ref (to the digest pinned when pinned != "": then it must
// match, and docker:// pulls by that digest), copies the manifest, config and
// every layer blob into the store (skipping blobs already there), and returns
// the pinned image. A manifest list chosen from on the way is stored too.
//
// With s.Offline set Pull works from the store alone: it reads the manifest
// pinned (or named by a docker://…@sha256: reference) from it and checks
// that every blob is there; anything missing is an error wrapping iox.ErrOffline
// that names the ref and the missing blobs.
func (s *Source) Pull(ctx context.Context, store Store, ref, pinned string) (*Resolved, error) {
	if store == nil {
		return nil, fmt.Errorf("oci: %s: no store", ref)
	}
	var pin digest.Digest
	if pinned != "" {
		d, err := digest.Parse(pinned)
		if err != nil {
			return nil, fmt.Errorf("oci: %s: pinned digest %q: %w", ref, pinned, err)
		}
		pin = d
	}
	if s.Offline {
		return s.pullOffline(store, ref, pin)
	}
	return s.pullOnline(ctx, store, ref, pin)
}

func (s *Source) pullOnline(ctx context.Context, store Store, ref string, pin digest.Digest) (*Resolved, error) {
	log := s.log()
	imgRef, err := parseRef(ref, pin)
	if err != nil {
		return nil, err
	}
	sys := s.systemContext()

	policy, policyName, err := s.loadPolicy(sys)
	if err != nil {
		return nil, fmt.Errorf("oci: %s: %w", ref, err)
	}
	pc, err := signature.NewPolicyContext(policy)
	if err != nil {
		return nil, fmt.Errorf("oci: %s: signature policy %s: %w", ref, policyName, err)
	}
	defer func() { _ = pc.Destroy() }()

	src, err := imgRef.NewImageSource(ctx, sys)
	if err != nil {
		return nil, fmt.Errorf("oci: %s: %w", ref, oneLine(err))
	}
	defer func() { _ = src.Close() }()

	top := image.UnparsedInstance(src, nil)
	allowed, err := pc.IsRunningImageAllowed(ctx, top)
	if err := policyVerdict(allowed, err); err != nil {
		return nil, fmt.Errorf("oci: %s: %w", ref, policyError(policyName, err))
	}

	fm, err := s.readManifests(ctx, src, top, sys, ref)
	if err != nil {
		return nil, err
	}
	manBlob, manType, manDigest := fm.blob, fm.mimeType, fm.digest
	res, blobs, err := resolvedFromManifest(ref, manDigest, manBlob, manType)
	if err != nil {
		return nil, err
	}
	// containers-storage keeps layers uncompressed, unlike its manifests
	// say: the blobs stored are then those, and the image is pinned by the
	// manifest rewritten to name them.
	infos, err := src.LayerInfosForCopy(ctx, instanceOf(fm.list, manDigest))
	if err != nil {
		return nil, fmt.Errorf("oci: %s: %w", ref, oneLine(err))
	}
	substituted := infos != nil && !sameDigests(infos, blobs[1:])
	if substituted {
		if len(infos) != len(blobs)-1 {
			return nil, fmt.Errorf("oci: %s: the transport lists %d layers, the manifest %d", ref, len(infos), len(blobs)-1)
		}
		copy(blobs[1:], infos)
	} else if pin != "" && manDigest != pin {
		return nil, fmt.Errorf("oci: %s: %w: resolved to %s, pinned to %s", ref, iox.ErrDigestMismatch, manDigest, pin)
	}

	sizes, fetched, fetchedBytes, err := s.copyBlobs(ctx, store, src, ref, blobs)
	if err != nil {
		return nil, err
	}
	if substituted {
		rewritten, err := rewriteManifest(manBlob, manType, blobs[1:], sizes[1:])
		if err != nil {
			return nil, fmt.Errorf("oci: %s: rewriting manifest %s: %w", ref, manDigest, err)
		}
		d, err := manifest.Digest(rewritten)
		if err != nil {
			return nil, fmt.Errorf("oci: %s: digesting the rewritten manifest: %w", ref, err)
		}
		log.Debug("the transport stores layers unlike its manifest says: pinning the manifest rewritten to name them",
			"ref", ref, "manifest", manDigest, "rewritten", d)
		manBlob, manDigest = rewritten, d
		if res, _, err = resolvedFromManifest(ref, manDigest, manBlob, manType); err != nil {
			return nil, err
		}
		if pin != "" && manDigest != pin {
			return nil, fmt.Errorf("oci: %s: %w: resolved to %s, pinned to %s", ref, iox.ErrDigestMismatch, manDigest, pin)
		}
	}
	if err := putBytes(ctx, store, ref, "manifest", manBlob, manDigest); err != nil {
		return nil, err
	}
	if fm.list != nil {
		if err := putBytes(ctx, store, ref, "manifest list", fm.list, fm.listDigest); err != nil {
			return nil, err
		}
	}
	log.Info("pulled image", "ref", ref, "digest", res.ManifestDigest, "layers", len(res.Layers),
		"fetched_blobs", fetched, "fetched_bytes", fetchedBytes)
	return res, nil
}

// fetchedManifest is the image manifest of one platform, and the manifest
// list it was chosen from, if any.
type fetchedManifest struct {
	blob       []byte
	mimeType   string
	digest     digest.Digest
	list       []byte // nil unless the reference named a manifest list
	listDigest digest.Digest
}

// readManifests reads the manifest top names and, for a manifest list or
// OCI index, the manifest of the platform asked for.
func (s *Source) readManifests(ctx context.Context, src types.ImageSource, top types.UnparsedImage, sys *types.SystemContext, ref string) (*fetchedManifest, error) {
	blob, mimeType, err := top.Manifest(ctx)
	if err != nil {
		return nil, fmt.Errorf("oci: %s: reading manifest: %w", ref, oneLine(err))
	}
	if mimeType == "" {
		mimeType = manifest.GuessMIMEType(blob)
	}
	if !manifest.MIMETypeIsMultiImage(mimeType) {
		d, err := manifest.Digest(blob)
		if err != nil {
			return nil, fmt.Errorf("oci: %s: digesting manifest: %w", ref, err)
		}
		return &fetchedManifest{blob: blob, mimeType: mimeType, digest: d}, nil
	}
	fm := &fetchedManifest{list: blob}
	if fm.listDigest, err = manifest.Digest(blob); err != nil {
		return nil, fmt.Errorf("oci: %s: digesting manifest list: %w", ref, err)
	}
	inst, err := chooseInstance(blob, mimeType, sys)
	if err != nil {
		return nil, fmt.Errorf("oci: %s: %w", ref, err)
	}
	s.log().Debug("chose image from manifest list", "ref", ref, "list", fm.listDigest, "manifest", inst,
		"arch", sys.ArchitectureChoice, "os", sys.OSChoice)
	// UnparsedInstance checks that the manifest has the digest asked for.
	if fm.blob, fm.mimeType, err = image.UnparsedInstance(src, &inst).Manifest(ctx); err != nil {
		return nil, fmt.Errorf("oci: %s: reading manifest %s: %w", ref, inst, oneLine(err))
	}
	if fm.mimeType == "" {
		fm.mimeType = manifest.GuessMIMEType(fm.blob)
	}
	fm.digest = inst
	return fm, nil
}

// pullOffline resolves a pinned image from the store alone.
func (s *Source) pullOffline(store Store, ref string, pin digest.Digest) (*Resolved, error) {
	start := pin
	if start == "" {
		start = digestInRef(ref)
		if start == "" {
			return nil, fmt.Errorf("oci: %s: %w: the image is not pinned by digest (resolve it once online)", ref, iox.ErrOffline)
		}
	}
	manBlob, err := readManifest(store, ref, start)
	if err != nil {
		return nil, err
	}
	manType := manifest.GuessMIMEType(manBlob)
	manDigest := start
	if manifest.MIMETypeIsMultiImage(manType) {
		inst, err := chooseInstance(manBlob, manType, s.systemContext())
		if err != nil {
			return nil, fmt.Errorf("oci: %s: %w", ref, err)
		}
		if manBlob, err = readManifest(store, ref, inst); err != nil {
			return nil, err
		}
		manType = manifest.GuessMIMEType(manBlob)
		manDigest = inst
	}
	if pin != "" && manDigest != pin {
		return nil, fmt.Errorf("oci: %s: %w: resolved to %s, pinned to %s", ref, iox.ErrDigestMismatch, manDigest, pin)
	}
	res, blobs, err := resolvedFromManifest(ref, manDigest, manBlob, manType)
	if err != nil {
		return nil, err
	}
	var missing []string
	seen := map[digest.Digest]bool{}
	for _, b := range blobs {
		if seen[b.Digest] {
			continue
		}
		seen[b.Digest] = true
		if !store.Has(b.Digest.String()) {
			missing = append(missing, b.Digest.String())
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("oci: %s: %w: missing blobs %s", ref, iox.ErrOffline, strings.Join(missing, ", "))
	}
	s.log().Debug("resolved image from the cache", "ref", ref, "digest", res.ManifestDigest, "layers", len(res.Layers))
	return res, nil
}

// parseRef parses a transport:reference name. A pinned docker:// reference
// is replaced by repository@pin so that the registry is asked for exactly
// that manifest.
func parseRef(ref string, pin digest.Digest) (types.ImageReference, error) {
	imgRef, err := alltransports.ParseImageName(ref)
	if err != nil {
		transport, _, _ := strings.Cut(ref, ":")
		if transport == "containers-storage" || strings.Contains(err.Error(), "not supported in this build") {
			return nil, fmt.Errorf("oci: %s: %w: the %s: transport needs a cgo build of labbake; copy the image to an oci-archive: file first",
				ref, ErrUnsupportedTransport, transport)
		}
		return nil, fmt.Errorf("oci: %s: %w", ref, err)
	}
	if pin == "" || imgRef.Transport().Name() != "docker" {
		return imgRef, nil
	}
	named := imgRef.DockerReference()
	if named == nil {
		return nil, fmt.Errorf("oci: %s: no repository in the reference", ref)
	}
	canonical, err := reference.WithDigest(reference.TrimNamed(named), pin)
	if err != nil {
		return nil, fmt.Errorf("oci: %s: pinning to %s: %w", ref, pin, err)
	}
	pinnedRef, err := docker.NewReference(canonical)
	if err != nil {
		return nil, fmt.Errorf("oci: %s: pinning to %s: %w", ref, pin, err)
	}
	return pinnedRef, nil
}

// digestInRef returns the digest of a docker://…@sha256:… reference, or "".
func digestInRef(ref string) digest.Digest {
	rest, ok := strings.CutPrefix(ref, "docker://")
	if !ok {
		return ""
	}
	i := strings.LastIndex(rest, "@")
	if i < 0 {
		return ""
	}
	d, err := digest.Parse(rest[i+1:])
	if err != nil {
		return ""
	}
	return d
}

func chooseInstance(listBlob []byte, listType string, sys *types.SystemContext) (digest.Digest, error) {
	list, err := manifest.ListFromBlob(listBlob, listType)
	if err != nil {
		return "", fmt.Errorf("parsing manifest list: %w", err)
	}
	inst, err := list.ChooseInstance(sys)
	if err != nil {
		return "", fmt.Errorf("choosing %s/%s from the manifest list: %w", sys.OSChoice, sys.ArchitectureChoice, err)
	}
	return inst, nil
}

// instanceOf returns the instance digest to pass to ImageSource methods:
// nil unless the image was chosen from a manifest list.
func instanceOf(listBlob []byte, d digest.Digest) *digest.Digest {
	if listBlob == nil {
		return nil
	}
	return &d
}

// resolvedFromManifest parses an image manifest; blobs is the config
// followed by the layers.
func resolvedFromManifest(ref string, manDigest digest.Digest, manBlob []byte, manType string) (*Resolved, []types.BlobInfo, error) {
	switch manType {
	case manifest.DockerV2Schema1MediaType, manifest.DockerV2Schema1SignedMediaType:
		return nil, nil, fmt.Errorf("oci: %s: docker schema 1 manifests are not supported", ref)
	}
	m, err := manifest.FromBlob(manBlob, manType)
	if err != nil {
		return nil, nil, fmt.Errorf("oci: %s: parsing manifest %s: %w", ref, manDigest, err)
	}
	config := m.ConfigInfo()
	if config.Digest == "" {
		return nil, nil, fmt.Errorf("oci: %s: manifest %s has no config blob", ref, manDigest)
	}
	if err := config.Digest.Validate(); err != nil {
		return nil, nil, fmt.Errorf("oci: %s: config digest: %w", ref, err)
	}
	res := &Resolved{Ref: ref, ManifestDigest: manDigest.String(), Config: config.Digest.String()}
	blobs := []types.BlobInfo{config}
	for _, l := range m.LayerInfos() {
		if strings.HasSuffix(l.MediaType, "+encrypted") {
			return nil, nil, fmt.Errorf("oci: %s: layer %s is encrypted; encrypted images are not supported", ref, l.Digest)
		}
		if err := l.Digest.Validate(); err != nil {
			return nil, nil, fmt.Errorf("oci: %s: layer digest: %w", ref, err)
		}
		res.Layers = append(res.Layers, l.Digest.String())
		blobs = append(blobs, l.BlobInfo)
	}
	return res, blobs, nil
}

func sameDigests(infos, blobs []types.BlobInfo) bool {
	if len(infos) != len(blobs) {
		return false
	}
	for i := range infos {
		if infos[i].Digest != blobs[i].Digest {
			return false
		}
	}
	return true
}

// copyBlob streams one blob from src into the store unless it is there
// already; it returns the blob's size and whether it fetched it.
// parallelBlobs is how many blobs of one image are fetched at once.
const parallelBlobs = 4

// copyBlobs fetches the config (blobs[0]) and the layers into the store,
// up to parallelBlobs at a time when the transport allows concurrent
// reads (registries and OCI layouts do, archives do not), each digest once,
// and returns every blob's size, how many were fetched and their bytes.
// The first failing blob in manifest order is the error.
func (s *Source) copyBlobs(ctx context.Context, store Store, src types.ImageSource, ref string, blobs []types.BlobInfo) ([]int64, int64, int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		size    int64
		fetched bool
		err     error
	}
	results := make([]result, len(blobs))
	first := map[digest.Digest]int{} // a digest listed twice is fetched once
	n := 1
	if src.HasThreadSafeGetBlob() {
		n = parallelBlobs
	}
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i, info := range blobs {
		if _, dup := first[info.Digest]; dup {
			continue
		}
		first[info.Digest] = i
		kind := "layer"
		if i == 0 {
			kind = "config"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[i].err = ctx.Err()
				return
			}
			defer func() { <-sem }()
			r := &results[i]
			r.size, r.fetched, r.err = s.copyBlob(ctx, store, src, ref, kind, info)
			if r.err != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	sizes := make([]int64, len(blobs))
	var fetched, fetchedBytes int64
	var firstErr, cancelled error
	for i, info := range blobs {
		j := first[info.Digest]
		r := results[j]
		switch {
		case r.err == nil:
		case errors.Is(r.err, context.Canceled) && cancelled == nil:
			cancelled = r.err // another blob's failure stopped this one
			continue
		case firstErr == nil && !errors.Is(r.err, context.Canceled):
			firstErr = r.err
		}
		sizes[i] = r.size
		if r.fetched && j == i {
			fetched++
			fetchedBytes += r.size
		}
	}
	if firstErr == nil {
		firstErr = cancelled
	}
	if firstErr != nil {
		return nil, 0, 0, firstErr
	}
	return sizes, fetched, fetchedBytes, nil
}

func (s *Source) copyBlob(ctx context.Context, store Store, src types.ImageSource, ref, kind string, info types.BlobInfo) (int64, bool, error) {
	want := info.Digest.String()
	if store.Has(want) {
		s.log().Debug("blob already cached", "ref", ref, "kind", kind, "digest", want)
		if info.Size >= 0 {
			return info.Size, false, nil
		}
		n, err := blobSize(store, want)
		if err != nil {
			return 0, false, fmt.Errorf("oci: %s: %s %s in the cache: %w", ref, kind, want, err)
		}
		return n, false, nil
	}
	s.log().Debug("fetching blob", "ref", ref, "kind", kind, "digest", want, "size", info.Size)
	rc, _, err := src.GetBlob(ctx, info, none.NoCache)
	if err != nil {
		return 0, false, fmt.Errorf("oci: %s: fetching %s %s: %w", ref, kind, want, oneLine(err))
	}
	defer func() { _ = rc.Close() }()
	got, n, err := store.Put(ctx, rc, want)
	if err != nil {
		return 0, false, fmt.Errorf("oci: %s: storing %s %s: %w", ref, kind, want, err)
	}
	if got != want {
		return 0, false, fmt.Errorf("oci: %s: %s %w: stored as %s, want %s", ref, kind, iox.ErrDigestMismatch, got, want)
	}
	if info.Size >= 0 && n != info.Size {
		return 0, false, fmt.Errorf("oci: %s: %s %s: got %d bytes, the manifest says %d", ref, kind, want, n, info.Size)
	}
	return n, true, nil
}

// blobSize reads a stored blob through to count its bytes.
func blobSize(store Store, d string) (int64, error) {
	rc, err := store.Open(d)
	if err != nil {
		return 0, err
	}
	defer func() { _ = rc.Close() }()
	return io.Copy(io.Discard, rc)
}

// rewriteManifest returns the manifest with its layers replaced by the
// blobs a transport actually serves (with their sizes); layers served
// uncompressed get the uncompressed media type.
func rewriteManifest(manBlob []byte, manType string, layers []types.BlobInfo, sizes []int64) ([]byte, error) {
	m, err := manifest.FromBlob(manBlob, manType)
	if err != nil {
		return nil, err
	}
	upd := make([]types.BlobInfo, len(layers))
	for i, l := range layers {
		l.Size = sizes[i]
		switch l.MediaType {
		case imgspec.MediaTypeImageLayer, manifest.DockerV2SchemaLayerMediaTypeUncompressed:
			l.CompressionOperation = types.Decompress
			l.CompressionAlgorithm = nil
		}
		upd[i] = l
	}
	if err := m.UpdateLayerInfos(upd); err != nil {
		return nil, err
	}
	return m.Serialize()
}

func putBytes(ctx context.Context, store Store, ref, kind string, b []byte, d digest.Digest) error {
	if store.Has(d.String()) {
		return nil
	}
	got, _, err := store.Put(ctx, bytes.NewReader(b), d.String())
	if err != nil {
		return fmt.Errorf("oci: %s: storing %s %s: %w", ref, kind, d, err)
	}
	if got != d.String() {
		return fmt.Errorf("oci: %s: %s %w: stored as %s, want %s", ref, kind, iox.ErrDigestMismatch, got, d)
	}
	return nil
}

// readManifest reads a manifest (or manifest list) blob from the store.
func readManifest(store Store, ref string, d digest.Digest) ([]byte, error) {
	if !store.Has(d.String()) {
		return nil, fmt.Errorf("oci: %s: %w: missing manifest %s", ref, iox.ErrOffline, d)
	}
	rc, err := store.Open(d.String())
	if err != nil {
		return nil, fmt.Errorf("oci: %s: opening manifest %s: %w", ref, d, err)
	}
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(io.LimitReader(rc, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("oci: %s: reading manifest %s: %w", ref, d, err)
	}
	if len(b) > maxManifestSize {
		return nil, fmt.Errorf("oci: %s: manifest %s is larger than %d bytes", ref, d, maxManifestSize)
	}
	if ok, err := manifest.MatchesDigest(b, d); err != nil || !ok {
		return nil, fmt.Errorf("oci: %s: manifest %s in the cache: %w", ref, d, iox.ErrDigestMismatch)
	}
	return b, nil
}

// oneLine flattens the multi-line errors some transports return, so that
// every error stays one line.
func oneLine(err error) error {
	msg := err.Error()
	if !strings.ContainsAny(msg, "\r\n") {
		return err
	}
	return &flatError{msg: strings.Join(strings.Fields(msg), " "), err: err}
}

type flatError struct {
	msg string
	err error
}

func (e *flatError) Error() string { return e.msg }
func (e *flatError) Unwrap() error { return e.err }
