package recipe

import "testing"

func TestTextProblem(t *testing.T) {
	for _, tc := range []struct {
		in        string
		line, col int // 0: no problem
		what      string
	}{
		{"a: b\n", 0, 0, ""},
		{"\ufeffa: b\n", 0, 0, ""},                 // a UTF-8 byte order mark
		{"a: \"\u0085\t\u00a0é€𝄞\"\r\n", 0, 0, ""}, // NEL, tab, NBSP, multi-byte
		{"a: b\nc: \xff\n", 2, 4, "invalid UTF-8 (byte 0xFF): save the file as UTF-8"},
		{"é: \xe9t\xe9\n", 1, 4, "invalid UTF-8 (byte 0xE9): save the file as UTF-8"},
		{"a: \xe2\x82\n", 1, 4, "invalid UTF-8 (byte 0xE2): save the file as UTF-8"}, // truncated
		{"a:\n  - x\x00\n", 2, 6, "control character U+0000 is not allowed in YAML"},
		{"a: \x7f\n", 1, 4, "control character U+007F is not allowed in YAML"},
		{"a: \u0086\n", 1, 4, "control character U+0086 is not allowed in YAML"},
		{"a: \uffff\n", 1, 4, "control character U+FFFF is not allowed in YAML"},
	} {
		off, what := textProblem([]byte(tc.in))
		if tc.line == 0 {
			if off >= 0 {
				t.Errorf("textProblem(%q) = %d, %q; want none", tc.in, off, what)
			}
			continue
		}
		line, col := lineCol([]byte(tc.in), max(off, 0))
		if off < 0 || line != tc.line || col != tc.col || what != tc.what {
			t.Errorf("textProblem(%q) = %d:%d %q; want %d:%d %q", tc.in, line, col, what, tc.line, tc.col, tc.what)
		}
	}
}

func TestUTF16Problem(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"\xff\xfea\x00", "UTF-16 (it starts with a byte order mark)"},
		{"\xfe\xff\x00a", "UTF-16 (it starts with a byte order mark)"},
		{"\xff\xfe\x00\x00a\x00\x00\x00", "UTF-32 (it starts with a byte order mark)"},
		{"n\x00a\x00", "UTF-16 (every other byte is NUL)"},
		{"\x00n\x00a", "UTF-16 (every other byte is NUL)"},
		{"name: x\n", ""},
		{"", ""},
		{"\x00\x00", ""},
	} {
		if got := utf16Problem([]byte(tc.in)); got != tc.want {
			t.Errorf("utf16Problem(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
