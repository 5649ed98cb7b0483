package boot

import "testing"

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int // sign
	}{
		{"6.1.0-13-amd64", "6.1.0-13-amd64", 0},
		{"6.1.0-13-amd64", "6.1.0-9-amd64", 1},
		{"6.12.38+deb13-amd64", "6.12.9+deb13-amd64", 1},
		{"6.12.38+deb13-amd64", "6.1.0-40-amd64", 1},
		{"6.1.0-040-amd64", "6.1.0-40-amd64", 0},
		{"6.13~rc1-amd64", "6.13-amd64", -1},
		{"6.13", "6.13~rc1", 1},
		{"6.13", "6.13.1", -1},
		{"6.13a", "6.13+", -1}, // letters sort before other characters
		{"6.14.0-63.fc42.x86_64", "6.14.0-63.fc41.x86_64", 1},
		{"", "1", -1},
	} {
		got := compareVersions(tc.a, tc.b)
		if sign(got) != tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want sign %d", tc.a, tc.b, got, tc.want)
		}
		if sign(compareVersions(tc.b, tc.a)) != -tc.want {
			t.Errorf("compareVersions(%q, %q) is not antisymmetric", tc.b, tc.a)
		}
	}
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
