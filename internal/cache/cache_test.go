package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/labbake/labbake/internal/iox"
)

func TestBlobHex(t *testing.T) {
	good := "sha256:" + strings.Repeat("0123456789abcdef", 4)
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{good, strings.Repeat("0123456789abcdef", 4), true},
		{"", "", false},
		{"sha256:", "", false},
		{strings.Repeat("0123456789abcdef", 4), "", false},
		{"sha512:" + strings.Repeat("0123456789abcdef", 4), "", false},
		{"sha256:" + strings.Repeat("0123456789ABCDEF", 4), "", false},
		{good + "0", "", false},
		{good[:len(good)-1], "", false},
		{"sha256:" + strings.Repeat("g", 64), "", false},
		{"SHA256:" + strings.Repeat("0123456789abcdef", 4), "", false},
		{"sha256:../../../../etc/passwd" + strings.Repeat("a", 35), "", false},
	}
	for _, tt := range tests {
		got, err := blobHex(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("blobHex(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "cache: ") {
			t.Errorf("blobHex(%q) error %q lacks the cache: prefix", tt.in, err)
		}
	}
}

func TestPutOpenHas(t *testing.T) {
	c := openCache(t)
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"small", []byte("hello\n")},
		{"one buffer", content(1, copyBufSize)},
		{"several buffers", content(2, 3*copyBufSize+17)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := digestOf(tt.data)
			if c.Has(want) {
				t.Fatalf("Has(%s) before Put", want)
			}
			for _, w := range []string{"", want} { // twice: the second Put replaces it with equal bytes
				d, n, err := c.Put(context.Background(), bytes.NewReader(tt.data), w)
				if err != nil {
					t.Fatal(err)
				}
				if d != want || n != int64(len(tt.data)) {
					t.Fatalf("Put = %s, %d; want %s, %d", d, n, want, len(tt.data))
				}
			}
			if !c.Has(want) {
				t.Fatalf("Has(%s) = false after Put", want)
			}
			got, err := readAll(t, c, want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Fatal("Open returned other bytes")
			}
			p, err := c.Path(want)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o444 {
				t.Errorf("blob mode %v, want 0444", fi.Mode().Perm())
			}
			if err := c.Verify(want); err != nil {
				t.Fatal(err)
			}
			if files := ingestFiles(t, c); len(files) != 0 {
				t.Errorf("ingest files left: %v", files)
			}
		})
	}
}

