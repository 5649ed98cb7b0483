package gobuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
)

// The go command's defaults.
const (
	defaultGOPROXY = "https://proxy.golang.org,direct"
	defaultGOSUMDB = "sum.golang.org"
)

// knownSumDBs are the checksum databases the go command knows the keys
// of.
var knownSumDBs = map[string]string{
	"sum.golang.org": "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8",
}

// maxSumDBResponse bounds what a checksum database answers (a lookup, a
// signed tree or a tile of a few kilobytes).
const maxSumDBResponse = 1 << 20

// proxyEntry is one GOPROXY entry: a URL, "direct" or "off", and whether
// any error (after "|"), not only "not found" (after ","), moves on to
// the next.
type proxyEntry struct {
	url       string
	anyErrors bool
}

// parseGOPROXY splits a GOPROXY list the way the go command does; ""
// is the go command's default.
func parseGOPROXY(list string) ([]proxyEntry, error) {
	if strings.TrimSpace(list) == "" {
		list = defaultGOPROXY
	}
	var out []proxyEntry
	for list != "" {
		var e proxyEntry
		i := strings.IndexAny(list, ",|")
		if i < 0 {
			e.url, list = strings.TrimSpace(list), ""
		} else {
			e.url, e.anyErrors, list = strings.TrimSpace(list[:i]), list[i] == '|', list[i+1:]
		}
		switch {
		case e.url == "":
			continue
		case e.url == "direct" || e.url == "off":
		default:
			u, err := url.Parse(e.url)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "file") || (u.Scheme != "file" && u.Host == "") {
				return nil, fmt.Errorf("GOPROXY: %q is not an http(s) or file URL, direct or off", e.url)
			}
			e.url = strings.TrimSuffix(e.url, "/")
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, errors.New("GOPROXY: empty list")
	}
	return out, nil
}

// errNotFound is a proxy's 404 or 410: the next proxy is tried.
var errNotFound = errors.New("not found")

// getenv reads the user's Go settings.
func (b *Builder) getenv(k string) string {
	if b.Getenv != nil {
		return b.Getenv(k)
	}
	return os.Getenv(k)
}

func (b *Builder) client() *http.Client {
	if b.HTTP != nil {
		return b.HTTP
	}
	return http.DefaultClient
}

// download writes the zip of mod@version into w from the first module
// proxy of GOPROXY that has it, as the go command would: a proxy's "not
// found" moves on along the list, another error only after "|"; "direct"
// is skipped (a toolchain comes from a proxy only), "off" stops. It
// returns the URL and the size.
func (b *Builder) download(ctx context.Context, mod, version string, w *os.File) (string, int64, error) {
	proxies, err := parseGOPROXY(b.getenv("GOPROXY"))
	if err != nil {
		return "", 0, err
	}
	epath, err := module.EscapePath(mod)
	if err != nil {
		return "", 0, err
	}
	evers, err := module.EscapeVersion(version)
	if err != nil {
		return "", 0, err
	}
	var errs []error
	for _, p := range proxies {
		if p.url == "off" {
			errs = append(errs, errors.New("GOPROXY=off forbids downloads"))
			break
		}
		if p.url == "direct" {
			errs = append(errs, errors.New("direct: a toolchain comes from a module proxy only"))
			continue
		}
		u := p.url + "/" + epath + "/@v/" + evers + ".zip"
		if err := w.Truncate(0); err != nil {
			return "", 0, err
		}
		if _, err := w.Seek(0, io.SeekStart); err != nil {
			return "", 0, err
		}
		n, err := b.get(ctx, u, w, maxToolchainZip)
		if err == nil {
			return u, n, nil
		}
		errs = append(errs, err)
		if !errors.Is(err, errNotFound) && !p.anyErrors {
			break
		}
	}
	return "", 0, errors.Join(errs...)
}

// get copies what url serves to w (at most limit bytes); a 404 or 410, or
// a missing file:// file, wraps errNotFound.
func (b *Builder) get(ctx context.Context, u string, w io.Writer, limit int64) (int64, error) {
	var body io.ReadCloser
	if strings.HasPrefix(u, "file://") {
		pu, err := url.Parse(u)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", u, err)
		}
		f, err := os.Open(pu.Path)
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("%s: %w", u, errNotFound)
		}
		if err != nil {
			return 0, err
		}
		body = f
	} else {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return 0, err
		}
		resp, err := b.client().Do(req)
		if err != nil {
			return 0, err
		}
		switch {
		case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
			resp.Body.Close()
			return 0, fmt.Errorf("%s: %w (%s)", u, errNotFound, resp.Status)
		case resp.StatusCode != http.StatusOK:
			resp.Body.Close()
			return 0, fmt.Errorf("%s: %s", u, resp.Status)
		}
		body = resp.Body
	}
	defer body.Close()
	n, err := io.Copy(w, io.LimitReader(body, limit+1))
	if err != nil {
		return n, fmt.Errorf("%s: %w", u, err)
	}
	if n > limit {
		return n, fmt.Errorf("%s: more than %d bytes", u, limit)
	}
	return n, nil
}

