//go:build linux

package debian

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runGroup runs cmd in a process group of its own. When ctx is done the
// group gets SIGTERM (mmdebstrap then unmounts and cleans up) and, if it is
// still around after grace, SIGKILL. Whatever is left in the group once cmd
// has exited is killed too. With privateMounts (root only) cmd runs in a
// mount namespace of its own: what it mounts (mmdebstrap in root mode
// mounts /proc, /sys and /dev in its chroot) is never seen by the host and
// goes away with it, even when labbake is killed before it could clean up.
func runGroup(ctx context.Context, cmd *exec.Cmd, grace time.Duration, privateMounts bool) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if privateMounts {
		// Go makes the new namespace's mounts private before the exec.
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	}
	// Do not wait forever for output pipes held open by a stray child.
	cmd.WaitDelay = grace
	if err := cmd.Start(); err != nil {
		return err
	}
	pgid := cmd.Process.Pid
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
	err := cmd.Wait()
	close(done)
	<-stopped
	// Stragglers (a daemon a maintainer script started, a child that
	// ignored SIGTERM) must not outlive the build nor hold its files.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return err
}

// removeWork removes the temporary directory dir. A killed mmdebstrap in
// root mode may leave /proc, /sys and /dev nodes mounted inside its chroot:
// those are detached first, and nothing is removed while anything below dir
// is still mounted, so that removal can never reach into the host's /dev or
// /sys.
func removeWork(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	// Deepest first.
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("unmounting %s: %w", m, err)
		}
	}
	if len(mounts) > 0 {
		if left, err := mountsUnder(dir); err != nil {
			return err
		} else if len(left) > 0 {
			return fmt.Errorf("still mounted below it, not removed: %s", strings.Join(left, ", "))
		}
	}
	return os.RemoveAll(dir)
}

// mountsUnder lists the mount points strictly below dir in this process's
// mount namespace.
func mountsUnder(dir string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if strings.HasPrefix(mp, abs+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for a space …) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