func TestMissingBlob(t *testing.T) {
	c := openCache(t)
	d := digestOf([]byte("nope"))
	_, err := c.Open(d)
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing blob: %v; want ErrNotFound and fs.ErrNotExist", err)
	}
	for name, f := range map[string]func(string) error{
		"Path":   func(d string) error { _, err := c.Path(d); return err },
		"Verify": c.Verify,
		"Remove": c.Remove,
	} {
		if err := f(d); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of a missing blob: %v; want ErrNotFound", name, err)
		}
	}
	for _, bad := range []string{"", "sha256:xyz", "md5:abc"} {
		if c.Has(bad) {
			t.Errorf("Has(%q) = true", bad)
		}
		if _, err := c.Open(bad); err == nil {
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
}

func TestPutWrongDigest(t *testing.T) {
	c := openCache(t)
	data := []byte("the real content")
	wrong := digestOf([]byte("something else"))
	_, _, err := c.Put(context.Background(), bytes.NewReader(data), wrong)
	if !errors.Is(err, iox.ErrDigestMismatch) {
		t.Fatalf("Put with a wrong digest: %v; want ErrDigestMismatch", err)
	}
	for _, d := range []string{wrong, digestOf(data)} {
		if !strings.Contains(err.Error(), d) {
			t.Errorf("error %q does not name %s", err, d)
		}
		if c.Has(d) {
			t.Errorf("%s stored after a failed Put", d)
		}
	}
	if blobs, _ := c.List(); len(blobs) != 0 {
		t.Errorf("List after a failed Put: %v", blobs)
	}
	if files := ingestFiles(t, c); len(files) != 0 {
		t.Errorf("ingest files left: %v", files)
	}
	if _, _, err := c.Put(context.Background(), bytes.NewReader(data), "sha256:bad"); err == nil {
		t.Error("Put with a malformed want succeeded")
	}
}

type failingReader struct {
	r     io.Reader
	after int
	n     int
	err   error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n >= f.after {
		return 0, f.err
	}
	p = p[:min(len(p), f.after-f.n)]
	n, err := f.r.Read(p)
	f.n += n
	return n, err
}

// cancelReader cancels its context after some bytes and goes on reading.
type cancelReader struct {
	r      io.Reader
	after  int
	n      int
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	if c.n >= c.after {
		c.cancel()
	}
	return n, err
}

func TestPutInterrupted(t *testing.T) {
	data := content(3, 5<<20)
	errBoom := errors.New("boom")
	tests := []struct {
		name    string
		reader  func(cancel context.CancelFunc) io.Reader
		wantErr error
	}{
		{"reader error", func(context.CancelFunc) io.Reader {
			return &failingReader{r: bytes.NewReader(data), after: 2 << 20, err: errBoom}
		}, errBoom},
		{"ctx cancelled mid-stream", func(cancel context.CancelFunc) io.Reader {
			return &cancelReader{r: bytes.NewReader(data), after: 2 << 20, cancel: cancel}
		}, context.Canceled},
		{"ctx cancelled at the last byte", func(cancel context.CancelFunc) io.Reader {
			return &cancelReader{r: bytes.NewReader(data), after: len(data), cancel: cancel}
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := openCache(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, _, err := c.Put(ctx, tt.reader(cancel), "")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Put: %v; want %v", err, tt.wantErr)
			}
			if c.Has(digestOf(data)) {
				t.Error("interrupted Put stored a blob")
			}
			if blobs, _ := c.List(); len(blobs) != 0 {
				t.Errorf("blobs after an interrupted Put: %v", blobs)
			}
			if files := ingestFiles(t, c); len(files) != 0 {
				t.Errorf("ingest files left: %v", files)
			}
		})
	}
}

// A Put whose process is killed leaves an ingest file that only the next
// Open removes, and no blob.
func TestPutKilled(t *testing.T) {
	c := openCache(t)
	cmd, _, out := helper(t, "hang-put", c.Dir())
	waitLine(t, out, "started")
	if files := ingestFiles(t, c); len(files) != 1 {
		t.Fatalf("ingest files during the Put: %v; want one", files)
	}
	// A concurrent Open must leave the live writer's file alone.
	if _, err := Open(c.Dir(), nil); err != nil {
		t.Fatal(err)
	}
	if files := ingestFiles(t, c); len(files) != 1 {
		t.Fatalf("Open removed the ingest file of a live Put: %v", files)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if blobs, _ := c.List(); len(blobs) != 0 {
		t.Errorf("blobs after a killed Put: %v", blobs)
	}
	if _, err := Open(c.Dir(), nil); err != nil {
		t.Fatal(err)
	}
	if files := ingestFiles(t, c); len(files) != 0 {
		t.Errorf("ingest files left after Open: %v", files)
	}
}

func TestConcurrentPutGoroutines(t *testing.T) {
	c := openCache(t)
	shared := content(10, 2<<20)
	var wg sync.WaitGroup
	errs := make(chan error, 8*6)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 3 {
				own := content(uint64(100+10*g+i), 256<<10)
				for _, data := range [][]byte{shared, own} {
					d, _, err := c.Put(context.Background(), bytes.NewReader(data), digestOf(data))
					if err == nil && d != digestOf(data) {
						err = fmt.Errorf("Put = %s, want %s", d, digestOf(data))
					}
					if err == nil {
						// A reader must always see complete content.
						var got []byte
						got, err = readAll(t, c, digestOf(shared))
						if err == nil && !bytes.Equal(got, shared) {
							err = errors.New("shared blob read back wrong")
						}
					}
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	blobs, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(blobs) != 1+8*3 {
		t.Errorf("%d blobs, want %d", len(blobs), 1+8*3)
	}
	problems, err := c.VerifyAll(context.Background())
	if err != nil || len(problems) != 0 {
		t.Errorf("VerifyAll = %v, %v", problems, err)
	}
	if files := ingestFiles(t, c); len(files) != 0 {
		t.Errorf("ingest files left: %v", files)
	}
}

func TestConcurrentPutProcesses(t *testing.T) {
	c := openCache(t)
	const n = 10
	var cmds []*exec.Cmd
	for id := range 2 {
		cmd, stdin, _ := helper(t, "put", c.Dir(), "N="+strconv.Itoa(n), "ID="+strconv.Itoa(id))
		_ = stdin.Close()
		cmds = append(cmds, cmd)
	}
	// Meanwhile this process puts the shared content too.
	for i := range n {
		mustPut(t, c, content(uint64(i), 300<<10))
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	blobs, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(blobs) != 3*n {
		t.Errorf("%d blobs, want %d", len(blobs), 3*n)
	}
	problems, err := c.VerifyAll(context.Background())
	if err != nil || len(problems) != 0 {
		t.Errorf("VerifyAll = %v, %v", problems, err)
	}
	if files := ingestFiles(t, c); len(files) != 0 {
		t.Errorf("ingest files left: %v", files)
	}
}

func TestCorruption(t *testing.T) {
	c := openCache(t)
	good := mustPut(t, c, content(20, 1<<20))
	data := content(21, 3<<20+5)
	bad := mustPut(t, c, data)
	p := c.blobPath(bad[len("sha256:"):])
	flipByte(t, p, len(data)/2)

	// Open's reader returns the bytes but errors at EOF.
	got, err := readAll(t, c, bad)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("reading a corrupt blob: %v; want ErrCorrupt", err)
	}
	if len(got) != len(data) {
		t.Errorf("read %d bytes before the error, want %d", len(got), len(data))
	}
	for _, s := range []string{bad, p} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
	if _, err := c.Path(bad); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Path of a corrupt blob: %v; want ErrCorrupt", err)
	}
	if err := c.Verify(bad); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Verify of a corrupt blob: %v; want ErrCorrupt", err)
	}
	if err := c.Verify(good); err != nil {
		t.Errorf("Verify of a good blob: %v", err)
	}
	problems, err := c.VerifyAll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || problems[0].Digest != bad || problems[0].Path != p || !errors.Is(problems[0].Err, ErrCorrupt) {
		t.Errorf("VerifyAll = %v; want exactly %s", problems, bad)
	}

	if err := c.Remove(bad); err != nil {
		t.Fatal(err)
	}
	if c.Has(bad) {
		t.Error("Has after Remove")
	}
	mustPut(t, c, data)
	if err := c.Verify(bad); err != nil {
		t.Errorf("Verify after re-Put: %v", err)
	}
	if _, err := c.Path(bad); err != nil {
		t.Errorf("Path after re-Put: %v", err)
	}
	if problems, err := c.VerifyAll(context.Background()); err != nil || len(problems) != 0 {
		t.Errorf("VerifyAll after re-Put = %v, %v", problems, err)
	}
}

// Path verifies once per process: corruption after the first Path goes
// unnoticed by Path, but not by Verify.
func TestPathVerifiesOnce(t *testing.T) {
	c := openCache(t)
	data := content(22, 1<<20)
	d := mustPut(t, c, data)
	p, err := c.Path(d)
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, p, 10)
	if _, err := c.Path(d); err != nil {
		t.Errorf("second Path verified again: %v", err)
	}
	if err := c.Verify(d); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Verify: %v; want ErrCorrupt", err)
	}
	if _, err := c.Path(d); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Path after a failed Verify: %v; want ErrCorrupt", err)
	}
}

