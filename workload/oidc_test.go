package workload_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/jitbot/jitbot/workload"
	"github.com/jitbot/jitbot/workload/oidcfake"
)

// clock is a settable clock shared by the fake issuer and the verifier.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func startIssuer(t *testing.T, clk *clock, opts ...func(*oidcfake.Options)) *oidcfake.Issuer {
	t.Helper()
	o := oidcfake.Options{Now: clk.Now}
	for _, f := range opts {
		f(&o)
	}
	iss, err := oidcfake.New("127.0.0.1:0", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { iss.Close() })
	return iss
}

func ciConfig(name string, iss *oidcfake.Issuer) workload.IssuerConfig {
	return workload.IssuerConfig{Name: name, URL: iss.URL(), Audiences: []string{"jitbot", "jitbot-staging"}, RequiredClaims: []string{"repository", "ref"}}
}

func newVerifier(t *testing.T, clk *clock, cfgs ...workload.IssuerConfig) *workload.OIDC {
	t.Helper()
	o, err := workload.NewOIDC(t.Context(), cfgs, workload.OIDCOptions{Now: clk.Now})
	if err != nil {
		t.Fatalf("NewOIDC: %v", err)
	}
	return o
}

func ghClaims() map[string]any {
	return oidcfake.GitHubActions("acme/web", "refs/heads/main", "production")
}

// wantRefused checks the refusal's code, that it wraps ErrUnauthenticated, and that no part of the token
// (its payload or signature, or the whole) appears in the message.
func wantRefused(t *testing.T, err error, code, token string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want refusal %q", code)
	}
	if !errors.Is(err, workload.ErrUnauthenticated) {
		t.Fatalf("err %v does not wrap ErrUnauthenticated", err)
	}
	if got := workload.Reason(err); got != code {
		t.Fatalf("Reason = %q (%v), want %q", got, err, code)
	}
	msg := err.Error()
	if len(token) >= 8 && strings.Contains(msg, token) {
		t.Fatalf("error message contains the token: %s", msg)
	}
	for i, part := range strings.Split(token, ".") {
		if i > 0 && len(part) >= 8 && strings.Contains(msg, part) {
			t.Fatalf("error message contains token part %d: %s", i, msg)
		}
	}
}

func TestValidTokenVerifiesWithItsClaims(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk)
	v := newVerifier(t, clk, ciConfig("github", iss))
	tok := iss.Sign(ghClaims())
	id, err := v.Authenticate(t.Context(), tok)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if id.Method != workload.MethodOIDC || id.Issuer != iss.URL() || id.IssuerName != "github" ||
		id.Subject != "repo:acme/web:environment:production" || id.Owner != "" {
		t.Fatalf("identity = %+v", id)
	}
	if !id.Expiry.Equal(clk.Now().Add(5 * time.Minute)) {
		t.Fatalf("Expiry = %v, want %v", id.Expiry, clk.Now().Add(5*time.Minute))
	}
	for k, want := range map[string]any{"repository": "acme/web", "ref": "refs/heads/main", "environment": "production",
		"run_id": "4242424242", "aud": "jitbot", "iat": clk.Now().Unix()} {
		if got := id.Claims[k]; got != want {
			t.Errorf("claim %s = %#v, want %#v", k, got, want)
		}
	}
	// A second verification uses the cached discovery and keys.
	if _, err := v.Authenticate(t.Context(), iss.Sign(ghClaims())); err != nil {
		t.Fatal(err)
	}
	if d, j := iss.DiscoveryRequests(), iss.JWKSRequests(); d != 1 || j != 1 {
		t.Fatalf("issuer served %d discovery and %d JWKS requests, want 1 and 1 (cached)", d, j)
	}
}

func TestAudienceListAndSecondAudience(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk)
	v := newVerifier(t, clk, ciConfig("github", iss))
	for _, aud := range [][]string{{"jitbot-staging"}, {"something-else", "jitbot"}} {
		tok := iss.SignWith(ghClaims(), oidcfake.Audience(aud...))
		if _, err := v.Authenticate(t.Context(), tok); err != nil {
			t.Errorf("aud %v: %v", aud, err)
		}
	}
}

