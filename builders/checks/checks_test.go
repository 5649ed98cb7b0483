package checks

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/labbake/labbake/builders/tree"
)

// fakeSystemctl answers `systemctl show -p PROP --value UNIT` from files in
// $FAKE_UNITS: UNIT holds its ActiveState, or a list of states consumed one
// per call (the last one stays); a missing file is a unit not found.
const fakeSystemctl = `#!/bin/sh
prop=$3 unit=$5
f=$FAKE_UNITS/$unit
if [ ! -f "$f" ]; then
	case $prop in LoadState) echo not-found ;; *) echo inactive ;; esac
	exit 0
fi
case $prop in
LoadState) echo loaded ;;
Result) echo exit-code ;;
ActiveState)
	head -n 1 "$f"
	if [ "$(wc -l <"$f")" -gt 1 ]; then
		tail -n +2 "$f" >"$f.new" && mv "$f.new" "$f"
	fi
	;;
esac
`

// runScript runs the checks script on the host for c, with a fake
// systemctl whose units have the given states, and returns its stdout
// lines and what it wrote to the console.
func runScript(t *testing.T, c Spec, units map[string]string, env ...string) ([]string, string) {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	fake := filepath.Join(dir, "units")
	for _, d := range []string{bin, fake} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(bin, "systemctl"), fakeSystemctl, 0o755)
	for u, s := range units {
		write(filepath.Join(fake, u), s, 0o644)
	}
	script := filepath.Join(dir, "checks")
	write(script, Script, 0o755)
	list := filepath.Join(dir, "checks.list")
	write(list, string(List(c)), 0o644)
	console := filepath.Join(dir, "console")
	cmd := exec.Command("/bin/sh", script)
	cmd.Dir = dir
	cmd.Env = append([]string{
		"PATH=" + bin + ":" + os.Getenv("PATH"),
		"FAKE_UNITS=" + fake,
		"LABBAKE_CHECKS_LIST=" + list,
		"LABBAKE_CHECKS_CONSOLE=" + console,
		"LABBAKE_CHECKS_WAIT=3",
		"LABBAKE_CHECKS_CMD_WAIT=0",
		"LABBAKE_CHECKS_CMD_TIMEOUT=2",
	}, env...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("checks script: %v\n%s\n%s", err, out, stderr)
	}
	cons, err := os.ReadFile(console)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(out), "\n"), "\n"), string(cons)
}

