package recipe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// srcFile is a rendered file of the lab: its name relative to the lab dir
// and the map from rendered lines back to its template source.
type srcFile struct {
	name  string
	lines *lineMap
}

// decoder walks yaml.Node trees of one or more files, decoding them
// strictly and gathering every problem with its position. files records
// the source file of every node, so that trees merged from several files
// still report each problem in the file it came from.
type decoder struct {
	errs
	ctx    context.Context // of the templates rendered while decoding
	files  map[*yaml.Node]*srcFile
	inline inline
}

func newDecoder(ctx context.Context) *decoder {
	return &decoder{ctx: ctx, files: make(map[*yaml.Node]*srcFile)}
}

func (d *decoder) pos(n *yaml.Node) Pos {
	if n == nil {
		return Pos{}
	}
	f := d.files[n]
	if f == nil {
		return Pos{Line: n.Line, Col: n.Column}
	}
	return f.lines.pos(f.name, n.Line, n.Column)
}

func (d *decoder) errorf(n *yaml.Node, field, format string, args ...any) {
	d.add(d.pos(n), field, format, args...)
}

// parse parses out, the rendered text of the template src of file name, and
// returns its root node: an empty mapping for an empty document. It reports
// YAML syntax errors, aliases, duplicate keys and extra documents.
func (d *decoder) parse(name string, src, out []byte) (*yaml.Node, bool) {
	f := &srcFile{name: name, lines: newLineMap(src, out)}
	if !d.checkText(f, src, out) {
		return nil, false
	}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	var doc yaml.Node
	err := decodeNode(dec, &doc)
	if err != nil && !errors.Is(err, io.EOF) {
		d.addErr(yamlError(f, err))
		return nil, false
	}
	for {
		var extra yaml.Node
		err := decodeNode(dec, &extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			d.addErr(yamlError(f, err))
			return nil, false
		}
		if len(extra.Content) == 1 && isEmptyNull(extra.Content[0]) {
			continue
		}
		d.files[&extra] = f
		d.errorf(&extra, "", "only one YAML document is allowed")
		return nil, false
	}
	var root *yaml.Node
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	if root == nil || isEmptyNull(root) {
		root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Column: 1}
	}
	before := len(d.list)
	d.register(root, f, "")
	return root, len(d.list) == before
}

func isEmptyNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" && n.Value == ""
}

// decodeNode guards against a panic in the YAML parser on hostile input.
func decodeNode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: internal error: %v", r)
		}
	}()
	return dec.Decode(n)
}

// yamlError turns a yaml.v3 syntax error ("yaml: line N: …") into an Error.
// yaml.v3 counts lines from 1 for scanner errors but from 0 for parser
// errors (those of yamlParserProblem), whose line is where the enclosing
// block or flow collection starts.
func yamlError(f *srcFile, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	pos := Pos{File: f.name, Line: 1, Col: 1}
	if m := yamlErrorRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		msg = m[2]
		if yamlParserProblem(msg) {
			line++
		}
		pos = f.lines.pos(f.name, line, 1)
	}
	return &Error{Pos: pos, Msg: "yaml: " + msg}
}

// yamlParserProblem reports whether msg is one of the problems yaml.v3's
// parser (not its scanner) reports.
func yamlParserProblem(msg string) bool {
	switch msg {
	case "did not find expected ',' or ']'",
		"did not find expected ',' or '}'",
		"did not find expected '-' indicator",
		"did not find expected <document start>",
		"did not find expected <stream-start>",
		"did not find expected key",
		"did not find expected node content",
		"found duplicate %TAG directive",
		"found duplicate %YAML directive",
		"found incompatible YAML document",
		"found undefined tag handle":
		return true
	}
	return false
}

