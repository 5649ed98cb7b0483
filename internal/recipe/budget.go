package recipe

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"
	"unicode/utf8"
)

// Rendering is bounded, so that a template ends in seconds whatever it
// says and its memory stays a small multiple of maxRendered:
//
//   - text/template has no step limit, so every template is instrumented
//     before it runs: each range iteration and each template call first
//     calls stepFunc with the number of parse nodes of its body, and the
//     sum may not pass maxSteps. Outside loops and calls, a template runs
//     each of its nodes once at most.
//   - every function a template may call is wrapped: the arguments of one
//     call may not weigh more than maxValue (their size, walked at most
//     that far, so that a cyclic or shared value ends the walk too), the
//     functions that can multiply their input (indent, replace, printf
//     widths, …) must promise a result below maxValue before they run, and
//     no result may weigh more; the weights of all calls may not pass
//     maxWork.
//   - every printed value passes through outFunc, which weighs it first:
//     fmt formats a whole value in memory before the output limit sees it.
//   - each of these checks the context first, so Ctrl-C stops a render at
//     its next step or call.
//
// The bounds are counts, not times, so a lab renders or fails the same way
// on every machine.
const (
	maxSteps = 1 << 22
	maxValue = 16 << 20
	maxWork  = 1 << 30
)

// Names of the functions the instrumentation inserts. A template may call
// them too; it only spends its own budget.
const (
	stepFunc = "labbakeStep"
	outFunc  = "labbakeOut"
)

// budget is what one render may still spend.
type budget struct {
	ctx   context.Context
	steps int64
	work  int64
}

// limitError is a render stopped by a bound or by its context.
type limitError struct{ msg string }

func (e *limitError) Error() string { return e.msg }

func (b *budget) check() error {
	if err := b.ctx.Err(); err != nil {
		return &limitError{"rendering stopped: " + err.Error()}
	}
	return nil
}

// step spends n steps.
func (b *budget) step(n int) (string, error) {
	if err := b.check(); err != nil {
		return "", err
	}
	b.steps += int64(n)
	if b.steps > maxSteps {
		return "", &limitError{fmt.Sprintf("more than %d template steps (range iterations and template calls, weighted by their size): is a loop endless?", maxSteps)}
	}
	return "", nil
}

// out weighs a value about to be printed.
func (b *budget) out(v any) (any, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	if weigh(reflect.ValueOf(v), maxValue) > maxValue {
		return nil, &limitError{fmt.Sprintf("the value printed here is larger than %d MiB", maxValue>>20)}
	}
	return v, nil
}

// spend charges n units of work.
func (b *budget) spend(name string, n int64) error {
	b.work += n
	if b.work > maxWork {
		return &limitError{fmt.Sprintf("%s: the template has done too much work (function calls weighing more than %d MiB in all)", name, maxWork>>20)}
	}
	return nil
}

// wrap returns fn, a template function, bounded by b as described above.
func (b *budget) wrap(name string, fn any) any {
	v := reflect.ValueOf(fn)
	t := v.Type()
	estimate := estimators[name]
	return reflect.MakeFunc(t, func(args []reflect.Value) []reflect.Value {
		fail := func(err error) []reflect.Value {
			out := make([]reflect.Value, t.NumOut())
			for i := range out {
				out[i] = reflect.Zero(t.Out(i))
			}
			if t.NumOut() == 2 {
				out[1] = reflect.ValueOf(&err).Elem()
				return out
			}
			// A function without an error result: text/template turns
			// the panic into an error at the call.
			panic(err)
		}
		if err := b.check(); err != nil {
			return fail(err)
		}
		var in int64
		for _, a := range args {
			in += weigh(a, maxValue-in)
			if in > maxValue {
				return fail(&limitError{fmt.Sprintf("%s: its arguments are larger than %d MiB", name, maxValue>>20)})
			}
		}
		var est int64
		if estimate != nil {
			est = estimate(args)
			if est > maxValue {
				return fail(&limitError{fmt.Sprintf("%s: the result would be larger than %d MiB", name, maxValue>>20)})
			}
		}
		if err := b.spend(name, in+est); err != nil {
			return fail(err)
		}
		var out []reflect.Value
		if t.IsVariadic() {
			out = v.CallSlice(args)
		} else {
			out = v.Call(args)
		}
		if len(out) > 0 {
			w := weigh(out[0], maxValue)
			if w > maxValue {
				return fail(&limitError{fmt.Sprintf("%s: its result is larger than %d MiB", name, maxValue>>20)})
			}
			if err := b.spend(name, w); err != nil {
				return fail(err)
			}
		}
		return out
	}).Interface()
}