func TestBadTokensAreRefusedWithTheirReason(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk)
	other := startIssuer(t, clk) // a second configured issuer: its name must not be usable with iss's key
	unconfigured := startIssuer(t, clk)
	v := newVerifier(t, clk, ciConfig("github", iss), ciConfig("gitlab", other))

	hs256 := hmacToken(t, iss.URL())
	cases := []struct {
		name, code, token string
	}{
		{"signed with a key the issuer never published", workload.ReasonBadSignature, iss.SignWith(ghClaims(), oidcfake.WrongKey())},
		{"signature bits flipped", workload.ReasonBadSignature, iss.SignWith(ghClaims(), oidcfake.BadSignature())},
		{"unknown kid", workload.ReasonBadSignature, iss.SignWith(ghClaims(), oidcfake.UnknownKeyID())},
		{"claims another configured issuer", workload.ReasonBadSignature, iss.SignWith(ghClaims(), oidcfake.IssuerURL(other.URL()))},
		{"HS256 with a guessable secret", workload.ReasonBadSignature, hs256},
		{"alg none", workload.ReasonBadSignature, unsignedToken(iss.URL())},
		{"wrong audience", workload.ReasonWrongAudience, iss.SignWith(ghClaims(), oidcfake.Audience("sts.amazonaws.com"))},
		{"wrong issuer", workload.ReasonUnknownIssuer, iss.SignWith(ghClaims(), oidcfake.IssuerURL("https://evil.example"))},
		{"a real issuer that is not configured", workload.ReasonUnknownIssuer, unconfigured.Sign(ghClaims())},
		{"expired", workload.ReasonExpired, iss.SignWith(ghClaims(), oidcfake.Expired())},
		{"not yet valid", workload.ReasonNotYetValid, iss.SignWith(ghClaims(), oidcfake.NotYetValid())},
		{"issued in the future", workload.ReasonNotYetValid, iss.SignWith(withClaim(ghClaims(), "iat", clk.Now().Add(time.Hour).Unix()), oidcfake.Without("nbf"))},
		{"missing required claim", workload.ReasonMissingClaim, iss.SignWith(ghClaims(), oidcfake.Without("repository"))},
		{"empty required claim", workload.ReasonMissingClaim, iss.SignWith(withClaim(ghClaims(), "ref", ""))},
		{"no exp", workload.ReasonMissingClaim, iss.SignWith(ghClaims(), oidcfake.Without("exp"))},
		{"no sub", workload.ReasonMissingClaim, iss.SignWith(ghClaims(), oidcfake.Without("sub"))},
		{"no iss", workload.ReasonMissingClaim, iss.SignWith(ghClaims(), oidcfake.Without("iss"))},
		{"not a JWT", workload.ReasonMalformed, "hello"},
		{"three dots of garbage", workload.ReasonMalformed, "a.b.c"},
		{"payload not JSON", workload.ReasonMalformed, replacePart(iss.Sign(ghClaims()), 1, base64.RawURLEncoding.EncodeToString([]byte("not json")))},
		{"two tokens glued", workload.ReasonMalformed, iss.Sign(ghClaims()) + "." + iss.Sign(ghClaims())},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.Authenticate(t.Context(), tc.token)
			wantRefused(t, err, tc.code, tc.token)
			if tc.code == workload.ReasonUnknownIssuer && (strings.Contains(err.Error(), iss.URL()) || strings.Contains(err.Error(), other.URL())) {
				t.Fatalf("refusal of an unknown issuer lists the trusted ones: %v", err)
			}
			if id.Method != "" || id.Claims != nil {
				t.Fatalf("refusal returned an identity: %+v", id)
			}
		})
	}
}

func withClaim(c map[string]any, k string, v any) map[string]any {
	c[k] = v
	return c
}

func replacePart(jwt string, i int, part string) string {
	parts := strings.Split(jwt, ".")
	parts[i] = part
	return strings.Join(parts, ".")
}

