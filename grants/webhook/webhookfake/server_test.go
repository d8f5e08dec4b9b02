package webhookfake

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func signed(t *testing.T, key []byte, id string, p Payload, genHeader string) *http.Request {
	t.Helper()
	body, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	r := httptest.NewRequest(http.MethodPost, "/jitbot", strings.NewReader(string(body)))
	r.Header.Set(HeaderID, id)
	r.Header.Set(HeaderTimestamp, ts)
	r.Header.Set(HeaderSignature, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	if genHeader != "" {
		r.Header.Set(HeaderGeneration, genHeader)
	}
	return r
}

// The reference receiver applies the contract's ordering rule: per binding, an operation older than the last
// one applied is acknowledged and ignored; a resend of the same generation is applied again.
func TestServerIgnoresOlderGenerations(t *testing.T) {
	key := []byte("order-test-key")
	s := NewHandler(key)
	send := func(typ string, gen uint64, header string) int {
		w := httptest.NewRecorder()
		p := Payload{Type: typ, GrantID: "g1", BindingKey: "b1", Principal: "alice", Generation: gen}
		s.ServeHTTP(w, signed(t, key, typ+"_g1_"+strconv.FormatUint(gen, 10), p, header))
		return w.Code
	}
	steps := []struct {
		typ     string
		gen     uint64
		header  string
		status  int
		present bool
		stale   bool
	}{
		{"grant", 5, "5", 200, true, false},
		{"revoke", 3, "3", 200, true, true},   // older than the grant: ignored
		{"grant", 5, "5", 200, true, false},   // a resend of the same operation
		{"revoke", 6, "6", 200, false, false}, // newer: applied
		{"grant", 4, "4", 200, false, true},   // the late call: ignored
		{"grant", 9, "8", 400, false, false},  // header disagrees with the signed payload
		{"grant", 0, "", 200, true, false},    // no generation: applied (not ordered)
	}
	for i, st := range steps {
		if got := send(st.typ, st.gen, st.header); got != st.status {
			t.Fatalf("step %d (%s %d): status %d, want %d", i, st.typ, st.gen, got, st.status)
		}
		if got := s.Present("b1"); got != st.present {
			t.Fatalf("step %d (%s %d): present %v, want %v", i, st.typ, st.gen, got, st.present)
		}
		ds := s.Deliveries()
		if d := ds[len(ds)-1]; d.Stale != st.stale {
			t.Fatalf("step %d (%s %d): stale %v, want %v", i, st.typ, st.gen, d.Stale, st.stale)
		}
	}
}