// weigh is about the memory v takes, in bytes, counted up to limit: past
// it the walk stops and returns more than limit. Shared and cyclic values
// count every time they are met.
func weigh(v reflect.Value, limit int64) int64 {
	var n int64
	var walk func(v reflect.Value, depth int)
	walk = func(v reflect.Value, depth int) {
		if n > limit {
			return
		}
		if depth > 10000 {
			n = limit + 1
			return
		}
		switch v.Kind() {
		case reflect.Invalid:
			n += 8
		case reflect.Interface, reflect.Pointer:
			n += 8
			if !v.IsNil() {
				walk(v.Elem(), depth+1)
			}
		case reflect.String:
			n += 16 + int64(v.Len())
		case reflect.Slice, reflect.Array:
			n += 24
			if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
				n += int64(v.Len())
				return
			}
			for i := 0; i < v.Len() && n <= limit; i++ {
				n += 8
				walk(v.Index(i), depth+1)
			}
		case reflect.Map:
			n += 48
			it := v.MapRange()
			for n <= limit && it.Next() {
				n += 32
				walk(it.Key(), depth+1)
				walk(it.Value(), depth+1)
			}
		case reflect.Struct:
			n += 16
			for i := 0; i < v.NumField() && n <= limit; i++ {
				walk(v.Field(i), depth+1)
			}
		default:
			n += 8
		}
	}
	walk(v, 0)
	return n
}

// depth is how deeply v nests lists and maps, up to limit.
func depth(v reflect.Value, limit int) int {
	for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return 0
		}
		v = v.Elem()
	}
	if limit <= 0 {
		return 0
	}
	d := 0
	switch v.Kind() {
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			return 0
		}
		for i := 0; i < v.Len(); i++ {
			d = max(d, depth(v.Index(i), limit-1))
		}
		return d + 1
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			d = max(d, depth(it.Value(), limit-1))
		}
		return d + 1
	}
	return 0
}

// estimators bound, before they run, the size of what the functions that
// can make much more than they are given would make. The arguments are
// those of the call (the arguments of a variadic function unpacked into a
// last slice).
var estimators = map[string]func(args []reflect.Value) int64{
	"indent":  indentSize,
	"nindent": indentSize,
	"replace": func(a []reflect.Value) int64 {
		old, repl, s := str(a[0]), str(a[1]), str(a[2])
		return int64(len(s)) + int64(occurrences(s, old))*int64(len(repl))
	},
	"regexReplaceAll":            regexReplaceSize,
	"mustRegexReplaceAll":        regexReplaceSize,
	"regexReplaceAllLiteral":     regexReplaceSize,
	"mustRegexReplaceAllLiteral": regexReplaceSize,
	"join": func(a []reflect.Value) int64 {
		sep := str(a[0])
		n := a[1]
		for n.Kind() == reflect.Interface && !n.IsNil() {
			n = n.Elem()
		}
		items := int64(1)
		if n.Kind() == reflect.Slice || n.Kind() == reflect.Array {
			items = int64(n.Len())
		}
		return 4*weigh(a[1], maxValue) + items*int64(len(sep))
	},
	"wrap": func(a []reflect.Value) int64 {
		return wrapSize(int(a[0].Int()), "\n", str(a[1]))
	},
	"wrapWith": func(a []reflect.Value) int64 {
		return wrapSize(int(a[0].Int()), str(a[1]), str(a[2]))
	},
	"printf":           printfSize,
	"toPrettyJson":     prettySize,
	"mustToPrettyJson": prettySize,
	"split":            splitSize(64),
	"splitList":        splitSize(24),
	"splitn": func(a []reflect.Value) int64 {
		return int64(len(str(a[2]))) + min(int64(a[1].Int()), int64(occurrences(str(a[2]), str(a[0])))+1)*64
	},
	"regexSplit":       regexItemsSize,
	"mustRegexSplit":   regexItemsSize,
	"regexFindAll":     regexItemsSize,
	"mustRegexFindAll": regexItemsSize,
	"fromJson":         func(a []reflect.Value) int64 { return 32 * int64(len(str(a[0]))) },
	"mustFromJson":     func(a []reflect.Value) int64 { return 32 * int64(len(str(a[0]))) },
	// uniq and without compare every item with every other.
	"uniq":        quadratic,
	"mustUniq":    quadratic,
	"without":     quadratic,
	"mustWithout": quadratic,
}

