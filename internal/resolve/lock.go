package resolve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/labbake/labbake/internal/atomicfile"
	"github.com/labbake/labbake/internal/iox"
	"github.com/labbake/labbake/internal/source/gobuild"
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

// lockJSON is how Bytes writes the lock; ParseLock reads it back.
type lockJSON struct {
	Format int               `json:"format"`
	Inputs map[string]string `json:"inputs"`
}

// The kinds of lock entries: a key is a kind's prefix followed by what was
// resolved (see Resolver.DebianBase, Image and URL).
const (
	kindChecksum = "checksum " // "checksum URL FILE": a checksum file's line for FILE
	kindDebian   = "debian "   // "debian SPEC-KEY": a Debian base built by mmdebstrap
	kindOCI      = "oci "      // "oci REF": an image's manifest
	// "go MODULE@VERSION PKGS TOOLCHAIN GOOS/GOARCH sha256:OPTIONS": a go
	// input's output; "gosum MODULE@VERSION PKGS TOOLCHAIN [staging]": its
	// go.sum (see gobuild.Key).
	kindGo    = gobuild.KindBinary + " "
	kindGoSum = gobuild.KindSum + " "
	// "gotoolchain GO-RELEASE GOOS/GOARCH": the h1 hash (not a digest) of
	// the golang.org/toolchain module a go input's toolchain was fetched
	// as, for that host platform (see gobuild.ToolchainKey).
	kindToolchain = gobuild.KindToolchain + " "
)

// maxLockSize bounds a lock file: a lab's lock holds a few dozen lines.
const maxLockSize = 16 << 20

// LoadLock reads path; a missing file is an empty lock.
func LoadLock(path string) (*Lock, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Lock{path: path, inputs: map[string]string{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxLockSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	l, err := ParseLock(path, b)
	if err != nil {
		return nil, err
	}
	l.path, l.exists = path, true
	return l, nil
}

// ParseLock checks data as the content of a lock file and returns the lock
// it holds. name (a path, or where the bytes came from) starts every error,
// followed by the line and column of the problem. Everything must be as
// labbake writes it: one JSON object with "format": 1 and "inputs", each
// input a key of a known kind mapped to a sha256 digest (a toolchain's to
// its h1 hash), no other field,
// nothing after the object. The lock returned is not tied to a file: Save
// needs one from LoadLock.
func ParseLock(name string, data []byte) (*Lock, error) {
	p := lockParser{name: name, data: data}
	inputs, err := p.parse()
	if err != nil {
		return nil, err
	}
	return &Lock{inputs: inputs}, nil
}

// lockParser reads a lock file token by token, so that errors can say
// where they are.
type lockParser struct {
	name string
	data []byte
	dec  *json.Decoder
}

// errAt is an error at byte offset off of the data.
func (p *lockParser) errAt(off int64, format string, args ...any) error {
	off = min(max(off, 0), int64(len(p.data)))
	line, col := 1, 1
	for _, r := range string(p.data[:off]) {
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Errorf("%s:%d:%d: %s", p.name, line, col, fmt.Sprintf(format, args...))
}

// next returns the next token and the offset where it starts.
func (p *lockParser) next() (json.Token, int64, error) {
	off := p.dec.InputOffset()
	for off < int64(len(p.data)) && strings.IndexByte(" \t\r\n,:", p.data[off]) >= 0 {
		off++
	}
	tok, err := p.dec.Token()
	if err != nil {
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			return nil, off, p.errAt(se.Offset-1, "not a labbake.lock: %v", err)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil, off, p.errAt(int64(len(p.data)), "not a labbake.lock: unexpected end of the file")
		}
		return nil, off, p.errAt(off, "not a labbake.lock: %v", err)
	}
	return tok, off, nil
}

func (p *lockParser) parse() (map[string]string, error) {
	if len(p.data) > maxLockSize {
		return nil, fmt.Errorf("%s: %d bytes or more, more than a lock file may hold (%d)", p.name, len(p.data), maxLockSize)
	}
	if !utf8.Valid(p.data) {
		return nil, p.errAt(int64(invalidUTF8(p.data)), "not a labbake.lock: invalid UTF-8")
	}
	p.dec = json.NewDecoder(bytes.NewReader(p.data))
	p.dec.UseNumber()
	tok, off, err := p.next()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, p.errAt(off, "not a labbake.lock: want a JSON object")
	}
	inputs := map[string]string{}
	seen := map[string]bool{}
	for p.dec.More() {
		tok, off, err := p.next()
		if err != nil {
			return nil, err
		}
		field, _ := tok.(string)
		if seen[field] {
			return nil, p.errAt(off, "%q appears twice", field)
		}
		seen[field] = true
		switch field {
		case "format":
			tok, off, err := p.next()
			if err != nil {
				return nil, err
			}
			if n, ok := tok.(json.Number); !ok || n.String() != "1" {
				return nil, p.errAt(off, "format %v: this labbake reads format 1", tok)
			}
		case "inputs":
			if err := p.inputs(inputs); err != nil {
				return nil, err
			}
		default:
			return nil, p.errAt(off, "unknown field %q: a labbake.lock has format and inputs", field)
		}
	}
	if _, _, err := p.next(); err != nil { // the closing brace
		return nil, err
	}
	if !seen["format"] {
		return nil, p.errAt(0, "no format: not a labbake.lock")
	}
	if off := p.dec.InputOffset(); len(bytes.TrimSpace(p.data[off:])) > 0 {
		return nil, p.errAt(off+int64(len(p.data[off:])-len(bytes.TrimLeft(p.data[off:], " \t\r\n"))), "data after the lock's JSON object")
	}
	return inputs, nil
}

// inputs reads the "inputs" object into m.
func (p *lockParser) inputs(m map[string]string) error {
	tok, off, err := p.next()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return p.errAt(off, "inputs: want an object of input → digest")
	}
	for p.dec.More() {
		tok, off, err := p.next()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		if _, dup := m[key]; dup {
			return p.errAt(off, "input %q appears twice", key)
		}
		if err := checkLockKey(key); err != nil {
			return p.errAt(off, "input %.100q: %v", key, err)
		}
		tok, off, err = p.next()
		if err != nil {
			return err
		}
		v, ok := tok.(string)
		if !ok {
			return p.errAt(off, "input %.100q: want a digest string, not %v", key, tok)
		}
		if err := checkLockValue(key, v); err != nil {
			return p.errAt(off, "input %.100q: %v", key, err)
		}
		m[key] = v
	}
	_, _, err = p.next() // the closing brace
	return err
}

