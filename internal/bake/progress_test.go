package bake

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the watcher's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestWatch(t *testing.T) {
	var out syncBuffer
	var n atomic.Int64
	stop := watch(&out, "master disk", 100<<20, n.Load)
	for range 6 {
		n.Add(10 << 20)
		time.Sleep(pollEvery)
	}
	stop()
	got := out.String()
	if !strings.Contains(got, "\rmaster disk [") || !strings.Contains(got, "%") {
		t.Errorf("no bar drawn: %q", got)
	}
	if !strings.HasSuffix(got, "\r\x1b[K") {
		t.Errorf("the bar is not cleared at the end: %q", got)
	}
	// Nothing shown without a writer, and stopping is safe.
	watch(nil, "x", 1, n.Load)()
}

func TestAllocated(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	if a := allocated(p); a >= 1<<20 {
		t.Errorf("a 64 MiB hole occupies %d bytes", a)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{1}, 4<<20), 8<<20); err != nil {
		t.Fatal(err)
	}
	if a := allocated(p); a < 4<<20 || a > 8<<20 {
		t.Errorf("4 MiB written, %d bytes allocated", a)
	}
	if allocated(filepath.Join(t.TempDir(), "missing")) != 0 {
		t.Error("a missing file occupies bytes")
	}
}