// hmacToken is the classic algorithm-confusion forgery: HS256 "signed" with a secret the attacker chose.
func hmacToken(t *testing.T, iss string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	claims := ghClaims()
	claims["iss"], claims["aud"], claims["exp"] = iss, "jitbot", time.Now().Add(time.Hour).Unix()
	payload, _ := json.Marshal(claims)
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func unsignedToken(iss string) string {
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	claims := ghClaims()
	claims["iss"], claims["aud"], claims["exp"] = iss, "jitbot", time.Now().Add(time.Hour).Unix()
	payload, _ := json.Marshal(claims)
	return hdr + "." + base64.RawURLEncoding.EncodeToString(payload) + ".c2ln"
}

func TestLeeway(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk)
	strict := ciConfig("strict", iss)
	strict.Leeway = 5 * time.Second
	cases := []struct {
		name   string
		cfg    workload.IssuerConfig
		claims func(now int64) map[string]any
		code   string // "" accepted
	}{
		{"expired 10s ago, default 30s leeway", ciConfig("github", iss), func(now int64) map[string]any { return expAt(now - 10) }, ""},
		{"expired 30s ago, default leeway", ciConfig("github", iss), func(now int64) map[string]any { return expAt(now - 30) }, workload.ReasonExpired},
		{"expired 10s ago, 5s leeway", strict, func(now int64) map[string]any { return expAt(now - 10) }, workload.ReasonExpired},
		{"nbf 20s ahead, default leeway", ciConfig("github", iss), func(now int64) map[string]any { return nbfAt(now + 20) }, ""},
		{"nbf 40s ahead, default leeway", ciConfig("github", iss), func(now int64) map[string]any { return nbfAt(now + 40) }, workload.ReasonNotYetValid},
		{"nbf 20s ahead, 5s leeway", strict, func(now int64) map[string]any { return nbfAt(now + 20) }, workload.ReasonNotYetValid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, clk, tc.cfg)
			tok := iss.Sign(tc.claims(clk.Now().Unix()))
			_, err := v.Authenticate(t.Context(), tok)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantRefused(t, err, tc.code, tok)
		})
	}
}

func expAt(exp int64) map[string]any {
	c := ghClaims()
	c["exp"], c["iat"], c["nbf"] = exp, exp-300, exp-300
	return c
}

func nbfAt(nbf int64) map[string]any {
	c := ghClaims()
	c["nbf"], c["iat"], c["exp"] = nbf, nbf, nbf+300
	return c
}

func TestKeyRotation(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk)
	v := newVerifier(t, clk, ciConfig("github", iss))
	ctx := t.Context()
	first := iss.Sign(ghClaims())
	if _, err := v.Authenticate(ctx, first); err != nil {
		t.Fatal(err)
	}

	clk.Advance(time.Minute)
	iss.Rotate()
	second := iss.Sign(ghClaims())
	if _, err := v.Authenticate(ctx, second); err != nil {
		t.Fatalf("token of the new key after a rotation: %v", err)
	}
	if j := iss.JWKSRequests(); j != 2 {
		t.Fatalf("JWKS requests = %d, want 2 (refreshed once for the unknown kid)", j)
	}
	if _, err := v.Authenticate(ctx, first); err != nil {
		t.Fatalf("token of the previous key, still published: %v", err)
	}

	// A second rotation retires the first key: its tokens fail once the verifier has refreshed.
	clk.Advance(time.Minute)
	iss.Rotate()
	third := iss.Sign(ghClaims())
	if _, err := v.Authenticate(ctx, third); err != nil {
		t.Fatalf("token of the third key: %v", err)
	}
	_, err := v.Authenticate(ctx, iss.SignWith(ghClaims(), oidcfake.Expired()))
	wantRefused(t, err, workload.ReasonExpired, "")
	if _, err := v.Authenticate(ctx, second); err != nil {
		t.Fatalf("token of the second key (still published): %v", err)
	}
	clk.Advance(time.Minute) // past the refresh interval: the refresh may happen, and must not bring k1 back
	_, err = v.Authenticate(ctx, first)
	wantRefused(t, err, workload.ReasonBadSignature, first)
}

func TestRetiredKeysStopVerifyingAfterKeyMaxAge(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk)
	v := newVerifier(t, clk, ciConfig("github", iss))
	long := ghClaims()
	long["exp"] = clk.Now().Add(3 * time.Hour).Unix()
	first := iss.Sign(long)
	if _, err := v.Authenticate(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	iss.Rotate()
	iss.Rotate() // the first key is no longer published
	if _, err := v.Authenticate(t.Context(), first); err != nil {
		t.Fatalf("within the key max age the cached key still verifies (documented): %v", err)
	}
	clk.Advance(workload.DefaultKeyMaxAge + time.Second)
	wantRefused(t, errOf(v.Authenticate(t.Context(), first)), workload.ReasonBadSignature, first)
}

