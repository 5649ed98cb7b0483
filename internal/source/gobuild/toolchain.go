package gobuild

import (
	"archive/zip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/dirhash"

	"github.com/labbake/labbake/internal/iox"
)

// ToolchainModule is the module the Go releases are published as, one
// version per release and platform: v0.0.1-go1.26.8.linux-amd64 (what the
// go command's GOTOOLCHAIN switching downloads).
const ToolchainModule = "golang.org/toolchain"

// KindToolchain is the kind of the key that pins a toolchain (see
// ToolchainKey).
const KindToolchain = "gotoolchain"

// ErrUnpinned is wrapped by the error of a toolchain that would have to be
// downloaded although Pins.Frozen and labbake.lock does not pin it.
var ErrUnpinned = errors.New("not pinned")

// Limits of a toolchain zip, far above a real one (go1.26.8 for
// linux/amd64: 72 MB, 11,518 files, 215 MB unpacked).
const (
	maxToolchainZip   = 1 << 30
	maxToolchainBytes = 4 << 30
	maxToolchainFiles = 200_000
)

// toolchainMarker is the file in an unpacked toolchain that says which
// module it was unpacked from (its h1 hash). It is written first into the
// temp dir, which becomes the toolchain only by a rename once complete.
const toolchainMarker = ".labbake-toolchain"

// hostPlatform is the platform the toolchain runs on: labbake's own.
func hostPlatform() (goos, goarch string) { return runtime.GOOS, runtime.GOARCH }

// ToolchainKey is the key of release's toolchain for this host: in
// labbake.lock it pins the h1 hash of the golang.org/toolchain module, in
// the cache it names the blob of the module's zip. "gotoolchain go1.26.8
// linux/amd64".
func ToolchainKey(release string) string {
	goos, goarch := hostPlatform()
	return toolchainKey(release, goos, goarch)
}

func toolchainKey(release, goos, goarch string) string {
	return KindToolchain + " " + release + " " + goos + "/" + goarch
}

// ToolchainVersion is the version of ToolchainModule that holds release
// for goos/goarch: v0.0.1-go1.26.8.linux-amd64.
func ToolchainVersion(release, goos, goarch string) string {
	return "v0.0.1-" + release + "." + goos + "-" + goarch
}

// ParseToolchainKey checks a toolchain key, strictly: exactly what
// ToolchainKey writes, with a Go release and a GOOS/GOARCH.
func ParseToolchainKey(s string) (release, platform string, err error) {
	f := strings.Split(s, " ")
	if len(f) != 3 || f[0] != KindToolchain {
		return "", "", fmt.Errorf("want %q", KindToolchain+" GO-RELEASE GOOS/GOARCH")
	}
	if !toolchainRE.MatchString(f[1]) {
		return "", "", fmt.Errorf("%q is not a Go release (go1.N.M)", f[1])
	}
	if !platformRE.MatchString(f[2]) {
		return "", "", fmt.Errorf("%q is not GOOS/GOARCH", f[2])
	}
	return f[1], f[2], nil
}

// CheckH1 checks s is a go.sum hash as the toolchain pin holds it: "h1:"
// and the base64 of a sha256.
func CheckH1(s string) error {
	b64, ok := strings.CutPrefix(s, "h1:")
	if ok {
		b, err := base64.StdEncoding.Strict().DecodeString(b64)
		if err == nil && len(b) == 32 {
			return nil
		}
	}
	return fmt.Errorf("invalid hash %.100q: want h1:<base64 of a sha256> (as go.sum writes it)", s)
}

