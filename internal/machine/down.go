package machine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/labbake/labbake/internal/iox"
)

// DownResult says how a machine stopped.
type DownResult struct {
	WasRunning bool
	Clean      bool // the guest shut down after the ACPI power button
	// NoQMP says the power button could not be pressed: QEMU's QMP socket
	// did not answer, so QEMU was stopped at once.
	NoQMP bool
	Took  time.Duration // from the request to QEMU's exit
}

// Down presses the machine's ACPI power button over QMP and waits up to
// timeout for QEMU to exit; then it asks QEMU to quit, and kills it if that
// does not work either.
func Down(ctx context.Context, runDir, name string, timeout time.Duration) (DownResult, error) {
	p := PathsFor(runDir, name)
	unlock, err := iox.LockFile(ctx, p.Lock)
	if err != nil {
		return DownResult{}, err
	}
	defer unlock()
	pid, alive := qemuPID(p)
	if !alive {
		return DownResult{}, markStopped(p)
	}
	start := time.Now()
	res := DownResult{WasRunning: true}
	if q, err := dialQMP(ctx, p.QMP); err == nil {
		_, err = q.execute("system_powerdown", nil)
		q.Close()
		if err == nil && waitGone(ctx, p, timeout) {
			res.Clean, res.Took = true, time.Since(start)
			return res, markStopped(p)
		}
		res.NoQMP = err != nil
	} else {
		res.NoQMP = true
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	// Not down in time (or QMP unusable): quit, then kill.
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if q, err := dialQMP(qctx, p.QMP); err == nil {
		q.execute("quit", nil)
		q.Close()
	}
	cancel()
	if !waitGone(ctx, p, 5*time.Second) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return res, fmt.Errorf("killing %s (pid %d): %w", name, pid, err)
		}
		waitGone(ctx, p, 5*time.Second)
	}
	res.Took = time.Since(start)
	return res, markStopped(p)
}

func waitGone(ctx context.Context, p Paths, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if _, alive := qemuPID(p); !alive {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// markStopped records a clean stop so that status says stopped, not
// crashed, and removes the files of the gone process.
func markStopped(p Paths) error {
	for _, f := range []string{p.PID, p.QMP, p.Console} {
		os.Remove(f)
	}
	rec, err := readRecord(p.State)
	if err != nil || rec == nil || rec.Started.IsZero() {
		return err
	}
	rec.Stopped, rec.PID = time.Now().UTC(), 0
	return writeRecord(p.State, rec)
}

// Reset throws the machine's overlay away (it must not be running): the
// next Up starts it fresh from its image, its seed applied anew.
func Reset(ctx context.Context, runDir, name string) (bool, error) {
	p := PathsFor(runDir, name)
	unlock, err := iox.LockFile(ctx, p.Lock)
	if err != nil {
		return false, err
	}
	defer unlock()
	if _, alive := qemuPID(p); alive {
		return false, fmt.Errorf("%s is running: labbake down %s first", name, name)
	}
	existed := false
	for _, f := range []string{p.Overlay, p.Vars, p.State, p.PID, p.Log} {
		err := os.Remove(f)
		if err == nil && f == p.Overlay {
			existed = true
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return existed, err
		}
	}
	return existed, nil
}

// DetachKey (Ctrl-]) ends Attach, as in telnet.
const DetachKey = 0x1d

// Attach connects in and out to the machine's serial console until in
// sends DetachKey or ends, or the machine stops.
func Attach(ctx context.Context, runDir, name string, in io.Reader, out io.Writer) error {
	p := PathsFor(runDir, name)
	if _, alive := qemuPID(p); !alive {
		return fmt.Errorf("%s is not running (labbake up %s)", name, name)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", p.Console)
	if err != nil {
		return fmt.Errorf("console of %s: %w", name, err)
	}
	defer conn.Close()
	done := make(chan error, 2)
	go func() {
		_, err := io.Copy(out, conn)
		done <- err
	}()
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := in.Read(buf)
			for i := 0; i < n; i++ {
				if buf[i] == DetachKey {
					if _, werr := conn.Write(buf[:i]); werr != nil {
						done <- werr
						return
					}
					done <- nil
					return
				}
			}
			if n > 0 {
				if _, werr := conn.Write(buf[:n]); werr != nil {
					done <- werr
					return
				}
			}
			if err != nil {
				done <- nil
				return
			}
		}
	}()
	select {
	case err := <-done:
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		return nil
	}
}
