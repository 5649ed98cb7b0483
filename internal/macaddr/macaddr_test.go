package macaddr

import "testing"

// The expected values were computed by the original lab's script
// (zlib.crc32 of the name, "52:54:" and the eight hex digits in pairs).
func TestFromName(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"master", "52:54:2d:09:a3:d6"},
		{"node-one", "52:54:c8:7f:cc:9d"},
		{"node-two", "52:54:a3:d9:c0:0a"},
		{"n1", "52:54:eb:79:54:ec"},
		{"a", "52:54:e8:b7:be:43"},
		{"kubernetes-worker-01", "52:54:73:bd:0e:c5"},
	} {
		if got := String(tc.name); got != tc.want {
			t.Errorf("String(%q) = %s, want %s", tc.name, got, tc.want)
		}
		if FromName(tc.name)[0]&0x03 != 0x02 {
			t.Errorf("FromName(%q) is not a locally administered unicast address", tc.name)
		}
	}
}

func TestCollisions(t *testing.T) {
	// "plumless" and "buckeroo" are a known CRC32 collision.
	got := Collisions([]string{"plumless", "master", "buckeroo"})
	if len(got) != 1 || got[0].First != "plumless" || got[0].Second != "buckeroo" {
		t.Fatalf("Collisions = %v, want plumless/buckeroo", got)
	}
	if got := Collisions([]string{"master", "node-one", "node-two"}); len(got) != 0 {
		t.Fatalf("Collisions of the lab's machines = %v, want none", got)
	}
}

func TestUplink(t *testing.T) {
	if got := UplinkString("master"); got != "52:55:2d:09:a3:d6" {
		t.Errorf("UplinkString(master) = %s", got)
	}
	if Uplink("master")[0]&0x03 != 0x02 {
		t.Error("the uplink MAC is not locally administered unicast")
	}
}
