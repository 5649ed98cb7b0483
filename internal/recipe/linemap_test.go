package recipe

import (
	"strings"
	"testing"
)

func TestLineMap(t *testing.T) {
	data := map[string]any{
		"name":  "lab",
		"nodes": []any{"a", "b", "c"},
		"long":  "a\nb\nc",
	}
	for _, tc := range []struct {
		name string
		src  string
		// want lists, for each rendered line, "SRCLINE" or "SRCLINE:COL"
		// where COL is the expected column of rendered column 3.
		want []string
	}{
		{
			name: "identity",
			src:  "a: 1\nb: 2\n",
			want: []string{"1:3", "2:3", "3"},
		},
		{
			name: "value in a line keeps its place",
			src:  "x: 1\nname: {{ .name }}-suffix\ny: 2\n",
			want: []string{"1", "2", "3", "4"},
		},
		{
			name: "range adds lines",
			src:  "list:\n{{- range .nodes }}\n  - {{ . }}\n{{- end }}\nafter: 1\n",
			// list:, - a, - b, - c, after: 1, ""
			want: []string{"1", "3:3", "3", "3", "5:3", "6"},
		},
		{
			name: "if removes lines",
			src:  "a: 1\n{{ if false }}\nb: 2\nc: 3\n{{ end }}\nd: 4\n",
			// a: 1, "", d: 4, "": the empty line pairs with nothing
			want: []string{"1", "1", "6:3", "7"},
		},
		{
			name: "value expanding to several lines",
			src:  "a: |\n  {{ .long | indent 2 | trim }}\nb: 1\n",
			// a: |, "  a", "  b", "  c", b: 1, ""
			want: []string{"1", "2:3", "2", "2", "3:3", "4"},
		},
		{
			name: "column inside and after an action",
			src:  "key: pre{{ .name }}post: x\n",
			// "key: prelabpost: x": col 3 is in "key", identical place
			want: []string{"1:3", "2"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, terr := testRender("t.yaml", []byte(tc.src), data)
			if terr != nil {
				t.Fatal(terr)
			}
			m := newLineMap([]byte(tc.src), out)
			lines := strings.Split(string(out), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("rendered %d lines %q, want %d", len(lines), out, len(tc.want))
			}
			for i, w := range tc.want {
				p := m.pos("t.yaml", i+1, 3)
				got := p.String()[len("t.yaml:"):]
				if !strings.Contains(w, ":") {
					got = got[:strings.Index(got, ":")]
				}
				if got != w {
					t.Errorf("rendered line %d %q → %s, want %s", i+1, lines[i], got, w)
				}
			}
		})
	}
}

func TestLineMapColumns(t *testing.T) {
	src := "  content: \"hi {{ .name }} and {{ .name }}!\"\n"
	out, terr := testRender("t", []byte(src), map[string]any{"name": "wörld"})
	if terr != nil {
		t.Fatal(terr)
	}
	// rendered: `  content: "hi wörld and wörld!"`
	m := newLineMap([]byte(src), out)
	for _, tc := range []struct{ col, want int }{
		{3, 3},   // "content", before any action
		{12, 12}, // the opening quote
		{16, 16}, // inside the first value → the first {{
		{21, 27}, // " and " → its place between the actions
		{26, 32}, // inside the second value → the second {{
		{32, 44}, // the closing quote
	} {
		if p := m.pos("t", 1, tc.col); p.Line != 1 || p.Col != tc.want {
			t.Errorf("col %d → %v, want 1:%d", tc.col, p, tc.want)
		}
	}
}

func TestLineMapLarge(t *testing.T) {
	// Past maxLCSCells the greedy match is used; it must still pair lines.
	var src strings.Builder
	src.WriteString("items:\n{{- range until 3000 }}\n  - n{{ . }}\n{{- end }}\n")
	for i := 0; i < 2000; i++ {
		src.WriteString("k")
		src.WriteString(strings.Repeat("x", i%7))
		src.WriteString(": {{ .name }}\n")
	}
	src.WriteString("last: 1\n")
	out, terr := testRender("t", []byte(src.String()), map[string]any{"name": "v"})
	if terr != nil {
		t.Fatal(terr)
	}
	m := newLineMap([]byte(src.String()), out)
	lines := strings.Split(string(out), "\n")
	last := len(lines) - 2 // "last: 1"
	if p := m.pos("t", last+1, 1); p.Line != 2000+5 {
		t.Errorf("last line → %v, want line %d", p, 2005)
	}
	if p := m.pos("t", 3002, 1); p.Line != 5 {
		t.Errorf("first k line → %v, want line 5", p)
	}
}
