package recipe

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// Templates that would run forever or take all memory stop at a bound,
// with an error at the place that spent it.
func TestRenderBounds(t *testing.T) {
	doubling := `{{ $a := "xxxxxxxx" }}` + strings.Repeat(`{{ $a = cat $a $a }}`, 40) + "{{ len $a }}"
	for _, tc := range []struct {
		name, tmpl, want string
	}{
		{"nested until", "a: 1\nb: {{ range until 1000000 }}{{ range until 1000000 }}{{ end }}{{ end }}\n",
			"t.yaml:2:38: template: more than 4194304 template steps"},
		{"range over an int", "{{ range 1000000000000 }}{{ end }}", "t.yaml:1:10: template: more than 4194304 template steps"},
		{"branching recursion", `{{ define "a" }}{{ if lt . 60 }}{{ template "a" (add1 .) }}{{ template "a" (add1 .) }}{{ end }}{{ end }}{{ template "a" 0 }}`,
			"template steps"},
		{"doubling cat", doubling, "cat: its arguments are larger than 16 MiB"},
		{"printf width", `{{ printf "%999999999d" 1 }}`, "printf: the result would be larger than 16 MiB"},
		{"printf star", `{{ printf "%*d" 999999999 1 }}`, "printf: the result would be larger than 16 MiB"},
		{"indent", `{{ indent 1000000 (repeat 100000 "\n") }}`, "indent: the result would be larger than 16 MiB"},
		{"replace empty", `{{ replace "" (repeat 10000 "y") (repeat 10000 "x") }}`, "replace: the result would be larger than 16 MiB"},
		{"regex replace", `{{ regexReplaceAll "" (repeat 1000000 "x") "$0$0$0$0$0$0$0$0$0$0$0$0$0$0$0$0" }}`, "regexReplaceAll: the result would be larger than 16 MiB"},
		{"split", `{{ split "" (repeat 1000000 "x") }}`, "split: the result would be larger than 16 MiB"},
		{"uniq", `{{ uniq (until 1000000) }}`, "uniq: the result would be larger than 16 MiB"},
		{"cyclic dict", `{{ $d := dict }}{{ $_ := set $d "self" $d }}{{ $d }}`, "set: its result is larger than 16 MiB"},
		{"quadratic append", `{{ $l := list }}{{ range until 300 }}{{ $l = append $l (repeat 60000 "x") }}{{ end }}{{ $l }}`, "append: the template has done too much work"},
		{"cyclic data printed", `{{ .self.self }}`, "t.yaml:1:4: template: the value printed here is larger than 16 MiB"},
		{"deep list", `{{ $x := list }}{{ range until 20000 }}{{ $x = list $x }}{{ end }}{{ toPrettyJson $x }}`, "its arguments are larger than 16 MiB"},
		{"big output", `{{ range until 1000 }}{{ repeat 100000 "x" }}{{ end }}`, "template: output is larger than 16MiB"},
		{"much work", `{{ $a := repeat 8000000 "x" }}{{ range until 1000 }}{{ $_ := sha256sum $a }}{{ end }}`, "sha256sum: the template has done too much work"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cyclic := map[string]any{}
			cyclic["self"] = cyclic
			start := time.Now()
			_, err := render(context.Background(), "t.yaml", []byte(tc.tmpl), cyclic, maxRendered)
			took := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("render = %v, want %q", err, tc.want)
			}
			t.Logf("%v in %v", err, took.Round(time.Millisecond))
		})
	}
}

// Bounded functions still do what templates ask of them.
func TestRenderBudgetKeepsResults(t *testing.T) {
	for _, tc := range []struct{ tmpl, want string }{
		{`{{ printf "%05d|%-4s|%.2f" 42 "ab" 3.14159 }}`, "00042|ab  |3.14"},
		{`{{ indent 2 "a\nb" }}`, "  a\n  b"},
		{`{{ "a.b.c" | replace "." "/" }}`, "a/b/c"},
		{`{{ join "," (list 1 2 3) }}`, "1,2,3"},
		{`{{ regexReplaceAll "(a)" "banana" "<$1>" }}`, "b<a>n<a>n<a>"},
		{`{{ $d := dict "k" (list 1 2) }}{{ toJson $d }} {{ len (splitList "," "a,b,c") }}`, `{"k":[1,2]} 3`},
		{`{{ range $i, $e := until 3 }}{{ $i }}{{ end }}{{ range 2 }}x{{ end }}`, "012xx"},
		{`{{ define "x" }}[{{ . }}]{{ end }}{{ template "x" 1 }}{{ template "x" "a" }}`, "[1][a]"},
		{`{{ print 1 "a" }}{{ println }}{{ html "<" }}{{ js "'" }}{{ urlquery "a b" }}`, "1a\n&lt;\\'a+b"},
		{`{{ uniq (list 1 1 2) }} {{ without (list 1 2 3) 2 }} {{ .x }}`, "[1 2] [1 3] <no value>"},
	} {
		out, err := render(context.Background(), "t", []byte(tc.tmpl), map[string]any{"x": nil}, maxRendered)
		if err != nil || string(out) != tc.want {
			t.Errorf("%s = %q, %v; want %q", tc.tmpl, out, err, tc.want)
		}
	}
}

// A render stops promptly when its context is cancelled, and loading a
// recipe then returns the context's error, not a problem of the lab.
func TestRenderCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, rerr := render(ctx, "t", []byte(`{{ range 1000000000000 }}{{ range 1000000000000 }}{{ end }}{{ end }}`), nil, maxRendered)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("cancelled render took %v", took)
	}
	if rerr == nil || !strings.Contains(rerr.Error(), "rendering stopped: context canceled") {
		t.Errorf("render = %v", rerr)
	}

	dir := t.TempDir()
	writeLab(t, dir, map[string]string{"lab.yaml": miniLab, "rootfs.tar": "x",
		"recipes/master.yaml": "base: {tar: rootfs.tar}\n{{ range 1000000000000 }}{{ end }}\n"})
	lab, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = lab.RecipeContext(ctx, "master")
	var el ErrorList
	if !errors.Is(err, context.Canceled) || errors.As(err, &el) {
		t.Errorf("RecipeContext after cancel = %v, want context.Canceled", err)
	}
}
