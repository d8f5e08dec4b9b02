package workload_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jitbot/jitbot/workload"
	"github.com/jitbot/jitbot/workload/oidcfake"
)

// FuzzChainAuthenticate: whatever the bearer, the chain refuses with a stable code wrapping
// ErrUnauthenticated (or accepts a genuinely signed token), never panics, and never echoes the input.
// The inputs are ~1 KiB tokens, so bound minimization when fuzzing, or the fuzzer seems to stall while it
// shrinks an interesting input byte by byte:
//
//	go test -run '^$' -fuzz FuzzChainAuthenticate -fuzzminimizetime 1s ./workload/
func FuzzChainAuthenticate(f *testing.F) {
	clk := newClock()
	iss, err := oidcfake.New("127.0.0.1:0", oidcfake.Options{Now: clk.Now})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { iss.Close() })
	good := iss.Sign(ghClaims())
	var goodJTI any
	for _, seed := range []string{
		good, good + "x", strings.Replace(good, ".", "..", 1), iss.SignWith(ghClaims(), oidcfake.BadSignature()),
		iss.SignWith(ghClaims(), oidcfake.Expired()), "jit_tok-2345678923_" + strings.Repeat("A", 43), "jit_", "",
		"eyJhbGciOiJub25lIn0.e30.", "e30.e30.e30", "Bearer x", "\x00\xff", strings.Repeat(".", 100),
	} {
		f.Add(seed)
	}
	v, err := workload.NewOIDC(f.Context(), []workload.IssuerConfig{ciConfig("github", iss)}, workload.OIDCOptions{Now: clk.Now})
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	st := openBoltAt(f, dir)
	auth := workload.Chain(v, workload.NewTokens(st, workload.TokensOptions{Now: clk.Now}))
	goodID, err := auth.Authenticate(f.Context(), good)
	if err != nil {
		f.Fatal(err)
	}
	goodJTI = goodID.Claims["jti"]
	f.Fuzz(func(t *testing.T, bearer string) {
		id, err := auth.Authenticate(t.Context(), bearer)
		if err == nil {
			// Only the one token signed with a valid lifetime can verify (perhaps re-encoded: base64 with
			// other padding bits decodes to the same signed bytes).
			if id.Method != workload.MethodOIDC || id.Claims["jti"] != goodJTI {
				t.Fatalf("accepted %q as %+v", bearer, id)
			}
			return
		}
		if !errors.Is(err, workload.ErrUnauthenticated) || workload.Reason(err) == "" {
			t.Fatalf("refusal %v has no code or does not wrap ErrUnauthenticated", err)
		}
		if len(bearer) >= 40 && strings.Contains(err.Error(), bearer) {
			t.Fatalf("refusal echoes the credential: %v", err)
		}
	})
}

// FuzzGlob: a pattern without wildcards or escapes matches exactly itself, and matching never panics.
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{{"acme/*", "acme/web"}, {"**", "a/b"}, {`a\*`, "a*"}, {"?", "/"}, {"(", "("}, {"\xff", "\xff"}, {"\ufffd", "\xff"}, {"ü?", "üx"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, value string) {
		got := workload.Glob(pattern, value)
		if !utf8.ValidString(pattern) || !utf8.ValidString(value) {
			if got {
				t.Fatalf("Glob(%q, %q) matched invalid UTF-8", pattern, value)
			}
			return
		}
		if !strings.ContainsAny(pattern, `*?\`) && got != (pattern == value) {
			t.Fatalf("Glob(%q, %q) = %v for a literal pattern", pattern, value, got)
		}
	})
}
