package gobuild

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/labbake/labbake/internal/iox"
)

// Store is the content-addressed cache as the builder uses it
// (internal/cache implements it).
type Store interface {
	Has(digest string) bool
	// Put stores r's bytes, checking them against want unless want is "",
	// and returns their digest and size.
	Put(ctx context.Context, r io.Reader, want string) (digest string, size int64, err error)
	// Path verifies a blob and returns its file.
	Path(digest string) (string, error)
	Ref(key string) (digest string, ok bool, err error)
	SetRef(key, digest string) error
	Lock(ctx context.Context, name string) (unlock func(), err error)
}

// Sentinel errors. Test for them with errors.Is.
var (
	// ErrToolchain: the host's go command is not the release the input
	// needs, and that release could not be had from the cache or the
	// module proxy.
	ErrToolchain = errors.New("wrong Go toolchain")
	// ErrNoGo: there is no go command on the host, and the release the
	// input needs could not be had from the cache or the module proxy.
	ErrNoGo = errors.New("no go command")
)

// Pins are what labbake.lock (or, offline without a lock, the cache) says
// a Spec resolved to; "" when it says nothing.
type Pins struct {
	GoSum  string // the digest of the throw-away module's go.sum
	Binary string // the digest of the output
	// Toolchain is the h1 hash of the golang.org/toolchain module of
	// Spec.Toolchain for this host (lock key ToolchainKey); it verifies a
	// fetched or cached toolchain instead of the checksum database.
	Toolchain string
	// Frozen refuses to download a toolchain that Toolchain does not pin
	// (build --frozen).
	Frozen bool
}

// Result is a built (or cached) go input.
type Result struct {
	Digest string // the output: the binary, or a tar of the binaries
	Size   int64
	GoSum  string // the go.sum blob
	// Modules are the blobs of the module files: the index first, then
	// the files it names; nil when the cache has no index for the go.sum
	// (a build from a bundle that carried the output only).
	Modules []string
	// Built is true when the go command ran (and how long it took).
	Built bool
	Took  time.Duration
	// Toolchain is the h1 hash of the golang.org/toolchain module whose
	// go command ran; "" when the host's go ran, or none.
	Toolchain string
	// ToolchainZip is the cache blob of that module's zip for
	// Spec.Toolchain when the cache has it, whichever go ran or none:
	// bundles carry it and cache prune keeps it.
	ToolchainZip string
}

// Builder runs the go command. The zero value is usable but keeps no
// build cache.
type Builder struct {
	// Go is the host's go command; "" looks "go" up on PATH. It builds
	// when it is exactly Spec.Toolchain; else (or when there is none) the
	// toolchain is fetched (see Toolchains).
	Go string
	// Getenv gives the user's module settings, passed on to the go command
	// when it reaches the network: GOPROXY, GOSUMDB, GONOSUMDB, GOPRIVATE,
	// GONOPROXY, GOINSECURE, GOAUTH, GOVCS (GOPROXY, GOSUMDB, GONOSUMDB
	// and GOPRIVATE fetch and verify a toolchain too). nil reads the
	// environment.
	Getenv func(string) string
	// Toolchains holds the Go toolchains fetched as golang.org/toolchain
	// modules, unpacked once each (labbake keeps them in
	// CACHE/go/toolchain); "" unpacks one into each build's work dir.
	Toolchains string
	// HTTP fetches toolchains and checksum database records; nil is
	// http.DefaultClient.
	HTTP *http.Client
	// GoCache is GOCACHE (kept across builds so rebuilds only link); ""
	// gives each build an empty one in its work dir.
	GoCache string
	// WorkDir makes the work dir of one build (the throw-away module,
	// GOMODCACHE, the outputs) and returns it with a func that removes it;
	// nil makes one in TempDir.
	WorkDir func() (dir string, release func(), err error)
	// TempDir holds the work dirs when WorkDir is nil; "" means
	// os.TempDir().
	TempDir string
	Log     *slog.Logger
}

