package source

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// clock is a fake time source that tests move by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *clock { return &clock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)} }

func TestProgressPlain(t *testing.T) {
	var buf bytes.Buffer
	c := newClock()
	p := newProgress(&buf, false, "etcd.tar.gz", "https://x/etcd.tar.gz", 20<<20, 1, c.now)
	for range 25 { // 25 s at 400 KiB/s
		c.advance(time.Second)
		p.add(400 << 10)
	}
	p.done()
	want := "fetching https://x/etcd.tar.gz (20.0 MiB)\n" +
		"fetching etcd.tar.gz: 19%, 3.9 MiB / 20.0 MiB, 400.0 KiB/s, ETA 41s\n" +
		"fetching etcd.tar.gz: 39%, 7.8 MiB / 20.0 MiB, 400.0 KiB/s, ETA 31s\n" +
		"fetched https://x/etcd.tar.gz: 9.8 MiB in 25s (400.0 KiB/s)\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}

	buf.Reset()
	p = newProgress(&buf, false, "f", "https://x/f", -1, 2, c.now)
	p.abort()
	if want := "fetching https://x/f (size unknown, attempt 2)\n"; buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

func TestProgressTerminal(t *testing.T) {
	var buf bytes.Buffer
	c := newClock()
	p := newProgress(&buf, true, "kubelet", "https://x/kubelet", 1000<<10, 1, c.now)
	for range 1000 { // 1 s in steps of 1 ms at 1000 KiB/s
		c.advance(time.Millisecond)
		p.add(1 << 10)
	}
	p.done()
	out := buf.String()
	if n := strings.Count(out, "\r"); n < 10 || n > 12 { // the first bar, ≤10 a second, the clearing
		t.Errorf("%d redraws in one second:\n%q", n, out)
	}
	if !strings.HasSuffix(out, clearLine) {
		t.Errorf("does not end with a cleared line: %q", out)
	}
	bars := strings.Split(strings.TrimSuffix(out, clearLine), "\x1b[K")
	if want := "\rkubelet [>           ] 0% 0 B/1.0 MiB 0 B/s ETA --"; bars[0] != want {
		t.Errorf("first bar %q, want %q", bars[0], want)
	}
	if want := "\rkubelet [======>     ] 50% 500.0 KiB/1.0 MiB 1.0 MiB/s ETA 1s"; bars[5] != want {
		t.Errorf("bar at 0.5 s %q, want %q", bars[5], want)
	}
	for _, b := range bars {
		if w := utf8.RuneCountInString(b); w > lineWidth+1 {
			t.Errorf("bar wider than %d: %q", lineWidth, b)
		}
	}

	// Unknown size, and a name too long for the line.
	buf.Reset()
	long := strings.Repeat("very-long-name-", 8) + ".tar.gz"
	p = newProgress(&buf, true, long, "https://x/"+long, -1, 1, c.now)
	c.advance(2 * time.Second)
	p.add(3 << 20)
	p.abort()
	out = buf.String()
	last := strings.Split(out, "\x1b[K")[1]
	if !strings.HasSuffix(last, "... 3.0 MiB 1.5 MiB/s") || utf8.RuneCountInString(last) != lineWidth+1 {
		t.Errorf("unknown size, long name: %q", last)
	}
	if !strings.HasSuffix(out, clearLine) {
		t.Errorf("abort does not clear: %q", out)
	}
}

// Without a writer nothing is shown: the download's progress is nil and
// the job's holds none, and their methods do nothing (they would panic on
// a nil writer otherwise).
func TestProgressNil(t *testing.T) {
	if p := newProgress(nil, true, "a", "b", 1, 1, time.Now); p != nil {
		t.Fatalf("newProgress(nil) = %+v, want nil", p)
	}
	var p *progress
	p.add(1)
	p.done()
	p.abort()
	job := NewProgress(nil, true, "a", "building", "built", 10)
	if job.p != nil {
		t.Fatalf("NewProgress(nil) holds %+v, want nothing", job.p)
	}
	job.Add(5)
	job.Done()
	job.Abort()
	// With a writer the same calls do show something.
	var b strings.Builder
	shown := NewProgress(&b, false, "a", "building", "built", 10)
	shown.Add(5)
	shown.Done()
	if !strings.Contains(b.String(), "building a") || !strings.Contains(b.String(), "built a") {
		t.Errorf("a job with a writer shows %q", b.String())
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", 59 * time.Second: "59s", 65 * time.Second: "1m05s", 3723 * time.Second: "1h02m"} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

// slowServer sends body in 4 pieces 150 ms apart.
func slowServer(t *testing.T, body []byte) *server {
	return newServer(t, func(_ int32, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		q := len(body) / 4
		for i := range 4 {
			end := (i + 1) * q
			if i == 3 {
				end = len(body)
			}
			_, _ = w.Write(body[i*q : end])
			w.(http.Flusher).Flush()
			if i < 3 {
				time.Sleep(150 * time.Millisecond)
			}
		}
	})
}

func TestFetchProgress(t *testing.T) {
	body := payload()
	srv := slowServer(t, body)
	url := srv.URL + "/release/calico.tar.gz"

	var plain bytes.Buffer
	f := testFetcher(new(bytes.Buffer))
	f.Progress = &plain
	if _, _, err := f.Fetch(context.Background(), newDirStore(t), url, ""); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^fetching ` + regexp.QuoteMeta(url) + ` \(131\.8 KiB\)\nfetched ` + regexp.QuoteMeta(url) + `: 131\.8 KiB in [0-9.]+m?s \([0-9.]+ [KM]iB/s\)\n$`)
	if !re.MatchString(plain.String()) {
		t.Errorf("plain progress:\n%s", plain.String())
	}

	var term bytes.Buffer
	f.Progress, f.Terminal = &term, true
	if _, _, err := f.Fetch(context.Background(), newDirStore(t), url, ""); err != nil {
		t.Fatal(err)
	}
	out := term.String()
	if !strings.HasSuffix(out, clearLine) {
		t.Errorf("bar does not end with a cleared line: %q", out)
	}
	if !regexp.MustCompile(`\rcalico\.tar\.gz \[=+>? *\] [1-9][0-9]% [0-9.]+ KiB/131\.8 KiB [0-9.]+ KiB/s ETA [0-9]+s\x1b\[K`).MatchString(out) {
		t.Errorf("bar lacks a part done, bytes or rate: %q", out)
	}
	if n := strings.Count(out, "\r"); n < 4 {
		t.Errorf("%d draws, want the first, one per piece and the clearing: %q", n, out)
	}
}

func TestExportedProgress(t *testing.T) {
	var plain, term bytes.Buffer
	p := NewProgress(&plain, false, "debian bookworm", "building", "built", -1)
	p.Add(5 << 20)
	p.Done()
	if got := plain.String(); !strings.HasPrefix(got, "building debian bookworm\n") || !strings.Contains(got, "built debian bookworm: 5.0 MiB") {
		t.Errorf("plain lines:\n%q", got)
	}
	q := NewProgress(&term, true, "debian bookworm", "building", "built", -1)
	q.Add(1 << 20)
	q.Done()
	if got := term.String(); !strings.HasPrefix(got, "\rdebian bookworm") || !strings.HasSuffix(got, clearLine) {
		t.Errorf("terminal line:\n%q", got)
	}
	var nilp *Progress = NewProgress(nil, true, "x", "a", "b", -1)
	nilp.Add(1)
	nilp.Done()
}