// register records the file of every node under n and reports what strict
// decoding never accepts anywhere: aliases and duplicate mapping keys.
func (d *decoder) register(n *yaml.Node, f *srcFile, path string) {
	d.files[n] = f
	switch n.Kind {
	case yaml.AliasNode:
		d.errorf(n, path, "YAML aliases (*%s) are not supported", n.Value)
	case yaml.MappingNode:
		seen := make(map[string]*yaml.Node)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			kp := path
			if k.Kind == yaml.ScalarNode {
				d.files[k] = f
				kp = joinPath(path, k.Value)
				if first := seen[k.Value]; first != nil {
					d.errorf(k, kp, "duplicate key %q (first at line %d)", k.Value, d.pos(first).Line)
				} else {
					seen[k.Value] = k
				}
			} else {
				d.register(k, f, path)
			}
			d.register(v, f, kp)
		}
	default:
		for i, c := range n.Content {
			d.register(c, f, indexPath(path, i))
		}
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func indexPath(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names what n is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:37] + "..."
		}
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!str":
			return fmt.Sprintf("the string %q", v)
		case "!!int":
			return "the integer " + v
		case "!!float":
			return "the number " + v
		case "!!bool":
			return "the boolean " + v
		case "!!timestamp":
			return "the timestamp " + v
		case "!!binary":
			return "binary data"
		default:
			return fmt.Sprintf("a %s value", n.ShortTag())
		}
	}
	return "nothing"
}

// fields are the values of a mapping decoded strictly.
type fields struct {
	node *yaml.Node
	keys map[string]*yaml.Node
	vals map[string]*yaml.Node
}

// get returns the value of key, or nil when it is absent or null.
func (f fields) get(key string) *yaml.Node {
	if v := f.vals[key]; !isNull(v) {
		return v
	}
	return nil
}

// at is where to report a problem with key: its key node, else the mapping.
func (f fields) at(key string) *yaml.Node {
	if k := f.keys[key]; k != nil {
		return k
	}
	return f.node
}

// mapping decodes n as a mapping with only the allowed keys. A null or
// absent n is an empty mapping. ok is false when n is not a mapping.
func (d *decoder) mapping(n *yaml.Node, path string, allowed ...string) (f fields, ok bool) {
	f = fields{node: n, keys: map[string]*yaml.Node{}, vals: map[string]*yaml.Node{}}
	if isNull(n) {
		return f, true
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping, got %s", describe(n))
		return f, false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "keys must be strings, got %s", describe(k))
			continue
		}
		if !slices.Contains(allowed, k.Value) {
			d.errorf(k, joinPath(path, k.Value), "unknown key %q (%s)", k.Value, suggest(k.Value, allowed))
			continue
		}
		f.keys[k.Value] = k
		f.vals[k.Value] = v
	}
	return f, true
}

// suggest proposes the allowed key nearest to key, or lists them all.
func suggest(key string, allowed []string) string {
	best, bd := "", 3
	for _, a := range allowed {
		if d := editDistance(strings.ToLower(key), a); d < bd {
			best, bd = a, d
		}
	}
	if best != "" {
		return fmt.Sprintf("did you mean %q?", best)
	}
	return "allowed: " + strings.Join(allowed, ", ")
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// sequence decodes n as a list; null is an empty list.
func (d *decoder) sequence(n *yaml.Node, path string) ([]*yaml.Node, bool) {
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "expected a list, got %s", describe(n))
		return nil, false
	}
	return n.Content, true
}

func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		d.errorf(n, path, "expected a string, got %s", describeOrNull(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	var b bool
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		d.errorf(n, path, "expected a boolean (true or false), got %s", describeOrNull(n))
		return false, false
	}
	return b, true
}

func (d *decoder) integer(n *yaml.Node, path string) (int64, bool) {
	var v int64
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.errorf(n, path, "expected an integer, got %s", describeOrNull(n))
		return 0, false
	}
	if err := n.Decode(&v); err != nil {
		d.errorf(n, path, "integer %s is out of range", n.Value)
		return 0, false
	}
	return v, true
}

func describeOrNull(n *yaml.Node) string {
	if n == nil {
		return "null"
	}
	return describe(n)
}

// toAny decodes n into plain Go values for templates: map[string]any,
// []any, string, int, float64, bool, nil.
func (d *decoder) toAny(n *yaml.Node, path string) (any, bool) {
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				d.errorf(k, path, "keys must be strings, got %s", describe(k))
				ok = false
				continue
			}
			val, vok := d.toAny(v, joinPath(path, k.Value))
			ok = ok && vok
			m[k.Value] = val
		}
		return m, ok
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		ok := true
		for i, c := range n.Content {
			val, vok := d.toAny(c, indexPath(path, i))
			ok = ok && vok
			s = append(s, val)
		}
		return s, ok
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			d.errorf(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
			return nil, false
		}
		return v, true
	}
	d.errorf(n, path, "unexpected %s", describe(n))
	return nil, false
}
