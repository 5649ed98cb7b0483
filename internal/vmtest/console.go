package vmtest

import (
	"strings"
	"time"

	"github.com/labbake/labbake/builders/checks"
)

// Milestone names, in boot order.
const (
	Firmware  = "firmware"   // the first console output (firmware or boot loader)
	Kernel    = "kernel"     // "Linux version …"
	Initramfs = "initramfs"  // the kernel runs /init of the initramfs
	MultiUser = "multi-user" // systemd reached multi-user.target
	Checks    = "checks"     // labbake-checks printed its done line
)

// Milestone is a point of the boot and when the console showed it,
// counted from QEMU's start.
type Milestone struct {
	Name string
	At   time.Duration
	Line string // the console line that marked it
}

// CheckResult is one check's result as the guest reported it.
type CheckResult = checks.Result

// milestoneRules maps console text to the milestone it marks; the first
// line that holds one of a milestone's strings marks it.
func milestoneRules() []milestoneRule {
	return []milestoneRule{
		{Kernel, []string{"Linux version "}},
		{Initramfs, []string{"Run /init as init process", "Begin: Loading essential drivers"}},
		{MultiUser, []string{"Reached target multi-user.target", "Reached target Multi-User System"}},
		{Checks, []string{checks.DoneMarker}},
	}
}

type milestoneRule struct {
	name string
	any  []string
}

// parser turns console lines into milestones and check results.
type parser struct {
	seen       map[string]bool
	milestones []Milestone
	checks     []CheckResult
	expected   int // from the start line; -1 until seen
	summary    *checks.Summary
	panicked   bool
}

func newParser() *parser { return &parser{seen: map[string]bool{}, expected: -1} }

// event is what one line brought.
type event struct {
	milestones []Milestone
	check      *CheckResult
}

// line parses one console line (without its line ending) seen at.
func (p *parser) line(at time.Duration, s string) event {
	var ev event
	mark := func(name string) {
		if p.seen[name] {
			return
		}
		p.seen[name] = true
		m := Milestone{Name: name, At: at, Line: strings.TrimSpace(clean(s))}
		p.milestones = append(p.milestones, m)
		ev.milestones = append(ev.milestones, m)
	}
	if !p.seen[Firmware] && strings.TrimSpace(clean(s)) != "" {
		mark(Firmware)
	}
	text := clean(s) // systemd colours unit names
	for _, r := range milestoneRules() {
		for _, a := range r.any {
			if strings.Contains(text, a) {
				mark(r.name)
				break
			}
		}
	}
	if r, ok := checks.ParseResult(s); ok {
		p.checks = append(p.checks, r)
		ev.check = &p.checks[len(p.checks)-1]
	}
	if n, ok := checks.ParseStart(s); ok {
		p.expected = n
		// The check unit starts once multi-user.target is reached: with
		// the serial console not the last console=, systemd's own status
		// lines go to tty0 and this is the first sign of it on ttyS0.
		mark(MultiUser)
	}
	if sum, ok := checks.ParseSummary(s); ok {
		p.summary = &sum
	}
	if strings.Contains(s, "Kernel panic - not syncing") {
		p.panicked = true
	}
	return ev
}

// done reports whether the guest printed its done line.
func (p *parser) done() bool { return p.summary != nil }

// passed reports whether the done line came, every check passed, and the
// results add up to what the start line announced.
func (p *parser) passed() bool {
	if p.summary == nil || p.summary.Fail != 0 || p.summary.OK != len(p.checks) {
		return false
	}
	if p.expected >= 0 && p.expected != len(p.checks) {
		return false
	}
	for _, c := range p.checks {
		if !c.OK {
			return false
		}
	}
	return true
}

// clean drops ANSI escape sequences and carriage returns from a console
// line, for display.
func clean(s string) string {
	if !strings.ContainsAny(s, "\x1b\r") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\r':
		case c == 0x1b && i+1 < len(s) && s[i+1] == '[':
			i += 2
			for i < len(s) && (s[i] < 0x40 || s[i] > 0x7e) {
				i++
			}
		case c == 0x1b:
			i++ // a two-byte escape such as ESC c
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// tail keeps the last n lines.
type tail struct {
	n     int
	lines []string
}

func (t *tail) add(s string) {
	t.lines = append(t.lines, clean(s))
	if len(t.lines) > t.n {
		t.lines = t.lines[len(t.lines)-t.n:]
	}
}

func (t *tail) String() string { return strings.Join(t.lines, "\n") }
