package resolve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path"
	"sync"

	"github.com/labbake/labbake/internal/cache"
	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/plan"
	"github.com/labbake/labbake/internal/recipe"
	"github.com/labbake/labbake/internal/source"
	"github.com/labbake/labbake/internal/source/debian"
	"github.com/labbake/labbake/internal/source/gobuild"
	"github.com/labbake/labbake/internal/source/oci"
)

// ErrFrozen is wrapped by the error for an input that --frozen refuses:
// missing from labbake.lock, or resolving to something else.
var ErrFrozen = errors.New("frozen")

// Resolver pins inputs and fetches their bytes into the cache. It is safe
// for concurrent use by the builds of several roles.
type Resolver struct {
	Cache   *cache.Cache
	Fetcher *source.Fetcher
	Debian  *debian.Builder
	OCI     *oci.Source
	// Go builds go inputs; nil refuses them.
	Go   *gobuild.Builder
	Lock *Lock // never nil: LoadLock gives an empty one
	// Frozen refuses any input the lock does not pin, or pins otherwise.
	Frozen bool
	Log    *slog.Logger

	mu   sync.Mutex
	used map[string]bool
}

// Offline reports whether the network is off limits.
func (r *Resolver) Offline() bool { return r.Fetcher.Offline }

func (r *Resolver) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Used returns the lock keys the resolver has looked up, so that
// `labbake lock` can drop entries no recipe needs.
func (r *Resolver) Used() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]bool, len(r.used))
	for k := range r.used {
		out[k] = true
	}
	return out
}

// locked looks key up in the lock, noting its use; frozen without an
// entry is an error.
func (r *Resolver) locked(key string) (string, bool, error) {
	r.use(key)
	v, ok := r.Lock.Get(key)
	if !ok && r.Frozen {
		return "", false, fmt.Errorf("%s is not in %s: %w (run labbake lock)", key, LockFile, ErrFrozen)
	}
	if !ok && r.Offline() {
		// What an earlier fetch resolved, remembered in the cache.
		d, found, err := r.Cache.Ref(key)
		if err != nil {
			return "", false, err
		}
		return d, found, nil
	}
	return v, ok, nil
}

// pin records what key resolved to, in the lock (written by labbake lock)
// and in the cache, so that a later offline build without a lock finds it.
func (r *Resolver) pin(key, digest string) error {
	r.Lock.Set(key, digest)
	if d, ok, err := r.Cache.Ref(key); err == nil && ok && d == digest {
		return nil
	}
	return r.Cache.SetRef(key, digest)
}

// DebianBase returns the digest and size of the base tarball for d: from
// the cache when the lock or an earlier build pins it, else built once with
// mmdebstrap.
func (r *Resolver) DebianBase(ctx context.Context, d *recipe.Debian, epoch int64) (string, int64, error) {
	spec := d.Spec()
	key := kindDebian + spec.Normalize().Key(epoch)
	pinned, ok, err := r.locked(key)
	if err != nil {
		return "", 0, err
	}
	digest := pinned
	if !ok || !r.Cache.Has(pinned) {
		if !r.Offline() {
			for _, mirror := range debian.MirrorURLs(spec) {
				if err := r.Fetcher.Reach.Check(ctx, mirror); err != nil {
					return "", 0, offlineHint(fmt.Errorf("debian: base %s: mirror %w", spec.Name(), err))
				}
			}
		}
		digest, err = r.Debian.Build(ctx, r.Cache, spec, epoch, r.Offline())
		if err != nil {
			return "", 0, offlineHint(err)
		}
	}
	if ok && digest != pinned {
		if r.Frozen {
			return "", 0, fmt.Errorf("debian base %s built as %s, but %s pins %s (a snapshot: mirror makes mmdebstrap reproducible): %w", spec.Name(), digest, LockFile, pinned, ErrFrozen)
		}
		r.log().Warn("debian base differs from the lock; the lock is updated by labbake lock", "base", spec.Name(), "built", digest, "locked", pinned)
	}
	rebuild := func() error {
		d, err := r.Debian.Build(ctx, r.Cache, spec, epoch, r.Offline())
		if err == nil && d != digest {
			err = fmt.Errorf("debian base %s rebuilt as %s, not %s", spec.Name(), d, digest)
		}
		return err
	}
	if err := r.verified(digest, rebuild); err != nil {
		return "", 0, err
	}
	if err := r.pin(key, digest); err != nil {
		return "", 0, err
	}
	size, err := r.size(digest)
	return digest, size, err
}

