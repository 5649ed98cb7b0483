package source

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labbake/labbake/internal/iox"
)

const (
	drawEvery = 100 * time.Millisecond // at most 10 bars a second
	logEvery  = 10 * time.Second       // a plain progress line this often
	lineWidth = 79                     // columns a bar may use
	barWidth  = 12                     // columns inside the [===>  ] part
	minName   = 20                     // columns a name keeps before the bar goes
	clearLine = "\r\x1b[K"             // back to column 0, erase to the end
)

// progress shows one download on a writer: a bar redrawn in place on a
// terminal, plain lines elsewhere. A nil *progress shows nothing. It is
// used by one goroutine at a time (the one reading the body).
type progress struct {
	verb  [2]string // "fetching", "fetched"
	w     io.Writer
	term  bool
	name  string // the bar's label: the file's name
	where string // the plain lines' label: the URL
	total int64  // -1 if unknown
	n     int64
	now   func() time.Time
	start time.Time
	last  time.Time // of the last bar or plain progress line
}

// newProgress starts showing a download of total bytes (-1 if unknown); a
// nil w shows nothing.
func newProgress(w io.Writer, term bool, name, where string, total int64, attempt int, now func() time.Time) *progress {
	if w == nil {
		return nil
	}
	t := now()
	p := &progress{verb: [2]string{"fetching", "fetched"}, w: w, term: term, name: name, where: where, total: total, now: now, start: t, last: t}
	if term {
		p.draw(t)
		return p
	}
	size := "size unknown"
	if total >= 0 {
		size = iox.Bytes(total)
	}
	note := ""
	if attempt > 1 {
		note = fmt.Sprintf(", attempt %d", attempt)
	}
	p.printf("%s %s (%s%s)\n", p.verb[0], where, size, note)
	return p
}

// add counts n more bytes read and redraws when it is time.
func (p *progress) add(n int64) {
	if p == nil {
		return
	}
	p.n += n
	t := p.now()
	switch {
	case p.term && t.Sub(p.last) >= drawEvery:
		p.last = t
		p.draw(t)
	case !p.term && t.Sub(p.last) >= logEvery:
		p.last = t
		p.printf("%s %s: %s\n", p.verb[0], p.name, p.status(t, ", ", " / "))
	}
}

// done ends the display of a finished download.
func (p *progress) done() {
	if p == nil {
		return
	}
	if p.term {
		p.printf("%s", clearLine)
		return
	}
	d := p.now().Sub(p.start)
	p.printf("%s %s: %s in %s (%s/s)\n", p.verb[1], p.where, iox.Bytes(p.n), roundDuration(d), iox.Bytes(int64(rate(p.n, d))))
}

// abort ends the display of a failed download; the error tells the rest.
func (p *progress) abort() {
	if p != nil && p.term {
		p.printf("%s", clearLine)
	}
}

func (p *progress) printf(format string, args ...any) {
	_, _ = fmt.Fprintf(p.w, format, args...) // progress is best effort
}

// draw writes the bar: NAME [====>       ] 45% 5.5 MiB/12.3 MiB 1.1 MiB/s ETA 6s
// The name is cut to fit lineWidth; the bar goes first when room is short.
func (p *progress) draw(t time.Time) {
	rest := " " + p.status(t, " ", "/")
	if p.total > 0 {
		k := int(min(p.n, p.total) * barWidth / p.total)
		bar := strings.Repeat("=", k)
		if k < barWidth {
			bar += ">" + strings.Repeat(" ", barWidth-k-1)
		}
		if withBar := " [" + bar + "]" + rest; lineWidth-len(withBar) >= minName {
			rest = withBar
		}
	}
	name := p.name
	if room := lineWidth - len(rest); utf8.RuneCountInString(name) > room {
		r := []rune(name)
		name = string(r[:max(room-3, 0)]) + "..."
	}
	p.printf("\r%s%s\x1b[K", name, rest)
}

// status is "45%<sep>5.5 MiB<slash>12.3 MiB<sep>1.1 MiB/s<sep>ETA 6s", or
// "5.5 MiB<sep>1.1 MiB/s" when the total is unknown.
func (p *progress) status(t time.Time, sep, slash string) string {
	r := rate(p.n, t.Sub(p.start))
	speed := iox.Bytes(int64(r)) + "/s"
	if p.total <= 0 {
		return iox.Bytes(p.n) + sep + speed
	}
	pct := min(p.n*100/p.total, 100)
	eta := "ETA --"
	if r > 0 && p.n <= p.total {
		eta = "ETA " + shortDuration(time.Duration(float64(p.total-p.n)/r*float64(time.Second)))
	}
	return fmt.Sprintf("%d%%%s%s%s%s%s%s%s%s", pct, sep, iox.Bytes(p.n), slash, iox.Bytes(p.total), sep, speed, sep, eta)
}

// rate is bytes per second.
func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// shortDuration formats an ETA: "6s", "4m05s", "2h03m".
func shortDuration(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	default:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
}

// roundDuration rounds an elapsed time for display.
func roundDuration(d time.Duration) time.Duration {
	if d < time.Minute {
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// Progress shows the bytes of some other long job (a Debian base being
// built): a line redrawn in place on a terminal, plain lines every 10 s
// elsewhere. total is -1 when unknown (then no ETA is shown). Nil-safe.
type Progress struct{ p *progress }

// NewProgress starts showing a job; verb and past word the plain lines
// ("building", "built"). A nil w shows nothing.
func NewProgress(w io.Writer, terminal bool, name, verb, past string, total int64) *Progress {
	if w == nil {
		return &Progress{}
	}
	// Announce with the caller's words, then draw with the shared code.
	p := &progress{verb: [2]string{verb, past}, w: w, term: terminal, name: name, where: name, total: total, now: time.Now}
	p.start, p.last = p.now(), p.now()
	if terminal {
		p.draw(p.start)
	} else {
		p.printf("%s %s\n", verb, name)
	}
	return &Progress{p}
}

// Add counts n more bytes.
func (p *Progress) Add(n int64) { p.p.add(n) }

// Done ends the display of a finished job.
func (p *Progress) Done() { p.p.done() }

// Abort ends the display of a failed job.
func (p *Progress) Abort() { p.p.abort() }
