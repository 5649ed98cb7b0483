package upstream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Builder builds Components from the Go module proxy with a dedicated module
// and build cache, so that a rerun only links.
type Builder struct {
	// CacheDir holds GOMODCACHE (CacheDir/gomod) and GOCACHE
	// (CacheDir/gobuild). DefaultCacheDir gives the usual place.
	CacheDir string
	// GoCache, when set, is GOCACHE instead of CacheDir/gobuild (a test
	// builds with an empty one to show the cache changes nothing).
	GoCache string
	// WorkDir is the parent of the throw-away modules, one directory per
	// component; it must exist.
	WorkDir string
	// Go is the go command; "go" when empty. Its version is the toolchain
	// (GOTOOLCHAIN=local): the same toolchain gives the same bytes.
	Go  string
	Log *slog.Logger
}

// Result is what Build produced for one Component.
type Result struct {
	Component Component
	Module    ModuleInfo // the required upstream module as the proxy gave it
	GoVersion string     // the toolchain, e.g. go1.26.8
	Files     []File     // the binaries, in the order of Component.Binaries
	// Drift lists requirements of the upstream go.mod that the throw-away
	// module selected at another version ("path upstream→selected"); empty
	// when the build list is the one upstream builds with.
	Drift   []string
	Elapsed time.Duration
	// Debian is the package the binaries were taken from, for the
	// components served from Debian (runc, cni); Module then names the
	// package and its Debian version, and Module.Time is the packaged
	// files' mtime.
	Debian *DebPackage
}

// File is one built file.
type File struct {
	Name   string `json:"name"` // base name, e.g. kubelet
	Path   string `json:"path"` // where it was written
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // hex
}

// DefaultCacheDir is $LABBAKE_UPSTREAM_CACHE, else labbake-upstream under
// the user cache directory ($XDG_CACHE_HOME or ~/.cache).
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("LABBAKE_UPSTREAM_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory: set LABBAKE_UPSTREAM_CACHE: %w", err)
	}
	return filepath.Join(d, "labbake-upstream"), nil
}

// minToolGo is the first go directive that allows the tool directive.
const minToolGo = "1.24"

// Build writes c's binaries into outDir (which must exist).
func (b *Builder) Build(ctx context.Context, c Component, outDir string) (*Result, error) {
	start := time.Now()
	log := b.logger().With("component", c.Name, "version", c.Version)
	if b.CacheDir == "" || b.WorkDir == "" {
		return nil, errors.New("builder: CacheDir and WorkDir are required")
	}
	dir := filepath.Join(b.WorkDir, c.Name)
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("%s: clearing %s: %w", c.Name, dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	goVersion, err := b.run(ctx, dir, "env", "GOVERSION")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	res := &Result{Component: c, GoVersion: strings.TrimSpace(goVersion)}

	if c.Source != nil {
		if err := writeProgram(dir, c); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		res.Module = ModuleInfo{Path: c.Module, Version: c.Version}
	} else {
		up, err := b.upstreamGoMod(ctx, dir, c.Module, c.Version)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		gomod, err := throwAwayGoMod(c, up)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), gomod, 0o644); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		log.Info("resolving modules", "dir", dir)
		if _, err := b.run(ctx, dir, "mod", "tidy"); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		if res.Module, err = b.listModule(ctx, dir, c.Module); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		if res.Drift, err = b.drift(ctx, dir, up); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
	}

	var ldflags []string
	if c.LDFlags != nil {
		ldflags = c.LDFlags(res.Module)
	}
	for _, args := range buildCommands(c, ldflags, outDir) {
		log.Info("building", "packages", args[len(args)-1])
		if _, err := b.run(ctx, dir, args...); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
	}
	for _, bin := range c.Binaries {
		f, err := hashFile(filepath.Join(outDir, bin.Name))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		res.Files = append(res.Files, f)
	}
	res.Elapsed = time.Since(start)
	log.Info("built", "seconds", res.Elapsed.Round(100*time.Millisecond).Seconds(), "binaries", len(res.Files))
	return res, nil
}

// goModJSON is the part of `go mod edit -json` read here.
type goModJSON struct {
	Go      string
	GoDebug []struct{ Key, Value string }
	Require []struct {
		Path, Version string
		Indirect      bool
	}
	Replace []struct {
		Old, New struct{ Path, Version string }
	}
}