// Image pins an OCI image by manifest digest and stores its blobs.
func (r *Resolver) Image(ctx context.Context, ref string) (*oci.Resolved, error) {
	key := kindOCI + ref
	pinned, _, err := r.locked(key)
	if err != nil {
		return nil, err
	}
	img, err := r.OCI.Pull(ctx, r.Cache, ref, pinned)
	if err != nil {
		return nil, registryHint(offlineHint(err))
	}
	repull := func() error {
		_, err := r.OCI.Pull(ctx, r.Cache, ref, img.ManifestDigest)
		return err
	}
	for _, d := range append([]string{img.ManifestDigest, img.Config}, img.Layers...) {
		if err := r.verified(d, repull); err != nil {
			return nil, fmt.Errorf("image %s: %w", ref, err)
		}
	}
	if err := r.pin(key, img.ManifestDigest); err != nil {
		return nil, err
	}
	return img, nil
}

// ImageInput is Image in the plan's terms.
func (r *Resolver) ImageInput(ctx context.Context, ref string) (manifest, config string, layers []string, err error) {
	img, err := r.Image(ctx, ref)
	if err != nil {
		return "", "", nil, err
	}
	return img.ManifestDigest, img.Config, img.Layers, nil
}

// URL fetches url into the cache. Its digest is sha when the recipe pins
// it, else the one the checksum file at shaURL gives for the file's name
// (read once, then pinned by the lock).
func (r *Resolver) URL(ctx context.Context, url, sha, shaURL string) (string, int64, error) {
	want := sha
	if want == "" {
		key := kindChecksum + shaURL + " " + path.Base(url)
		v, ok, err := r.locked(key)
		if err != nil {
			return "", 0, err
		}
		if !ok {
			if v, err = r.Fetcher.Checksum(ctx, shaURL, path.Base(url)); err != nil {
				return "", 0, offlineHint(err)
			}
		}
		if err := r.pin(key, v); err != nil {
			return "", 0, err
		}
		want = v
	}
	var size int64
	fetch := func() error {
		d, n, err := r.Fetcher.Fetch(ctx, r.Cache, url, want)
		if err != nil {
			return err
		}
		size = n
		_, err = r.Cache.Path(d)
		return err
	}
	if err := r.repair(want, fetch); err != nil {
		return "", 0, offlineHint(err)
	}
	return want, size, nil
}

// GoInput pins a go input by its go.sum and output digests and makes sure
// the output is in the cache: taken from it when a build of the same
// inputs is there, else built (see gobuild.Builder.Build). An output or
// go.sum that differs from what the lock pins is an error naming both.
func (r *Resolver) GoInput(ctx context.Context, s gobuild.Spec) (plan.GoOutput, error) {
	if r.Go == nil {
		return plan.GoOutput{}, errors.New("go inputs are not supported by this build")
	}
	s = s.Normalize()
	sumKey, binKey := s.SumKey().String(), s.BinaryKey().String()
	goSum, _, err := r.locked(sumKey)
	if err != nil {
		return plan.GoOutput{}, err
	}
	bin, _, err := r.locked(binKey)
	if err != nil {
		return plan.GoOutput{}, err
	}
	tcKey := gobuild.ToolchainKey(s.Toolchain)
	tcPin := r.toolchainPin(s.Toolchain)
	pins := gobuild.Pins{GoSum: goSum, Binary: bin, Toolchain: tcPin, Frozen: r.Frozen}
	var res *gobuild.Result
	build := func() error {
		var err error
		res, err = r.Go.Build(ctx, r.Cache, s, pins, r.Offline())
		if err != nil {
			return err
		}
		_, err = r.Cache.Path(res.Digest)
		return err
	}
	err = build()
	if errors.Is(err, cache.ErrCorrupt) && res != nil && !r.Offline() {
		// The cached output is corrupt: build it again.
		r.log().Warn("cached go output is corrupt; building it again", "go", s.Name(), "digest", res.Digest)
		if rerr := r.Cache.Remove(res.Digest); rerr != nil && !errors.Is(rerr, cache.ErrNotFound) {
			return plan.GoOutput{}, rerr
		}
		err = build()
	}
	if errors.Is(err, gobuild.ErrUnpinned) {
		err = fmt.Errorf("%w: %w", ErrFrozen, err)
	}
	if err != nil {
		return plan.GoOutput{}, offlineHint(err)
	}
	if res.Toolchain != "" {
		// The h1 hash of the toolchain module is no blob: the lock only
		// (the cache names the zip's blob under the same key).
		r.Lock.Set(tcKey, res.Toolchain)
		r.use(tcKey)
	}
	if err := r.pin(sumKey, res.GoSum); err != nil {
		return plan.GoOutput{}, err
	}
	if err := r.pin(binKey, res.Digest); err != nil {
		return plan.GoOutput{}, err
	}
	size, err := r.size(res.Digest)
	if err != nil {
		return plan.GoOutput{}, err
	}
	return plan.GoOutput{Digest: res.Digest, Size: size, GoSum: res.GoSum, Modules: res.Modules, Toolchain: res.ToolchainZip}, nil
}

