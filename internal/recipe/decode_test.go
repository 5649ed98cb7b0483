package recipe

import (
	"context"
	"testing"
)

func TestYAMLErrorLines(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"a: 1\nb: 2\nc: [\n", "f.yaml:4:1: yaml: did not find expected node content"},
		{"a: 1\nb: 2\nc: d: e\n", "f.yaml:3:1: yaml: mapping values are not allowed in this context"},
		{"a: 1\nb: 2\n- c\n", "f.yaml:3:1: yaml: did not find expected key"},
		{"a: 1\nb: 2\nc: @x\n", "f.yaml:3:1: yaml: found character that cannot start any token"},
		{"a: 1\n\tb: 2\n", "f.yaml:2:1: yaml: found a tab character that violates indentation"},
		{"a: *nope\n", "f.yaml:1:1: yaml: unknown anchor 'nope' referenced"},
		{"a: 1\n---\nb: 2\n", "f.yaml:2:1: only one YAML document is allowed"},
		{"a: 1\n---\n", ""},
		{"", ""},
		{"# only a comment\n", ""},
	} {
		d := newDecoder(context.Background())
		root, ok := d.parse("f.yaml", []byte(tc.src), []byte(tc.src))
		got := ""
		if err := d.err(); err != nil {
			got = err.Error()
		}
		if got != tc.want || ok != (tc.want == "") || (ok && root == nil) {
			t.Errorf("parse(%q) = %q, ok=%v; want %q", tc.src, got, ok, tc.want)
		}
	}
}
