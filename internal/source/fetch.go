package source

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/labbake/labbake/internal/iox"
)

// Store is the content-addressed cache as the fetcher needs it.
type Store interface {
	// Has reports whether the blob "sha256:<hex>" is stored.
	Has(digest string) bool
	// Put stores what r holds and returns its digest and size. With want
	// not "", a body of another digest is an error and nothing is stored.
	Put(ctx context.Context, r io.Reader, want string) (digest string, size int64, err error)
	// Open returns the blob's content, verifying it while it is read.
	Open(digest string) (io.ReadCloser, error)
}

// Sizer is what a Store may also implement to tell a blob's size without
// reading it. Fetch uses it for blobs it finds in the store; for a store
// without it, Fetch reads the blob through to count (and verify) it.
type Sizer interface {
	Size(digest string) (int64, error)
}

// Defaults for the zero values of the Fetcher's tuning fields.
const (
	DefaultAttempts    = 3
	DefaultBackoff     = time.Second
	DefaultReadTimeout = time.Minute
)

// Fetcher downloads artifacts into a Store. Its zero value works: online,
// no mirrors, no logs, no progress. A Fetcher is safe for concurrent use,
// but bars of concurrent downloads drawn on one terminal overwrite each
// other: give Progress to one download at a time, or set Terminal false.
type Fetcher struct {
	// Client makes the requests; nil means a new client from NewClient
	// for each call.
	Client *http.Client
	// Mirrors rewrite URLs before they are requested (see Rewrite).
	Mirrors []Mirror
	// Reach remembers hosts that do not resolve: their requests fail at
	// once, without retries.
	Reach Reach
	// Offline forbids any connection: what is not in the store is an
	// error wrapping iox.ErrOffline.
	Offline bool
	// Log receives events: mirror rewrites (info), retries (warn), cache
	// hits and finished downloads (debug). Nil means no logs.
	Log *slog.Logger
	// Progress is where download progress is shown; nil shows none.
	Progress io.Writer
	// Terminal says Progress is a terminal: draw a one-line bar, updated
	// at most 10 times a second and cleared at the end. Otherwise plain
	// lines are written at the start and end, and every 10 s between.
	Terminal bool

	// Attempts is how many times a request is tried when the connection
	// fails, stalls or the server answers 5xx, 408 or 429; 0 means
	// DefaultAttempts.
	Attempts int
	// Backoff is the wait before the second attempt, doubled before each
	// further one; 0 means DefaultBackoff.
	Backoff time.Duration
	// ReadTimeout is the longest wait for a response or for the next bytes
	// of a body; 0 means DefaultReadTimeout.
	ReadTimeout time.Duration
}

// NewClient returns the HTTP client a Fetcher uses when Client is nil:
// proxies from the environment, 30 s to connect and to shake hands, and no
// overall timeout, so big files may take as long as they need (a Fetcher
// aborts a stalled body after ReadTimeout). Share one between Fetchers to
// reuse connections.
func NewClient() *http.Client {
	t := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: DefaultReadTimeout,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: t}
}

func (f *Fetcher) log() *slog.Logger {
	if f.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.Log
}

// Fetch stores the body of url in store and returns its digest and size.
// With want not "" (a "sha256:<hex>" digest) a blob the store already has
// is returned at once without any network use, and a body of another
// digest is an error wrapping iox.ErrDigestMismatch with nothing stored. The URL is
// rewritten by the Fetcher's mirrors before it is requested.
func (f *Fetcher) Fetch(ctx context.Context, store Store, url, want string) (digest string, size int64, err error) {
	if want != "" {
		if _, err := iox.ParseDigest(want); err != nil {
			return "", 0, fmt.Errorf("fetch %s: %w", url, err)
		}
		if store.Has(want) {
			size, err := blobSize(ctx, store, want)
			if err != nil {
				return "", 0, fmt.Errorf("fetch %s: cached %s: %w", url, want, err)
			}
			f.log().Debug("fetch: in the cache", "url", url, "digest", want)
			return want, size, nil
		}
	}
	if f.Offline {
		if want == "" {
			return "", 0, fmt.Errorf("fetch %s: no digest pinned to look up in the cache: %w", url, iox.ErrOffline)
		}
		return "", 0, fmt.Errorf("fetch %s: %s is not in the cache: %w", url, want, iox.ErrOffline)
	}
	target, where, err := f.target(url)
	if err != nil {
		return "", 0, fmt.Errorf("fetch %s: %w", where, err)
	}
	start := time.Now()
	err = f.get(ctx, target, func(b *body, total int64, attempt int) error {
		p := newProgress(f.Progress, f.Terminal, baseName(target), where, total, attempt, time.Now)
		b.progress = p
		d, n, err := store.Put(ctx, b, want)
		switch {
		case err == nil && want != "" && d != want:
			err = fmt.Errorf("%w: want %s, store got %s", iox.ErrDigestMismatch, want, d)
		case err != nil && b.err == nil && b.eof && want != "" && b.digest() != want:
			err = fmt.Errorf("%w: want %s, got %s", iox.ErrDigestMismatch, want, b.digest())
		case err != nil && b.err == nil:
			err = fmt.Errorf("storing: %w", err)
		}
		if err != nil {
			p.abort()
			return err
		}
		p.done()
		digest, size = d, n
		return nil
	})
	if err != nil {
		return "", 0, fmt.Errorf("fetch %s: %w", where, err)
	}
	f.log().Debug("fetched", "url", where, "digest", digest, "size", size, "took", time.Since(start).Round(time.Millisecond))
	return digest, size, nil
}