func (b *Builder) log() *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Build returns the output of s: from the cache when a build of the same
// inputs is there (no go command runs), else built by the go command from
// the cached modules (the pinned go.sum's, served as a file:// proxy) or,
// online, from the user's module proxy. A pinned go.sum or output that the
// build does not give is an error naming both digests (iox.ErrDigestMismatch).
// Errors do not name the input: the caller does (a recipe position).
func (b *Builder) Build(ctx context.Context, store Store, s Spec, pins Pins, offline bool) (*Result, error) {
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("invalid go input: %w", err)
	}
	s = s.Normalize()
	log := b.log().With("go", s.Name())
	if res, ok, err := b.cached(store, s, pins); err != nil || ok {
		if ok {
			log.Debug("go: output from the cache", "digest", res.Digest)
		}
		return res, err
	}
	unlock, err := store.Lock(ctx, s.BinaryKey().String())
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", s.BinaryKey(), err)
	}
	defer unlock()
	// A concurrent build may have made it while we waited for the lock.
	if res, ok, err := b.cached(store, s, pins); err != nil || ok {
		return res, err
	}
	var index Index
	if pins.GoSum != "" {
		index, err = cachedIndex(store, pins.GoSum)
		if err != nil {
			return nil, err
		}
	}
	if index != nil && !store.Has(pins.GoSum) {
		index = nil // the modules without their go.sum: nothing to verify them against
	}
	if index == nil && offline {
		what := "its go.sum is not pinned"
		if pins.GoSum != "" {
			what = "the modules of go.sum " + pins.GoSum + " are not in the cache"
		}
		return nil, fmt.Errorf("%s: %w", what, iox.ErrOffline)
	}
	start := time.Now()
	res, err := b.run(ctx, store, s, pins, index, offline, log)
	if err != nil {
		return nil, err
	}
	res.Built, res.Took = true, time.Since(start)
	from := "module proxy"
	if index != nil {
		from = "cached modules"
	}
	log.Info("go: built", "digest", res.Digest, "size", res.Size, "from", from, "took", res.Took.Round(time.Millisecond))
	return res, nil
}

// cached finds the output of s: the pinned one, or the one the cache
// records for the pinned go.sum; ok only when its blob is present.
func (b *Builder) cached(store Store, s Spec, pins Pins) (*Result, bool, error) {
	d := pins.Binary
	if d == "" || !store.Has(d) {
		d = ""
		if pins.GoSum == "" {
			return nil, false, nil
		}
		got, ok, err := store.Ref(s.BuildKey(pins.GoSum))
		if err != nil {
			return nil, false, err
		}
		if !ok || !store.Has(got) {
			return nil, false, nil
		}
		if pins.Binary != "" && got != pins.Binary {
			return nil, false, mismatch(got, pins.Binary)
		}
		d = got
	}
	goSum := pins.GoSum
	if goSum == "" {
		return nil, false, nil // an output without its go.sum: build again to learn it
	}
	res := &Result{Digest: d, GoSum: goSum}
	var err error
	if res.ToolchainZip, err = toolchainBlob(store, s.Toolchain); err != nil {
		return nil, false, err
	}
	x, err := cachedIndex(store, goSum)
	if err != nil {
		return nil, false, err
	}
	if x != nil {
		idx, _, _ := store.Ref(modulesKey(goSum))
		res.Modules = append([]string{idx}, x.Digests()...)
	}
	return res, true, nil
}

// mismatch is the error of an output that is not the pinned one.
func mismatch(got, want string) error {
	return fmt.Errorf("built to %s, but labbake.lock pins %s (same module, go.sum and toolchain: a build that is not reproducible, or a lock made elsewhere; delete the line from labbake.lock to pin the new one): %w",
		got, want, iox.ErrDigestMismatch)
}