// sumdbHash asks the checksum database (GOSUMDB, default sum.golang.org)
// for the h1 hash of mod@version, through the first module proxy of
// GOPROXY that serves it, else directly, as the go command does. It
// returns the hash and the database's name, or "" and why no database is
// asked (GOSUMDB=off, or the module matches GONOSUMDB, else GOPRIVATE).
func (b *Builder) sumdbHash(ctx context.Context, mod, version string) (h1, db string, err error) {
	gosumdb := strings.TrimSpace(b.getenv("GOSUMDB"))
	if gosumdb == "" {
		gosumdb = defaultGOSUMDB
	}
	if gosumdb == "off" {
		return "", "GOSUMDB=off", nil
	}
	nosum := b.getenv("GONOSUMDB")
	if nosum == "" {
		nosum = b.getenv("GOPRIVATE")
	}
	if module.MatchPrefixPatterns(nosum, mod) {
		return "", "GONOSUMDB/GOPRIVATE " + nosum, nil
	}
	key, name, base, err := parseGOSUMDB(gosumdb)
	if err != nil {
		return "", "", err
	}
	if base == "" {
		if base, err = b.sumdbBase(ctx, name); err != nil {
			return "", "", err
		}
	}
	ops := &sumdbOps{ctx: ctx, b: b, base: base, key: key, cache: map[string][]byte{}}
	c := sumdb.NewClient(ops)
	lines, err := c.Lookup(mod, version)
	if msg := ops.securityError(); msg != "" {
		return "", "", fmt.Errorf("checksum database %s: security error: %s", name, msg)
	}
	if err != nil {
		return "", "", fmt.Errorf("checksum database %s: %w", name, err)
	}
	prefix := mod + " " + version + " "
	for _, l := range lines {
		if h, ok := strings.CutPrefix(l, prefix); ok && CheckH1(h) == nil {
			return h, name, nil
		}
	}
	return "", "", fmt.Errorf("checksum database %s: no h1 hash for %s@%s", name, mod, version)
}

// parseGOSUMDB reads GOSUMDB as the go command does: "NAME[+KEY] [URL]",
// NAME alone for a database whose key the go command knows.
func parseGOSUMDB(gosumdb string) (key, name, base string, err error) {
	if gosumdb == "sum.golang.google.cn" {
		gosumdb = "sum.golang.org https://sum.golang.google.cn"
	}
	f := strings.Fields(gosumdb)
	if len(f) == 0 || len(f) > 2 {
		return "", "", "", fmt.Errorf("GOSUMDB=%q: want NAME[+KEY] [URL]", gosumdb)
	}
	key = f[0]
	if k, ok := knownSumDBs[key]; ok {
		key = k
	}
	v, err := note.NewVerifier(key)
	if err != nil {
		return "", "", "", fmt.Errorf("GOSUMDB=%q: %w", gosumdb, err)
	}
	name = v.Name()
	if u, err := url.Parse("https://" + name); err != nil || u.Host == "" || strings.HasSuffix(name, "/") {
		return "", "", "", fmt.Errorf("GOSUMDB=%q: the name is not host[/path]", gosumdb)
	}
	if len(f) == 2 {
		u, err := url.Parse(f[1])
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return "", "", "", fmt.Errorf("GOSUMDB=%q: %q is not an http(s) URL", gosumdb, f[1])
		}
		base = strings.TrimSuffix(f[1], "/")
	}
	return key, name, base, nil
}

// sumdbBase is where to reach the checksum database name: through the
// first http(s) proxy of GOPROXY that says it serves it
// (PROXY/sumdb/NAME/supported), else directly at https://NAME.
func (b *Builder) sumdbBase(ctx context.Context, name string) (string, error) {
	proxies, err := parseGOPROXY(b.getenv("GOPROXY"))
	if err != nil {
		return "", err
	}
	for _, p := range proxies {
		if p.url == "direct" || p.url == "off" {
			break
		}
		if strings.HasPrefix(p.url, "file://") {
			continue
		}
		base := p.url + "/sumdb/" + name
		_, err := b.get(ctx, base+"/supported", io.Discard, maxSumDBResponse)
		if err == nil {
			return base, nil
		}
		if !errors.Is(err, errNotFound) && !p.anyErrors {
			return "", fmt.Errorf("checksum database %s through %s: %w", name, p.url, err)
		}
	}
	return "https://" + name, nil
}

// sumdbOps are the checksum database client's operations: HTTP to base,
// its configuration and tiles in memory (each lookup starts from the
// database's key, as a go command with an empty GOPATH would).
type sumdbOps struct {
	ctx  context.Context
	b    *Builder
	base string
	key  string

	mu       sync.Mutex
	latest   []byte
	cache    map[string][]byte
	security string
}

func (o *sumdbOps) ReadRemote(p string) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := o.b.get(o.ctx, o.base+p, &buf, maxSumDBResponse); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (o *sumdbOps) ReadConfig(file string) ([]byte, error) {
	if file == "key" {
		return []byte(o.key), nil
	}
	if strings.HasSuffix(file, "/latest") {
		o.mu.Lock()
		defer o.mu.Unlock()
		return bytes.Clone(o.latest), nil
	}
	return nil, fmt.Errorf("unknown config %s", file)
}

func (o *sumdbOps) WriteConfig(file string, old, new []byte) error {
	if !strings.HasSuffix(file, "/latest") {
		return fmt.Errorf("unknown config %s", file)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !bytes.Equal(old, o.latest) {
		return sumdb.ErrWriteConflict
	}
	o.latest = bytes.Clone(new)
	return nil
}

func (o *sumdbOps) ReadCache(file string) ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if d, ok := o.cache[file]; ok {
		return d, nil
	}
	return nil, fs.ErrNotExist
}

func (o *sumdbOps) WriteCache(file string, data []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cache[file] = bytes.Clone(data)
}

func (o *sumdbOps) Log(msg string) { o.b.log().Debug("go: checksum database", "msg", msg) }

func (o *sumdbOps) SecurityError(msg string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.security = msg
}

func (o *sumdbOps) securityError() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.security
}