// upstreamGoMod downloads module@version's go.mod and reads it.
func (b *Builder) upstreamGoMod(ctx context.Context, dir, module, version string) (*goModJSON, error) {
	out, err := b.run(ctx, dir, "mod", "download", "-json", module+"@"+version)
	if err != nil {
		return nil, err
	}
	var dl struct{ GoMod, Error string }
	if err := json.Unmarshal([]byte(out), &dl); err != nil {
		return nil, fmt.Errorf("go mod download %s@%s: %w", module, version, err)
	}
	if dl.Error != "" || dl.GoMod == "" {
		return nil, fmt.Errorf("go mod download %s@%s: %s", module, version, dl.Error)
	}
	out, err = b.run(ctx, dir, "mod", "edit", "-json", dl.GoMod)
	if err != nil {
		return nil, err
	}
	var m goModJSON
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return nil, fmt.Errorf("reading go.mod of %s@%s: %w", module, version, err)
	}
	return &m, nil
}

// throwAwayGoMod is the go.mod of the module that builds c: it requires
// c.Module (and c.Also) at c.Version, takes over upstream's go and godebug
// lines (so the binaries get upstream's GODEBUG defaults), replaces the
// staging modules when c.Staging, and names every binary's package as a tool
// so that `go mod tidy` keeps what they need.
func throwAwayGoMod(c Component, up *goModJSON) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// The throw-away module that builds %s %s (labbake test/upstream).\n", c.Name, c.Version)
	fmt.Fprintf(&b, "module labbake.local/upstream/%s\n\n", c.Name)
	goLine := up.Go
	if goLine == "" || versionLess(goLine, minToolGo) {
		goLine = minToolGo
	}
	fmt.Fprintf(&b, "go %s\n", goLine)
	for _, d := range up.GoDebug {
		fmt.Fprintf(&b, "\ngodebug %s=%s\n", d.Key, d.Value)
	}
	b.WriteString("\nrequire (\n")
	for _, m := range append([]string{c.Module}, c.Also...) {
		fmt.Fprintf(&b, "\t%s %s\n", m, c.Version)
	}
	b.WriteString(")\n")
	if c.Staging {
		sv, err := stagingVersion(c.Version)
		if err != nil {
			return nil, err
		}
		required := map[string]bool{}
		for _, r := range up.Require {
			required[r.Path] = true
		}
		var staged []string
		for _, r := range up.Replace {
			// Only what upstream requires is in the module graph; a few
			// staging modules (samples) are never published.
			if strings.HasPrefix(r.New.Path, "./staging/") && required[r.Old.Path] {
				staged = append(staged, r.Old.Path)
			}
		}
		if len(staged) == 0 {
			return nil, fmt.Errorf("%s %s: go.mod replaces no module with ./staging/…", c.Module, c.Version)
		}
		slices.Sort(staged)
		b.WriteString("\nreplace (\n")
		for _, m := range staged {
			fmt.Fprintf(&b, "\t%s => %s %s\n", m, m, sv)
		}
		b.WriteString(")\n")
	}
	var tools []string
	for _, bin := range c.Binaries {
		tools = append(tools, bin.Package)
	}
	slices.Sort(tools)
	b.WriteString("\ntool (\n")
	for _, t := range slices.Compact(tools) {
		fmt.Fprintf(&b, "\t%s\n", t)
	}
	b.WriteString(")\n")
	return b.Bytes(), nil
}

