package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/labbake/labbake/builders/dpkg"
)

// DefaultDebianMirror is the Debian archive the Debian components come from.
const DefaultDebianMirror = "https://deb.debian.org/debian"

// DefaultDebianKeyring is the archive keyring gpgv checks InRelease with
// (package debian-archive-keyring).
const DefaultDebianKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// Debian fetches binary packages of one suite from a Debian archive: it
// reads the suite's InRelease (its signature checked with gpgv when the
// keyring is there, else trusted as fetched over HTTPS), the amd64 Packages
// index whose sha256 InRelease gives, and each .deb whose sha256 the index
// gives, and unpacks a package with dpkg-deb -x. Indexes and packages are
// kept under CacheDir by their sha256.
type Debian struct {
	Mirror string // DefaultDebianMirror when empty
	Suite  string // e.g. trixie
	// Keyring is what gpgv checks InRelease with, DefaultDebianKeyring when
	// empty; without it InRelease is trusted for its HTTPS transport, and
	// "-" trusts it as fetched (tests with a local archive).
	Keyring  string
	CacheDir string // required
	Client   *http.Client
	Log      *slog.Logger

	release *debRelease
	index   map[string][]DebPackage
}

// DebPackage is one binary package as the archive's index lists it.
type DebPackage struct {
	Package  string `json:"package"`
	Version  string `json:"version"`
	Source   string `json:"source,omitempty"`
	Filename string `json:"filename"` // below the mirror, e.g. pool/main/r/runc/runc_…_amd64.deb
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	// Suite, Release and Date are the suite's as InRelease states them
	// (trixie, 13.8, its Date field); Verified says how InRelease was
	// trusted: "gpgv", "https" or "none" (Debian.Keyring "-").
	Suite    string `json:"suite"`
	Release  string `json:"release,omitempty"`
	Date     string `json:"date,omitempty"`
	Verified string `json:"verified"`
}

// debRelease is what is read from InRelease.
type debRelease struct {
	version, date, verified string
	sha256                  map[string]debSum // by path below dists/SUITE/
}

type debSum struct {
	hex  string
	size int64
}

func (d *Debian) mirror() string {
	if d.Mirror == "" {
		return DefaultDebianMirror
	}
	return strings.TrimSuffix(d.Mirror, "/")
}

func (d *Debian) client() *http.Client {
	if d.Client != nil {
		return d.Client
	}
	return &http.Client{Timeout: 10 * time.Minute}
}

