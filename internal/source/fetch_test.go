package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labbake/labbake/internal/iox"
)

// payload is a body the test servers send.
func payload() []byte {
	return bytes.Repeat([]byte("labbake fetch test payload\n"), 5000)
}

// server is an httptest server that counts requests and hands each to
// handle with its number (from 1).
type server struct {
	*httptest.Server
	reqs  atomic.Int32
	paths chan string
}

func newServer(t *testing.T, handle func(n int32, w http.ResponseWriter, r *http.Request)) *server {
	t.Helper()
	s := &server{paths: make(chan string, 16)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.reqs.Add(1)
		select {
		case s.paths <- r.URL.Path:
		default:
		}
		handle(n, w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func serve(b []byte) func(int32, http.ResponseWriter, *http.Request) {
	return func(_ int32, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	}
}

func status(code int) func(int32, http.ResponseWriter, *http.Request) {
	return func(_ int32, w http.ResponseWriter, r *http.Request) {
		http.Error(w, http.StatusText(code), code)
	}
}

// testFetcher is a Fetcher with quick retries that logs into buf.
func testFetcher(buf *bytes.Buffer) *Fetcher {
	return &Fetcher{
		Backoff: time.Millisecond,
		Log:     slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func TestFetch(t *testing.T) {
	body := payload()
	good := digestOf(body)
	other := digestOf([]byte("something else"))
	tests := []struct {
		name       string
		handle     func(n int32, w http.ResponseWriter, r *http.Request)
		want       string
		cached     bool // body is in the store before
		offline    bool
		wantReqs   int32
		wantErr    []string // substrings; URL stands for the URL fetched
		wantIs     error
		wantStored int
	}{
		{name: "ok", handle: serve(body), wantReqs: 1, wantStored: 1},
		{name: "ok with want", handle: serve(body), want: good, wantReqs: 1, wantStored: 1},
		{name: "mismatch", handle: serve(body), want: other, wantReqs: 1,
			wantErr: []string{"fetch URL: ", "want " + other, "got " + good}, wantIs: iox.ErrDigestMismatch},
		{name: "404", handle: status(404), want: good, wantReqs: 1, wantErr: []string{"fetch URL: 404 Not Found"}},
		{name: "500 three times", handle: status(500), wantReqs: 3,
			wantErr: []string{"fetch URL: 500 Internal Server Error (after 3 attempts)"}},
		{name: "503 then ok", wantReqs: 2, wantStored: 1, handle: func(n int32, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				status(503)(n, w, r)
				return
			}
			serve(body)(n, w, r)
		}},
		{name: "closed mid-body", wantReqs: 3, want: good, wantErr: []string{"fetch URL: ", "unexpected EOF", "after 3 attempts"},
			handle: func(_ int32, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				_, _ = w.Write(body[:len(body)/2])
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			}},
		{name: "closed mid-body, then ok", wantReqs: 2, wantStored: 1,
			handle: func(n int32, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					w.Header().Set("Content-Length", strconv.Itoa(len(body)))
					_, _ = w.Write(body[:100])
					w.(http.Flusher).Flush()
					panic(http.ErrAbortHandler)
				}
				serve(body)(n, w, r)
			}},
		{name: "cached", handle: serve(body), want: good, cached: true, wantReqs: 0, wantStored: 1},
		{name: "offline cached", handle: serve(body), want: good, cached: true, offline: true, wantReqs: 0, wantStored: 1},
		{name: "offline missing", handle: serve(body), want: good, offline: true, wantReqs: 0,
			wantErr: []string{"fetch URL: " + good + " is not in the cache"}, wantIs: iox.ErrOffline},
		{name: "offline no digest", handle: serve(body), offline: true, wantReqs: 0,
			wantErr: []string{"fetch URL: no digest pinned"}, wantIs: iox.ErrOffline},
		{name: "bad want", handle: serve(body), want: "sha256:XYZ", wantReqs: 0, wantErr: []string{`fetch URL: invalid digest "sha256:XYZ"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.handle)
			store := newDirStore(t)
			if tt.cached {
				store.put(t, body)
			}
			var logs bytes.Buffer
			f := testFetcher(&logs)
			f.Offline = tt.offline
			url := srv.URL + "/dl/etcd.tar.gz"
			d, size, err := f.Fetch(context.Background(), store, url, tt.want)
			if got := srv.reqs.Load(); got != tt.wantReqs {
				t.Errorf("server saw %d requests, want %d", got, tt.wantReqs)
			}
			if n := len(store.blobs(t)); n != tt.wantStored {
				t.Errorf("store holds %d blobs, want %d", n, tt.wantStored)
			}
			if tt.wantErr != nil || tt.wantIs != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, s := range tt.wantErr {
					if s = strings.ReplaceAll(s, "URL", url); !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("error %q is not %v", err, tt.wantIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d != good || size != int64(len(body)) {
				t.Errorf("got %s, %d; want %s, %d", d, size, good, len(body))
			}
		})
	}
}

func TestFetchStatusError(t *testing.T) {
	srv := newServer(t, status(http.StatusForbidden))
	_, _, err := testFetcher(new(bytes.Buffer)).Fetch(context.Background(), newDirStore(t), srv.URL+"/x", "")
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 403 {
		t.Fatalf("err = %v, want a StatusError 403", err)
	}
}

func TestFetchMirror(t *testing.T) {
	body := payload()
	for _, aDown := range []bool{false, true} {
		t.Run(fmt.Sprintf("origin down %v", aDown), func(t *testing.T) {
			a := newServer(t, serve([]byte("the origin must not be asked")))
			b := newServer(t, func(n int32, w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/mirror/k8s/release/v1.31.0/kubelet" {
					http.NotFound(w, r)
					return
				}
				serve(body)(n, w, r)
			})
			origin := a.URL + "/dl"
			if aDown {
				a.Close()
			}
			var logs bytes.Buffer
			f := testFetcher(&logs)
			m, err := ParseMirror(origin + "=" + b.URL + "/mirror/k8s/")
			if err != nil {
				t.Fatal(err)
			}
			f.Mirrors = []Mirror{{From: "http://other.invalid", To: "http://127.0.0.1:1"}, m}
			url := origin + "/release/v1.31.0/kubelet"
			d, _, err := f.Fetch(context.Background(), newDirStore(t), url, "")
			if err != nil {
				t.Fatal(err)
			}
			if d != digestOf(body) {
				t.Errorf("digest %s, want %s", d, digestOf(body))
			}
			if a.reqs.Load() != 0 || b.reqs.Load() != 1 {
				t.Errorf("origin saw %d requests, mirror %d; want 0 and 1", a.reqs.Load(), b.reqs.Load())
			}
			mirrored := b.URL + "/mirror/k8s/release/v1.31.0/kubelet"
			if l := logs.String(); !strings.Contains(l, url) || !strings.Contains(l, mirrored) {
				t.Errorf("log does not name both URLs:\n%s", l)
			}

			// An error names both.
			_, _, err = f.Fetch(context.Background(), newDirStore(t), origin+"/nope", "")
			if err == nil || !strings.Contains(err.Error(), b.URL+"/mirror/k8s/nope (mirror of "+origin+"/nope)") {
				t.Errorf("err = %v", err)
			}
		})
	}
}

func TestFetchCancel(t *testing.T) {
	release := make(chan struct{})
	srv := newServer(t, func(_ int32, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	store := newDirStore(t)
	start := time.Now()
	_, _, err := testFetcher(new(bytes.Buffer)).Fetch(ctx, store, srv.URL+"/f", "")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	if srv.reqs.Load() != 1 || len(store.blobs(t)) != 0 {
		t.Errorf("requests %d, blobs %d; want 1 and 0", srv.reqs.Load(), len(store.blobs(t)))
	}
}

func TestFetchStall(t *testing.T) {
	srv := newServer(t, func(_ int32, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	f := testFetcher(new(bytes.Buffer))
	f.ReadTimeout = 100 * time.Millisecond
	f.Attempts = 2
	_, _, err := f.Fetch(context.Background(), newDirStore(t), srv.URL+"/f", "")
	if err == nil || !strings.Contains(err.Error(), "no data for 100ms (after 2 attempts)") {
		t.Fatalf("err = %v", err)
	}
	if n := srv.reqs.Load(); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestFetchBadURL(t *testing.T) {
	for _, u := range []string{"file:///etc/passwd", "dl.k8s.io/x", "http://"} {
		_, _, err := new(Fetcher).Fetch(context.Background(), newDirStore(t), u, "")
		if err == nil || !strings.HasPrefix(err.Error(), "fetch "+u+": ") {
			t.Errorf("%s: err = %v", u, err)
		}
	}
}

// TestFetchCachedSize checks the size of a cached blob in a store that
// cannot tell it without reading.
func TestFetchCachedSize(t *testing.T) {
	store := newDirStore(t)
	d := store.put(t, []byte("12345"))
	got, size, err := new(Fetcher).Fetch(context.Background(), store, "http://127.0.0.1:1/x", d)
	if err != nil || got != d || size != 5 {
		t.Fatalf("got %s, %d, %v", got, size, err)
	}
}

func TestFetchUnreachable(t *testing.T) {
	srv := newServer(t, serve(payload()))
	url := srv.URL + "/f"
	srv.Close()
	var logs bytes.Buffer
	_, _, err := testFetcher(&logs).Fetch(context.Background(), newDirStore(t), url, "")
	if err == nil || !strings.HasPrefix(err.Error(), "fetch "+url+": ") || !strings.Contains(err.Error(), "(after 3 attempts)") {
		t.Fatalf("err = %v", err)
	}
	if n := strings.Count(logs.String(), "fetch: retrying"); n != 2 {
		t.Errorf("%d retries logged, want 2:\n%s", n, logs.String())
	}
}