// cachedIndex reads the module index of a go.sum from the cache: nil when
// it or any file it names is missing.
func cachedIndex(store Store, goSum string) (Index, error) {
	d, ok, err := store.Ref(modulesKey(goSum))
	if err != nil || !ok || !store.Has(d) {
		return nil, err
	}
	p, err := store.Path(d)
	if err != nil {
		return nil, fmt.Errorf("module index of go.sum %s: %w", goSum, err)
	}
	data, err := readCapped(p, maxIndex)
	if err != nil {
		return nil, fmt.Errorf("module index of go.sum %s: %w", goSum, err)
	}
	x, err := ParseIndex(data)
	if err != nil {
		return nil, fmt.Errorf("module index of go.sum %s (%s): %w", goSum, d, err)
	}
	for _, f := range x {
		if !store.Has(f.Digest) {
			return nil, nil
		}
	}
	return x, nil
}

func readCapped(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("more than %d bytes", limit)
	}
	return b, nil
}

// work is one run of the go command's steps in a work dir.
type work struct {
	b     *Builder
	dir   string // the throw-away module
	env   []string
	goCmd string
}

func (b *Builder) workDir() (string, func(), error) {
	if b.WorkDir != nil {
		return b.WorkDir()
	}
	tmp, err := os.MkdirTemp(b.TempDir, "labbake-go-")
	if err != nil {
		return "", nil, err
	}
	return tmp, func() { os.RemoveAll(tmp) }, nil
}

