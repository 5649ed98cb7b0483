package debian

import (
	"bytes"
	"io"
	"strings"
)

// tailWriter splits what is written to it into lines, passes each complete
// line on to out (if any) and keeps the last n lines for error messages.
// It is not safe for concurrent use; os/exec serialises writes when Stdout
// and Stderr are the same tailWriter.
type tailWriter struct {
	n       int
	out     io.Writer
	partial []byte
	lines   []string // ring buffer of the last n lines
	next    int
	full    bool
}

func newTailWriter(n int, out io.Writer) *tailWriter {
	return &tailWriter{n: n, out: out, lines: make([]string, n)}
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		t.line(t.partial[:i])
		t.partial = t.partial[i+1:]
	}
	// Keep memory bounded if a tool never writes a newline.
	if len(t.partial) > 64<<10 {
		t.line(t.partial)
		t.partial = t.partial[:0]
	}
	return len(p), nil
}

// Flush emits a final line without a trailing newline.
func (t *tailWriter) Flush() {
	if len(t.partial) > 0 {
		t.line(t.partial)
		t.partial = nil
	}
}

func (t *tailWriter) line(b []byte) {
	// Progress bars redraw with \r: keep what is shown last.
	if i := bytes.LastIndexByte(bytes.TrimRight(b, "\r"), '\r'); i >= 0 {
		b = b[i+1:]
	}
	s := strings.TrimRight(string(b), "\r")
	if t.out != nil {
		// A failing progress writer must not fail the build.
		_, _ = io.WriteString(t.out, s+"\n")
	}
	if t.n <= 0 {
		return
	}
	t.lines[t.next] = s
	t.next = (t.next + 1) % t.n
	if t.next == 0 {
		t.full = true
	}
}

// String returns the kept lines, oldest first, joined by newlines.
func (t *tailWriter) String() string {
	var kept []string
	if t.full {
		kept = append(kept, t.lines[t.next:]...)
	}
	kept = append(kept, t.lines[:t.next]...)
	if len(kept) == 0 {
		return "(no output)"
	}
	return strings.Join(kept, "\n")
}