func TestRefreshesAreBoundedUnderAFloodOfForgedTokens(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk)
	v := newVerifier(t, clk, ciConfig("github", iss))
	if _, err := v.Authenticate(t.Context(), iss.Sign(ghClaims())); err != nil {
		t.Fatal(err)
	}
	before := iss.JWKSRequests()
	for range 50 {
		tok := iss.SignWith(ghClaims(), oidcfake.WrongKey()) // known kid, bad signature: never a refresh
		wantRefused(t, errOf(v.Authenticate(t.Context(), tok)), workload.ReasonBadSignature, tok)
	}
	if got := iss.JWKSRequests() - before; got != 0 {
		t.Fatalf("forged tokens with a known kid caused %d JWKS fetches, want 0", got)
	}
	clk.Advance(workload.DefaultKeyRefreshMin)
	for range 50 {
		tok := iss.SignWith(ghClaims(), oidcfake.UnknownKeyID())
		wantRefused(t, errOf(v.Authenticate(t.Context(), tok)), workload.ReasonBadSignature, tok)
	}
	if got := iss.JWKSRequests() - before; got != 1 {
		t.Fatalf("50 tokens with unknown kids in one refresh interval caused %d JWKS fetches, want 1", got)
	}
}

func errOf(_ workload.Identity, err error) error { return err }

func TestUnreachableIssuerFailsClosedAndRecovers(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk)
	iss.SetAvailable(false)
	v := newVerifier(t, clk, ciConfig("github", iss)) // construction does not need the issuer
	tok := iss.Sign(ghClaims())
	wantRefused(t, errOf(v.Authenticate(t.Context(), tok)), workload.ReasonIssuerUnavailable, tok)
	if !workload.Retryable(errOf(v.Authenticate(t.Context(), tok))) {
		t.Fatal("issuer_unavailable is not Retryable")
	}
	if d := iss.DiscoveryRequests(); d != 1 {
		t.Fatalf("discovery requests while down = %d, want 1 (a failure is remembered for the retry interval)", d)
	}
	iss.SetAvailable(true)
	clk.Advance(workload.DefaultDiscoveryRetry)
	if _, err := v.Authenticate(t.Context(), iss.Sign(ghClaims())); err != nil {
		t.Fatalf("after the issuer came back: %v", err)
	}
}

func TestClosedPortFailsClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	clk := newClock()
	iss := startIssuer(t, clk)
	v := newVerifier(t, clk, workload.IssuerConfig{Name: "gone", URL: url, Audiences: []string{"jitbot"}})
	tok := iss.SignWith(ghClaims(), oidcfake.IssuerURL(url))
	wantRefused(t, errOf(v.Authenticate(t.Context(), tok)), workload.ReasonIssuerUnavailable, tok)
}

func TestIssuerDownAfterDiscovery(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk)
	v := newVerifier(t, clk, ciConfig("github", iss))
	if _, err := v.Authenticate(t.Context(), iss.Sign(ghClaims())); err != nil {
		t.Fatal(err)
	}
	iss.SetAvailable(false)
	// Known key: verified from the cache, even once the cache is past its max age and cannot be refreshed.
	if _, err := v.Authenticate(t.Context(), iss.Sign(ghClaims())); err != nil {
		t.Fatalf("cached key while the issuer is down: %v", err)
	}
	clk.Advance(workload.DefaultKeyMaxAge + time.Second)
	if _, err := v.Authenticate(t.Context(), iss.Sign(ghClaims())); err != nil {
		t.Fatalf("stale cached key while the issuer is down: %v", err)
	}
	// New key: the JWKS cannot be fetched, which is the issuer's problem, not a bad signature.
	iss.Rotate()
	clk.Advance(workload.DefaultKeyRefreshMin)
	tok := iss.Sign(ghClaims())
	wantRefused(t, errOf(v.Authenticate(t.Context(), tok)), workload.ReasonIssuerUnavailable, tok)
}

func TestDiscoveryMismatchNamesTheProblem(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk)
	cfg := ciConfig("github", iss)
	cfg.URL += "/"
	v := newVerifier(t, clk, cfg)
	tok := iss.SignWith(ghClaims(), oidcfake.IssuerURL(cfg.URL))
	err := errOf(v.Authenticate(t.Context(), tok))
	wantRefused(t, err, workload.ReasonIssuerUnavailable, tok)
	if !strings.Contains(err.Error(), "trailing slash") {
		t.Fatalf("message does not point at the trailing slash: %v", err)
	}
}

