package machine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/labbake/labbake/builders/qcow2"
	"github.com/labbake/labbake/internal/atomicfile"
	"github.com/labbake/labbake/internal/iox"
)

// Spec is one machine to start.
type Spec struct {
	Name        string
	RunDir      string // absolute
	Image       string // the role image (absolute path)
	ImageSHA256 string // its sha256 (from its manifest)
	Seed        string // its seed ISO
	// VarsTemplate, for UEFI machines, is the OVMF variable store copied to
	// Paths.Vars when that does not exist yet.
	VarsTemplate string
	QEMU         string   // the binary
	Args         []string // QEMU's arguments: daemonized, with Paths' pid file, sockets and overlay
	Accel        string   // recorded for status
	Network      string   // recorded for status
	Ports        map[string]int
	Logger       *slog.Logger
}

// ErrImageChanged means the role image is not the one the machine's
// overlay was made on: the overlay would read as garbage.
var ErrImageChanged = errors.New("the image changed under the machine's overlay")

// Up starts the machine unless it runs already (then it reports so and
// does nothing). The overlay is made first if missing. Two Up of one
// machine at once start one QEMU: the second waits for the first and then
// finds it running.
func Up(ctx context.Context, s Spec) (started bool, err error) {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := atomicfile.MkdirPrivate(s.RunDir, 0o755); err != nil {
		return false, err
	}
	p := PathsFor(s.RunDir, s.Name)
	unlock, err := iox.LockFile(ctx, p.Lock)
	if err != nil {
		return false, err
	}
	defer unlock()
	if _, alive := qemuPID(p); alive {
		return false, nil
	}
	// A QEMU killed a moment ago may still be exiting, holding its disk's
	// lock: the new one would fail to take it.
	if err := waitExited(ctx, p, 10*time.Second); err != nil {
		return false, fmt.Errorf("starting %s: %w", s.Name, err)
	}
	rec, err := readRecord(p.State)
	if err != nil {
		return false, err
	}
	if err := ensureOverlay(ctx, s, p, rec); err != nil {
		return false, err
	}
	if s.VarsTemplate != "" {
		if _, err := os.Stat(p.Vars); errors.Is(err, os.ErrNotExist) {
			b, err := os.ReadFile(s.VarsTemplate)
			if err != nil {
				return false, fmt.Errorf("UEFI variables (install the ovmf package): %w", err)
			}
			if err := atomicfile.WriteFile(p.Vars, b, 0o644); err != nil {
				return false, err
			}
		}
	}
	for _, f := range []string{p.PID, p.QMP, p.Console} {
		os.Remove(f) // stale, from a QEMU that is gone
	}
	cmd := exec.CommandContext(ctx, s.QEMU, s.Args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	// QEMU daemonizes: the process started here exits once the machine is
	// set up, leaving the daemon in its own session.
	log.Debug("starting qemu", "machine", s.Name, "cmd", s.QEMU+" "+strings.Join(s.Args, " "))
	if err := cmd.Run(); err != nil {
		return false, fmt.Errorf("starting %s: %v: %s", s.Name, err, strings.TrimSpace(stderr.String()))
	}
	pid, alive := qemuPID(p)
	if !alive {
		return false, fmt.Errorf("starting %s: QEMU exited at once: %s", s.Name, strings.TrimSpace(stderr.String()))
	}
	r := &Record{
		Name: s.Name, Image: s.Image, ImageSHA256: s.ImageSHA256, Seed: s.Seed, Accel: s.Accel,
		Network: s.Network, Ports: s.Ports, PID: pid, Started: time.Now().UTC(),
	}
	if err := writeRecord(p.State, r); err != nil {
		return true, err
	}
	return true, nil
}

// ensureOverlay makes the overlay when missing: qcow2 with the role image
// as its backing file, by a path relative to the run dir (so the output
// dir can move), written under a temporary name so that an interrupted Up
// leaves none. An existing overlay must sit on the same image bytes.
func ensureOverlay(ctx context.Context, s Spec, p Paths, rec *Record) error {
	if _, err := os.Stat(p.Overlay); err == nil {
		if rec != nil && rec.ImageSHA256 != "" && s.ImageSHA256 != "" && rec.ImageSHA256 != s.ImageSHA256 {
			return fmt.Errorf("%s: %w (%s was rebuilt since the overlay was made): labbake reset %s discards the machine's disk and starts it fresh from the new image", s.Name, ErrImageChanged, s.Image, s.Name)
		}
		return nil
	}
	f, err := os.Open(s.Image)
	if err != nil {
		return fmt.Errorf("%s: %w", s.Name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	img, err := qcow2.Open(f, fi.Size())
	if err != nil {
		return fmt.Errorf("%s: reading %s: %w", s.Name, s.Image, err)
	}
	backing, err := filepath.Rel(s.RunDir, s.Image)
	if err != nil {
		backing = s.Image
	}
	var buf bytes.Buffer
	if err := qcow2.Create(&buf, img.Size(), qcow2.Options{BackingFile: backing, BackingFormat: "qcow2"}); err != nil {
		return fmt.Errorf("%s: overlay: %w", s.Name, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(p.Overlay, buf.Bytes(), 0o644); err != nil {
		return err
	}
	// A new overlay starts a new machine: forget the old record.
	return writeRecord(p.State, &Record{Name: s.Name, Image: s.Image, ImageSHA256: s.ImageSHA256})
}
