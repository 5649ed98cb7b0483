package machine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/labbake/labbake/internal/atomicfile"
)

// Paths are a machine's files under the run dir.
type Paths struct {
	Overlay string // NAME.qcow2: thin overlay of the role image
	PID     string // NAME.pid: written by QEMU (-pidfile)
	QMP     string // NAME.qmp: QMP socket
	Console string // NAME.console: serial console socket
	Log     string // NAME.log: everything the serial console printed
	Vars    string // NAME.vars.fd: UEFI variables (uefi machines)
	State   string // NAME.json: what labbake started
	Lock    string // .NAME.lock: one labbake at a time per machine
}

// PathsFor returns the files of machine name in runDir.
func PathsFor(runDir, name string) Paths {
	j := func(s string) string { return filepath.Join(runDir, name+s) }
	return Paths{
		Overlay: j(".qcow2"), PID: j(".pid"), QMP: j(".qmp"), Console: j(".console"),
		Log: j(".log"), Vars: j(".vars.fd"), State: j(".json"),
		Lock: filepath.Join(runDir, "."+name+".lock"),
	}
}

// Record is the state file: what the machine was started from and with.
type Record struct {
	Name        string         `json:"name"`
	Image       string         `json:"image"`
	ImageSHA256 string         `json:"image_sha256"` // of the image the overlay was made on
	Seed        string         `json:"seed,omitempty"`
	Accel       string         `json:"accel,omitempty"`
	Network     string         `json:"network,omitempty"`
	Ports       map[string]int `json:"ports,omitempty"` // host loopback ports forwarded: "ssh", "api", …
	PID         int            `json:"pid,omitempty"`
	Started     time.Time      `json:"started,omitzero"`
	Stopped     time.Time      `json:"stopped,omitzero"` // set by a clean stop (down)
}

func readRecord(path string) (*Record, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

func writeRecord(path string, r *Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o644)
}

// States a machine can be in.
const (
	Running = "running"
	Stopped = "stopped" // never started, or stopped cleanly
	Crashed = "crashed" // its QEMU went away without a clean stop
)

// Status is what `labbake status` shows of one machine.
type Status struct {
	Name    string         `json:"name"`
	State   string         `json:"state"`
	PID     int            `json:"pid,omitempty"`
	Accel   string         `json:"accel,omitempty"`
	Network string         `json:"network,omitempty"`
	Ports   map[string]int `json:"ports,omitempty"`
	Uptime  time.Duration  `json:"uptime_ns,omitempty"`
	Overlay bool           `json:"overlay"` // its overlay exists (state survives down/up)
	Detail  string         `json:"detail,omitempty"`
}

// Inspect tells the state of machine name in runDir without changing
// anything.
func Inspect(runDir, name string) (Status, error) {
	p := PathsFor(runDir, name)
	st := Status{Name: name, State: Stopped}
	if _, err := os.Stat(p.Overlay); err == nil {
		st.Overlay = true
	}
	rec, err := readRecord(p.State)
	if err != nil {
		return st, err
	}
	if rec != nil {
		st.Accel, st.Network = rec.Accel, rec.Network
	}
	pid, alive := qemuPID(p)
	switch {
	case alive:
		st.State, st.PID = Running, pid
		if rec != nil {
			st.Ports = rec.Ports
			if !rec.Started.IsZero() {
				st.Uptime = time.Since(rec.Started).Round(time.Second)
			}
		}
	case rec != nil && !rec.Started.IsZero() && rec.Stopped.IsZero() && !cleanPowerOff(p.Log):
		// Started, never stopped by labbake, and the guest did not power
		// itself off: its QEMU died.
		st.State = Crashed
		st.Detail = "QEMU exited without a clean shutdown; see " + p.Log
	}
	return st, nil
}

// qemuPID reads the pid file and tells whether that process is alive and
// is the QEMU that wrote it (its command line names the pid file), so that
// a stale pid file whose number was reused is not taken for the machine.
func qemuPID(p Paths) (int, bool) {
	b, err := os.ReadFile(p.PID)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || !bytes.Contains(cmdline, []byte(p.PID)) {
		return pid, false
	}
	// A zombie (a QEMU we started and have not reaped) is gone too.
	if stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat")); err == nil {
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return pid, false
		}
	}
	return pid, syscall.Kill(pid, 0) == nil
}

// waitExited waits until the process of the pid file, if it is still
// there, no longer has the machine's overlay open: a QEMU killed a moment
// ago has already lost its command line (so qemuPID calls it gone) but may
// still hold its files, and the lock QEMU takes on its disk, which a new
// QEMU would then fail to take. A pid reused by another program has no
// such file open.
func waitExited(ctx context.Context, p Paths, timeout time.Duration) error {
	b, err := os.ReadFile(p.PID)
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for holdsFile(pid, p.Overlay) {
		if time.Now().After(deadline) {
			return fmt.Errorf("its previous QEMU (pid %d) still holds %s after %s", pid, p.Overlay, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// holdsFile reports whether process pid has path open.
func holdsFile(pid int, path string) bool {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	want, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false
	}
	if want, err = filepath.Abs(want); err != nil {
		return false
	}
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && target == want {
			return true
		}
	}
	return false
}

// cleanPowerOff reports whether the console log ends with the guest
// kernel powering off (a shutdown from inside the machine).
func cleanPowerOff(log string) bool {
	f, err := os.Open(log)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false
	}
	const tail = 4096
	off := max(st.Size()-tail, 0)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil {
		return false
	}
	return bytes.Contains(b, []byte("reboot: Power down"))
}