func flipByte(t *testing.T, path string, off int) {
	t.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], int64(off)); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b[:], int64(off)); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyAllProblems(t *testing.T) {
	c := openCache(t)
	d := mustPut(t, c, []byte("kept"))
	missing := digestOf([]byte("never stored"))
	if err := c.SetRef("ok", d); err != nil {
		t.Fatal(err)
	}
	if err := c.SetRef("dangling", missing); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(c.blobDir(), "stray")
	if err := os.WriteFile(stray, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	problems, err := c.VerifyAll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 2 {
		t.Fatalf("problems: %v; want the dangling ref and the stray file", problems)
	}
	var sawRef, sawStray bool
	for _, p := range problems {
		switch {
		case p.Digest == missing && errors.Is(p.Err, ErrNotFound) && strings.Contains(p.Err.Error(), `"dangling"`):
			sawRef = true
		case p.Path == stray:
			sawStray = true
		}
	}
	if !sawRef || !sawStray {
		t.Errorf("problems: %v", problems)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.VerifyAll(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("VerifyAll with a cancelled ctx: %v", err)
	}
}

func TestRefs(t *testing.T) {
	c := openCache(t)
	d1 := mustPut(t, c, []byte("one"))
	d2 := mustPut(t, c, []byte("two"))
	steps := []struct {
		op     string // set, remove
		key, d string
	}{
		{"set", "debian:sha256:" + strings.Repeat("a", 64), d1},
		{"set", "url:https://example.org/x.tar.gz?a=b", d2},
		{"set", "weird key with / and ..", d1},
		{"set", "debian:sha256:" + strings.Repeat("a", 64), d2}, // repoint
		{"remove", "weird key with / and ..", ""},
		{"remove", "never set", ""},
	}
	want := map[string]string{}
	for _, s := range steps {
		switch s.op {
		case "set":
			if err := c.SetRef(s.key, s.d); err != nil {
				t.Fatal(err)
			}
			want[s.key] = s.d
		case "remove":
			if err := c.RemoveRef(s.key); err != nil {
				t.Fatal(err)
			}
			delete(want, s.key)
		}
		got, err := c.Refs()
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after %s %q: Refs = %v, want %v", s.op, s.key, got, want)
		}
		for k, d := range want {
			if got, ok, err := c.Ref(k); err != nil || !ok || got != d {
				t.Fatalf("Ref(%q) = %q, %v, %v; want %q", k, got, ok, err, d)
			}
		}
	}
	if _, ok, err := c.Ref("never set"); ok || err != nil {
		t.Errorf("Ref of an unset key = %v, %v", ok, err)
	}
	if err := c.SetRef("", d1); err == nil {
		t.Error("SetRef with an empty key succeeded")
	}
	if err := c.SetRef("k", "sha256:short"); err == nil {
		t.Error("SetRef with a bad digest succeeded")
	}
	blobs, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		var wantKeys []string
		for k, d := range want {
			if d == b.Digest {
				wantKeys = append(wantKeys, k)
			}
		}
		slices.Sort(wantKeys)
		if !slices.Equal(b.Refs, wantKeys) {
			t.Errorf("List: %s has refs %v, want %v", b.Digest, b.Refs, wantKeys)
		}
		if b.Size != 3 || b.ModTime.IsZero() {
			t.Errorf("List: %+v", b)
		}
	}
	if !slices.IsSortedFunc(blobs, func(a, b Blob) int { return strings.Compare(a.Digest, b.Digest) }) {
		t.Error("List is not sorted by digest")
	}
	if files := ingestFiles(t, c); len(files) != 0 {
		t.Errorf("ingest files left: %v", files)
	}
}

