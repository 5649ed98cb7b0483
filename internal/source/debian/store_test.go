package debian

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dirStore is a directory-backed Store for tests: blobs/sha256/<hex>,
// refs/<key>, and flock(2) locks in locks/.
type dirStore struct{ dir string }

func newDirStore(t *testing.T) *dirStore {
	t.Helper()
	s := &dirStore{dir: t.TempDir()}
	for _, d := range []string{"blobs/sha256", "refs", "locks", "tmp"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s *dirStore) blobPath(digest string) (string, error) {
	hexsum, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexsum) != 64 {
		return "", fmt.Errorf("bad digest %q", digest)
	}
	return filepath.Join(s.dir, "blobs", "sha256", hexsum), nil
}

func safeName(key string) string { return strings.NewReplacer(":", "_", "/", "_").Replace(key) }

func (s *dirStore) Has(digest string) bool {
	p, err := s.blobPath(digest)
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

func (s *dirStore) Put(ctx context.Context, r io.Reader, want string) (string, int64, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "put-")
	if err != nil {
		return "", 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		return "", 0, err
	}
	if err := ctx.Err(); err != nil {
		return "", 0, err
	}
	digest := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if want != "" && want != digest {
		return "", 0, fmt.Errorf("digest mismatch: got %s, want %s", digest, want)
	}
	if err := f.Close(); err != nil {
		return "", 0, err
	}
	p, _ := s.blobPath(digest)
	if err := os.Rename(f.Name(), p); err != nil {
		return "", 0, err
	}
	return digest, n, nil
}

func (s *dirStore) Ref(key string) (string, bool, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "refs", safeName(key)))
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return strings.TrimSpace(string(b)), true, nil
}

func (s *dirStore) SetRef(key, digest string) error {
	p := filepath.Join(s.dir, "refs", safeName(key))
	if err := os.WriteFile(p+".tmp", []byte(digest+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

func (s *dirStore) Lock(ctx context.Context, name string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.dir, "locks", safeName(name)+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// refs lists the keys that have a ref.
func (s *dirStore) refs(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.dir, "refs"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