// run builds s in a fresh work dir and stores what it made.
func (b *Builder) run(ctx context.Context, store Store, s Spec, pins Pins, index Index, offline bool, log *slog.Logger) (*Result, error) {
	tmp, release, err := b.workDir()
	if err != nil {
		return nil, err
	}
	defer release()
	// The toolchain first: one that cannot be had fails before any module
	// is fetched.
	goCmd, toolchainH1, err := b.goCommand(ctx, store, s, pins, offline, tmp, log)
	if err != nil {
		return nil, err
	}
	// A cold build of a large module takes minutes: say it started.
	log.Info("go: building", "packages", strings.Join(s.Packages, " "), "toolchain", s.Toolchain)
	w := &work{b: b, dir: filepath.Join(tmp, "module"), goCmd: goCmd}
	for _, d := range []string{w.dir, filepath.Join(tmp, "out"), filepath.Join(tmp, "proxy")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	gocache := b.GoCache
	if gocache == "" {
		gocache = filepath.Join(tmp, "gocache")
	}
	fromCache := index != nil
	w.env = b.env(fromCache, filepath.Join(tmp, "proxy"), filepath.Join(tmp, "modcache"), gocache, filepath.Join(tmp, "gopath"))

	// The go command picked says it is the release (a fetched toolchain
	// too: what its module holds).
	v, err := w.goRun(ctx, "env", "GOVERSION")
	if err != nil {
		return nil, err
	}
	if v = strings.TrimSpace(v); v != s.Toolchain {
		return nil, fmt.Errorf("%w: it needs %s, but %s is %s (install %s, or set toolchain: %s)", ErrToolchain, s.Toolchain, goCmd, v, s.Toolchain, v)
	}
	if fromCache {
		err := writeProxy(filepath.Join(tmp, "proxy"), index, func(f ModuleFile) (string, error) {
			p, err := store.Path(f.Digest)
			if err != nil {
				return "", fmt.Errorf("module %s: %s in the cache: %w", moduleOf(f.Path), f.Path, err)
			}
			return p, nil
		})
		if err != nil {
			return nil, err
		}
		log.Debug("go: modules served from the cache", "files", len(index))
	}
	var pinnedSum []byte
	if pins.GoSum != "" && store.Has(pins.GoSum) {
		p, err := store.Path(pins.GoSum)
		if err != nil {
			return nil, fmt.Errorf("go.sum %s: %w", pins.GoSum, err)
		}
		if pinnedSum, err = readCapped(p, maxIndex); err != nil {
			return nil, fmt.Errorf("go.sum %s: %w", pins.GoSum, err)
		}
	}
	goSum, err := w.resolve(ctx, s, pinnedSum)
	if err != nil {
		return nil, err
	}
	if d := digestOf(goSum); pins.GoSum != "" && d != pins.GoSum {
		return nil, fmt.Errorf("go mod tidy wrote go.sum %s, but labbake.lock pins %s: the module graph is not the pinned one: %w", d, pins.GoSum, iox.ErrDigestMismatch)
	}
	if fromCache && !bytes.Equal(goSum, pinnedSum) {
		return nil, fmt.Errorf("go mod tidy changed the pinned go.sum %s: %w", pins.GoSum, iox.ErrDigestMismatch)
	}
	out := filepath.Join(tmp, "out")
	if err := w.build(ctx, s, out); err != nil {
		return nil, err
	}
	res := &Result{Toolchain: toolchainH1}
	if res.ToolchainZip, err = toolchainBlob(store, s.Toolchain); err != nil {
		return nil, err
	}
	if res.GoSum, _, err = store.Put(ctx, bytes.NewReader(goSum), ""); err != nil {
		return nil, err
	}
	if res.Digest, res.Size, err = putOutput(ctx, store, s, out); err != nil {
		return nil, err
	}
	if pins.Binary != "" && res.Digest != pins.Binary {
		return nil, mismatch(res.Digest, pins.Binary)
	}
	if !fromCache {
		if index, err = storeModules(ctx, store, filepath.Join(tmp, "modcache", "cache", "download")); err != nil {
			return nil, err
		}
	}
	idx, _, err := store.Put(ctx, bytes.NewReader(index.Bytes()), "")
	if err != nil {
		return nil, err
	}
	res.Modules = append([]string{idx}, index.Digests()...)
	if err := store.SetRef(modulesKey(res.GoSum), idx); err != nil {
		return nil, err
	}
	if err := store.SetRef(s.BuildKey(res.GoSum), res.Digest); err != nil {
		return nil, err
	}
	return res, nil
}

// storeModules puts every module file the go command downloaded into the
// store and returns their index.
func storeModules(ctx context.Context, store Store, download string) (Index, error) {
	files, err := harvest(download)
	if err != nil {
		return nil, err
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	x := make(Index, 0, len(paths))
	for _, p := range paths {
		f, err := os.Open(files[p])
		if err != nil {
			return nil, err
		}
		d, _, err := store.Put(ctx, f, "")
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("storing module file %s: %w", p, err)
		}
		x = append(x, ModuleFile{Path: p, Digest: d})
	}
	return x, nil
}

// putOutput stores the binary (one package) or a tar of the binaries.
func putOutput(ctx context.Context, store Store, s Spec, out string) (string, int64, error) {
	names := s.Names()
	if len(names) == 1 {
		f, err := os.Open(filepath.Join(out, names[0]))
		if err != nil {
			return "", 0, err
		}
		defer f.Close()
		return store.Put(ctx, f, "")
	}
	var buf bytes.Buffer
	if err := writeTar(&buf, out, names); err != nil {
		return "", 0, err
	}
	return store.Put(ctx, &buf, "")
}

// writeTar writes the named files of dir as a tar with fixed headers
// (sorted names, mode 0755, owner 0, time 0): the same binaries give the
// same bytes.
func writeTar(w io.Writer, dir string, names []string) error {
	names = slices.Clone(names)
	slices.Sort(names)
	tw := tar.NewWriter(w)
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: n, Size: int64(len(data)), Mode: 0o755, ModTime: time.Unix(0, 0).UTC(), Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// passed are the user's settings that reach the go command online.
var passed = []string{"GOPROXY", "GOSUMDB", "GONOSUMDB", "GOPRIVATE", "GONOPROXY", "GOINSECURE", "GOAUTH", "GOVCS"}

// env is the go command's environment: the process's without any Go
// setting, then a fixed, self-contained configuration. From the cache, the
// proxy is the file:// one and nothing reaches the network; online, the
// user's module settings pass on.
func (b *Builder) env(fromCache bool, proxy, modcache, gocache, gopath string) []string {
	env := append(cleanEnv(),
		"GOENV=off", "GOWORK=off", "GOTOOLCHAIN=local", "GOFLAGS=-mod=mod -modcacherw",
		"CGO_ENABLED=0", "GOOS="+GOOS, "GOARCH="+GOARCH, "GOAMD64="+GOAMD64,
		"GOMODCACHE="+modcache, "GOCACHE="+gocache, "GOPATH="+gopath, "GOTELEMETRY=off")
	if fromCache {
		return append(env, "GOPROXY=file://"+filepath.ToSlash(proxy), "GOSUMDB=off",
			"GONOSUMDB=", "GOPRIVATE=", "GONOPROXY=", "GOINSECURE=", "GOVCS=*:off")
	}
	for _, k := range passed {
		if v := b.getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// cleanEnv is the process's environment without any Go setting.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "GO") || strings.HasPrefix(k, "CGO_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// goMod is the part of `go mod edit -json` read here.
type goMod struct {
	Go      string
	GoDebug []struct{ Key, Value string }
	Require []struct{ Path, Version string }
	Replace []struct {
		Old, New struct{ Path, Version string }
	}
}

// minToolGo is the first go line that allows the tool directive.
const minToolGo = "1.24"

// throwAwayPath is the module path of the throw-away module.
const throwAwayPath = "labbake.local/build"

// resolve writes the throw-away module, with pinnedSum as its go.sum when
// there is one, runs go mod tidy and returns the go.sum it leaves.
func (w *work) resolve(ctx context.Context, s Spec, pinnedSum []byte) ([]byte, error) {
	first := fmt.Sprintf("module %s\n\ngo %s\n\nrequire %s %s\n", throwAwayPath, minToolGo, s.Module, s.Version)
	if err := w.write("go.mod", []byte(first)); err != nil {
		return nil, err
	}
	if pinnedSum != nil {
		if err := w.write("go.sum", pinnedSum); err != nil {
			return nil, err
		}
	}
	out, err := w.goRun(ctx, "mod", "download", "-json", s.Module)
	if err != nil {
		return nil, err
	}
	var dl struct{ GoMod, Error string }
	if err := json.Unmarshal([]byte(out), &dl); err != nil {
		return nil, fmt.Errorf("go mod download %s@%s: %w", s.Module, s.Version, err)
	}
	if dl.Error != "" || dl.GoMod == "" {
		return nil, fmt.Errorf("go mod download %s@%s: %s", s.Module, s.Version, dl.Error)
	}
	out, err = w.goRun(ctx, "mod", "edit", "-json", dl.GoMod)
	if err != nil {
		return nil, err
	}
	var up goMod
	if err := json.Unmarshal([]byte(out), &up); err != nil {
		return nil, fmt.Errorf("reading the go.mod of %s@%s: %w", s.Module, s.Version, err)
	}
	gomod, err := throwAwayGoMod(s, &up)
	if err != nil {
		return nil, err
	}
	if err := w.write("go.mod", gomod); err != nil {
		return nil, err
	}
	if _, err := w.goRun(ctx, "mod", "tidy"); err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(w.dir, "go.sum"))
}

// throwAwayGoMod is the go.mod that builds s: it requires s.Module at
// s.Version, takes upstream's go and godebug lines and module replacements,
// replaces the staging modules when s.ReplaceStaging, and names the
// packages as tools so that go mod tidy keeps what they need.
func throwAwayGoMod(s Spec, up *goMod) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// The throw-away module labbake builds %s %s in.\nmodule %s\n\n", s.Module, s.Version, throwAwayPath)
	goLine := up.Go
	if goLine == "" || versionLess(goLine, minToolGo) {
		goLine = minToolGo
	}
	fmt.Fprintf(&b, "go %s\n", goLine)
	for _, d := range up.GoDebug {
		fmt.Fprintf(&b, "\ngodebug %s=%s\n", d.Key, d.Value)
	}
	fmt.Fprintf(&b, "\nrequire %s %s\n", s.Module, s.Version)
	required := map[string]bool{}
	for _, r := range up.Require {
		required[r.Path] = true
	}
	var replace []string
	var staged int
	for _, r := range up.Replace {
		switch {
		case r.New.Version != "" && r.Old.Version == "":
			replace = append(replace, fmt.Sprintf("%s => %s %s", r.Old.Path, r.New.Path, r.New.Version))
		case r.New.Version != "":
			replace = append(replace, fmt.Sprintf("%s %s => %s %s", r.Old.Path, r.Old.Version, r.New.Path, r.New.Version))
		case s.ReplaceStaging && strings.HasPrefix(r.New.Path, "./staging/") && required[r.Old.Path]:
			// Only what upstream requires is in the module graph; a few
			// staging modules (samples) are never published.
			replace = append(replace, fmt.Sprintf("%s => %s %s", r.Old.Path, r.Old.Path, stagingVersion(s.Version)))
			staged++
		}
	}
	if s.ReplaceStaging && staged == 0 {
		return nil, fmt.Errorf("replace_staging: the go.mod of %s %s replaces no module it requires with ./staging/…", s.Module, s.Version)
	}
	slices.Sort(replace)
	if len(replace) > 0 {
		b.WriteString("\nreplace (\n")
		for _, r := range slices.Compact(replace) {
			fmt.Fprintf(&b, "\t%s\n", r)
		}
		b.WriteString(")\n")
	}
	tools := s.ImportPaths()
	slices.Sort(tools)
	b.WriteString("\ntool (\n")
	for _, t := range tools {
		fmt.Fprintf(&b, "\t%s\n", t)
	}
	b.WriteString(")\n")
	return b.Bytes(), nil
}

// build runs go build, writing the binaries into out.
func (w *work) build(ctx context.Context, s Spec, out string) error {
	args := []string{"build", "-trimpath"}
	if len(s.Tags) > 0 {
		args = append(args, "-tags="+strings.Join(s.Tags, ","))
	}
	args = append(args, "-ldflags="+strings.Join(append(slices.Clone(s.LDFlags), "-buildid="), " "))
	args = append(args, "-o", out+string(filepath.Separator))
	args = append(args, s.ImportPaths()...)
	_, err := w.goRun(ctx, args...)
	return err
}

func (w *work) write(name string, data []byte) error {
	return os.WriteFile(filepath.Join(w.dir, name), data, 0o644)
}

// goRun runs the go command in the throw-away module and returns its
// standard output.
func (w *work) goRun(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, w.goCmd, args...)
	cmd.Dir = w.dir
	cmd.Env = w.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	w.b.log().Debug("go: running", "args", shorten(args))
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 4000 {
			msg = "…" + msg[len(msg)-4000:]
		}
		if msg != "" {
			msg = ": " + msg
		}
		return "", fmt.Errorf("go %s: %w%s", strings.Join(shorten(args), " "), err, msg)
	}
	return stdout.String(), nil
}

// shorten keeps error messages readable: long arguments are elided.
func shorten(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if len(a) > 120 {
			a = a[:117] + "…"
		}
		out[i] = a
	}
	return out
}

// versionLess compares dotted go versions ("1.26.0" < "1.26.8").
func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			fmt.Sscan(pa[i], &x)
		}
		if i < len(pb) {
			fmt.Sscan(pb[i], &y)
		}
		if x != y {
			return x < y
		}
	}
	return false
}