// goCommand picks the go command that builds s: the host's (Builder.Go,
// else "go" on PATH) when it is exactly s.Toolchain, else the toolchain
// module's bin/go, unpacked from the cache or fetched through the module
// proxy (see toolchain). h1 is the toolchain module's hash, "" for the
// host's go.
func (b *Builder) goCommand(ctx context.Context, store Store, s Spec, pins Pins, offline bool, workDir string, log *slog.Logger) (goCmd, h1 string, err error) {
	host := b.Go
	if host == "" {
		host, _ = exec.LookPath("go") // none: fetch the toolchain
	}
	hg := hostGo{says: "there is no go on PATH", err: ErrNoGo}
	if host != "" {
		hg.err = ErrToolchain
		v, err := b.goVersion(ctx, host)
		switch {
		case err != nil:
			hg.says = fmt.Sprintf("%s does not run (%v)", host, err)
		case v == s.Toolchain:
			log.Debug("go: the host's go command", "go", host, "version", v)
			return host, "", nil
		default:
			hg.says = fmt.Sprintf("%s is %s", host, v)
		}
	}
	dir, h1, err := b.toolchain(ctx, store, s.Toolchain, pins, offline, workDir, hg, log)
	if err != nil {
		return "", "", err
	}
	return filepath.Join(dir, "bin", "go"), h1, nil
}

// hostGo is what is wrong with the host's go command: what to say of it,
// and ErrNoGo or ErrToolchain.
type hostGo struct {
	says string
	err  error
}