func str(v reflect.Value) string {
	for v.Kind() == reflect.Interface && !v.IsNil() {
		v = v.Elem()
	}
	if v.Kind() == reflect.String {
		return v.String()
	}
	return fmt.Sprint(v)
}

// occurrences is how many times old is in s, as strings.Replace counts
// them (an empty old matches before every character and at the end).
func occurrences(s, old string) int {
	if old == "" {
		return utf8.RuneCountInString(s) + 1
	}
	return strings.Count(s, old)
}

func indentSize(a []reflect.Value) int64 {
	n, s := a[0].Int(), str(a[1])
	return int64(len(s)) + max(n, 0)*int64(strings.Count(s, "\n")+2)
}

// regexReplaceSize: every match (at most one more than the bytes of s)
// gets the replacement, and each $reference in it at most the whole of s.
func regexReplaceSize(a []reflect.Value) int64 {
	s, repl := str(a[1]), str(a[2])
	return int64(len(s)) + int64(len(s)+1)*int64(len(repl)) + int64(strings.Count(repl, "$"))*int64(len(s))
}

func regexItemsSize(a []reflect.Value) int64 {
	s := str(a[1])
	return int64(len(s)) + int64(len(s)+1)*24
}

func splitSize(perItem int64) func(a []reflect.Value) int64 {
	return func(a []reflect.Value) int64 {
		s := str(a[1])
		return int64(len(s)) + int64(occurrences(s, str(a[0])))*perItem
	}
}

func wrapSize(n int, sep, s string) int64 {
	return int64(len(s)) + (int64(len(s))/int64(max(n, 1))+1)*int64(len(sep))
}

// printfSize adds the widths and precisions a format asks for to the size
// of its arguments; a '*' takes the largest integer argument.
func printfSize(a []reflect.Value) int64 {
	format := str(a[0])
	var args []reflect.Value
	if len(a) > 1 {
		for i := 0; i < a[1].Len(); i++ {
			args = append(args, a[1].Index(i))
		}
	}
	var star int64
	for _, x := range args {
		for x.Kind() == reflect.Interface && !x.IsNil() {
			x = x.Elem()
		}
		switch x.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			star = max(star, x.Int(), -x.Int())
		}
	}
	var total int64
	for _, x := range args {
		total += 4 * weigh(x, maxValue)
	}
	total += int64(len(format))
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		var num int64
		for i++; i < len(format) && strings.IndexByte("+-# 0123456789.*[]", format[i]) >= 0; i++ {
			switch c := format[i]; {
			case c >= '0' && c <= '9':
				num = min(num*10+int64(c-'0'), 1<<40)
			case c == '*':
				total += star
			default:
				total += num
				num = 0
			}
		}
		total += num
	}
	return total
}

func prettySize(a []reflect.Value) int64 {
	w := weigh(a[0], maxValue)
	return w * int64(8+2*depth(a[0], 1<<16))
}

func quadratic(a []reflect.Value) int64 {
	n := a[0]
	for n.Kind() == reflect.Interface && !n.IsNil() {
		n = n.Elem()
	}
	if n.Kind() != reflect.Slice && n.Kind() != reflect.Array {
		return 0
	}
	m := int64(n.Len())
	// As much time as weighing that many bytes: m*m comparisons.
	return m * m / 64
}

// templateFuncs are what templates are parsed with: funcMap and the
// builtins that format values, which bind replaces by their bounded
// versions.
var templateFuncs = sync.OnceValue(func() template.FuncMap {
	fm := funcMap()
	// text/template's own functions that build strings (and/or/not, the
	// comparisons, index, len, slice and call build nothing).
	for name, fn := range map[string]any{
		"print": fmt.Sprint, "printf": fmt.Sprintf, "println": fmt.Sprintln,
		"html": template.HTMLEscaper, "js": template.JSEscaper, "urlquery": template.URLQueryEscaper,
	} {
		fm[name] = fn
	}
	return fm
})

// bind gives the parsed template t the functions it calls, bounded by b,
// and the instrumentation's own. Only those it names are wrapped: wrapping
// all two hundred would cost more than most renders.
func bind(t *template.Template, b *budget) {
	all := templateFuncs()
	used := template.FuncMap{stepFunc: b.step, outFunc: b.out}
	for _, tt := range t.Templates() {
		if tt.Tree == nil {
			continue
		}
		walkIdentifiers(tt.Tree.Root, func(name string) {
			if _, done := used[name]; !done {
				if fn, ok := all[name]; ok {
					used[name] = b.wrap(name, fn)
				}
			}
		})
	}
	t.Funcs(used)
}

