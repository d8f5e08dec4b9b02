package azure

import "testing"

func TestUUIDv5(t *testing.T) {
	dns := [16]byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}
	if got := uuidV5(dns, "www.example.com"); got != "2ed6657d-e927-568b-95e1-2665a8aea6a2" {
		t.Fatalf("uuidV5 = %s", got)
	}
	first, again := AssignmentName("g-1"), AssignmentName("g-1")
	if first != again || first == AssignmentName("g-2") ||
		RequestName("g-1", "assign", 0) == RequestName("g-1", "assign", 1) || !IsGUID(AssignmentName("g-1")) {
		t.Fatal("names are not deterministic and distinct")
	}
}
