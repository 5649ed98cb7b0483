package recipe

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
)

// Binary size units.
const (
	KiB int64 = 1 << (10 * (iota + 1))
	MiB
	GiB
	TiB
)

var sizeRe = regexp.MustCompile(`^([0-9]+) ?([A-Za-z]*)$`)

// ParseSize parses a size such as "8GiB", "512MiB", "10G" or "4096": a
// whole number with an optional binary unit B, K/KiB, M/MiB, G/GiB, T/TiB
// (1K = 1KiB = 1024 bytes); no unit means bytes.
func ParseSize(s string) (int64, error) {
	m := sizeRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("invalid size %q: use a whole number with an optional unit B, K, KiB, M, MiB, G, GiB, T or TiB", s)
	}
	var unit int64
	switch m[2] {
	case "", "B":
		unit = 1
	case "K", "KiB":
		unit = KiB
	case "M", "MiB":
		unit = MiB
	case "G", "GiB":
		unit = GiB
	case "T", "TiB":
		unit = TiB
	default:
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, K, KiB, M, MiB, G, GiB, T or TiB)", s, m[2])
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > math.MaxInt64/unit {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return n * unit, nil
}

// FormatSize prints n bytes with the largest binary unit that divides it.
func FormatSize(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if n != 0 && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%dB", n)
}