func TestConcurrentFirstUseDiscoversOnce(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk)
	v := newVerifier(t, clk, ciConfig("github", iss))
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		tok := iss.Sign(ghClaims())
		wg.Go(func() { _, errs[i] = v.Authenticate(t.Context(), tok) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	if d, j := iss.DiscoveryRequests(), iss.JWKSRequests(); d != 1 || j != 1 {
		t.Fatalf("%d concurrent first calls made %d discovery and %d JWKS requests, want 1 and 1", n, d, j)
	}
}

func TestCancelledCallerDoesNotPoisonDiscovery(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk)
	v := newVerifier(t, clk, ciConfig("github", iss))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	tok := iss.Sign(ghClaims())
	wantRefused(t, errOf(v.Authenticate(ctx, tok)), workload.ReasonIssuerUnavailable, tok)
	// No clock advance: a cancelled caller's failure must not be remembered as the issuer's.
	if _, err := v.Authenticate(t.Context(), tok); err != nil {
		t.Fatalf("after a cancelled caller: %v", err)
	}
}

func TestES256Issuer(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk, func(o *oidcfake.Options) { o.Algorithm = jose.ES256 })
	cfg := ciConfig("gitlab", iss)
	cfg.RequiredClaims = []string{"project_path", "ref"}
	v := newVerifier(t, clk, cfg)
	if _, err := v.Authenticate(t.Context(), iss.Sign(oidcfake.GitLabCI("acme/web", "main", "production"))); err != nil {
		t.Fatal(err)
	}
}