func (d *Debian) logger() *slog.Logger {
	if d.Log != nil {
		return d.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Lookup finds package name in the suite's main amd64 index. A package
// listed at several versions is an error: the choice would be a guess.
func (d *Debian) Lookup(ctx context.Context, name string) (DebPackage, error) {
	if err := d.load(ctx); err != nil {
		return DebPackage{}, err
	}
	ps := d.index[name]
	switch len(ps) {
	case 0:
		return DebPackage{}, fmt.Errorf("debian %s: no package %s in main/binary-amd64", d.Suite, name)
	case 1:
		return ps[0], nil
	}
	var vs []string
	for _, p := range ps {
		vs = append(vs, p.Version)
	}
	return DebPackage{}, fmt.Errorf("debian %s: package %s listed at %s", d.Suite, name, strings.Join(vs, ", "))
}

// Unpack downloads p (or takes it from the cache), checks its sha256 and
// unpacks it into dir with dpkg-deb -x, which keeps the packaged mtimes.
func (d *Debian) Unpack(ctx context.Context, p DebPackage, dir string) error {
	deb, err := d.fetch(ctx, p.Filename, p.SHA256, p.Size)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w\n%s", filepath.Base(p.Filename), err, out)
	}
	return nil
}

// load reads InRelease and the Packages index once.
func (d *Debian) load(ctx context.Context) error {
	if d.index != nil {
		return nil
	}
	if d.Suite == "" || d.CacheDir == "" {
		return errors.New("debian: Suite and CacheDir are required")
	}
	rel, err := d.inRelease(ctx)
	if err != nil {
		return err
	}
	const indexPath = "main/binary-amd64/Packages.xz"
	sum, ok := rel.sha256[indexPath]
	if !ok {
		return fmt.Errorf("debian %s: InRelease lists no %s", d.Suite, indexPath)
	}
	p, err := d.fetch(ctx, "dists/"+d.Suite+"/"+indexPath, sum.hex, sum.size)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := xz.NewReader(bufio.NewReader(f))
	if err != nil {
		return fmt.Errorf("debian %s: %s: %w", d.Suite, indexPath, err)
	}
	index, err := parsePackages(zr)
	if err != nil {
		return fmt.Errorf("debian %s: %s: %w", d.Suite, indexPath, err)
	}
	for name, ps := range index {
		for i := range ps {
			ps[i].Suite, ps[i].Release, ps[i].Date, ps[i].Verified = d.Suite, rel.version, rel.date, rel.verified
		}
		index[name] = ps
	}
	d.release, d.index = rel, index
	return nil
}

// inRelease fetches dists/SUITE/InRelease and, when the keyring exists,
// has gpgv check it and hand over the signed text.
func (d *Debian) inRelease(ctx context.Context) (*debRelease, error) {
	u := d.mirror() + "/dists/" + d.Suite + "/InRelease"
	data, err := d.get(ctx, u)
	if err != nil {
		return nil, err
	}
	keyring := d.Keyring
	if keyring == "" {
		keyring = DefaultDebianKeyring
	}
	verified := "https"
	if keyring == "-" {
		verified = "none"
	} else if _, err := os.Stat(keyring); err == nil {
		cmd := exec.CommandContext(ctx, "gpgv", "--keyring", keyring, "--output", "-", "-")
		cmd.Stdin = bytes.NewReader(data)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		signed, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("debian %s: gpgv %s: %w\n%s", d.Suite, u, err, stderr.String())
		}
		data, verified = signed, "gpgv"
	} else if !strings.HasPrefix(u, "https://") {
		return nil, fmt.Errorf("debian %s: no keyring %s to check %s, which is not HTTPS", d.Suite, keyring, u)
	}
	rel := parseRelease(data)
	rel.verified = verified
	d.logger().Info("debian release", "suite", d.Suite, "version", rel.version, "date", rel.date, "verified", verified)
	return rel, nil
}

// parseRelease reads the Version, Date and SHA256 fields of a Release file
// (the signed text of InRelease; the PGP armour lines are ignored).
func parseRelease(data []byte) *debRelease {
	rel := &debRelease{sha256: map[string]debSum{}}
	inSHA := false
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.HasPrefix(line, " ") && inSHA {
			f := strings.Fields(line)
			if len(f) == 3 && len(f[0]) == 64 {
				if n, err := strconv.ParseInt(f[1], 10, 64); err == nil && n >= 0 {
					rel.sha256[f[2]] = debSum{hex: f[0], size: n}
				}
			}
			continue
		}
		inSHA = false
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "Version":
			rel.version = strings.TrimSpace(v)
		case "Date":
			rel.date = strings.TrimSpace(v)
		case "SHA256":
			inSHA = true
		}
	}
	return rel
}