// target rewrites url by the mirrors, logs a rewrite, checks the result is
// an http(s) URL and returns it with how errors name it.
func (f *Fetcher) target(rawURL string) (target, where string, err error) {
	target = Rewrite(rawURL, f.Mirrors)
	where = target
	if target != rawURL {
		where = target + " (mirror of " + rawURL + ")"
		f.log().Info("fetch: using a mirror", "url", rawURL, "mirror", target)
	}
	u, err := url.Parse(target)
	if err != nil {
		return "", where, err
	}
	if s := strings.ToLower(u.Scheme); s != "http" && s != "https" || u.Host == "" {
		return "", where, fmt.Errorf("not an absolute http or https URL")
	}
	return target, where, nil
}

// StatusError is a response with a status other than 2xx.
type StatusError struct {
	Code   int
	Status string // "404 Not Found"
}

func (e *StatusError) Error() string {
	if e.Status != "" {
		return e.Status
	}
	return fmt.Sprintf("HTTP status %d", e.Code)
}

// retryable reports whether the status may be worth another try.
func (e *StatusError) retryable() bool {
	return e.Code >= 500 || e.Code == http.StatusRequestTimeout || e.Code == http.StatusTooManyRequests
}

// consumeFunc reads a 2xx response's body. An error it returns after a
// failed read of b is treated as a network error (tried again); any other
// is final.
type consumeFunc func(b *body, total int64, attempt int) error

// get requests target, with retries, and hands a 2xx body to consume.
func (f *Fetcher) get(ctx context.Context, target string, consume consumeFunc) error {
	client := f.Client
	if client == nil {
		client = NewClient()
		defer client.CloseIdleConnections()
	}
	attempts := f.Attempts
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	wait := f.Backoff
	if wait <= 0 {
		wait = DefaultBackoff
	}
	if err := f.Reach.Check(ctx, target); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		retry, err := f.once(ctx, client, target, attempt, consume)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !retry || attempt >= attempts {
			if attempt > 1 {
				err = fmt.Errorf("%w (after %d attempts)", err, attempt)
			}
			return err
		}
		f.log().Warn("fetch: retrying", "url", target, "attempt", attempt, "of", attempts, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait *= 2
	}
}

// stalledError is the cause of a request cancelled for want of data.
type stalledError struct{ d time.Duration }

func (e stalledError) Error() string { return fmt.Sprintf("no data for %s", e.d) }

// once makes one attempt and says whether a failure is worth another.
func (f *Fetcher) once(ctx context.Context, client *http.Client, target string, attempt int, consume consumeFunc) (retry bool, err error) {
	timeout := f.ReadTimeout
	if timeout <= 0 {
		timeout = DefaultReadTimeout
	}
	reqCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(timeout, func() { cancel(stalledError{timeout}) })
	defer timer.Stop()

	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, target, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("User-Agent", "labbake")
	// The bytes as stored: no transparent decompression of a .gz that a
	// server sends with Content-Encoding: gzip.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := client.Do(req)
	if err != nil {
		if cause := context.Cause(reqCtx); ctx.Err() == nil && errors.As(cause, new(stalledError)) {
			return true, cause
		}
		var cv *tls.CertificateVerificationError
		return !errors.As(err, &cv), err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10) // let the connection be reused
		se := &StatusError{Code: resp.StatusCode, Status: resp.Status}
		return se.retryable(), se
	}
	b := &body{r: resp.Body, h: sha256.New(), timer: timer, timeout: timeout}
	if err := consume(b, resp.ContentLength, attempt); err != nil {
		if b.err == nil {
			return false, err
		}
		if cause := context.Cause(reqCtx); ctx.Err() == nil && errors.As(cause, new(stalledError)) {
			return true, cause
		}
		return true, err
	}
	return false, nil
}

// body wraps a response body: it hashes and counts what is read, feeds the
// progress display, pushes back the stall timer and remembers a read error.
type body struct {
	r        io.Reader
	h        hash.Hash
	n        int64
	timer    *time.Timer
	timeout  time.Duration
	progress *progress
	err      error // first read error other than io.EOF
	eof      bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		b.h.Write(p[:n])
		b.n += int64(n)
		b.timer.Reset(b.timeout)
		b.progress.add(int64(n))
	}
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil && b.err == nil:
		b.err = err
	}
	return n, err
}

// digest is the digest of what was read.
func (b *body) digest() string { return "sha256:" + hex.EncodeToString(b.h.Sum(nil)) }

// isHex reports whether s is n hex digits.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHexByte(s[i]) {
			return false
		}
	}
	return true
}

func isHexByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// blobSize tells the size of a stored blob, by Sizer or by reading it.
func blobSize(ctx context.Context, store Store, digest string) (int64, error) {
	if s, ok := store.(Sizer); ok {
		return s.Size(digest)
	}
	rc, err := store.Open(digest)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	return io.Copy(io.Discard, iox.Reader(ctx, rc))
}

// baseName is the last element of a URL's path, for display.
func baseName(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil && u.Path != "" {
		if b := path.Base(u.Path); b != "/" && b != "." {
			return b
		}
	}
	return rawURL
}