func TestPrune(t *testing.T) {
	c := openCache(t)
	referenced := mustPut(t, c, content(30, 1000))
	kept := mustPut(t, c, content(31, 2000))
	gone1 := mustPut(t, c, content(32, 3000))
	gone2 := mustPut(t, c, content(33, 4000))
	missing := digestOf([]byte("missing"))
	for k, d := range map[string]string{"ref": referenced, "dangling": missing} {
		if err := c.SetRef(k, d); err != nil {
			t.Fatal(err)
		}
	}
	var asked []string
	removed, freed, err := c.Prune(func(d string) bool {
		asked = append(asked, d)
		return d == kept
	})
	if err != nil {
		t.Fatal(err)
	}
	if removed != 2 || freed != 7000 {
		t.Errorf("Prune = %d, %d; want 2, 7000", removed, freed)
	}
	for d, want := range map[string]bool{referenced: true, kept: true, gone1: false, gone2: false} {
		if c.Has(d) != want {
			t.Errorf("Has(%s) = %v after Prune, want %v", d, !want, want)
		}
	}
	if slices.Contains(asked, referenced) {
		t.Error("keep was asked about a referenced blob")
	}
	refs, err := c.Refs()
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 1 || refs["ref"] != referenced {
		t.Errorf("refs after Prune: %v; want only the one with a blob", refs)
	}
	// Prune leaves a Put in progress alone and the tmp dir of builds too.
	tmp := filepath.Join(c.Dir(), "tmp", "build-1")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := c.newIngest("put")
	if err != nil {
		t.Fatal(err)
	}
	defer in.discard()
	removed, freed, err = c.Prune(nil)
	if err != nil || removed != 1 || freed != 2000 {
		t.Errorf("Prune(nil) = %d, %d, %v; want 1, 2000", removed, freed, err)
	}
	if _, err := os.Stat(in.path); err != nil {
		t.Errorf("Prune touched an ingest file: %v", err)
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Errorf("Prune touched tmp: %v", err)
	}
	if !c.Has(referenced) {
		t.Error("Prune(nil) removed a referenced blob")
	}
}

func TestOpenLeavesTmpAlone(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp", "scratch")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Error(err)
	}
	for _, d := range []string{"blobs/sha256", "refs", "ingest", "locks"} {
		if fi, err := os.Stat(filepath.Join(c.Dir(), d)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
	if !filepath.IsAbs(c.Dir()) {
		t.Errorf("Dir() = %q, not absolute", c.Dir())
	}
	if _, err := Open("", nil); err == nil {
		t.Error("Open(\"\") succeeded")
	}
}