// walkIdentifiers calls f with the name of every function n calls.
func walkIdentifiers(n parse.Node, f func(string)) {
	switch n := n.(type) {
	case *parse.IdentifierNode:
		f(n.Ident)
	case *parse.ListNode:
		if n != nil {
			for _, x := range n.Nodes {
				walkIdentifiers(x, f)
			}
		}
	case *parse.ActionNode:
		walkIdentifiers(n.Pipe, f)
	case *parse.PipeNode:
		if n != nil {
			for _, c := range n.Cmds {
				walkIdentifiers(c, f)
			}
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walkIdentifiers(a, f)
		}
	case *parse.ChainNode:
		walkIdentifiers(n.Node, f)
	case *parse.IfNode:
		walkIdentifiers(n.Pipe, f)
		walkIdentifiers(n.List, f)
		walkIdentifiers(n.ElseList, f)
	case *parse.WithNode:
		walkIdentifiers(n.Pipe, f)
		walkIdentifiers(n.List, f)
		walkIdentifiers(n.ElseList, f)
	case *parse.RangeNode:
		walkIdentifiers(n.Pipe, f)
		walkIdentifiers(n.List, f)
		walkIdentifiers(n.ElseList, f)
	case *parse.TemplateNode:
		walkIdentifiers(n.Pipe, f)
	}
}

// instrument inserts the step and output checks into every template of t.
func instrument(t *template.Template) {
	for _, tt := range t.Templates() {
		if tt.Tree == nil || tt.Tree.Root == nil {
			continue
		}
		root := tt.Tree.Root
		instrumentList(root)
		root.Nodes = append([]parse.Node{stepNode(root.Pos, countNodes(root))}, root.Nodes...)
	}
}

func instrumentList(l *parse.ListNode) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.ActionNode:
			if len(n.Pipe.Decl) == 0 {
				n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{NodeType: parse.NodeCommand, Pos: n.Pos,
					Args: []parse.Node{&parse.IdentifierNode{NodeType: parse.NodeIdentifier, Pos: n.Pos, Ident: outFunc}}})
			}
		case *parse.IfNode:
			instrumentList(n.List)
			instrumentList(n.ElseList)
		case *parse.WithNode:
			instrumentList(n.List)
			instrumentList(n.ElseList)
		case *parse.RangeNode:
			instrumentList(n.List)
			instrumentList(n.ElseList)
			n.List.Nodes = append([]parse.Node{stepNode(n.Pos, countNodes(n.List))}, n.List.Nodes...)
		}
	}
}

// stepNode is {{labbakeStep WEIGHT}} at pos: it prints nothing.
func stepNode(pos parse.Pos, weight int) *parse.ActionNode {
	return &parse.ActionNode{NodeType: parse.NodeAction, Pos: pos, Pipe: &parse.PipeNode{NodeType: parse.NodePipe, Pos: pos,
		Cmds: []*parse.CommandNode{{NodeType: parse.NodeCommand, Pos: pos, Args: []parse.Node{
			&parse.IdentifierNode{NodeType: parse.NodeIdentifier, Pos: pos, Ident: stepFunc},
			&parse.NumberNode{NodeType: parse.NodeNumber, Pos: pos, IsInt: true, Int64: int64(weight), Text: fmt.Sprint(weight)},
		}}}}}
}

// countNodes counts the parse nodes under n, n included: what one run of
// it evaluates at most, loops and calls aside.
func countNodes(n parse.Node) int {
	c := 1
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, x := range n.Nodes {
				c += countNodes(x)
			}
		}
	case *parse.ActionNode:
		c += countNodes(n.Pipe)
	case *parse.PipeNode:
		if n != nil {
			c += len(n.Decl)
			for _, cmd := range n.Cmds {
				c += countNodes(cmd)
			}
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			c += countNodes(a)
		}
	case *parse.ChainNode:
		c += countNodes(n.Node) + len(n.Field)
	case *parse.IfNode:
		c += countNodes(n.Pipe) + countNodes(n.List) + countNodes(n.ElseList)
	case *parse.WithNode:
		c += countNodes(n.Pipe) + countNodes(n.List) + countNodes(n.ElseList)
	case *parse.RangeNode:
		c += countNodes(n.Pipe) + countNodes(n.List) + countNodes(n.ElseList)
	case *parse.TemplateNode:
		c += countNodes(n.Pipe)
	case *parse.FieldNode:
		c += len(n.Ident)
	case *parse.VariableNode:
		c += len(n.Ident)
	}
	return c
}
