package recipe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

// maxRendered bounds the output of one unit or overlay template; recipe
// files and lab.yaml are bounded by maxYAMLFile.
const maxRendered = 16 << 20

// render executes src as a Go template named name (the file's path relative
// to the lab dir) with data, writing at most limit bytes. missingkey=error
// makes a misspelt key an error instead of "<no value>". Rendering is
// bounded (see budget) and stops when ctx is done.
func render(ctx context.Context, name string, src []byte, data any, limit int) ([]byte, *Error) {
	b := &budget{ctx: ctx}
	t, err := template.New(name).Option("missingkey=error").Funcs(templateFuncs()).Parse(string(src))
	if err != nil {
		return nil, templateError(name, src, err)
	}
	bind(t, b)
	instrument(t)
	buf := limitedBuffer{limit: limit}
	if err := t.Execute(&buf, data); err != nil {
		return nil, templateError(name, src, err)
	}
	return buf.Bytes(), nil
}

type limitedBuffer struct {
	bytes.Buffer
	limit int
}

type outputTooLarge struct{ limit int }

func (e outputTooLarge) Error() string {
	return fmt.Sprintf("output is larger than %s", FormatSize(int64(e.limit)))
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		return 0, outputTooLarge{b.limit}
	}
	return b.Buffer.Write(p)
}

var (
	// tmplLocRe matches what follows "template: NAME:" in a text/template
	// error: LINE, or LINE:COL for execution errors (COL counts bytes from
	// 0), then the message.
	tmplLocRe   = regexp.MustCompile(`(?s)^(\d+)(?::(\d+))?: (.*)$`)
	tmplExecRe  = regexp.MustCompile(`^executing "[^"]*" at `)
	tmplFuncRe  = regexp.MustCompile(`function "([^"]+)" not defined`)
	yamlErrorRe = regexp.MustCompile(`(?s)^line (\d+): (.*)$`)
)

// templateError turns a text/template parse or execution error of the
// template name into an Error at the place it names in src.
func templateError(name string, src []byte, err error) *Error {
	var big outputTooLarge
	if errors.As(err, &big) {
		return &Error{Pos: Pos{File: name, Line: 1, Col: 1}, Msg: "template: " + big.Error()}
	}
	var limit *limitError
	bounded := errors.As(err, &limit)
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, "template: "+name+":")
	if !ok {
		return &Error{Pos: Pos{File: name, Line: 1, Col: 1}, Msg: "template: " + strings.TrimPrefix(msg, "template: ")}
	}
	m := tmplLocRe.FindStringSubmatch(rest)
	if m == nil {
		return &Error{Pos: Pos{File: name, Line: 1, Col: 1}, Msg: "template: " + rest}
	}
	line, _ := strconv.Atoi(m[1])
	line = max(line, 1)
	text := tmplExecRe.ReplaceAllString(m[3], "")
	if bounded {
		// Not "<labbakeStep 12>: error calling labbakeStep: …".
		text = limit.Error()
	}
	// "unclosed action started at NAME:LINE" is reported at the end of the
	// file; report it where it starts.
	if before, start, ok := strings.Cut(text, " started at "+name+":"); ok {
		if n, err := strconv.Atoi(start); err == nil && n >= 1 && n <= line {
			line, text = n, before
		}
	}
	srcLine := nthLine(src, line)
	col := 1
	if m[2] != "" {
		b, _ := strconv.Atoi(m[2])
		col = runeCol(srcLine, min(b, len(srcLine)))
	} else {
		col = guessCol(srcLine, text)
	}
	return &Error{Pos: Pos{File: name, Line: line, Col: col}, Msg: "template: " + text}
}

// guessCol finds a column for a parse error, which text/template reports
// with a line only: the name of an unknown function, else the first action.
func guessCol(line, msg string) int {
	if m := tmplFuncRe.FindStringSubmatch(msg); m != nil {
		for off := 0; ; {
			i := strings.Index(line[off:], m[1])
			if i < 0 {
				break
			}
			at := off + i
			end := at + len(m[1])
			if (at == 0 || !isIdentByte(line[at-1])) && (end == len(line) || !isIdentByte(line[end])) {
				return runeCol(line, at)
			}
			off = end
		}
	}
	if i := strings.Index(line, "{{"); i >= 0 {
		return runeCol(line, i)
	}
	return 1
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '.' || c == '$' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
}

// nthLine returns line n (from 1) of src, or "" past the end.
func nthLine(src []byte, n int) string {
	for i := 1; i < n; i++ {
		j := bytes.IndexByte(src, '\n')
		if j < 0 {
			return ""
		}
		src = src[j+1:]
	}
	if j := bytes.IndexByte(src, '\n'); j >= 0 {
		src = src[:j]
	}
	return string(src)
}