func TestScript(t *testing.T) {
	dir := t.TempDir()
	exists := filepath.Join(dir, "exists")
	os.WriteFile(exists, nil, 0o644)
	dangling := filepath.Join(dir, "dangling")
	os.Symlink("/nonexistent", dangling)
	c := Spec{
		UnitsActive: []string{"ok.service", "missing.service", "broken.service", "slow.service", "never.service"},
		Files:       []string{exists, dangling, filepath.Join(dir, "missing")},
		Commands: []Command{
			{Run: "echo hello world", Expect: "hello"},
			{Run: "echo bye", Expect: "hello"},
			{Run: "echo oops; exit 3"},
			{Run: "sleep 5", Expect: ""},
			{Run: `printf 'a"b\\c\td\ne' ; echo "it's"`, Expect: "it's"},
		},
	}
	units := map[string]string{
		"ok.service":     "active\n",
		"broken.service": "failed\n",
		"slow.service":   "activating\nactivating\nactive\n",
		"never.service":  "inactive\n",
	}
	start := time.Now()
	lines, console := runScript(t, c, units)
	took := time.Since(start)
	if console != strings.Join(lines, "\n")+"\n" {
		t.Errorf("console differs from stdout:\n%s\n---\n%s", console, strings.Join(lines, "\n"))
	}
	want := []Result{
		{KindUnitsActive, "ok.service", true, "active"},
		{KindUnitsActive, "missing.service", false, "unit not-found"},
		{KindUnitsActive, "broken.service", false, "failed (exit-code)"},
		{KindUnitsActive, "slow.service", true, "active"},
		{KindUnitsActive, "never.service", false, "inactive after 3s"},
		{KindFiles, exists, true, "exists"},
		{KindFiles, dangling, true, "exists"},
		{KindFiles, filepath.Join(dir, "missing"), false, "no such file"},
		{KindCommands, "echo hello world", true, "hello world"},
		{KindCommands, "echo bye", false, `output lacks "hello": bye`},
		{KindCommands, "echo oops; exit 3", false, "exit 3: oops"},
		{KindCommands, "sleep 5", false, "timed out after 2s: "},
		{KindCommands, `printf 'a"b\\c\td\ne' ; echo "it's"`, true, `a"b\c d eit's`},
	}
	if len(lines) != len(want)+2 {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want)+2, strings.Join(lines, "\n"))
	}
	if n, ok := ParseStart(lines[0]); !ok || n != len(want) {
		t.Errorf("start line %q: n=%d ok=%v", lines[0], n, ok)
	}
	for i, w := range want {
		got, ok := ParseResult(lines[i+1])
		if !ok {
			t.Errorf("line %q does not parse", lines[i+1])
			continue
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("line %q\n got %+v\nwant %+v", lines[i+1], got, w)
		}
	}
	if s, ok := ParseSummary(lines[len(lines)-1]); !ok || s != (Summary{OK: 6, Fail: 7}) {
		t.Errorf("done line %q: %+v %v", lines[len(lines)-1], s, ok)
	}
	if took > 20*time.Second {
		t.Errorf("took %s: the waits are not bounded", took)
	}
}

func TestScriptNoChecks(t *testing.T) {
	lines, _ := runScript(t, Spec{}, nil)
	want := []string{"LABBAKE-CHECKS start n=0", "LABBAKE-CHECKS done ok=0 fail=0"}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("got %q, want %q", lines, want)
	}
}

