package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// refFile is the content of DIR/refs/<sha256(key)>.
type refFile struct {
	Key    string `json:"key"`
	Digest string `json:"digest"`
}

const maxRefFileSize = 1 << 20

func (c *Cache) refPath(key string) string { return filepath.Join(c.refDir(), sha256Hex(key)) }

func checkKey(key string) error {
	if key == "" {
		return errors.New("empty ref key")
	}
	return nil
}

// SetRef points the symbolic key (e.g. "debian:sha256:<spec digest>") at
// digest, replacing what it pointed at. The write is atomic. The blob need
// not be stored yet, but Prune removes refs whose blob is missing.
func (c *Cache) SetRef(key, digest string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("cache: ref: %w", err)
	}
	if _, err := parseDigest(digest); err != nil {
		return fmt.Errorf("cache: ref %q: %w", key, err)
	}
	data, err := json.Marshal(refFile{Key: key, Digest: digest})
	if err != nil {
		return fmt.Errorf("cache: ref %q: %w", key, err)
	}
	data = append(data, '\n')
	in, err := c.newIngest("ref")
	if err != nil {
		return fmt.Errorf("cache: ref %q: %w", key, err)
	}
	if _, err := in.f.Write(data); err != nil {
		in.discard()
		return fmt.Errorf("cache: ref %q: %w", key, err)
	}
	if err := in.finish(); err != nil {
		in.discard()
		return fmt.Errorf("cache: ref %q: %w", key, err)
	}
	if err := in.commitTo(c.refPath(key)); err != nil {
		in.discard()
		return fmt.Errorf("cache: ref %q: %w", key, err)
	}
	if err := c.syncDir(c.refDir()); err != nil {
		return fmt.Errorf("cache: ref %q: %w", key, err)
	}
	c.log.Debug("cache: set ref", "key", key, "digest", digest)
	return nil
}

// Ref returns the digest key points at; ok is false if there is no such ref.
func (c *Cache) Ref(key string) (digest string, ok bool, err error) {
	if err := checkKey(key); err != nil {
		return "", false, fmt.Errorf("cache: ref: %w", err)
	}
	p := c.refPath(key)
	r, err := readRefFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if r.Key != key {
		return "", false, fmt.Errorf("cache: ref file %s holds key %q, want %q", p, truncate(r.Key), truncate(key))
	}
	return r.Digest, true, nil
}

func readRefFile(p string) (refFile, error) {
	var r refFile
	data, err := os.ReadFile(p)
	if err != nil {
		return r, err
	}
	if len(data) > maxRefFileSize {
		return r, fmt.Errorf("cache: ref file %s: too large", p)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("cache: ref file %s: %w", p, err)
	}
	if _, err := parseDigest(r.Digest); err != nil {
		return r, fmt.Errorf("cache: ref file %s: %w", p, err)
	}
	if r.Key == "" || sha256Hex(r.Key) != filepath.Base(p) {
		return r, fmt.Errorf("cache: ref file %s: key %q does not match the file name", p, truncate(r.Key))
	}
	return r, nil
}

// Refs returns every ref, key → digest. An unreadable ref file is an error.
func (c *Cache) Refs() (map[string]string, error) {
	refs, problems, err := c.readRefs()
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		errs := make([]error, len(problems))
		for i, p := range problems {
			errs[i] = p.Err
		}
		return nil, errors.Join(errs...)
	}
	return refs, nil
}

// readRefs reads every ref file; broken ones are returned as problems.
func (c *Cache) readRefs() (map[string]string, []Problem, error) {
	entries, err := os.ReadDir(c.refDir())
	if err != nil {
		return nil, nil, fmt.Errorf("cache: refs: %w", err)
	}
	refs := make(map[string]string, len(entries))
	var problems []Problem
	for _, e := range entries {
		p := filepath.Join(c.refDir(), e.Name())
		if !isBlobName(e.Name()) || !e.Type().IsRegular() {
			problems = append(problems, Problem{Path: p,
				Err: fmt.Errorf("cache: unexpected file %s in the ref directory", p)})
			continue
		}
		r, err := readRefFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			problems = append(problems, Problem{Digest: r.Digest, Path: p, Err: err})
			continue
		}
		refs[r.Key] = r.Digest
	}
	return refs, problems, nil
}

// RemoveRef deletes the ref; removing a ref that does not exist is not an
// error.
func (c *Cache) RemoveRef(key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("cache: ref: %w", err)
	}
	if err := os.Remove(c.refPath(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cache: remove ref %q: %w", key, err)
	}
	c.log.Debug("cache: removed ref", "key", key)
	return nil
}