func TestNewOIDCRejectsBadConfig(t *testing.T) {
	ok := workload.IssuerConfig{Name: "github", URL: workload.GitHubActionsIssuer, Audiences: []string{"jitbot"}}
	mod := func(f func(c *workload.IssuerConfig)) []workload.IssuerConfig {
		c := ok
		f(&c)
		return []workload.IssuerConfig{c}
	}
	cases := []struct {
		name string
		cfgs []workload.IssuerConfig
		want string
	}{
		{"no name", mod(func(c *workload.IssuerConfig) { c.Name = "" }), "name is empty"},
		{"no audience", mod(func(c *workload.IssuerConfig) { c.Audiences = nil }), "no audiences"},
		{"empty audience", mod(func(c *workload.IssuerConfig) { c.Audiences = []string{""} }), "empty"},
		{"http off loopback", mod(func(c *workload.IssuerConfig) { c.URL = "http://gitlab.example.com" }), "only https"},
		{"relative URL", mod(func(c *workload.IssuerConfig) { c.URL = "gitlab.example.com" }), "absolute URL"},
		{"query", mod(func(c *workload.IssuerConfig) { c.URL += "?x=1" }), "absolute URL"},
		{"leeway too large", mod(func(c *workload.IssuerConfig) { c.Leeway = time.Hour }), "leeway"},
		{"negative leeway", mod(func(c *workload.IssuerConfig) { c.Leeway = -time.Second }), "leeway"},
		{"duplicate name", []workload.IssuerConfig{ok, {Name: "github", URL: workload.GitLabComIssuer, Audiences: []string{"x"}}}, "name used twice"},
		{"duplicate URL", []workload.IssuerConfig{ok, {Name: "gh2", URL: workload.GitHubActionsIssuer, Audiences: []string{"x"}}}, "also issuer"},
	}
	for _, tc := range cases {
		_, err := workload.NewOIDC(t.Context(), tc.cfgs, workload.OIDCOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := workload.NewOIDC(t.Context(), []workload.IssuerConfig{ok, {Name: "gitlab", URL: workload.GitLabComIssuer, Audiences: []string{"jitbot"}}}, workload.OIDCOptions{}); err != nil {
		t.Fatalf("valid config (issuers not reachable from tests): %v", err)
	}
}

func TestGitHubTokenEndpoint(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk)
	v := newVerifier(t, clk, ciConfig("github", iss))
	get := func(bearer, aud string) (*http.Response, string) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, iss.GitHubTokenURL()+"&audience="+aud, nil)
		req.Header.Set("Authorization", "bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Value string `json:"value"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp, body.Value
	}
	resp, tok := get(iss.RequestToken(), "jitbot-staging")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	id, err := v.Authenticate(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if id.Claims["aud"] != "jitbot-staging" || id.Claims["repository"] != "acme/app" {
		t.Fatalf("claims %v", id.Claims)
	}
	if resp, _ := get("wrong", "jitbot"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong request token: status %d, want 401", resp.StatusCode)
	}
}

func ExampleOIDC() {
	iss, _ := oidcfake.New("127.0.0.1:0", oidcfake.Options{})
	defer iss.Close()
	v, _ := workload.NewOIDC(context.Background(), []workload.IssuerConfig{{
		Name: "github", URL: iss.URL(), Audiences: []string{"jitbot"}, RequiredClaims: []string{"repository"},
	}}, workload.OIDCOptions{})
	id, err := v.Authenticate(context.Background(), iss.Sign(oidcfake.GitHubActions("acme/web", "refs/heads/main", "production")))
	fmt.Println(id.IssuerName, id.Claims["repository"], err)
	_, err = v.Authenticate(context.Background(), iss.SignWith(oidcfake.GitHubActions("acme/web", "refs/heads/main", ""), oidcfake.Expired()))
	fmt.Println(workload.Reason(err))
	// Output:
	// github acme/web <nil>
	// expired
}

func TestAttackerShapedTokens(t *testing.T) {
	clk := newClock()
	iss := startIssuer(t, clk)
	v := newVerifier(t, clk, ciConfig("github", iss))
	if _, err := v.Authenticate(t.Context(), iss.Sign(ghClaims())); err != nil {
		t.Fatal(err)
	}
	// A token carrying its own public key in the header ("jwk"): the key must be ignored.
	embedded := embeddedJWKToken(t, iss.URL(), iss.KeyID())
	wantRefused(t, errOf(v.Authenticate(t.Context(), embedded)), workload.ReasonBadSignature, embedded)
	// An oversized credential is refused before any decoding.
	huge := iss.Sign(withClaim(ghClaims(), "padding", strings.Repeat("x", workload.MaxTokenBytes)))
	wantRefused(t, errOf(v.Authenticate(t.Context(), huge)), workload.ReasonMalformed, huge)
	wantRefused(t, errOf(workload.Chain(v).Authenticate(t.Context(), huge)), workload.ReasonMalformed, huge)
}

func embeddedJWKToken(t *testing.T, iss, kid string) string {
	t.Helper()
	other, err := oidcfake.New("127.0.0.1:0", oidcfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// Sign with the other issuer's key but claim this issuer and this kid, with the other key embedded.
	tok := other.SignWith(withClaim(ghClaims(), "iss", iss), oidcfake.EmbedJWK(), oidcfake.KeyID(kid))
	parts := strings.Split(tok, ".")
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if !strings.Contains(string(hdr), `"jwk"`) || !strings.Contains(string(hdr), kid) {
		t.Fatalf("header %s lacks the embedded jwk or kid", hdr)
	}
	return tok
}

func TestPlainHTTPKeySetIsRefused(t *testing.T) {
	var url string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"issuer": %q, "jwks_uri": "http://keys.example.com/jwks", "id_token_signing_alg_values_supported": ["RS256"]}`, url)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url = "http://" + ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	clk := newClock()
	iss := startIssuer(t, clk)
	v := newVerifier(t, clk, workload.IssuerConfig{Name: "x", URL: url, Audiences: []string{"jitbot"}})
	tok := iss.SignWith(ghClaims(), oidcfake.IssuerURL(url))
	err = errOf(v.Authenticate(t.Context(), tok))
	wantRefused(t, err, workload.ReasonIssuerUnavailable, tok)
	if !strings.Contains(err.Error(), "not https") {
		t.Fatalf("message does not say why: %v", err)
	}
}

func TestRedirectFromHTTPSToHTTPIsRefused(t *testing.T) {
	clk := newClock()
	plain := startIssuer(t, clk) // serves discovery and keys over http
	var tlsURL string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/openid-configuration" {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"issuer": %q, "jwks_uri": %q, "id_token_signing_alg_values_supported": ["RS256"]}`, tlsURL, tlsURL+"/keys")
			return
		}
		http.Redirect(w, r, plain.URL()+"/.well-known/jwks", http.StatusFound) // the keys: downgraded to http
	}))
	defer srv.Close()
	tlsURL = srv.URL
	cfg := workload.IssuerConfig{Name: "tls", URL: tlsURL, Audiences: []string{"jitbot"}}
	v, err := workload.NewOIDC(t.Context(), []workload.IssuerConfig{cfg}, workload.OIDCOptions{HTTPClient: srv.Client(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok := plain.SignWith(ghClaims(), oidcfake.IssuerURL(tlsURL))
	wantRefused(t, errOf(v.Authenticate(t.Context(), tok)), workload.ReasonIssuerUnavailable, tok)
	if plain.JWKSRequests() != 0 {
		t.Fatalf("the keys were fetched over http after a redirect (%d requests)", plain.JWKSRequests())
	}
	if srv.Client().CheckRedirect != nil {
		t.Fatal("NewOIDC changed the caller's client")
	}
}
