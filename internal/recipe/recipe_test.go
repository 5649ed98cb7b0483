package recipe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/labbake/labbake/internal/golden"
)

// dump prints a Recipe as stable JSON: lab paths as $LAB, bytes as text.
func dump(t *testing.T, lab *Lab, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(jsonable(v), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.ReplaceAll(b, []byte(lab.Dir), []byte("$LAB"))
	return append(b, '\n')
}

func jsonable(v any) any {
	switch v := v.(type) {
	case *Recipe:
		return project(reflect.ValueOf(v).Elem())
	case *Lab:
		nodes := make([]map[string]any, len(v.Nodes))
		for i, n := range v.Nodes {
			nodes[i] = map[string]any{"Name": n.Name, "Role": n.Role, "IP": n.IP, "CPUs": n.CPUs,
				"Memory": n.Memory, "MemoryBytes": n.MemoryBytes, "Pos": n.Pos.String()}
		}
		return map[string]any{"Dir": v.Dir, "Name": v.Name, "Epoch": v.Epoch, "Vars": v.Vars,
			"Network": v.Network, "Nodes": nodes, "Digest": v.Digest, "Roles": v.Roles()}
	}
	return v
}

// project turns a value of the recipe model into plain JSON data, every
// exported field included, so that the golden files show all a recipe
// decodes to: positions as FILE:LINE:COL, bytes as text, modes in octal.
func project(v reflect.Value) any {
	switch {
	case v.Type() == reflect.TypeFor[Pos]():
		return v.Interface().(Pos).String()
	case v.Type() == reflect.TypeFor[[]byte]():
		return string(v.Bytes())
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return project(v.Elem())
	case reflect.Struct:
		m := map[string]any{}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			if f.Name == "Mode" && f.Type.Kind() == reflect.Uint32 {
				m[f.Name] = fmt.Sprintf("%04o", v.Field(i).Uint())
				continue
			}
			m[f.Name] = project(v.Field(i))
		}
		return m
	case reflect.Slice:
		if v.IsNil() {
			return nil
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = project(v.Index(i))
		}
		return out
	case reflect.Map:
		out := map[string]any{}
		for _, k := range v.MapKeys() {
			out[fmt.Sprint(k.Interface())] = project(v.MapIndex(k))
		}
		return out
	}
	return v.Interface()
}

func TestGoodLab(t *testing.T) {
	lab, err := Load("testdata/good")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, want := lab.Roles(), []string{"master", "node"}; !slices.Equal(got, want) {
		t.Errorf("Roles() = %v, want %v", got, want)
	}
	golden.Check(t, "testdata/golden/lab.json", dump(t, lab, lab))
	// remote is no node's role: a recipe of every input from outside the
	// lab dir, and of checks and secrets.
	for _, role := range append(lab.Roles(), "remote") {
		t.Run(role, func(t *testing.T) {
			rec, err := lab.Recipe(role)
			if err != nil {
				t.Fatalf("Recipe(%q): %v", role, err)
			}
			golden.Check(t, "testdata/golden/"+role+".yaml", rec.Rendered)
			golden.Check(t, "testdata/golden/"+role+".json", dump(t, lab, rec))

			// Rendering is deterministic.
			again, err := lab.Recipe(role)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dump(t, lab, rec), dump(t, lab, again)) {
				t.Error("two renders of the same recipe differ")
			}
		})
	}
}

var errLineRe = regexp.MustCompile(`^[^:\s]+:\d+:\d+: \S.*$`)

// brokenOutput is what loading a broken lab and every role's recipe reports.
func brokenOutput(dir string) (string, error) {
	lab, err := Load(dir)
	if err != nil {
		return err.Error(), err
	}
	var out []string
	var last error
	for _, role := range lab.Roles() {
		if _, err := lab.Recipe(role); err != nil {
			out = append(out, err.Error())
			last = err
		}
	}
	return strings.Join(out, "\n"), last
}

func TestBrokenCorpus(t *testing.T) {
	entries, err := os.ReadDir("testdata/broken")
	if err != nil {
		t.Fatal(err)
	}
	cases, multi := 0, 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		cases++
		dir := filepath.Join("testdata/broken", e.Name())
		got, err := brokenOutput(dir)
		if err == nil {
			t.Errorf("%s: no error", e.Name())
			continue
		}
		var el ErrorList
		if !errors.As(fmt.Errorf("wrapped: %w", err), &el) {
			t.Errorf("%s: error is %T, not an ErrorList", e.Name(), err)
		}
		lines := strings.Split(got, "\n")
		if len(lines) > 1 {
			multi++
		}
		t.Run(e.Name(), func(t *testing.T) {
			for _, l := range lines {
				if !errLineRe.MatchString(l) {
					t.Errorf("line %q is not FILE:LINE:COL: message", l)
				}
			}
			golden.Check(t, filepath.Join(dir, "expect.txt"), []byte(got+"\n"))
		})
	}
	if cases < 15 {
		t.Errorf("only %d broken cases, want at least 15", cases)
	}
	if multi == 0 {
		t.Error("no broken case reports several problems at once")
	}
}

// writeLab makes a lab dir from name → content.
func writeLab(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const miniLab = "name: mini\nnodes:\n  - {name: master, role: master, ip: 172.18.0.2}\n"

func TestUnknownRole(t *testing.T) {
	dir := t.TempDir()
	writeLab(t, dir, map[string]string{"lab.yaml": miniLab})
	lab, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ role, want string }{
		{"master", `recipes/master.yaml: unknown role "master": no recipe recipes/master.yaml in the lab`},
		{"../etc", `recipes/../etc.yaml: invalid role "../etc": a role is a-z, 0-9 and '-'`},
	} {
		_, err := lab.Recipe(tc.role)
		var el ErrorList
		if !errors.As(err, &el) || len(el) != 1 {
			t.Fatalf("Recipe(%q) = %v, want one Error", tc.role, err)
		}
		if el[0].Pos != (Pos{File: "recipes/" + tc.role + ".yaml"}) || err.Error() != tc.want {
			t.Errorf("Recipe(%q) = %q at %+v, want %q", tc.role, err, el[0].Pos, tc.want)
		}
	}
}

