package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/labbake/labbake/internal/iox"
)

// A build's work dir is BASE/build-ROLE-N, with the lock file
// BASE/build-ROLE-N.lock next to it, BASE being CACHE/tmp or, where memory
// allows, a directory on /dev/shm (see workBases) (N is random digits). The lock
// file is created and locked before the dir exists and removed after it is
// gone, so a work dir whose lock is free belongs to a build that died. Both
// carry a marker written at creation: the lock file holds workLockContent,
// the dir holds the file workMarkerName with workMarkerContent. A sweep
// removes a dir only with its marker, and a lock file only with its
// content, so nothing labbake did not write there is ever removed, whatever
// --cache points at.
const (
	workPrefix        = "build-"
	workLockSuffix    = ".lock"
	workLockContent   = "labbake work dir lock: the build holding its flock owns the dir of the same name\n"
	workMarkerName    = ".labbake-workdir"
	workMarkerContent = "labbake work dir: removed with its lock file when its build ends\n"
)

// WorkDir makes a scratch directory for one build of role under
// cacheDir/tmp (or in memory, see workBases) and returns it with release, which removes it (call it once
// the build is done; it is safe to call more than once). Work dirs that
// builds killed earlier left behind are removed first: only those that are
// provably labbake's (see above) and not held by a live build.
func WorkDir(cacheDir, role string) (dir string, release func(), err error) {
	if cacheDir == "" {
		return "", nil, errors.New("cache: work dir: empty cache directory name")
	}
	if role == "" || strings.ContainsAny(role, `/\`) || strings.HasPrefix(role, ".") {
		return "", nil, fmt.Errorf("cache: work dir: role %q cannot be part of a file name", role)
	}
	if _, err := claim(cacheDir); err != nil {
		return "", nil, fmt.Errorf("cache: work dir: %w", err)
	}
	base, bases := workBases(cacheDir)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", nil, fmt.Errorf("cache: work dir: %w", err)
	}
	for _, b := range bases {
		sweepWorkDirs(b)
	}

	lock, err := os.CreateTemp(base, workPrefix+role+"-*"+workLockSuffix)
	if err != nil {
		return "", nil, fmt.Errorf("cache: work dir: %w", err)
	}
	dir = strings.TrimSuffix(lock.Name(), workLockSuffix)
	fail := func(err error) (string, func(), error) {
		_ = os.Remove(dir)
		_ = os.Remove(lock.Name())
		_ = lock.Close()
		return "", nil, fmt.Errorf("cache: work dir %s: %w", dir, err)
	}
	// A sweep may hold the new file's lock for a moment: it sees no marker
	// in it yet and leaves it alone.
	if err := iox.Flock(context.Background(), lock, nil); err != nil {
		return fail(err)
	}
	if _, err := lock.WriteString(workLockContent); err != nil {
		return fail(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(filepath.Join(dir, workMarkerName), []byte(workMarkerContent), 0o644); err != nil {
		return fail(err)
	}
	released := false
	return dir, func() {
		if released {
			return
		}
		released = true
		removeWorkDir(dir)
		_ = os.Remove(lock.Name())
		_ = lock.Close()
	}, nil
}

// sweepWorkDirs removes the work dirs in base whose build is gone: those
// with labbake's name whose lock is free and whose lock file and dir carry
// labbake's markers. Anything else is left alone.
func sweepWorkDirs(base string) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range entries {
		if isWorkLockName(e.Name()) && e.Type().IsRegular() {
			sweepWorkDir(filepath.Join(base, e.Name()))
		}
	}
}

// isWorkLockName reports whether name is build-ROLE-DIGITS.lock.
func isWorkLockName(name string) bool {
	stem, ok := strings.CutSuffix(name, workLockSuffix)
	if !ok || !strings.HasPrefix(stem, workPrefix) {
		return false
	}
	i := strings.LastIndexByte(stem, '-')
	if i < len(workPrefix)+1 || i == len(stem)-1 { // a role and digits
		return false
	}
	for _, r := range stem[i+1:] {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func sweepWorkDir(lockPath string) {
	f, err := openNoFollow(lockPath)
	if err != nil {
		return
	}
	defer f.Close()
	if ok, _ := iox.TryFlock(f); !ok {
		return // a live build holds it
	}
	// The file at lockPath must still be the one locked (its build removes
	// it, under its lock, before letting go) and must be one labbake wrote.
	if !sameFile(f, lockPath) || !fileHolds(f, workLockContent) {
		return
	}
	removeWorkDir(strings.TrimSuffix(lockPath, workLockSuffix))
	// The lock file goes only once its dir is gone.
	if _, err := os.Lstat(strings.TrimSuffix(lockPath, workLockSuffix)); errors.Is(err, fs.ErrNotExist) {
		_ = os.Remove(lockPath)
	}
}

// fileHolds reports whether the open regular file f holds exactly want.
func fileHolds(f *os.File, want string) bool {
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != int64(len(want)) {
		return false
	}
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, 0); err != nil && err != io.EOF {
		return false
	}
	return string(got) == want
}

// removeWorkDir removes dir if it is a real directory holding labbake's
// work-dir marker: its content first, the marker last, so that a removal
// cut short is finished by the next sweep. An empty dir is removed too (a
// removal was cut short after the marker, or a creation before it).
// Anything else at dir is left alone.
func removeWorkDir(dir string) {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return
	}
	marker := filepath.Join(dir, workMarkerName)
	if !hasContent(marker, workMarkerContent) {
		_ = os.Remove(dir) // only succeeds if empty
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	complete := true
	for _, e := range entries {
		if e.Name() != workMarkerName {
			// RemoveAll does not follow symlinks inside dir.
			if os.RemoveAll(filepath.Join(dir, e.Name())) != nil {
				complete = false
			}
		}
	}
	// The marker goes last, and only when the rest is gone, so that a
	// later sweep can finish the job.
	if complete && os.Remove(marker) == nil {
		_ = os.Remove(dir)
	}
}
