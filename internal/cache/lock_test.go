package cache

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestLock(t *testing.T) {
	tests := []struct {
		name        string
		first       string
		second      string
		wantBlocked bool
	}{
		{"same name waits", "debian:sha256:abc", "debian:sha256:abc", true},
		{"other name does not", "debian:sha256:abc", "debian:sha256:def", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := openCache(t)
			unlock1, err := c.Lock(context.Background(), tt.first)
			if err != nil {
				t.Fatal(err)
			}
			var got atomic.Bool
			done := make(chan error, 1)
			go func() {
				unlock2, err := c.Lock(context.Background(), tt.second)
				if err == nil {
					got.Store(true)
					unlock2()
				}
				done <- err
			}()
			time.Sleep(300 * time.Millisecond)
			if got.Load() == tt.wantBlocked {
				t.Fatalf("second Lock acquired=%v while the first is held; want blocked=%v", got.Load(), tt.wantBlocked)
			}
			unlock1()
			unlock1() // a second unlock is harmless
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("second Lock still waiting 5 s after unlock")
			}
		})
	}
}

func TestLockTimeout(t *testing.T) {
	c := openCache(t)
	unlock, err := c.Lock(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = c.Lock(ctx, "x")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock on a held name with a timeout: %v; want DeadlineExceeded", err)
	}
	// The deadline is measured from before it was set, so the wait can
	// only be longer than 200 ms; a loaded machine may add a lot.
	if d := time.Since(start); d < 200*time.Millisecond || d > 5*time.Second {
		t.Errorf("Lock gave up after %v, want about 200ms", d)
	}
	if _, err := c.Lock(context.Background(), ""); err == nil {
		t.Error("Lock with an empty name succeeded")
	}
}

func TestLockAcrossProcesses(t *testing.T) {
	c := openCache(t)
	const name = "debian:sha256:0123"
	cmd, stdin, out := helper(t, "lock", c.Dir(), "LOCK_NAME="+name)
	waitLine(t, out, "locked")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := c.Lock(ctx, name)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock held by another process: %v; want DeadlineExceeded", err)
	}
	// Another name is free meanwhile.
	unlockOther, err := c.Lock(context.Background(), "other")
	if err != nil {
		t.Fatal(err)
	}
	unlockOther()

	// Once the helper unlocks (on stdin EOF), our Lock succeeds.
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		unlock, err := c.Lock(ctx, name)
		if err == nil {
			unlock()
		}
		got <- err
	}()
	time.Sleep(200 * time.Millisecond)
	_ = stdin.Close()
	if err := <-got; err != nil {
		t.Fatalf("Lock after the other process unlocked: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
}

// A lock dies with its process.
func TestLockReleasedOnExit(t *testing.T) {
	c := openCache(t)
	cmd, _, out := helper(t, "lock", c.Dir(), "LOCK_NAME=n")
	waitLine(t, out, "locked")
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	unlock, err := c.Lock(ctx, "n")
	if err != nil {
		t.Fatalf("Lock after the holder was killed: %v", err)
	}
	unlock()
}
