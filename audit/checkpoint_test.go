package audit

import (
	"strings"
	"testing"
	"time"
)

func TestCheckpointRoundTripAndForgery(t *testing.T) {
	priv, pub, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ParsePublicKeys(" " + pub + " ,")
	if err != nil || len(keys) != 1 || keys[0].ID != s.Public().ID {
		t.Fatalf("ParsePublicKeys = %+v, %v", keys, err)
	}
	hash := strings.Repeat("ab", 32)
	c := s.Checkpoint(42, hash, time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC), false)
	line := c.String()
	if strings.Contains(line, priv) {
		t.Fatal("the checkpoint line contains the signing key")
	}
	got, err := ParseCheckpoint("12:00 jitbot: `" + line + "`")
	if err != nil {
		t.Fatalf("ParseCheckpoint(%q): %v", line, err)
	}
	if got.String() != line || got.Verify(keys) != nil {
		t.Fatalf("round trip: %q, verify %v", got.String(), got.Verify(keys))
	}
	// Any field changed breaks the signature.
	for name, edit := range map[string]func(c *Checkpoint){
		"seq":    func(c *Checkpoint) { c.Seq++ },
		"hash":   func(c *Checkpoint) { c.Hash = strings.Repeat("cd", 32) },
		"at":     func(c *Checkpoint) { c.At = c.At.Add(time.Millisecond) },
		"accept": func(c *Checkpoint) { c.Accept = true },
	} {
		f := got
		f.Sig = append([]byte(nil), got.Sig...)
		edit(&f)
		if err := f.Verify(keys); err == nil || !strings.Contains(err.Error(), "does not verify") {
			t.Errorf("edited %s: Verify = %v, want a signature failure", name, err)
		}
	}
	_, otherPub, _ := GenerateKey()
	other, _ := ParsePublicKeys(otherPub)
	if err := got.Verify(other); err == nil || !strings.Contains(err.Error(), "not among the trusted") {
		t.Fatalf("untrusted key: %v", err)
	}
	if err := got.Verify(nil); err == nil || !strings.Contains(err.Error(), "no public key") {
		t.Fatalf("no key: %v", err)
	}
	unsigned := (*Signer)(nil).Checkpoint(7, hash, time.Now(), true)
	back, err := ParseCheckpoint(unsigned.String())
	if err != nil || back.Signed() || !back.Accept || back.Verify(keys) != nil {
		t.Fatalf("unsigned checkpoint: %+v, %v", back, err)
	}
	for _, bad := range []string{
		CheckpointPrefix + " seq=0 hash=" + hash + " at=2026-01-02T03:04:05.000Z",
		CheckpointPrefix + " seq=1 hash=xyz at=2026-01-02T03:04:05.000Z",
		CheckpointPrefix + " seq=1 hash=" + hash + " at=2026-01-02T03:04:05.000Z key=abc",
		CheckpointPrefix + " seq=1 seq=2 hash=" + hash + " at=2026-01-02T03:04:05.000Z",
	} {
		if _, err := ParseCheckpoint(bad); err == nil {
			t.Errorf("ParseCheckpoint(%q) accepted a malformed line", bad)
		}
	}
	if _, err := ParseSigningKey("c2VjcmV0"); err == nil || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Fatalf("bad signing key: %v (must not echo the key)", err)
	}
}
