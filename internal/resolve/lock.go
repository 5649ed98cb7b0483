package resolve

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// LockFile is the name of the lock file in the lab dir.
const LockFile = "labbake.lock"

// Lock is labbake.lock: what each symbolic input (a checksum file, an image
// tag, a Debian spec) resolved to, so that a later build gets the same bits.
// JSON with sorted keys, one input a line: diff-friendly.
type Lock struct {
	mu      sync.Mutex
	path    string
	exists  bool
	inputs  map[string]string
	changed bool
}

type lockJSON struct {
	Format int               `json:"format"`
	Inputs map[string]string `json:"inputs"`
}

// LoadLock reads path; a missing file is an empty lock.
func LoadLock(path string) (*Lock, error) {
	l := &Lock{path: path, inputs: map[string]string{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var j lockJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if j.Format != 1 {
		return nil, fmt.Errorf("%s: format %d: this labbake reads format 1", path, j.Format)
	}
	for k, v := range j.Inputs {
		l.inputs[k] = v
	}
	l.exists = true
	return l, nil
}

// Exists reports whether the lock was read from a file.
func (l *Lock) Exists() bool { return l.exists }

// Get returns what key resolved to.
func (l *Lock) Get(key string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.inputs[key]
	return v, ok
}

// Set records what key resolved to.
func (l *Lock) Set(key, value string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inputs[key] != value {
		l.inputs[key] = value
		l.changed = true
	}
}

// Keep drops every entry whose key is not in keep (inputs no recipe uses
// any more).
func (l *Lock) Keep(keep map[string]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.inputs {
		if !keep[k] {
			delete(l.inputs, k)
			l.changed = true
		}
	}
}

// Bytes renders the lock file.
func (l *Lock) Bytes() ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, err := json.MarshalIndent(lockJSON{Format: 1, Inputs: l.inputs}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding lock: %w", err)
	}
	return append(b, '\n'), nil
}

// Save writes the lock file atomically.
func (l *Lock) Save() error {
	b, err := l.Bytes()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(l.path), "."+filepath.Base(l.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", l.path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", l.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", l.path, err)
	}
	if err := os.Rename(tmp.Name(), l.path); err != nil {
		return fmt.Errorf("writing %s: %w", l.path, err)
	}
	l.exists = true
	return nil
}
