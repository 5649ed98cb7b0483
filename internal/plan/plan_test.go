package plan

import (
	"context"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/labbake/labbake/internal/golden"
	"github.com/labbake/labbake/internal/recipe"
)

// TestPlanGolden resolves the recipe package's good lab and compares each
// role's plan with its golden JSON, so any change to digests, the epoch or
// the plan's shape shows in review.
func TestPlanGolden(t *testing.T) {
	lab, err := recipe.Load("../recipe/testdata/good")
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range lab.Roles() {
		t.Run(role, func(t *testing.T) {
			r, err := lab.Recipe(role)
			if err != nil {
				t.Fatal(err)
			}
			epoch, src, err := Epoch("", lab)
			if err != nil {
				t.Fatal(err)
			}
			p, err := New(context.Background(), lab, r, epoch, src, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.JSON()
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", role+".plan.json"), got)
		})
	}
}

func TestEpoch(t *testing.T) {
	e := int64(1234)
	for _, tc := range []struct {
		name, sde string
		lab       *recipe.Lab
		want      int64
		src       string
		bad       bool
	}{
		{"default", "", &recipe.Lab{}, DefaultEpoch, "default", false},
		{"lab", "", &recipe.Lab{Epoch: &e}, 1234, "lab.yaml", false},
		{"env wins", "99", &recipe.Lab{Epoch: &e}, 99, "SOURCE_DATE_EPOCH", false},
		{"env garbage", "yesterday", &recipe.Lab{}, 0, "", true},
		{"env negative", "-5", &recipe.Lab{}, 0, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, src, err := Epoch(tc.sde, tc.lab)
			if (err != nil) != tc.bad {
				t.Fatalf("err = %v, want error %v", err, tc.bad)
			}
			if !tc.bad && (got != tc.want || src != tc.src) {
				t.Errorf("Epoch = %d (%s), want %d (%s)", got, src, tc.want, tc.src)
			}
		})
	}
}

func TestUUID(t *testing.T) {
	a := &Plan{Digest: "sha256:aa"}
	b := &Plan{Digest: "sha256:bb"}
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for _, p := range []*Plan{a, b} {
		for _, purpose := range []string{"disk", "root-fs"} {
			if u := p.UUID(purpose); !re.MatchString(u) {
				t.Errorf("UUID(%q) = %q: not an RFC 4122 version 8 UUID", purpose, u)
			}
		}
	}
	if a.UUID("disk") != a.UUID("disk") {
		t.Error("UUID not stable")
	}
	if a.UUID("disk") == a.UUID("root-fs") || a.UUID("disk") == b.UUID("disk") {
		t.Error("UUIDs collide across purposes or plans")
	}
}