func checkLockKey(key string) error {
	if strings.HasPrefix(key, kindGo) || strings.HasPrefix(key, kindGoSum) {
		_, err := gobuild.ParseKey(key)
		return err
	}
	if strings.HasPrefix(key, kindToolchain) {
		_, _, err := gobuild.ParseToolchainKey(key)
		return err
	}
	for _, kind := range []string{kindChecksum, kindDebian, kindOCI} {
		if rest, ok := strings.CutPrefix(key, kind); ok {
			if strings.TrimSpace(rest) == "" {
				return fmt.Errorf("nothing after %q", kind)
			}
			return nil
		}
	}
	return fmt.Errorf("unknown kind of input: want %q, %q, %q, %q, %q or %q followed by what was resolved", kindChecksum, kindDebian, kindOCI, kindGo, kindGoSum, kindToolchain)
}

// checkLockValue checks what key resolved to: a toolchain's h1 hash, a
// sha256 digest for every other kind.
func checkLockValue(key, v string) error {
	if strings.HasPrefix(key, kindToolchain) {
		return gobuild.CheckH1(v)
	}
	_, err := iox.ParseDigest(v)
	return err
}

// invalidUTF8 returns the offset of the first byte of b that is not UTF-8.
func invalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
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

// keys lists the keys that start with prefix.
func (l *Lock) keys(prefix string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for k := range l.inputs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out
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

// Save writes the lock file atomically (temp file, fsync, rename, fsync
// of the lab dir); a symlink at its path is replaced, not followed.
func (l *Lock) Save() error {
	if l.path == "" {
		return errors.New("saving a lock that LoadLock did not make: it has no path")
	}
	b, err := l.Bytes()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(l.path, b, 0o644); err != nil {
		return err
	}
	l.exists = true
	return nil
}
