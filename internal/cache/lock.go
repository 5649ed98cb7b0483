package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/labbake/labbake/internal/iox"
)

// Lock takes the exclusive cross-process lock called name (an flock on
// DIR/locks/<sha256(name)>), waiting until it is free or ctx is done. It is
// used so that two builds do not both make the same expensive input (e.g. run
// mmdebstrap for one spec): take the lock, check the ref again, build, set the
// ref, unlock. Two Locks of one name exclude each other within one process
// too. The lock is released by unlock (safe to call more than once) or when
// the process ends.
func (c *Cache) Lock(ctx context.Context, name string) (unlock func(), err error) {
	if name == "" {
		return nil, errors.New("cache: lock: empty name")
	}
	p := filepath.Join(c.lockDir(), sha256Hex(name))
	// Lock files are never removed: removing one while another process waits
	// on it would let two holders in.
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cache: lock %q: %w", name, err)
	}
	start := time.Now()
	logged := false
	busy := func() {
		c.log.Debug("cache: waiting for lock", "name", name, "path", p)
		logged = true
	}
	if err := iox.Flock(ctx, f, busy); err != nil {
		_ = f.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("cache: lock %q: still held by another build after %s: %w",
				name, time.Since(start).Round(time.Millisecond), err)
		}
		return nil, fmt.Errorf("cache: lock %q: %w", name, err)
	}
	// Record the name for whoever looks at the lock directory.
	if fi, err := f.Stat(); err == nil && fi.Size() == 0 {
		_, _ = f.WriteString(name + "\n")
	}
	if logged {
		c.log.Debug("cache: got lock", "name", name, "waited", time.Since(start))
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = f.Close()
		})
	}, nil
}
