package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
)

// dirStore is a directory-backed Store for tests: blobs live in
// DIR/<algorithm>/<hex>, Put verifies the digest, Open verifies while reading.
type dirStore struct {
	dir string

	mu    sync.Mutex
	puts  int
	opens int
}

var _ Store = (*dirStore)(nil)

func newDirStore(t *testing.T) *dirStore {
	t.Helper()
	return &dirStore{dir: t.TempDir()}
}

func (s *dirStore) path(d string) (string, error) {
	dg, err := digest.Parse(d)
	if err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	return filepath.Join(s.dir, dg.Algorithm().String(), dg.Encoded()), nil
}

func (s *dirStore) Has(d string) bool {
	p, err := s.path(d)
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

func (s *dirStore) Put(ctx context.Context, r io.Reader, want string) (string, int64, error) {
	s.mu.Lock()
	s.puts++
	s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return "", 0, err
	}
	tmp, err := os.CreateTemp(s.dir, "put-*")
	if err != nil {
		return "", 0, err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	dg := digest.Canonical.Digester()
	n, err := io.Copy(io.MultiWriter(tmp, dg.Hash()), r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, err
	}
	got := dg.Digest().String()
	if want != "" && got != want {
		return "", 0, fmt.Errorf("store: got %s, want %s", got, want)
	}
	p, err := s.path(got)
	if err != nil {
		return "", 0, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", 0, err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", 0, err
	}
	return got, n, nil
}

func (s *dirStore) Open(d string) (io.ReadCloser, error) {
	s.mu.Lock()
	s.opens++
	s.mu.Unlock()
	p, err := s.path(d)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	dg, _ := digest.Parse(d)
	return &verifyingReader{f: f, v: dg.Verifier(), want: dg}, nil
}

// blobs lists the stored digests.
func (s *dirStore) blobs(t *testing.T) []string {
	t.Helper()
	var out []string
	algos, err := os.ReadDir(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range algos {
		if !a.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(s.dir, a.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			out = append(out, a.Name()+":"+f.Name())
		}
	}
	sort.Strings(out)
	return out
}

func (s *dirStore) putCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.puts
}

type verifyingReader struct {
	f    *os.File
	v    digest.Verifier
	want digest.Digest
}

func (r *verifyingReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	_, _ = r.v.Write(p[:n])
	if errors.Is(err, io.EOF) && !r.v.Verified() {
		return n, fmt.Errorf("store: blob %s does not match its digest", r.want)
	}
	return n, err
}

func (r *verifyingReader) Close() error { return r.f.Close() }
