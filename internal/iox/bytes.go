package iox

import "fmt"

// Bytes formats n bytes as "512 B", "1.5 KiB", "12.3 MiB", "1.2 GiB": at
// most 999.9 of a unit, so a column of them keeps its width. Every byte
// count labbake shows goes through it.
func Bytes(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	v, units := float64(n)/1024, []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := 0
	for v >= 999.95 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
