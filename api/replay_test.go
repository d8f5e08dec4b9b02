package api_test

import (
	"crypto/elliptic"
	"encoding/base64"
	"math/big"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/internal/pipelinetest"
	"github.com/jitbot/jitbot/workload/oidcfake"
)

// es256Rigs are rigs (one per store back end) whose issuer signs with ES256, whose signatures can be
// re-encoded (an ECDSA signature (r, s) also verifies as (r, n-s)) without the issuer's key.
func es256Rigs(t *testing.T) []*rig {
	var rigs []*rig
	for _, b := range backendtest.All() {
		iss, err := oidcfake.New("127.0.0.1:0", oidcfake.Options{Audience: pipelinetest.Audience, Algorithm: jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = iss.Close() })
		rigs = append(rigs, newRigWith(t, b.Open(t), iss))
	}
	return rigs
}

// malleate returns the same ES256 JWT with its signature's s replaced by n-s: a different string that
// verifies with the same key.
func malleate(t *testing.T, jwt string) string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("not an ES256 signature: %v (%d bytes)", err, len(sig))
	}
	n := elliptic.P256().Params().N
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(n, s)
	out := make([]byte, 64)
	copy(out, sig[:32])
	s.FillBytes(out[32:])
	parts[2] = base64.RawURLEncoding.EncodeToString(out)
	if parts[2] == strings.Split(jwt, ".")[2] {
		t.Fatal("the re-encoded signature equals the original")
	}
	return strings.Join(parts, ".")
}

// TestTokenCreatesOneRequest: an OIDC ID token creates at most one request. A stolen token replayed while it
// is valid (as sent, re-encoded, or many times at once) is refused with 409 token_reused and stores nothing;
// the job's own follow-up calls with the same token keep working.
func TestTokenCreatesOneRequest(t *testing.T) {
	body := map[string]string{"role": "deploy", "reason": "deploy v1"}
	t.Run("replayed", func(t *testing.T) {
		eachStore(t, func(t *testing.T, r *rig) {
			tok := r.token("refs/heads/a", "staging", "1")
			// A create refused for its content does not use the token up.
			if bad := r.call("POST", "/api/v1/requests", tok, map[string]string{"role": "deploy", "reason": "x", "duration": "2h"}); bad.status != 400 || bad.str("code") != "bad_duration" {
				t.Fatalf("over the maximum: %d %s", bad.status, bad.raw)
			}
			first := r.call("POST", "/api/v1/requests", tok, body)
			if first.status != 201 {
				t.Fatalf("first create: %d %s", first.status, first.raw)
			}
			again := r.call("POST", "/api/v1/requests", tok, body)
			if again.status != 409 || again.str("code") != "token_reused" {
				t.Fatalf("replayed create: %d %s", again.status, again.raw)
			}
			if n := r.pending(); n != 1 {
				t.Fatalf("%d pending requests after a replay, want 1", n)
			}
			if got := r.call("GET", "/api/v1/requests/"+first.str("id"), tok, nil); got.status != 200 {
				t.Fatalf("the job's own read with its token: %d %s", got.status, got.raw)
			}
			if fresh := r.call("POST", "/api/v1/requests", r.token("refs/heads/a", "staging", "1"), body); fresh.status != 201 {
				t.Fatalf("a fresh token of the same run: %d %s", fresh.status, fresh.raw)
			}
			if len(r.audit("auth-refused")) == 0 {
				t.Fatal("no audit line for the replay")
			}
			r.noLeak(tok)
		})
	})
	t.Run("concurrent", func(t *testing.T) {
		eachStore(t, func(t *testing.T, r *rig) {
			tok := r.token("refs/heads/a", "staging", "1")
			const n = 8
			codes := make([]int, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { codes[i] = r.call("POST", "/api/v1/requests", tok, body).status })
			}
			wg.Wait()
			created := 0
			for _, c := range codes {
				switch c {
				case 201:
					created++
				case 409:
				default:
					t.Fatalf("unexpected status %d in %v", c, codes)
				}
			}
			if created != 1 || r.pending() != 1 {
				t.Fatalf("%d creates answered 201 and %d requests stored, want 1 and 1 (%v)", created, r.pending(), codes)
			}
		})
	})
	t.Run("re-encoded signature", func(t *testing.T) {
		for _, r := range es256Rigs(t) {
			tok := r.token("refs/heads/a", "staging", "1")
			if first := r.call("POST", "/api/v1/requests", tok, body); first.status != 201 {
				t.Fatalf("first create: %d %s", first.status, first.raw)
			}
			other := malleate(t, tok)
			if got := r.call("GET", "/api/v1/requests/none-such", other, nil); got.status != 404 {
				t.Fatalf("the re-encoded token should still authenticate (404 for an unknown id), got %d %s", got.status, got.raw)
			}
			if again := r.call("POST", "/api/v1/requests", other, body); again.status != 409 || again.str("code") != "token_reused" {
				t.Fatalf("re-encoded replay: %d %s", again.status, again.raw)
			}
			if n := r.pending(); n != 1 {
				t.Fatalf("%d pending requests, want 1", n)
			}
		}
	})
}
