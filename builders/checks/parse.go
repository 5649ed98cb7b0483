package checks

import (
	"fmt"
	"strconv"
	"strings"
)

// Markers that start the script's console lines.
const (
	ResultMarker = "LABBAKE-CHECK "
	StartMarker  = "LABBAKE-CHECKS start"
	DoneMarker   = "LABBAKE-CHECKS done"
)

// Result is one result line: LABBAKE-CHECK ok|fail KIND "NAME" "DETAIL".
type Result struct {
	Kind   string // units_active, files or commands
	Name   string // the unit, the path, or the command's run string
	OK     bool
	Detail string // "active", "exit 1: …", …
}

// Summary is the done line: LABBAKE-CHECKS done ok=N fail=M.
type Summary struct{ OK, Fail int }

// ParseResult parses a result line; text before the marker (a kernel
// message the line was written into, a carriage return) is ignored.
func ParseResult(line string) (Result, bool) {
	i := strings.Index(line, ResultMarker)
	if i < 0 {
		return Result{}, false
	}
	rest := strings.TrimRight(line[i+len(ResultMarker):], "\r\n")
	status, rest, ok := strings.Cut(rest, " ")
	if !ok || (status != "ok" && status != "fail") {
		return Result{}, false
	}
	kind, rest, ok := strings.Cut(rest, " ")
	if !ok || kind == "" {
		return Result{}, false
	}
	name, rest, ok := unquote(rest)
	if !ok {
		return Result{}, false
	}
	// The detail may be cut off by a console that drops bytes: keep what
	// there is.
	detail, _, _ := unquote(strings.TrimLeft(rest, " "))
	return Result{Kind: kind, Name: name, OK: status == "ok", Detail: detail}, true
}

// ParseSummary parses the done line.
func ParseSummary(line string) (Summary, bool) {
	i := strings.Index(line, DoneMarker)
	if i < 0 {
		return Summary{}, false
	}
	var s Summary
	rest := strings.TrimSpace(line[i+len(DoneMarker):])
	if _, err := fmt.Sscanf(rest, "ok=%d fail=%d", &s.OK, &s.Fail); err != nil {
		return Summary{}, false
	}
	return s, true
}

// ParseStart parses the start line and returns the number of checks.
func ParseStart(line string) (int, bool) {
	i := strings.Index(line, StartMarker)
	if i < 0 {
		return 0, false
	}
	rest := strings.TrimSpace(line[i+len(StartMarker):])
	n, err := strconv.Atoi(strings.TrimPrefix(rest, "n="))
	if err != nil || !strings.HasPrefix(rest, "n=") {
		return 0, false
	}
	return n, true
}

// unquote reads one "…" string with \\ and \" escapes off the front of s
// and returns it and the rest. An unterminated string returns what it has
// and false.
func unquote(s string) (string, string, bool) {
	if !strings.HasPrefix(s, `"`) {
		return "", s, false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), "", false
}

// Kinds of checks, as printed on result lines (the recipe's keys).
const (
	KindUnitsActive = "units_active"
	KindFiles       = "files"
	KindCommands    = "commands"
)
