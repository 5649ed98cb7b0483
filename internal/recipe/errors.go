package recipe

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Pos is a place in a file of the lab. File is the slash path relative to
// the lab directory ("recipes/master.yaml"); Line and Col count from 1 and
// refer to the template source, not to its rendered text. A zero Line means
// the whole file; a zero Col the whole line.
type Pos struct {
	File string
	Line int
	Col  int
}

// String formats p as FILE:LINE:COL, leaving out a zero line or column.
func (p Pos) String() string {
	switch {
	case p.Line <= 0:
		return p.File
	case p.Col <= 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	default:
		return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
	}
}

// Error is one problem found in a lab, with where it is and the path of the
// field it concerns ("units[1].name"; empty for template and YAML syntax
// errors).
type Error struct {
	Pos   Pos
	Field string
	Msg   string
}

// Error formats e as "FILE:LINE:COL: FIELD: MSG", or "FILE:LINE:COL: MSG"
// when e has no field.
func (e *Error) Error() string {
	if e.Field == "" {
		return e.Pos.String() + ": " + e.Msg
	}
	return e.Pos.String() + ": " + e.Field + ": " + e.Msg
}

// ErrorList is every problem found in a lab. Load and Lab.Recipe return
// it sorted by file, line and column.
type ErrorList []*Error

// Error prints one problem a line, sorted by file, line and column.
func (l ErrorList) Error() string {
	s := slices.Clone(l)
	s.sort()
	lines := make([]string, len(s))
	for i, e := range s {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (l ErrorList) sort() {
	slices.SortStableFunc(l, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(a.Pos.File, b.Pos.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Col, b.Pos.Col),
		)
	})
}

// errs gathers problems while loading.
type errs struct {
	list ErrorList
}

func (e *errs) add(pos Pos, field, format string, args ...any) {
	e.list = append(e.list, &Error{Pos: pos, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (e *errs) addErr(err *Error) {
	if err != nil {
		e.list = append(e.list, err)
	}
}

func (e *errs) failed() bool { return len(e.list) > 0 }

// err returns the sorted list, without exact duplicates, or nil when no
// problem was found.
func (e *errs) err() error {
	if len(e.list) == 0 {
		return nil
	}
	e.list.sort()
	seen := make(map[Error]bool, len(e.list))
	out := make(ErrorList, 0, len(e.list))
	for _, x := range e.list {
		if seen[*x] {
			continue
		}
		seen[*x] = true
		out = append(out, x)
	}
	return out
}
