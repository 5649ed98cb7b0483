package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/labbake/labbake/internal/iox"
)

// dirStore is a Store in a directory, one file per blob, for the tests.
type dirStore struct {
	dir  string
	puts atomic.Int32 // successful Puts
}

func newDirStore(t testing.TB) *dirStore { return &dirStore{dir: t.TempDir()} }

func (s *dirStore) path(digest string) string {
	return filepath.Join(s.dir, strings.TrimPrefix(digest, "sha256:"))
}

func (s *dirStore) Has(digest string) bool {
	_, err := os.Stat(s.path(digest))
	return err == nil
}

func (s *dirStore) Put(ctx context.Context, r io.Reader, want string) (string, int64, error) {
	tmp, err := os.CreateTemp(s.dir, ".ingest-*")
	if err != nil {
		return "", 0, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), iox.Reader(ctx, r))
	if err != nil {
		return "", 0, fmt.Errorf("store: %w", err)
	}
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if want != "" && got != want {
		return "", 0, fmt.Errorf("store: got %s, want %s", got, want)
	}
	if err := tmp.Close(); err != nil {
		return "", 0, err
	}
	if err := os.Rename(tmp.Name(), s.path(got)); err != nil {
		return "", 0, err
	}
	s.puts.Add(1)
	return got, n, nil
}

func (s *dirStore) Open(digest string) (io.ReadCloser, error) {
	f, err := os.Open(s.path(digest))
	if err != nil {
		return nil, err
	}
	return &verifier{f: f, h: sha256.New(), want: digest}, nil
}

// blobs lists the digests stored.
func (s *dirStore) blobs(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, "sha256:"+e.Name())
	}
	return out
}

// verifier checks a blob's digest when it is read to the end.
type verifier struct {
	f    *os.File
	h    hash.Hash
	want string
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		if got := "sha256:" + hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			return n, fmt.Errorf("blob %s is corrupt: it has %s", v.want, got)
		}
	}
	return n, err
}

func (v *verifier) Close() error { return v.f.Close() }

func digestOf(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// put stores b in s.
func (s *dirStore) put(t testing.TB, b []byte) string {
	t.Helper()
	d, _, err := s.Put(context.Background(), strings.NewReader(string(b)), "")
	if err != nil {
		t.Fatal(err)
	}
	return d
}