// parsePackages reads a Packages index, a control file (see
// dpkg.ReadParagraphs); a paragraph without a Package field is skipped.
func parsePackages(r io.Reader) (map[string][]DebPackage, error) {
	out := map[string][]DebPackage{}
	err := dpkg.ReadParagraphs(r, func(f dpkg.Paragraph) error {
		if f["Package"] == "" {
			return nil
		}
		p := DebPackage{Package: f["Package"], Version: f["Version"], Source: f["Source"], Filename: f["Filename"], SHA256: f["SHA256"]}
		if v := f["Size"]; v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("package %s: Size %q: %w", p.Package, v, err)
			}
			p.Size = n
		}
		if p.Version == "" || p.Filename == "" || len(p.SHA256) != 64 || p.Size < 0 {
			return fmt.Errorf("package %s: Version, Filename or SHA256 missing", p.Package)
		}
		out[p.Package] = append(out[p.Package], p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// fetch returns the cached file with sha256 sum, downloading rel below the
// mirror first when it is not cached. The download must have that sum.
func (d *Debian) fetch(ctx context.Context, rel, sum string, size int64) (string, error) {
	if len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
		return "", fmt.Errorf("debian: %s: bad sha256 %q", rel, sum)
	}
	dir := filepath.Join(d.CacheDir, "debian", "sha256")
	p := filepath.Join(dir, sum)
	if f, err := hashFile(p); err == nil && f.SHA256 == sum {
		return p, nil
	}
	data, err := d.get(ctx, d.mirror()+"/"+rel)
	if err != nil {
		return "", err
	}
	got := sha256.Sum256(data)
	if hex.EncodeToString(got[:]) != sum || (size > 0 && int64(len(data)) != size) {
		return "", fmt.Errorf("debian: %s: sha256 %x, %d bytes; the index says %s, %d bytes", rel, got, len(data), sum, size)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, p); err != nil {
		return "", err
	}
	d.logger().Info("debian download", "file", rel, "bytes", len(data))
	return p, nil
}

func (d *Debian) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("debian: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("debian: GET %s: %s", u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return nil, fmt.Errorf("debian: GET %s: %w", u, err)
	}
	return data, nil
}

// DebianComponent says which files of which Debian package stand for an
// upstream release: Dir is their directory in the package, Names the files
// taken (all regular files of Dir when empty).
type DebianComponent struct {
	Name    string // runc, cni
	Version string // the upstream tag it is served under
	Package string // the Debian binary package
	Dir     string // e.g. usr/sbin
	Names   []string
}

// DebianComponents are runc (package runc, /usr/sbin/runc) and the CNI
// reference plugins (containernetworking-plugins, every plugin in
// /usr/lib/cni) at the tags v gives.
func DebianComponents(v Versions) []DebianComponent {
	return []DebianComponent{
		{Name: "runc", Version: v.Runc, Package: "runc", Dir: "usr/sbin", Names: []string{"runc"}},
		{Name: "cni", Version: v.CNIPlugins, Package: "containernetworking-plugins", Dir: "usr/lib/cni"},
	}
}

// FetchDebian unpacks c's package under workDir and returns its files as a
// Result: Module is the package at its Debian version, dated the newest
// mtime among the files (dpkg-deb keeps the packaged ones), and Debian says
// where it came from. Files are sorted by name.
func FetchDebian(ctx context.Context, d *Debian, c DebianComponent, workDir string) (*Result, error) {
	start := time.Now()
	p, err := d.Lookup(ctx, c.Package)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	root := filepath.Join(workDir, c.Name)
	if err := d.Unpack(ctx, p, root); err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	names := c.Names
	if len(names) == 0 {
		entries, err := os.ReadDir(filepath.Join(root, filepath.FromSlash(c.Dir)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		for _, e := range entries {
			if e.Type().IsRegular() {
				names = append(names, e.Name())
			}
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("%s: package %s %s has no files in /%s", c.Name, p.Package, p.Version, c.Dir)
		}
	}
	res := &Result{
		Component: Component{Name: c.Name, Module: "deb:" + c.Package, Version: c.Version},
		Module:    ModuleInfo{Path: c.Package, Version: p.Version},
		Debian:    &p,
	}
	for _, n := range names {
		fp := filepath.Join(root, filepath.FromSlash(c.Dir), n)
		fi, err := os.Stat(fp)
		if err != nil {
			return nil, fmt.Errorf("%s: package %s %s: %w", c.Name, p.Package, p.Version, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: package %s %s: /%s/%s is not a regular file", c.Name, p.Package, p.Version, c.Dir, n)
		}
		if t := fi.ModTime().UTC().Truncate(time.Second); t.After(res.Module.Time) {
			res.Module.Time = t
		}
		f, err := hashFile(fp)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		res.Files = append(res.Files, f)
		res.Component.Binaries = append(res.Component.Binaries, Binary{Name: n})
	}
	res.Elapsed = time.Since(start)
	d.logger().Info("from debian", "component", c.Name, "version", c.Version, "package", p.Package, "debian_version", p.Version, "files", len(res.Files))
	return res, nil
}