func TestNoLab(t *testing.T) {
	_, err := Load(t.TempDir())
	var el ErrorList
	if !errors.As(err, &el) || el[0].Pos.File != "lab.yaml" {
		t.Fatalf("Load(empty dir) = %v", err)
	}
}

func TestErrorFormat(t *testing.T) {
	el := ErrorList{
		{Pos: Pos{File: "recipes/master.yaml", Line: 12, Col: 5}, Field: "units[1].name", Msg: "unit file units/foo.service not found"},
		{Pos: Pos{File: "lab.yaml", Line: 3, Col: 1}, Msg: "yaml: bad"},
		{Pos: Pos{File: "recipes/master.yaml", Line: 2, Col: 9}, Msg: "x"},
		{Pos: Pos{File: "recipes/master.yaml", Line: 12, Col: 1}, Msg: "y"},
	}
	want := "lab.yaml:3:1: yaml: bad\n" +
		"recipes/master.yaml:2:9: x\n" +
		"recipes/master.yaml:12:1: y\n" +
		"recipes/master.yaml:12:5: units[1].name: unit file units/foo.service not found"
	if got := el.Error(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if el[0].Pos.Line != 12 {
		t.Error("Error() sorted the list in place")
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"8GiB", 8 << 30, true},
		{"8G", 8 << 30, true},
		{"512MiB", 512 << 20, true},
		{"10 G", 10 << 30, true},
		{"1T", 1 << 40, true},
		{"4096", 4096, true},
		{"4096B", 4096, true},
		{"64K", 64 << 10, true},
		{"8GB", 0, false},
		{"8gib", 0, false},
		{"1.5GiB", 0, false},
		{"-1G", 0, false},
		{"", 0, false},
		{"99999999999999999999", 0, false},
		{"9999999999T", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if got := FormatSize(64 * MiB); got != "64MiB" {
		t.Errorf("FormatSize = %s", got)
	}
}

func TestDroppedFuncs(t *testing.T) {
	fm := funcMap()
	for _, name := range droppedFuncs() {
		if _, ok := fm[name]; ok {
			t.Errorf("%s is still in the func map", name)
		}
		_, err := testRender("x.yaml", []byte("a: {{ "+name+" }}\n"), nil)
		if err == nil || !strings.Contains(err.Msg, fmt.Sprintf("function %q not defined", name)) {
			t.Errorf("%s: got %v, want function not defined", name, err)
		}
	}
	for _, name := range []string{"upper", "toJson", "sha256sum", "semverCompare", "indent", "default", "list", "dict"} {
		if _, ok := fm[name]; !ok {
			t.Errorf("%s is missing from the func map", name)
		}
	}
}

func TestBoundedFuncs(t *testing.T) {
	for _, tc := range []struct{ tmpl, want string }{
		{`{{ until 3 }}`, "[0 1 2]"},
		{`{{ until -2 }}`, "[0 -1]"},
		{`{{ untilStep 0 10 4 }}`, "[0 4 8]"},
		{`{{ untilStep 10 0 -5 }}`, "[10 5]"},
		{`{{ untilStep 0 10 -1 }}`, "[]"},
		{`{{ seq 3 }}`, "1 2 3"},
		{`{{ seq 0 -3 }}`, "0 -1 -2 -3"},
		{`{{ seq 1 2 7 }}`, "1 3 5 7"},
		{`{{ repeat 3 "ab" }}`, "ababab"},
	} {
		out, err := testRender("t", []byte(tc.tmpl), nil)
		if err != nil || string(out) != tc.want {
			t.Errorf("%s = %q, %v; want %q", tc.tmpl, out, err, tc.want)
		}
	}
	for _, tmpl := range []string{`{{ until 100000000000 }}`, `{{ repeat 1000000000 "ab" }}`, `{{ untilStep -9223372036854775808 9223372036854775807 1 }}`} {
		if _, err := testRender("t", []byte(tmpl), nil); err == nil {
			t.Errorf("%s: no error", tmpl)
		}
	}
	if _, err := testRender("t", []byte(`{{ range until 1000 }}{{ repeat 100000 "x" }}{{ end }}`), nil); err == nil || !strings.Contains(err.Msg, "larger than") {
		t.Errorf("huge output: %v", err)
	}
}

func TestTemplateErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"a: 1\nb: {{ .nope }}\n", `f.yaml:2:7: template: <.nope>: map has no entry for key "nope"`},
		{"a: 1\n\nb: {{ env \"HOME\" }}\n", `f.yaml:3:7: template: function "env" not defined`},
		{"a: {{ .x\n", `f.yaml:1:4: template: unclosed action`},
		{"é: {{ fail \"boom\" }}\n", `f.yaml:1:7: template: <fail "boom">: error calling fail: boom`},
		{"{{ if true }}\n", `f.yaml:2:1: template: unexpected EOF`},
	} {
		_, err := testRender("f.yaml", []byte(tc.src), map[string]any{"x": 1})
		if err == nil || err.Error() != tc.want {
			t.Errorf("render(%q) = %v, want %s", tc.src, err, tc.want)
		}
	}
}

// testRender renders a template as unit and overlay templates are.
func testRender(name string, src []byte, data any) ([]byte, *Error) {
	return render(context.Background(), name, src, data, maxRendered)
}
