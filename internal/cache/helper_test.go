package cache

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as a helper process for the cross-process tests:
// with helperEnv set it runs one helper and exits.
const helperEnv = "LABBAKE_CACHE_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runHelper(mode); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runHelper(mode string) error {
	c, err := Open(os.Getenv("CACHE_DIR"), nil)
	if err != nil {
		return err
	}
	ctx := context.Background()
	switch mode {
	case "put":
		// Puts the shared contents 0..n-1 and contents unique to this process.
		n, _ := strconv.Atoi(os.Getenv("N"))
		id, _ := strconv.Atoi(os.Getenv("ID"))
		for i := range n {
			for _, data := range [][]byte{content(uint64(i), 300<<10), content(uint64(1000*(id+1)+i), 100<<10)} {
				d, _, err := c.Put(ctx, bytes.NewReader(data), digestOf(data))
				if err != nil {
					return err
				}
				fmt.Println(d)
			}
		}
		return nil
	case "hang-put":
		// Sends 1 MiB and then blocks until killed.
		r := io.MultiReader(bytes.NewReader(content(7, 1<<20)), os.Stdin)
		_, _, err := c.Put(ctx, &announceReader{r: r}, "")
		return err
	case "workdir":
		// Makes a work dir with a file in it, prints its path and blocks
		// until killed.
		dir, _, err := WorkDir(os.Getenv("CACHE_DIR"), "master")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "disk.raw"), content(1, 1<<16), 0o644); err != nil {
			return err
		}
		fmt.Println(dir)
		_, _ = io.Copy(io.Discard, os.Stdin)
		return nil
	case "lock":
		unlock, err := c.Lock(ctx, os.Getenv("LOCK_NAME"))
		if err != nil {
			return err
		}
		fmt.Println("locked")
		_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
		unlock()
		return nil
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// announceReader prints "started" once the first 1 MiB went through.
type announceReader struct {
	r    io.Reader
	n    int
	done bool
}

func (a *announceReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	a.n += n
	if !a.done && a.n >= 1<<20 {
		a.done = true
		fmt.Println("started")
	}
	return n, err
}

// helper starts the test binary as a helper process.
func helper(t *testing.T, mode, dir string, env ...string) (*exec.Cmd, io.WriteCloser, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "CACHE_DIR="+dir)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, stdin, bufio.NewReader(stdout)
}

// waitLine reads lines from r until one equals want, or fails after 30 s.
func waitLine(t *testing.T, r *bufio.Reader, want string) {
	t.Helper()
	got := make(chan error, 1)
	go func() {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				got <- err
				return
			}
			if strings.TrimSpace(line) == want {
				got <- nil
				return
			}
		}
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("waiting for %q from helper: %v", want, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("helper did not say %q in 30 s", want)
	}
}

// content returns n deterministic pseudo-random bytes.
func content(seed uint64, n int) []byte {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	s[2], s[3] = byte(seed>>16), byte(seed>>24)
	r := rand.NewChaCha8(s)
	b := make([]byte, n)
	_, _ = r.Read(b)
	return b
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func openCache(t *testing.T) *Cache {
	t.Helper()
	c, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustPut(t *testing.T, c *Cache, data []byte) string {
	t.Helper()
	d, n, err := c.Put(context.Background(), bytes.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(data)) || d != digestOf(data) {
		t.Fatalf("Put = %s, %d; want %s, %d", d, n, digestOf(data), len(data))
	}
	return d
}

func readAll(t *testing.T, c *Cache, d string) ([]byte, error) {
	t.Helper()
	rc, err := c.Open(d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// snapshot describes every file and directory under dir: path, type, mode,
// size, mtime and content hash. Two equal snapshots mean nothing changed.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		line := fmt.Sprintf("%s %v %d", rel, fi.Mode(), fi.Size())
		// Temp files come and go in ingest/: only its mtime may change.
		if rel != "ingest" {
			line += fmt.Sprintf(" %d", fi.ModTime().UnixNano())
		}
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += " " + digestOf(data)
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func ingestFiles(t *testing.T, c *Cache) []string {
	t.Helper()
	entries, err := os.ReadDir(c.ingestDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