// goVersion asks a go command its release (`go env GOVERSION`), with no
// Go setting of the environment and GOTOOLCHAIN=local: the go command
// itself, not one it would switch to.
func (b *Builder) goVersion(ctx context.Context, goCmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "env", "GOVERSION")
	cmd.Env = append(cleanEnv(), "GOENV=off", "GOWORK=off", "GOTOOLCHAIN=local", "GOTELEMETRY=off", "GOFLAGS=")
	cmd.Dir = os.TempDir()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return "", fmt.Errorf("%w: %.300s", err, msg)
		}
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// toolchain returns the directory of release's toolchain, unpacked once
// under Builder.Toolchains (or workDir when that is ""), and its module's
// h1 hash. In order: the directory unpacked earlier; the zip in the cache
// (ref ToolchainKey); the zip fetched from the module proxy, verified
// against pins.Toolchain or else the checksum database, then stored in the
// cache. An h1 that differs from pins.Toolchain is an error naming both
// (iox.ErrDigestMismatch). host tells what is wrong with the host's go
// command, for the errors.
func (b *Builder) toolchain(ctx context.Context, store Store, release string, pins Pins, offline bool, workDir string, host hostGo, log *slog.Logger) (string, string, error) {
	goos, goarch := hostPlatform()
	key := toolchainKey(release, goos, goarch)
	version := ToolchainVersion(release, goos, goarch)
	mod := ToolchainModule + "@" + version
	unlock, err := store.Lock(ctx, key)
	if err != nil {
		return "", "", fmt.Errorf("locking %s: %w", key, err)
	}
	defer unlock()

	root := b.Toolchains
	if root == "" {
		root = workDir
	}
	dir := filepath.Join(root, release+"."+goos+"-"+goarch)
	check := func(h1, what string) error {
		if pins.Toolchain != "" && h1 != pins.Toolchain {
			return fmt.Errorf("%s (%s) hashes to %s, but labbake.lock pins %s (%q): %w",
				what, mod, h1, pins.Toolchain, key, iox.ErrDigestMismatch)
		}
		return nil
	}

	// Unpacked earlier.
	h1, err := readMarker(dir)
	if err != nil {
		return "", "", err
	}
	if h1 != "" {
		if err := check(h1, "the toolchain unpacked in "+dir); err != nil {
			return "", "", err
		}
		log.Debug("go: toolchain from the cache", "toolchain", release, "dir", dir)
		return dir, h1, nil
	}

	// The zip in the cache: verified by its sha256 when read, then
	// against the pin.
	if zipBlob, ok, err := store.Ref(key); err != nil {
		return "", "", err
	} else if ok && store.Has(zipBlob) {
		p, err := store.Path(zipBlob)
		if err != nil {
			return "", "", fmt.Errorf("%s in the cache: %w", mod, err)
		}
		h1, err := dirhash.HashZip(p, dirhash.Hash1)
		if err != nil {
			return "", "", fmt.Errorf("%s in the cache (%s): %w", mod, zipBlob, err)
		}
		if err := check(h1, "the zip in the cache "+zipBlob); err != nil {
			return "", "", err
		}
		start := time.Now()
		if err := unpackToolchain(p, mod, root, dir, h1); err != nil {
			return "", "", err
		}
		log.Debug("go: toolchain unpacked from the cache", "toolchain", release, "dir", dir, "took", time.Since(start).Round(time.Millisecond))
		return dir, h1, nil
	}

	// Fetched.
	if offline {
		return "", "", fmt.Errorf("%w: building it needs %s, but %s and %s is not in the cache (install %s, or get the toolchain into the cache): %w",
			host.err, release, host.says, mod, release, iox.ErrOffline)
	}
	if pins.Toolchain == "" && pins.Frozen {
		return "", "", fmt.Errorf("building it needs %s, but %s, and %q is not in labbake.lock to verify %s against: %w (run labbake lock, or install %s)",
			release, host.says, key, mod, ErrUnpinned, release)
	}
	tmp, err := os.CreateTemp(workDir, "toolchain-*.zip")
	if err != nil {
		return "", "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	log.Debug("go: downloading the toolchain", "toolchain", release, "module", mod, "because", host.says)
	start := time.Now()
	from, size, err := b.download(ctx, ToolchainModule, version, tmp)
	if err != nil {
		return "", "", fmt.Errorf("%w: building it needs %s, but %s, and fetching %s failed (install %s, or set toolchain: to a release the module proxy has): %w",
			host.err, release, host.says, mod, release, err)
	}
	took := time.Since(start)
	zipName := path.Base(from)
	if h1, err = dirhash.HashZip(tmp.Name(), dirhash.Hash1); err != nil {
		return "", "", fmt.Errorf("%s from %s: %w", zipName, from, err)
	}
	switch {
	case pins.Toolchain != "":
		if h1 != pins.Toolchain {
			return "", "", fmt.Errorf("%s from %s hashes to %s, but labbake.lock pins %s (%q): %w",
				zipName, from, h1, pins.Toolchain, key, iox.ErrDigestMismatch)
		}
	default:
		want, db, err := b.sumdbHash(ctx, ToolchainModule, version)
		if err != nil {
			return "", "", fmt.Errorf("verifying %s: %w", mod, err)
		}
		switch {
		case want == "":
			log.Warn("go: toolchain not verified by a checksum database", "toolchain", release, "why", db, "hash", h1)
		case want != h1:
			return "", "", fmt.Errorf("%s from %s hashes to %s, but the checksum database %s says %s: %w",
				zipName, from, h1, db, want, iox.ErrDigestMismatch)
		}
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return "", "", err
	}
	zipBlob, _, err := store.Put(ctx, tmp, "")
	if err != nil {
		return "", "", fmt.Errorf("storing %s: %w", mod, err)
	}
	if err := store.SetRef(key, zipBlob); err != nil {
		return "", "", err
	}
	p, err := store.Path(zipBlob)
	if err != nil {
		return "", "", err
	}
	ustart := time.Now()
	if err := unpackToolchain(p, mod, root, dir, h1); err != nil {
		return "", "", err
	}
	log.Info("go: toolchain downloaded", "toolchain", release, "from", from, "size", iox.Bytes(size), "took", took.Round(time.Millisecond),
		"unpack", time.Since(ustart).Round(time.Millisecond), "hash", h1)
	return dir, h1, nil
}

// readMarker returns the h1 hash an unpacked toolchain was made from: ""
// when dir does not exist. A dir without the marker is not labbake's: an
// error, it is not removed.
func readMarker(dir string) (string, error) {
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	data, err := os.ReadFile(filepath.Join(dir, toolchainMarker))
	if err != nil {
		return "", fmt.Errorf("%s is not a toolchain labbake unpacked (remove it): %w", dir, err)
	}
	h1 := strings.TrimSpace(string(data))
	if err := CheckH1(h1); err != nil {
		return "", fmt.Errorf("%s: %s: %w", dir, toolchainMarker, err)
	}
	return h1, nil
}

// unpackToolchain unpacks the toolchain zip zipPath of module mod
// (golang.org/toolchain@VERSION, the prefix of every file in it) into dir,
// a new directory under root: into a temp dir first, renamed once
// complete. Files are 0644, or 0755 when the zip records an executable
// mode or when the go command makes them executable after its own
// download (bin/, pkg/tool/, lib/…/go_*_*_exec); each _go.mod is copied to
// go.mod beside it, as the go command does (a module zip cannot hold the
// go.mod files of the standard library's nested modules). Names that leave
// the prefix, repeated names and entries that are not files or
// directories are refused.
func unpackToolchain(zipPath, mod, root, dir string, h1 string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	sweepToolchainTemps(root, filepath.Base(dir))
	tmp, err := os.MkdirTemp(root, ".tmp-"+filepath.Base(dir)+"-")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.WriteFile(filepath.Join(tmp, toolchainMarker), []byte(h1+"\n"), 0o644); err != nil {
		return err
	}
	if err := unzipToolchain(zipPath, mod, tmp); err != nil {
		return fmt.Errorf("unpacking %s: %w", mod, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("unpacking %s: %w", mod, err)
	}
	done = true
	return nil
}

// sweepToolchainTemps removes the temp dirs of unpacks of name that died
// (the caller holds the toolchain's lock, so none is in progress): only
// those with labbake's marker.
func sweepToolchainTemps(root, name string) {
	old, _ := filepath.Glob(filepath.Join(root, ".tmp-"+name+"-*"))
	for _, d := range old {
		if _, err := os.Stat(filepath.Join(d, toolchainMarker)); err == nil {
			os.RemoveAll(d)
		}
	}
}

// unzipToolchain writes the files of the zip under prefix mod+"/" into dir.
func unzipToolchain(zipPath, mod, dir string) error {
	z, err := zip.OpenReader(zipPath)
	if err != nil {
		return err
	}
	defer z.Close()
	if len(z.File) > maxToolchainFiles {
		return fmt.Errorf("%d files, more than %d", len(z.File), maxToolchainFiles)
	}
	prefix := mod + "/"
	var total int64
	var goMods []string
	seen := map[string]bool{toolchainMarker: true}
	for _, f := range z.File {
		rel, ok := strings.CutPrefix(f.Name, prefix)
		isDir := strings.HasSuffix(rel, "/")
		rel = strings.TrimSuffix(rel, "/")
		if !ok || !cleanRel(rel) || strings.Contains(rel, `\`) {
			return fmt.Errorf("%q is not a file under %s", f.Name, prefix)
		}
		if seen[rel] {
			return fmt.Errorf("%q: repeated", f.Name)
		}
		seen[rel] = true
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		mode := f.Mode()
		switch {
		case isDir || mode.IsDir():
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			continue
		case !mode.IsRegular():
			return fmt.Errorf("%q: not a regular file (%s)", f.Name, mode.Type())
		}
		total += int64(f.UncompressedSize64)
		if f.UncompressedSize64 > maxToolchainBytes || total > maxToolchainBytes {
			return fmt.Errorf("more than %d bytes unpacked", int64(maxToolchainBytes))
		}
		perm := fs.FileMode(0o644)
		if mode&0o111 != 0 || executable(rel) {
			perm = 0o755
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := writeZipFile(f, dst, perm); err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		if path.Base(rel) == "_go.mod" {
			goMods = append(goMods, dst)
		}
	}
	for _, src := range goMods {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(filepath.Dir(src), "go.mod"), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// executable reports whether the go command makes rel executable after it
// unpacks a toolchain (its zip may not record modes).
func executable(rel string) bool {
	if strings.HasPrefix(rel, "bin/") || strings.HasPrefix(rel, "pkg/tool/") {
		return true
	}
	if strings.HasPrefix(rel, "lib/") {
		ok, _ := path.Match("go_?*_?*_exec", path.Base(rel))
		return ok
	}
	return false
}

// writeZipFile writes the content of f to a new file dst.
func writeZipFile(f *zip.File, dst string, perm fs.FileMode) error {
	rc, err := f.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, io.LimitReader(rc, int64(f.UncompressedSize64)+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && uint64(n) != f.UncompressedSize64 {
		err = fmt.Errorf("%d bytes, the zip says %d", n, f.UncompressedSize64)
	}
	return err
}

// toolchainBlob is the cache blob of release's toolchain zip for this
// host: "" when the cache has none.
func toolchainBlob(store Store, release string) (string, error) {
	d, ok, err := store.Ref(ToolchainKey(release))
	if err != nil || !ok || !store.Has(d) {
		return "", err
	}
	return d, nil
}
