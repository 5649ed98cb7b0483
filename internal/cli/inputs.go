package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"

	"github.com/labbake/labbake/internal/cache"
	"github.com/labbake/labbake/internal/resolve"
	"github.com/labbake/labbake/internal/source"
	"github.com/labbake/labbake/internal/source/debian"
	"github.com/labbake/labbake/internal/source/gobuild"
	"github.com/labbake/labbake/internal/source/oci"
)

// inputFlags are the flags of the verbs that fetch inputs.
type inputFlags struct {
	offline bool
	frozen  bool
}

// resolver builds the fetch stage: the cache, the fetcher with mirrors,
// mmdebstrap and the OCI source, and the lab's lock file.
func (g *globals) resolver(log *slog.Logger, f inputFlags) (*resolve.Resolver, error) {
	c, err := cache.Open(g.cache, log)
	if err != nil {
		return nil, err
	}
	mirrors, err := g.mirrorList()
	if err != nil {
		return nil, err
	}
	lock, err := resolve.LoadLock(filepath.Join(g.dir, resolve.LockFile))
	if err != nil {
		return nil, &UsageError{err}
	}
	if f.frozen && !lock.Exists() {
		return nil, &UsageError{fmt.Errorf("--frozen: %s has no %s (run labbake lock)", g.dir, resolve.LockFile)}
	}
	tmp := filepath.Join(g.cache, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", tmp, err)
	}
	terminal := false
	if f, ok := g.stderr.(*os.File); ok {
		terminal = term.IsTerminal(int(f.Fd()))
	}
	return &resolve.Resolver{
		Cache: c,
		Fetcher: &source.Fetcher{
			Mirrors: mirrors, Offline: f.offline, Log: log, Progress: g.stderr, Terminal: terminal,
		},
		Debian: &debian.Builder{TempDir: tmp, Log: log, Progress: g.progress(), Status: g.status(), Terminal: terminal},
		OCI:    &oci.Source{Offline: f.offline, Log: log},
		Go: &gobuild.Builder{
			Getenv:     g.getenv,
			GoCache:    filepath.Join(c.Dir(), "go", "build"),
			Toolchains: filepath.Join(c.Dir(), "go", "toolchain"),
			HTTP:       source.NewClient(),
			WorkDir:    func() (string, func(), error) { return cache.WorkDir(c.Dir(), "go") },
			Log:        log,
		},
		Lock:   lock,
		Frozen: f.frozen,
		Log:    log,
	}, nil
}

// progress is where mmdebstrap's own output goes while it builds a base:
// stderr with -v, else nowhere (its last lines still end up in an error).
func (g *globals) progress() io.Writer {
	if g.verbose {
		return g.stderr
	}
	return nil
}

// imageProgress is where a build shows the image being written: stderr
// when it is a terminal and no debug logs interleave with the bar.
func (g *globals) imageProgress() io.Writer {
	if f, ok := g.stderr.(*os.File); ok && !g.verbose && term.IsTerminal(int(f.Fd())) {
		return g.stderr
	}
	return nil
}

// status is where a base build shows its size growing: stderr, unless
// mmdebstrap's own output goes there (-v).
func (g *globals) status() io.Writer {
	if g.verbose {
		return nil
	}
	return g.stderr
}

// mirrorList is --mirror plus the lines of the user's mirrors file
// ($XDG_CONFIG_HOME/labbake/mirrors, else ~/.config/labbake/mirrors):
// FROM=TO a line, # comments.
func (g *globals) mirrorList() ([]source.Mirror, error) {
	specs := append([]string{}, g.mirrors...)
	dir := g.getenv("XDG_CONFIG_HOME")
	if dir == "" && g.getenv("HOME") != "" {
		dir = filepath.Join(g.getenv("HOME"), ".config")
	}
	if dir != "" {
		path := filepath.Join(dir, "labbake", "mirrors")
		f, err := os.Open(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("reading %s: %w", path, err)
		default:
			defer f.Close()
			sc := bufio.NewScanner(f)
			for n := 1; sc.Scan(); n++ {
				line := strings.TrimSpace(sc.Text())
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				if _, err := source.ParseMirror(line); err != nil {
					return nil, &UsageError{fmt.Errorf("%s:%d: %w", path, n, err)}
				}
				specs = append(specs, line)
			}
		}
	}
	var out []source.Mirror
	for _, s := range specs {
		m, err := source.ParseMirror(s)
		if err != nil {
			return nil, &UsageError{fmt.Errorf("--mirror %s: %w", s, err)}
		}
		out = append(out, m)
	}
	return out, nil
}