// writeProgram lays out a local program as its own module.
func writeProgram(dir string, c Component) error {
	gomod := fmt.Sprintf("module %s\n\ngo %s\n", c.Module, minToolGo)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	for name, data := range c.Source {
		if name != filepath.Base(name) {
			return fmt.Errorf("source file %q: want a plain file name", name)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// listModule asks the throw-away module for module's metadata.
func (b *Builder) listModule(ctx context.Context, dir, module string) (ModuleInfo, error) {
	out, err := b.run(ctx, dir, "list", "-m", "-json", module)
	if err != nil {
		return ModuleInfo{}, err
	}
	var m ModuleInfo
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return ModuleInfo{}, fmt.Errorf("go list -m %s: %w", module, err)
	}
	if m.Time.IsZero() {
		return ModuleInfo{}, fmt.Errorf("go list -m %s: the proxy gave no commit time", module)
	}
	return m, nil
}

// drift compares the selected build list with upstream's requirements.
func (b *Builder) drift(ctx context.Context, dir string, up *goModJSON) ([]string, error) {
	out, err := b.run(ctx, dir, "list", "-m", "-f", "{{.Path}} {{.Version}}{{with .Replace}} {{.Version}}{{end}}", "all")
	if err != nil {
		return nil, err
	}
	selected := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			selected[f[0]] = f[len(f)-1]
		}
	}
	var d []string
	for _, r := range up.Require {
		if s, ok := selected[r.Path]; ok && s != r.Version && r.Version != "v0.0.0" {
			d = append(d, fmt.Sprintf("%s %s→%s", r.Path, r.Version, s))
		}
	}
	return d, nil
}

// buildCommands are the go build invocations for c: one per set of tags
// when every binary there is named after its package (go build -o DIR/
// links them in parallel), else one per binary.
func buildCommands(c Component, ldflags []string, outDir string) [][]string {
	flags := func(tags []string) []string {
		a := []string{"build", "-trimpath", "-modcacherw"}
		if len(tags) > 0 {
			a = append(a, "-tags="+strings.Join(tags, ","))
		}
		return append(a, "-ldflags="+strings.Join(append(slices.Clone(ldflags), "-buildid="), " "))
	}
	type group struct {
		tags []string
		bins []Binary
	}
	var groups []*group
	for _, bin := range c.Binaries {
		var g *group
		for _, x := range groups {
			if slices.Equal(x.tags, bin.Tags) {
				g = x
			}
		}
		if g == nil {
			g = &group{tags: bin.Tags}
			groups = append(groups, g)
		}
		g.bins = append(g.bins, bin)
	}
	var cmds [][]string
	for _, g := range groups {
		together := len(g.bins) > 1
		for _, bin := range g.bins {
			together = together && path.Base(bin.Package) == bin.Name
		}
		if together {
			a := append(flags(g.tags), "-o", outDir+string(filepath.Separator))
			for _, bin := range g.bins {
				a = append(a, bin.Package)
			}
			cmds = append(cmds, a)
			continue
		}
		for _, bin := range g.bins {
			cmds = append(cmds, append(flags(g.tags), "-o", filepath.Join(outDir, bin.Name), bin.Package))
		}
	}
	return cmds
}

// env is the environment of every go command: the host's, without its Go
// settings, plus a fixed, self-contained configuration. The proxy and
// checksum database settings pass through.
func (b *Builder) env() []string {
	keep := map[string]bool{"GOPROXY": true, "GOSUMDB": true, "GONOSUMDB": true, "GONOPROXY": true,
		"GOPRIVATE": true, "GOINSECURE": true, "GOAUTH": true, "GOVCS": true}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if (strings.HasPrefix(k, "GO") || strings.HasPrefix(k, "CGO_")) && !keep[k] {
			continue
		}
		env = append(env, kv)
	}
	gocache := b.GoCache
	if gocache == "" {
		gocache = filepath.Join(b.CacheDir, "gobuild")
	}
	return append(env,
		"GOENV=off", "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local",
		"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1",
		"GOMODCACHE="+filepath.Join(b.CacheDir, "gomod"),
		"GOCACHE="+gocache,
	)
}

// run runs the go command in dir and returns its standard output.
func (b *Builder) run(ctx context.Context, dir string, args ...string) (string, error) {
	goCmd := b.Go
	if goCmd == "" {
		goCmd = "go"
	}
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = dir
	cmd.Env = b.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 4000 {
			msg = "…" + msg[len(msg)-4000:]
		}
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(shorten(args), " "), err, msg)
	}
	return stdout.String(), nil
}

// shorten keeps error messages readable: long -ldflags are elided.
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

func (b *Builder) logger() *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	return slog.New(slog.DiscardHandler)
}

// hashFile returns p's size and sha256.
func hashFile(p string) (File, error) {
	f, err := os.Open(p)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, fmt.Errorf("hashing %s: %w", p, err)
	}
	return File{Name: filepath.Base(p), Path: p, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
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
