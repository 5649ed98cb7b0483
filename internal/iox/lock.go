package iox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// LockPoll is how often a busy flock is tried again.
const LockPoll = 50 * time.Millisecond

// Flock takes an exclusive flock on f, waiting until it is free or ctx is
// done (then it returns ctx's error). The lock is polled rather than
// waited for in the kernel, so that Ctrl-C or SIGTERM ends the wait at
// once. busy, when not nil, is called once if the lock is found held.
func Flock(ctx context.Context, f *os.File, busy func()) error {
	for {
		ok, err := TryFlock(f)
		if err != nil || ok {
			return err
		}
		if busy != nil {
			busy()
			busy = nil
		}
		t := time.NewTimer(LockPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// TryFlock takes an exclusive flock on f if nobody holds it: false (and no
// error) when another open file holds it.
func TryFlock(f *os.File) (bool, error) {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EWOULDBLOCK):
			return false, nil
		case errors.Is(err, unix.EINTR):
			continue
		}
		return false, err
	}
}

// LockFile opens the lock file at path (creating it with mode 0644) and
// takes its exclusive flock with Flock. A symlink at path is refused, not
// followed: a lock file must not become a way to create or open a file
// elsewhere. unlock releases the lock (it is safe to call more than once).
func LockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			err = fmt.Errorf("%w (a symlink: lock files are never followed)", err)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if err := Flock(ctx, f, nil); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	var once sync.Once
	return func() { once.Do(func() { _ = f.Close() }) }, nil
}
