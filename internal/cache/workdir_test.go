package cache

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestWorkDir(t *testing.T) {
	t.Setenv("LABBAKE_SCRATCH", "disk")
	cacheDir := filepath.Join(t.TempDir(), "cache")
	dir, release, err := WorkDir(cacheDir, "master")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(dir) != filepath.Join(cacheDir, "tmp") || !strings.HasPrefix(filepath.Base(dir), "build-master-") {
		t.Errorf("work dir %s", dir)
	}
	if !hasContent(filepath.Join(dir, workMarkerName), workMarkerContent) || !hasContent(dir+".lock", workLockContent) {
		t.Error("work dir or lock file without its marker")
	}
	if !hasTag(cacheDir) {
		t.Error("a new cache dir made by WorkDir lacks labbake's tag")
	}
	writeFile(t, filepath.Join(dir, "disk", "stage", "etc", "hostname"), "m\n")
	// A second build runs alongside: the first one's dir stays.
	dir2, release2, err := WorkDir(cacheDir, "master")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "disk", "stage", "etc", "hostname")); err != nil {
		t.Errorf("a live build's work dir was swept: %v", err)
	}
	release()
	release() // twice is fine
	release2()
	if names := dirNames(t, filepath.Join(cacheDir, "tmp")); len(names) != 0 {
		t.Errorf("left in tmp after release: %v", names)
	}
	if dir == dir2 {
		t.Error("two builds got the same work dir")
	}
	for _, role := range []string{"", "a/b", "..", ".hidden"} {
		if _, _, err := WorkDir(cacheDir, role); err == nil {
			t.Errorf("WorkDir(%q) succeeded", role)
		}
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// The sweep removes what a dead build left, and only what proves to be
// labbake's: its name, a free lock, the marker in the lock file and the one
// in the dir.
func TestSweepWorkDirs(t *testing.T) {
	t.Setenv("LABBAKE_SCRATCH", "disk")
	lockOK := func(t *testing.T, tmp, name string) { writeFile(t, filepath.Join(tmp, name+".lock"), workLockContent) }
	dirOK := func(t *testing.T, tmp, name string) {
		d := filepath.Join(tmp, name)
		writeFile(t, filepath.Join(d, workMarkerName), workMarkerContent)
		writeFile(t, filepath.Join(d, "disk.raw"), "raw")
		writeFile(t, filepath.Join(d, "blobs", "x"), "x")
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, tmp, outside string)
		gone  []string // removed by the sweep; everything else stays
	}{
		{"a dead build's dir", func(t *testing.T, tmp, outside string) {
			lockOK(t, tmp, "build-master-123")
			dirOK(t, tmp, "build-master-123")
			// A symlink inside points outside: the link goes, not the target.
			os.Symlink(outside, filepath.Join(tmp, "build-master-123", "out"))
		}, []string{"build-master-123", "build-master-123.lock"}},
		{"a role with dashes", func(t *testing.T, tmp, outside string) {
			lockOK(t, tmp, "build-big-node-7")
			dirOK(t, tmp, "build-big-node-7")
		}, []string{"build-big-node-7", "build-big-node-7.lock"}},
		{"a removal cut short after the marker", func(t *testing.T, tmp, outside string) {
			lockOK(t, tmp, "build-master-5")
			os.Mkdir(filepath.Join(tmp, "build-master-5"), 0o755)
		}, []string{"build-master-5", "build-master-5.lock"}},
		{"a lock whose dir is gone", func(t *testing.T, tmp, outside string) {
			lockOK(t, tmp, "build-master-6")
		}, []string{"build-master-6.lock"}},
		{"another program's lock and dir", func(t *testing.T, tmp, outside string) {
			writeFile(t, filepath.Join(tmp, "job.lock"), "")
			writeFile(t, filepath.Join(tmp, "job", "data"), "mine")
			writeFile(t, filepath.Join(tmp, "job2.lock"), workLockContent)
			dirOK(t, tmp, "job2")
		}, nil},
		{"labbake's name without markers", func(t *testing.T, tmp, outside string) {
			writeFile(t, filepath.Join(tmp, "build-master-1.lock"), "")
			writeFile(t, filepath.Join(tmp, "build-master-1", "data"), "mine")
		}, nil},
		{"a lock marker but no dir marker", func(t *testing.T, tmp, outside string) {
			lockOK(t, tmp, "build-master-2")
			writeFile(t, filepath.Join(tmp, "build-master-2", "data"), "mine")
		}, nil},
		{"a dir marker but no lock marker", func(t *testing.T, tmp, outside string) {
			writeFile(t, filepath.Join(tmp, "build-master-3.lock"), "")
			dirOK(t, tmp, "build-master-3")
		}, nil},
		{"a marker with other content", func(t *testing.T, tmp, outside string) {
			writeFile(t, filepath.Join(tmp, "build-master-4.lock"), workLockContent+"\n")
			dirOK(t, tmp, "build-master-4")
		}, nil},
		{"not digits after the role", func(t *testing.T, tmp, outside string) {
			lockOK(t, tmp, "build-master-x1")
			dirOK(t, tmp, "build-master-x1")
		}, nil},
		{"the dir is a symlink", func(t *testing.T, tmp, outside string) {
			lockOK(t, tmp, "build-master-8")
			dirOK(t, outside, "victim")
			os.Symlink(filepath.Join(outside, "victim"), filepath.Join(tmp, "build-master-8"))
		}, nil},
		{"the lock is a symlink", func(t *testing.T, tmp, outside string) {
			writeFile(t, filepath.Join(outside, "lock"), workLockContent)
			os.Symlink(filepath.Join(outside, "lock"), filepath.Join(tmp, "build-master-9.lock"))
			dirOK(t, tmp, "build-master-9")
		}, nil},
		{"the marker is a symlink", func(t *testing.T, tmp, outside string) {
			lockOK(t, tmp, "build-master-10")
			writeFile(t, filepath.Join(outside, "marker"), workMarkerContent)
			writeFile(t, filepath.Join(tmp, "build-master-10", "data"), "mine")
			os.Symlink(filepath.Join(outside, "marker"), filepath.Join(tmp, "build-master-10", workMarkerName))
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cacheDir, outside := t.TempDir(), t.TempDir()
			tmp := filepath.Join(cacheDir, "tmp")
			os.MkdirAll(tmp, 0o755)
			writeFile(t, filepath.Join(outside, "keep"), "outside")
			tc.setup(t, tmp, outside)
			before := dirNames(t, tmp)
			outsideBefore := snapshot(t, outside)
			_, release, err := WorkDir(cacheDir, "master")
			if err != nil {
				t.Fatal(err)
			}
			release()
			after := dirNames(t, tmp)
			for _, n := range before {
				if slices.Contains(tc.gone, n) == slices.Contains(after, n) {
					t.Errorf("%s: still there %v, should be removed %v", n, slices.Contains(after, n), slices.Contains(tc.gone, n))
				}
			}
			for _, n := range after {
				if !slices.Contains(before, n) {
					t.Errorf("%s left behind", n)
				}
			}
			if got := snapshot(t, outside); got != outsideBefore {
				t.Errorf("outside changed:\n%s\n%s", outsideBefore, got)
			}
		})
	}
}

