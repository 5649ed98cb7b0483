package debian

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/source"
)

// Store is the part of the content-addressed cache Build needs.
// internal/cache satisfies it.
type Store interface {
	// Has reports whether the blob digest is present.
	Has(digest string) bool
	// Put stores r's bytes, checking them against want unless want is "",
	// and returns their digest and size.
	Put(ctx context.Context, r io.Reader, want string) (digest string, size int64, err error)
	// Ref resolves a named reference to a digest.
	Ref(key string) (digest string, ok bool, err error)
	// SetRef points the named reference key at digest.
	SetRef(key, digest string) error
	// Lock takes a cross-process lock called name.
	Lock(ctx context.Context, name string) (unlock func(), err error)
}

// tailLines is how many lines of mmdebstrap's output a failure reports.
const tailLines = 40

// Builder builds Debian bases with mmdebstrap. The zero value is usable.
type Builder struct {
	// Mmdebstrap is the program to run; "" looks up "mmdebstrap" on PATH.
	Mmdebstrap string
	// TempDir receives the tarball (and mmdebstrap's TMPDIR) before it goes
	// into the store; "" means os.TempDir().
	TempDir string
	// Mode is mmdebstrap's --mode; "" means "root" when running as root,
	// else "unshare".
	Mode string
	// Log receives progress and decisions; nil discards them.
	Log *slog.Logger
	// Status, if set, shows how many bytes the base has grown to while
	// mmdebstrap runs, with the rate: a redrawn line when Terminal, plain
	// lines every 10 s otherwise.
	Status   io.Writer
	Terminal bool
	// Progress, if set, receives mmdebstrap's own output line by line.
	// Either way the last 40 lines end up in the error when it fails.
	Progress io.Writer
	// KillGrace is how long mmdebstrap may take to clean up (unmount, remove
	// its chroot) after SIGTERM when ctx is cancelled, before its process
	// group is killed; 0 means 10s.
	KillGrace time.Duration
}

func (b *Builder) log() *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Build returns the digest of the base tarball for spec built with
// SOURCE_DATE_EPOCH=epoch. When store has spec.Key(epoch) and its blob,
// that digest is returned and mmdebstrap is not run. Otherwise, unless
// offline, mmdebstrap runs once under store.Lock(key) — concurrent builds of
// the same spec, in this process or others, wait and then take the result
// from the cache — and the tarball is stored with Put and SetRef.
//
// offline with nothing cached returns an error wrapping iox.ErrOffline.
// Cancelling ctx terminates mmdebstrap's whole process group and removes
// the temporary files.
func (b *Builder) Build(ctx context.Context, store Store, spec Spec, epoch int64, offline bool) (string, error) {
	if err := spec.Validate(); err != nil {
		return "", fmt.Errorf("debian: invalid spec: %w", err)
	}
	spec = spec.Normalize()
	key := spec.Key(epoch)
	log := b.log().With("base", spec.Name(), "key", key)

	if d, ok, err := cached(store, key); err != nil || ok {
		if ok {
			log.Debug("debian base from cache", "digest", d)
		}
		return d, err
	}
	if offline {
		return "", fmt.Errorf("debian: base %s (%s) is not in the cache: %w; run labbake fetch on a connected machine, or import a bundle",
			spec.Name(), key, iox.ErrOffline)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("debian: building %s: %w", spec.Name(), err)
	}

	unlock, err := store.Lock(ctx, key)
	if err != nil {
		return "", fmt.Errorf("debian: locking %s: %w", key, err)
	}
	defer unlock()
	// Another build may have made it while we waited for the lock.
	if d, ok, err := cached(store, key); err != nil || ok {
		if ok {
			log.Debug("debian base built by a concurrent build", "digest", d)
		}
		return d, err
	}

	start := time.Now()
	d, size, err := b.run(ctx, store, spec, epoch, log)
	if err != nil {
		return "", err
	}
	if err := store.SetRef(key, d); err != nil {
		return "", fmt.Errorf("debian: recording %s: %w", key, err)
	}
	log.Info("debian base built", "digest", d, "size", size, "took", time.Since(start).Round(time.Millisecond))
	return d, nil
}

// cached looks key up in store; ok only when the ref exists and its blob is
// present.
func cached(store Store, key string) (string, bool, error) {
	d, ok, err := store.Ref(key)
	if err != nil {
		return "", false, fmt.Errorf("debian: looking up %s: %w", key, err)
	}
	if !ok || d == "" || !store.Has(d) {
		return "", false, nil
	}
	return d, true, nil
}