func TestEnabled(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "checks")
	os.WriteFile(script, []byte(Script), 0o755)
	cmdline := filepath.Join(dir, "cmdline")
	fwcfg := filepath.Join(dir, "raw")
	// A modprobe that loads nothing: the test must not touch the host.
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "modprobe"), []byte("#!/bin/sh\nexit 1\n"), 0o755)
	for _, tc := range []struct {
		name    string
		cmdline string
		fwcfg   string // "" = no file
		want    bool
	}{
		{"plain boot", "BOOT_IMAGE=/vmlinuz root=UUID=x ro console=ttyS0\n", "", false},
		{"kernel argument", "root=UUID=x ro labbake.test=1 console=ttyS0\n", "", true},
		{"kernel argument last", "root=UUID=x labbake.test=1\n", "", true},
		{"other value", "root=UUID=x labbake.test=0 xlabbake.test=1\n", "", false},
		{"fw_cfg", "root=UUID=x\n", "1", true},
		{"fw_cfg off", "root=UUID=x\n", "0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(cmdline, []byte(tc.cmdline), 0o644)
			os.Remove(fwcfg)
			if tc.fwcfg != "" {
				os.WriteFile(fwcfg, []byte(tc.fwcfg), 0o644)
			}
			cmd := exec.Command("/bin/sh", script, "--enabled")
			cmd.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "LABBAKE_CHECKS_CMDLINE=" + cmdline, "LABBAKE_CHECKS_FWCFG=" + fwcfg}
			err := cmd.Run()
			if got := err == nil; got != tc.want {
				t.Errorf("enabled = %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}

func TestList(t *testing.T) {
	got := string(List(Spec{
		UnitsActive: []string{"etcd.service"},
		Files:       []string{"/etc/it's"},
		Commands:    []Command{{Run: "etcdctl endpoint health", Expect: "is healthy"}},
	}))
	want := `# labbake test checks, sourced by /usr/lib/labbake/checks (generated by labbake)
checks_total=3
run_checks() {
	:
	check_unit 'etcd.service'
	check_file '/etc/it'\''s'
	check_command 'etcdctl endpoint health' 'is healthy'
}
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestInstall(t *testing.T) {
	tr := tree.New(time.Unix(1700000000, 0))
	if err := Install(tr, Spec{}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	for p, typ := range map[string]tree.Type{
		"usr/lib/labbake/checks":                                            tree.Regular,
		"usr/lib/labbake/checks.list":                                       tree.Regular,
		"etc/systemd/system/labbake-checks.service":                         tree.Regular,
		"etc/systemd/system/multi-user.target.wants/labbake-checks.service": tree.Symlink,
	} {
		e, ok := tr.Get(p)
		if !ok || e.Type != typ {
			t.Errorf("%s: %+v %v, want a %s", p, e, ok, typ)
		}
	}
	if e, _ := tr.Get("usr/lib/labbake/checks"); e.Mode != 0o755 {
		t.Errorf("script mode %o", e.Mode)
	}
}

func TestParseResult(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Result
		ok   bool
	}{
		{`LABBAKE-CHECK ok units_active "etcd.service" "active"`, Result{"units_active", "etcd.service", true, "active"}, true},
		{"LABBAKE-CHECK fail commands \"echo \\\"x\\\"\" \"exit 1: a\\\\b\"\r", Result{"commands", `echo "x"`, false, `exit 1: a\b`}, true},
		{`[   12.345678] random: crng init done LABBAKE-CHECK ok files "/etc/x" "exists"`, Result{"files", "/etc/x", true, "exists"}, true},
		{`LABBAKE-CHECK fail commands "cut off" "exit 1: trunc`, Result{"commands", "cut off", false, "exit 1: trunc"}, true},
		{`LABBAKE-CHECK maybe files "/x" ""`, Result{}, false},
		{`LABBAKE-CHECK ok files /x`, Result{}, false},
		{`LABBAKE-CHECKS done ok=1 fail=0`, Result{}, false},
		{`nothing here`, Result{}, false},
	} {
		got, ok := ParseResult(tc.line)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseResult(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
	if s, ok := ParseSummary("\x1b[0mLABBAKE-CHECKS done ok=3 fail=1\r"); !ok || s != (Summary{3, 1}) {
		t.Errorf("ParseSummary: %+v %v", s, ok)
	}
	if _, ok := ParseSummary("LABBAKE-CHECKS done"); ok {
		t.Error("ParseSummary accepted a line without counts")
	}
}

// TestScriptNetworkEnvironment: the machine's /etc/network-environment is
// in the commands' environment, and ${NAME} in an expect string is its
// value; other ${…} forms stay as written.
func TestScriptNetworkEnvironment(t *testing.T) {
	env := filepath.Join(t.TempDir(), "network-environment")
	if err := os.WriteFile(env, []byte("NODE_NAME=n1\nNODE_IP=172.18.0.5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Spec{Commands: []Command{
		{Run: "echo host n1 at 172.18.0.5/16", Expect: "host ${NODE_NAME} at ${NODE_IP}/16"},
		{Run: `echo "$NODE_NAME"`, Expect: "n1"},
		{Run: "echo host n2", Expect: "host ${NODE_NAME}"},
		{Run: "echo 'a ${1x} b ${} c'", Expect: "a ${1x} b ${} c"},
		{Run: "echo unset:", Expect: "unset:${NOT_SET_ANYWHERE}"},
	}}
	lines, _ := runScript(t, c, nil, "LABBAKE_CHECKS_ENV="+env)
	want := []bool{true, true, false, true, true}
	for i, w := range want {
		got, ok := ParseResult(lines[i+1])
		if !ok || got.OK != w {
			t.Errorf("check %d: line %q, want ok=%v", i, lines[i+1], w)
		}
	}
}
