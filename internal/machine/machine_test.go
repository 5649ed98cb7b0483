package machine

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/labbake/labbake/builders/qcow2"
)

// These tests run real QEMU processes, paused before the firmware runs
// (-S): no guest boots, but every file, socket and signal is real.

func qemuBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		if os.Getenv("LABBAKE_REQUIRE_TOOLS") != "" {
			t.Fatal("qemu-system-x86_64 not installed")
		}
		t.Skip("qemu-system-x86_64 not installed")
	}
	return p
}

// testSpec makes a 64 MiB empty role image and a spec to run it paused.
func testSpec(t *testing.T, runDir, name string) Spec {
	t.Helper()
	image := filepath.Join(filepath.Dir(runDir), "role.qcow2")
	if _, err := os.Stat(image); err != nil {
		var buf bytes.Buffer
		if err := qcow2.Create(&buf, 64<<20, qcow2.Options{}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(image, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := PathsFor(runDir, name)
	return Spec{
		Name: name, RunDir: runDir, Image: image, ImageSHA256: "aaaa", QEMU: qemuBinary(t), Accel: "tcg", Network: "none",
		Args: []string{
			"-name", name, "-machine", "pc", "-accel", "tcg", "-m", "64", "-nodefaults", "-display", "none", "-S",
			"-daemonize", "-pidfile", p.PID,
			"-qmp", "unix:" + p.QMP + ",server=on,wait=off",
			"-chardev", "socket,id=ser0,path=" + p.Console + ",server=on,wait=off,logfile=" + p.Log + ",logappend=on",
			"-serial", "chardev:ser0",
			"-drive", "file=" + p.Overlay + ",format=qcow2,if=virtio",
		},
	}
}

func mustState(t *testing.T, runDir, name, want string) Status {
	t.Helper()
	st, err := Inspect(runDir, name)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != want {
		t.Fatalf("%s: state %s, want %s (%s)", name, st.State, want, st.Detail)
	}
	return st
}

func TestLifecycle(t *testing.T) {
	runDir := filepath.Join(t.TempDir(), "run")
	ctx := context.Background()
	s := testSpec(t, runDir, "m1")
	t.Cleanup(func() { Down(ctx, runDir, "m1", time.Second) })
	mustState(t, runDir, "m1", Stopped)

	// Two Up at once: one QEMU.
	var wg sync.WaitGroup
	starts := make([]bool, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			starts[i], errs[i] = Up(ctx, s)
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("up: %v %v", errs[0], errs[1])
	}
	if starts[0] == starts[1] {
		t.Fatalf("two concurrent Up started %v QEMUs", starts)
	}
	st := mustState(t, runDir, "m1", Running)
	if st.PID == 0 || !st.Overlay || st.Accel != "tcg" {
		t.Errorf("status %+v", st)
	}
	// The overlay is backed by the image by a relative path.
	out, err := exec.Command("qemu-img", "info", "--output=json", "-U", PathsFor(runDir, "m1").Overlay).CombinedOutput()
	if err == nil && !strings.Contains(string(out), `"backing-filename": "../role.qcow2"`) {
		t.Errorf("qemu-img info of the overlay:\n%s", out)
	}
	if started, err := Up(ctx, s); err != nil || started {
		t.Errorf("Up of a running machine: started=%v err=%v", started, err)
	}
	if _, err := Reset(ctx, runDir, "m1"); err == nil {
		t.Error("Reset of a running machine succeeded")
	}

	// A paused guest ignores the power button: Down falls back to quit.
	res, err := Down(ctx, runDir, "m1", 500*time.Millisecond)
	if err != nil || !res.WasRunning || res.Clean {
		t.Fatalf("down: %+v %v", res, err)
	}
	mustState(t, runDir, "m1", Stopped)

	// kill -9: crashed; Up revives it on the same overlay.
	if _, err := Up(ctx, s); err != nil {
		t.Fatal(err)
	}
	st = mustState(t, runDir, "m1", Running)
	syscall.Kill(st.PID, syscall.SIGKILL)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if st, _ := Inspect(runDir, "m1"); st.State != Running {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustState(t, runDir, "m1", Crashed)
	overlay := PathsFor(runDir, "m1").Overlay
	before, err := os.Stat(overlay)
	if err != nil {
		t.Fatal(err)
	}
	if started, err := Up(ctx, s); err != nil || !started {
		t.Fatalf("Up after a crash: %v %v", started, err)
	}
	mustState(t, runDir, "m1", Running)
	if after, err := os.Stat(overlay); err != nil || !os.SameFile(before, after) {
		t.Errorf("Up after a crash did not start on the same overlay: %v", err)
	}
	if _, err := Down(ctx, runDir, "m1", 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}

	// A rebuilt image under the overlay is refused, until reset.
	s.ImageSHA256 = "bbbb"
	if _, err := Up(ctx, s); !errors.Is(err, ErrImageChanged) || !strings.Contains(err.Error(), "labbake reset m1") {
		t.Fatalf("Up on a changed image: %v", err)
	}
	if existed, err := Reset(ctx, runDir, "m1"); err != nil || !existed {
		t.Fatalf("reset: %v %v", existed, err)
	}
	if _, err := os.Stat(PathsFor(runDir, "m1").Overlay); !os.IsNotExist(err) {
		t.Error("reset left the overlay")
	}
	if started, err := Up(ctx, s); err != nil || !started {
		t.Fatalf("Up after reset: %v %v", started, err)
	}
	if _, err := Down(ctx, runDir, "m1", 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

// TestUpCancelled: a cancelled Up leaves no overlay half made.
func TestUpCancelled(t *testing.T) {
	runDir := filepath.Join(t.TempDir(), "run")
	s := testSpec(t, runDir, "m2")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Up(ctx, s); err == nil {
		t.Fatal("a cancelled Up succeeded")
	}
	entries, _ := os.ReadDir(runDir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".qcow2") {
			t.Errorf("left %s", e.Name())
		}
	}
}

// TestStalePID: a pid file naming a live process that is not the
// machine's QEMU (its number reused) is stale: the machine is not
// running, Down has nothing to stop and Up starts it.
func TestStalePID(t *testing.T) {
	runDir := filepath.Join(t.TempDir(), "run")
	ctx := context.Background()
	s := testSpec(t, runDir, "m3")
	t.Cleanup(func() { Down(ctx, runDir, "m3", time.Second) })
	p := PathsFor(runDir, "m3")
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.PID, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustState(t, runDir, "m3", Stopped)
	if res, err := Down(ctx, runDir, "m3", time.Second); err != nil || res.WasRunning {
		t.Fatalf("Down with a stale pid file: %+v %v", res, err)
	}
	if err := os.WriteFile(p.PID, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if started, err := Up(ctx, s); err != nil || !started {
		t.Fatalf("Up with a stale pid file: %v %v", started, err)
	}
	if st := mustState(t, runDir, "m3", Running); st.PID == os.Getpid() {
		t.Errorf("status took the test's own pid for the machine's")
	}
	// With its QMP socket gone, Down cannot press the power button: it
	// stops QEMU at once and says why.
	if err := os.Remove(p.QMP); err != nil {
		t.Fatal(err)
	}
	res, err := Down(ctx, runDir, "m3", time.Minute)
	if err != nil || !res.WasRunning || res.Clean || !res.NoQMP || res.Took > 30*time.Second {
		t.Fatalf("Down without QMP: %+v %v", res, err)
	}
	mustState(t, runDir, "m3", Stopped)
}
