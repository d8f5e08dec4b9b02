package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
)

// FuzzSignature: what the sender signs, the specification's verifier (package webhookfake, which shares no code
// with the sender) accepts; changing any byte of the signed content, or signing with another key, is refused.
func FuzzSignature(f *testing.F) {
	f.Add([]byte("whsec-raw-key"), "msg_2Kq1", []byte(`{"type":"grant","grant_id":"g-1"}`), uint16(0), byte(1))
	f.Add([]byte{0}, "1", []byte{}, uint16(7), byte(0x80))
	f.Add([]byte("k"), "id with spaces", []byte("\x00\xff"), uint16(65535), byte(0xff))
	f.Fuzz(func(t *testing.T, key []byte, id string, body []byte, at uint16, flip byte) {
		if len(key) == 0 || strings.TrimSpace(id) == "" || strings.ContainsAny(id, "\r\n") {
			return // the sender refuses an empty key; ids are jitbot's own, one header line
		}
		now := time.Unix(1_800_000_000, 0)
		ts := strconv.FormatInt(now.Unix(), 10)
		h := http.Header{}
		h.Set(webhookfake.HeaderID, id)
		h.Set(webhookfake.HeaderTimestamp, ts)
		h.Set(webhookfake.HeaderSignature, sign(key, id, ts, body))
		if err := webhookfake.Verify(key, h, body, now); err != nil {
			t.Fatalf("a genuine signature is refused: %v", err)
		}
		if flip == 0 {
			flip = 1
		}
		if len(body) > 0 {
			changed := append([]byte(nil), body...)
			changed[int(at)%len(changed)] ^= flip
			if err := webhookfake.Verify(key, h, changed, now); err == nil {
				t.Fatalf("a changed body verified")
			}
		}
		if err := webhookfake.Verify(key, h, append(append([]byte(nil), body...), flip), now); err == nil {
			t.Fatalf("a body with a byte appended verified")
		}
		other := append(append([]byte(nil), key...), flip)
		if err := webhookfake.Verify(other, h, body, now); err == nil {
			t.Fatalf("a signature verified under another key")
		}
		later := h.Clone()
		later.Set(webhookfake.HeaderTimestamp, strconv.FormatInt(now.Unix()+1, 10))
		if err := webhookfake.Verify(key, later, body, now); err == nil {
			t.Fatalf("a signature verified with another timestamp")
		}
	})
}

// FuzzVerifyForgery: whatever headers and body an attacker sends, Verify accepts only when the signature
// header carries the true HMAC of exactly "id.timestamp.body" (computed here from the specification).
func FuzzVerifyForgery(f *testing.F) {
	key := []byte("fuzz-verify-key")
	now := time.Unix(1_800_000_000, 0)
	good := func(id, ts string, body []byte) string {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id + "." + ts + "."))
		mac.Write(body)
		return base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	ts := "1800000000"
	f.Add("msg_1", ts, "v1,"+good("msg_1", ts, []byte("{}")), []byte("{}"))
	f.Add("msg_1", ts, "v1a,"+good("msg_1", ts, []byte("{}")), []byte("{}"))
	f.Add("msg_1", "+1800000000", "v1,"+good("msg_1", ts, []byte("{}")), []byte("{}"))
	f.Add("msg_1", ts, "v1, v1,"+good("msg_1", ts, []byte("{}")), []byte("{}"))
	f.Add("msg_1", ts, "v1,"+strings.TrimRight(good("msg_1", ts, []byte("{}")), "="), []byte("{}"))
	f.Fuzz(func(t *testing.T, id, ts, sigs string, body []byte) {
		h := http.Header{webhookfake.HeaderID: {id}, webhookfake.HeaderTimestamp: {ts}, webhookfake.HeaderSignature: {sigs}}
		if webhookfake.Verify(key, h, body, now) != nil {
			return
		}
		want, _ := base64.StdEncoding.DecodeString(good(id, ts, body))
		for _, entry := range strings.Fields(sigs) {
			if v, ok := strings.CutPrefix(entry, "v1,"); ok {
				if got, err := base64.StdEncoding.DecodeString(v); err == nil && hmac.Equal(got, want) {
					return
				}
			}
		}
		t.Fatalf("accepted id %q ts %q signatures %q without the true HMAC", id, ts, sigs)
	})
}