// run runs mmdebstrap into a private temporary directory and puts the
// tarball into store. The directory is removed whatever happens.
func (b *Builder) run(ctx context.Context, store Store, spec Spec, epoch int64, log *slog.Logger) (digest string, size int64, err error) {
	prog := b.Mmdebstrap
	if prog == "" {
		prog = "mmdebstrap"
	}
	path, err := exec.LookPath(prog)
	if err != nil {
		return "", 0, fmt.Errorf("debian: mmdebstrap is needed to build %s: %w (install the mmdebstrap package)", spec.Name(), err)
	}

	tmpRoot := b.TempDir
	if tmpRoot == "" {
		tmpRoot = os.TempDir()
	}
	work, err := os.MkdirTemp(tmpRoot, "labbake-debian-")
	if err != nil {
		return "", 0, fmt.Errorf("debian: %w", err)
	}
	defer func() {
		if rerr := removeWork(work); rerr != nil {
			log.Error("debian: cannot remove temporary directory", "dir", work, "err", rerr)
			if err == nil {
				err = fmt.Errorf("debian: removing %s: %w", work, rerr)
			}
		}
	}()
	// mmdebstrap builds the chroot in TMPDIR: keep it inside work so that
	// whatever a killed mmdebstrap leaves behind is removed with it. apt's
	// download sandbox user (_apt) must be able to reach into it; nothing
	// in it is secret.
	mmTmp := filepath.Join(work, "tmp")
	if err := os.Mkdir(mmTmp, 0o755); err != nil {
		return "", 0, fmt.Errorf("debian: %w", err)
	}
	if err := os.Chmod(work, 0o755); err != nil {
		return "", 0, fmt.Errorf("debian: %w", err)
	}
	out := filepath.Join(work, "base.tar")

	argv := b.Args(spec, out)
	log.Info("debian base: running mmdebstrap", "args", argv[1:])

	tail := newTailWriter(tailLines, b.Progress)
	cmd := exec.Command(path, argv[1:]...)
	cmd.Env = append(withoutEnv(os.Environ(), "SOURCE_DATE_EPOCH", "TMPDIR"),
		"SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10),
		"TMPDIR="+mmTmp)
	cmd.Stdin = nil
	cmd.Stdout = tail
	cmd.Stderr = tail
	cmd.Dir = work
	grace := b.KillGrace
	if grace <= 0 {
		grace = 10 * time.Second
	}
	stop := b.watch(spec, work)
	// In root mode mmdebstrap mounts in its chroot itself: those mounts
	// stay in a namespace of its own (unshare mode makes its own).
	runErr := runGroup(ctx, cmd, grace, b.mode() == "root" && os.Geteuid() == 0)
	stop(runErr == nil)
	tail.Flush()
	if runErr != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return "", 0, fmt.Errorf("debian: building %s: mmdebstrap stopped: %w", spec.Name(), ctxErr)
		}
		return "", 0, fmt.Errorf("debian: building %s: mmdebstrap failed (%s); last lines of its output:\n%s",
			spec.Name(), describe(runErr), tail.String())
	}

	f, err := os.Open(out)
	if err != nil {
		return "", 0, fmt.Errorf("debian: building %s: mmdebstrap made no tarball: %w", spec.Name(), err)
	}
	defer f.Close()
	digest, size, err = store.Put(ctx, f, "")
	if err != nil {
		return "", 0, fmt.Errorf("debian: storing %s: %w", spec.Name(), err)
	}
	return digest, size, nil
}

// describe renders how the command ended: "exit status 1", "signal: killed".
func describe(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	return err.Error()
}

// withoutEnv drops the named variables from env.
func withoutEnv(env []string, names ...string) []string {
	out := make([]string, 0, len(env))
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// watch shows the size of mmdebstrap's work dir (the chroot, then the
// tarball) growing, until the returned stop is called.
func (b *Builder) watch(spec Spec, dir string) (stop func(ok bool)) {
	if b.Status == nil {
		return func(bool) {}
	}
	p := source.NewProgress(b.Status, b.Terminal, "debian "+spec.Name(), "building", "built", -1)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		every := time.Second
		if b.Terminal {
			every = 200 * time.Millisecond
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		var last int64
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				n := dirSize(dir)
				if n > last {
					p.Add(n - last)
					last = n
				}
			}
		}
	}()
	return func(ok bool) {
		close(done)
		<-finished
		if ok {
			p.Done()
		} else {
			p.Abort()
		}
	}
}

// dirSize adds up the sizes of the regular files below dir, staying on
// dir's filesystem: mmdebstrap mounts /proc, /sys and /dev in its chroot,
// and an open directory there would keep it from unmounting them. Files
// that vanish while it walks are skipped.
func dirSize(dir string) int64 {
	var root unix.Stat_t
	if err := unix.Lstat(dir, &root); err != nil {
		return 0
	}
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && p != dir {
			var st unix.Stat_t
			if unix.Lstat(p, &st) != nil || st.Dev != root.Dev {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
