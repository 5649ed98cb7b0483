package secrets

import (
	"bufio"
	"context"
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/labbake/labbake/builders/tree"
)

// TestScanThroughput applies the tar named by LABBAKE_SECRETS_TAR (for
// example one made from /usr of a Debian host, or a base rootfs), or the
// host directory named by LABBAKE_SECRETS_DIR, and scans it, logging the
// rate and every finding. It is skipped without either variable; run it
// with -v.
func TestScanThroughput(t *testing.T) {
	tarPath, dir := os.Getenv("LABBAKE_SECRETS_TAR"), os.Getenv("LABBAKE_SECRETS_DIR")
	if tarPath == "" && dir == "" {
		t.Skip("neither LABBAKE_SECRETS_TAR nor LABBAKE_SECRETS_DIR set")
	}
	tr := tree.New(testEpoch)
	start := time.Now()
	if tarPath != "" {
		f, err := os.Open(tarPath)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		tr.SetOrigin("base " + tarPath)
		if err := tr.ApplyTar(bufio.NewReaderSize(f, 1<<20), "base", t.TempDir()); err != nil {
			t.Fatal(err)
		}
	} else {
		tr.SetOrigin("dir " + dir)
		if err := tr.ApplyDir(dir, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	applied := time.Since(start)
	var bytes int64
	var files int
	for _, e := range tr.Entries() {
		if e.Type == tree.Regular {
			bytes += e.Content.Size
			files++
		}
	}
	for _, warm := range []bool{false, true} {
		start = time.Now()
		found, err := Scan(context.Background(), tr, nil)
		took := time.Since(start)
		if err != nil && !errors.As(err, new(*Error)) {
			t.Fatal(err)
		}
		t.Logf("warm=%v: %d files, %.0f MB in %v with %d workers: %.0f MB/s (assembling took %v)",
			warm, files, float64(bytes)/1e6, took.Round(time.Millisecond), runtime.GOMAXPROCS(0),
			float64(bytes)/1e6/took.Seconds(), applied.Round(time.Millisecond))
		if !warm {
			for _, f := range found {
				t.Logf("finding: %s", f)
			}
		}
	}
}
