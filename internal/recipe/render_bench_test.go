package recipe

import (
	"context"
	"testing"
)

// The fixed cost of a render: parsing, binding and instrumenting.
func BenchmarkRenderSmall(b *testing.B) {
	for b.Loop() {
		render(context.Background(), "t", []byte("name: {{ .x }}\n"), map[string]any{"x": 1}, maxRendered)
	}
}