// toolchainPin is the h1 hash labbake.lock pins for release's toolchain on
// this host ("" when none). Every toolchain entry of the release, for any
// host platform, counts as used: a lock made on two kinds of machine keeps
// both pins. A missing pin is not refused here, even frozen: only a
// toolchain that must be downloaded needs one (see gobuild.Pins.Frozen).
func (r *Resolver) toolchainPin(release string) string {
	r.use(r.Lock.keys(gobuild.KindToolchain + " " + release + " ")...)
	v, _ := r.Lock.Get(gobuild.ToolchainKey(release))
	return v
}

// use notes the use of lock keys.
func (r *Resolver) use(keys ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.used == nil {
		r.used = map[string]bool{}
	}
	for _, k := range keys {
		r.used[k] = true
	}
}

// repair runs op, which reads the blob digest from the cache (verifying
// it; the cache remembers that for the rest of the process, so the build
// reads it without hashing it again). Online, when op finds the blob
// corrupt, the blob is removed and op runs again to fetch it anew; offline
// the corruption is the error.
func (r *Resolver) repair(digest string, op func() error) error {
	err := op()
	if err == nil || !errors.Is(err, cache.ErrCorrupt) || r.Offline() {
		return err
	}
	r.log().Warn("cached blob is corrupt; fetching it again", "digest", digest)
	if err := r.Cache.Remove(digest); err != nil && !errors.Is(err, cache.ErrNotFound) {
		return err
	}
	return op()
}

// verified checks a blob that an earlier step stored, with refetch to
// store it again when it is corrupt.
func (r *Resolver) verified(digest string, refetch func() error) error {
	return r.repair(digest, func() error {
		if _, err := r.Cache.Path(digest); err != nil {
			if errors.Is(err, cache.ErrCorrupt) {
				return err
			}
			if rerr := refetch(); rerr != nil {
				return rerr
			}
			_, err = r.Cache.Path(digest)
			return err
		}
		return nil
	})
}

// size tells a cached blob's size.
func (r *Resolver) size(digest string) (int64, error) {
	p, err := r.Cache.Path(digest)
	if err != nil {
		return 0, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return 0, fmt.Errorf("cache: %w", err)
	}
	return st.Size(), nil
}

// offlineHint tells how to provide an input that is missing offline.
func offlineHint(err error) error {
	if errors.Is(err, source.ErrUnreachable) {
		return fmt.Errorf("%w; give another source with --mirror FROM=TO (or $XDG_CONFIG_HOME/labbake/mirrors), point the lab elsewhere with --values FILE, or labbake bundle import a bundle made where it can be reached", err)
	}
	if err != nil && errors.Is(err, iox.ErrOffline) {
		return fmt.Errorf("%w; provide it with labbake fetch on a connected machine, or labbake bundle export there and bundle import here", err)
	}
	return err
}

// registryHint turns a registry whose name does not resolve into an
// unreachable input (one line, with where else to get the image); other
// errors are returned as they are. The registry's own name is tried only
// when registries.conf names no reachable mirror for it, so a failed lookup
// means the image cannot come from here.
func registryHint(err error) error {
	var de *net.DNSError
	if err == nil || errors.Is(err, source.ErrUnreachable) || !errors.As(err, &de) || !de.IsNotFound {
		return err
	}
	return fmt.Errorf("%s: %w (the name does not resolve); mirror the registry in registries.conf ($CONTAINERS_REGISTRIES_CONF), point the lab's images elsewhere with --values FILE, or labbake bundle import a bundle made where it can be reached",
		de.Name, source.ErrUnreachable)
}

// IsInputError reports whether err is the user's to fix: an input missing
// offline, refused by --frozen, or not matching its pinned digest.
func IsInputError(err error) bool {
	for _, target := range []error{source.ErrUnreachable, iox.ErrOffline, iox.ErrDigestMismatch, oci.ErrPolicyRejected, ErrFrozen, gobuild.ErrToolchain, gobuild.ErrNoGo, gobuild.ErrUnpinned} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