// A build killed with SIGKILL leaves its work dir; the next build removes
// it.
func TestWorkDirOfKilledBuild(t *testing.T) {
	t.Setenv("LABBAKE_SCRATCH", "disk")
	cacheDir := t.TempDir()
	cmd, _, out := helper(t, "workdir", cacheDir)
	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	dead := strings.TrimSpace(line)
	if _, err := os.Stat(filepath.Join(dead, "disk.raw")); err != nil {
		t.Fatal(err)
	}
	// While the helper lives, its dir stays.
	_, release, err := WorkDir(cacheDir, "node")
	if err != nil {
		t.Fatal(err)
	}
	release()
	if _, err := os.Stat(dead); err != nil {
		t.Fatalf("a live build's dir was removed: %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	_, release, err = WorkDir(cacheDir, "node")
	if err != nil {
		t.Fatal(err)
	}
	release()
	if names := dirNames(t, filepath.Join(cacheDir, "tmp")); len(names) != 0 {
		t.Errorf("left after the killed build: %v", names)
	}
}

// TestWorkDirInMemory: with memory to spare, work dirs go to a directory
// of the user's on a tmpfs, and a dead build's work dir in CACHE/tmp is
// still swept; a labbake-UID directory that is not the user's alone is
// not used.
func TestWorkDirInMemory(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "labbake-test-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	root, need := memoryRoot, memoryNeeded
	memoryRoot, memoryNeeded = shm, 0
	t.Cleanup(func() { memoryRoot, memoryNeeded = root, need })

	cacheDir := filepath.Join(t.TempDir(), "cache")
	// A work dir a killed build left on disk, with its free lock.
	if _, err := claim(cacheDir); err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(cacheDir, "tmp", "build-master-123")
	writeFile(t, dead+workLockSuffix, workLockContent)
	writeFile(t, filepath.Join(dead, workMarkerName), workMarkerContent)
	writeFile(t, filepath.Join(dead, "blobs", "1"), "x")

	dir, release, err := WorkDir(cacheDir, "master")
	if err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(shm, "labbake-"+strconv.Itoa(os.Getuid()))
	if !strings.HasPrefix(dir, mine+"/") {
		t.Errorf("work dir %s, want it under %s", dir, mine)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("the dead build's dir on disk was not swept: %v", err)
	}
	release()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("work dir left after release: %v", err)
	}
	// Open to others: not used.
	if err := os.Chmod(mine, 0o777); err != nil {
		t.Fatal(err)
	}
	dir, release, err = WorkDir(cacheDir, "master")
	if err != nil {
		t.Fatal(err)
	}
	release()
	if filepath.Dir(dir) != filepath.Join(cacheDir, "tmp") {
		t.Errorf("work dir %s under a labbake-UID dir others can write", dir)
	}
}
