package workload_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
	"github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
	"github.com/jitbot/jitbot/workload"
	"github.com/jitbot/jitbot/workload/oidcfake"
)

var (
	_ workload.TokenStore    = (*bolt.Store)(nil)
	_ workload.TokenStore    = (*redis.Store)(nil)
	_ workload.Authenticator = (*workload.Tokens)(nil)
	_ workload.Authenticator = (*workload.OIDC)(nil)
	_ workload.Recognizer    = (*workload.Tokens)(nil)
	_ workload.Recognizer    = (*workload.OIDC)(nil)
)

type tokenBackend struct {
	name string
	open func(t testing.TB) workload.TokenStore
}

func openBoltAt(t testing.TB, dir string) *bolt.Store {
	s, err := bolt.Open(filepath.Join(dir, "jitbot.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var tokenBackends = []tokenBackend{
	{"bolt", func(t testing.TB) workload.TokenStore { return openBoltAt(t, t.TempDir()) }},
	{"redis", func(t testing.TB) workload.TokenStore {
		s, err := redis.Open(t.Context(), redistest.URL(t), redis.Options{Prefix: redistest.Prefix(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

func forEachStore(t *testing.T, fn func(t *testing.T, st workload.TokenStore)) {
	for _, b := range tokenBackends {
		t.Run(b.name, func(t *testing.T) { fn(t, b.open(t)) })
	}
}

func TestTokenLifecycle(t *testing.T) {
	forEachStore(t, func(t *testing.T, st workload.TokenStore) {
		clk := newClock()
		tokens := workload.NewTokens(st, workload.TokensOptions{Now: clk.Now})
		ctx := t.Context()
		plain, info, err := tokens.Create(ctx, "deploy-bot")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(plain, workload.TokenPrefix+info.ID+"_") || len(plain) != len("jit_tok-xxxxxxxxxx_")+43 {
			t.Fatalf("token %q does not have the documented shape for id %s", plain, info.ID)
		}
		if info.Owner != "deploy-bot" || !info.CreatedAt.Equal(clk.Now()) || info.Revoked() || !info.LastUsedAt.IsZero() {
			t.Fatalf("info = %+v", info)
		}
		// Only the hash is stored.
		rec, err := st.GetAPIToken(ctx, info.ID)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(plain))
		if rec.Hash != hex.EncodeToString(sum[:]) || strings.Contains(fmt.Sprintf("%+v", rec), plain[len(plain)-43:]) {
			t.Fatalf("stored record %+v is not just the hash of the token", rec)
		}

		id, err := tokens.Authenticate(ctx, plain)
		if err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		want := workload.Identity{Method: workload.MethodAPIToken, Subject: info.ID, Owner: "deploy-bot"}
		if id.Method != want.Method || id.Subject != want.Subject || id.Owner != want.Owner || id.Issuer != "" || id.Claims != nil || !id.Expiry.IsZero() {
			t.Fatalf("identity = %+v, want %+v", id, want)
		}

		list, err := tokens.List(ctx)
		if err != nil || len(list) != 1 || list[0].ID != info.ID || !list[0].LastUsedAt.Equal(clk.Now()) {
			t.Fatalf("List = %+v, %v; want the token with last-used now", list, err)
		}

		clk.Advance(time.Second)
		if err := tokens.Revoke(ctx, info.ID); err != nil {
			t.Fatal(err)
		}
		_, err = tokens.Authenticate(ctx, plain)
		wantRefused(t, err, workload.ReasonRevokedToken, plain)
		// Revoking again is fine and keeps the first time.
		clk.Advance(time.Hour)
		again, err := tokens.RevokeInfo(ctx, info.ID)
		if err != nil || !again.RevokedAt.Equal(clk.Now().Add(-time.Hour)) {
			t.Fatalf("second revoke = %+v, %v", again, err)
		}
		if err := tokens.Revoke(ctx, "tok-doesnotexist"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Revoke unknown = %v, want ErrNotFound", err)
		}
	})
}

func TestTokenRefusals(t *testing.T) {
	forEachStore(t, func(t *testing.T, st workload.TokenStore) {
		clk := newClock()
		tokens := workload.NewTokens(st, workload.TokensOptions{Now: clk.Now})
		ctx := t.Context()
		plain, info, err := tokens.Create(ctx, "deploy-bot")
		if err != nil {
			t.Fatal(err)
		}
		secret := plain[len(plain)-43:]
		flipped := []byte(secret)
		if flipped[10] == 'A' {
			flipped[10] = 'B'
		} else {
			flipped[10] = 'A'
		}
		otherSecret := strings.Replace(plain, secret, string(flipped), 1)
		cases := []struct{ name, token, code string }{
			{"right id, wrong secret", otherSecret, workload.ReasonUnknownToken},
			{"unknown id", workload.TokenPrefix + "tok-2345678923_" + secret, workload.ReasonUnknownToken},
			{"no prefix", strings.TrimPrefix(plain, workload.TokenPrefix), workload.ReasonMalformed},
			{"truncated secret", plain[:len(plain)-1], workload.ReasonMalformed},
			{"extra characters", plain + "A", workload.ReasonMalformed},
			{"bad id", workload.TokenPrefix + "tok-../../x_" + secret, workload.ReasonMalformed},
			{"empty", "", workload.ReasonMalformed},
			{"prefix only", workload.TokenPrefix, workload.ReasonMalformed},
		}
		for _, tc := range cases {
			_, err := tokens.Authenticate(ctx, tc.token)
			wantRefused(t, err, tc.code, tc.token)
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), string(flipped)) {
				t.Fatalf("%s: error contains the secret: %v", tc.name, err)
			}
		}
		if _, err := tokens.Authenticate(ctx, plain); err != nil {
			t.Fatalf("the real token after the refusals: %v", err)
		}
		_ = info
	})
}

func TestTokenExpiry(t *testing.T) {
	forEachStore(t, func(t *testing.T, st workload.TokenStore) {
		clk := newClock()
		tokens := workload.NewTokens(st, workload.TokensOptions{Now: clk.Now})
		plain, info, err := tokens.CreateWith(t.Context(), "nightly", workload.CreateOptions{TTL: 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if !info.ExpiresAt.Equal(clk.Now().Add(24 * time.Hour)) {
			t.Fatalf("ExpiresAt = %v", info.ExpiresAt)
		}
		id, err := tokens.Authenticate(t.Context(), plain)
		if err != nil || !id.Expiry.Equal(info.ExpiresAt) {
			t.Fatalf("Authenticate = %+v, %v", id, err)
		}
		clk.Advance(24 * time.Hour)
		_, err = tokens.Authenticate(t.Context(), plain)
		wantRefused(t, err, workload.ReasonExpired, plain)
		if _, _, err := tokens.CreateWith(t.Context(), "x", workload.CreateOptions{TTL: -time.Second}); err == nil {
			t.Fatal("negative TTL accepted")
		}
	})
}

func TestTokenLastUsedIsWrittenAtMostOncePerInterval(t *testing.T) {
	forEachStore(t, func(t *testing.T, st workload.TokenStore) {
		clk := newClock()
		tokens := workload.NewTokens(st, workload.TokensOptions{Now: clk.Now})
		ctx := t.Context()
		plain, info, err := tokens.Create(ctx, "deploy-bot")
		if err != nil {
			t.Fatal(err)
		}
		start := clk.Now()
		lastUsed := func() time.Time {
			got, err := tokens.Get(ctx, info.ID)
			if err != nil {
				t.Fatal(err)
			}
			return got.LastUsedAt
		}
		steps := []struct {
			advance time.Duration
			want    time.Duration // LastUsedAt - start after the call
		}{
			{0, 0},                          // first use is recorded
			{30 * time.Second, 0},           // within the interval: no write
			{29 * time.Second, 0},           // 59 s after the write: still none
			{time.Second, time.Minute},      // 60 s: written
			{10 * time.Second, time.Minute}, // and quiet again
		}
		for i, s := range steps {
			clk.Advance(s.advance)
			if _, err := tokens.Authenticate(ctx, plain); err != nil {
				t.Fatal(err)
			}
			if got := lastUsed(); !got.Equal(start.Add(s.want)) {
				t.Fatalf("step %d: LastUsedAt = +%s, want +%s", i, got.Sub(start), s.want)
			}
		}
	})
}

func TestTokenCreateRejectsBadOwners(t *testing.T) {
	st := tokenBackends[0].open(t)
	tokens := workload.NewTokens(st, workload.TokensOptions{})
	for _, owner := range []string{"", " deploy", "-x", "a b", "x\ny", strings.Repeat("a", 64), "ünicode", "Deploy-Bot", "ci@example.com", "gitlab:acme/web"} {
		if _, _, err := tokens.Create(t.Context(), owner); !errors.Is(err, workload.ErrInvalidOwner) {
			t.Errorf("Create(%q) err = %v, want ErrInvalidOwner", owner, err)
		}
	}
	if list, _ := tokens.List(t.Context()); len(list) != 0 {
		t.Fatalf("rejected owners created %d tokens", len(list))
	}
	for _, owner := range []string{"deploy-bot", "team.platform", "nightly_report", "0ops", strings.Repeat("a", 63)} {
		if _, _, err := tokens.Create(t.Context(), owner); err != nil {
			t.Errorf("Create(%q): %v", owner, err)
		}
	}
}

// failingTouch is a store whose last-used writes fail: bookkeeping must not refuse a valid token.
type failingTouch struct{ workload.TokenStore }

func (failingTouch) TouchAPIToken(context.Context, string, time.Time) error {
	return errors.New("disk full")
}

func TestTokenTouchFailureDoesNotRefuse(t *testing.T) {
	st := tokenBackends[0].open(t)
	tokens := workload.NewTokens(failingTouch{st}, workload.TokensOptions{})
	plain, _, err := tokens.Create(t.Context(), "deploy-bot")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Authenticate(t.Context(), plain); err != nil {
		t.Fatalf("Authenticate with a failing touch: %v", err)
	}
}

func TestTokenStoreDownIsRetryableRefusal(t *testing.T) {
	s, err := bolt.Open(filepath.Join(t.TempDir(), "jitbot.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	tokens := workload.NewTokens(s, workload.TokensOptions{})
	plain, _, err := tokens.Create(t.Context(), "deploy-bot")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = tokens.Authenticate(t.Context(), plain)
	wantRefused(t, err, workload.ReasonStoreUnavailable, plain)
	if !workload.Retryable(err) {
		t.Fatal("store_unavailable is not Retryable")
	}
}

func TestTokensAreUnique(t *testing.T) {
	st := tokenBackends[0].open(t)
	tokens := workload.NewTokens(st, workload.TokensOptions{})
	seen := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			plain, _, err := tokens.Create(t.Context(), "deploy-bot")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[plain] {
				t.Error("duplicate token")
			}
			seen[plain] = true
		})
	}
	wg.Wait()
	if list, _ := tokens.List(t.Context()); len(list) != 50 {
		t.Fatalf("List = %d tokens, want 50", len(list))
	}
}

func TestChain(t *testing.T) {
	clk := newClock()
	gh := startIssuer(t, clk)
	gl := startIssuer(t, clk)
	oidcGH := newVerifier(t, clk, ciConfig("github", gh))
	oidcGL := newVerifier(t, clk, ciConfig("gitlab", gl))
	tokens := workload.NewTokens(tokenBackends[0].open(t), workload.TokensOptions{Now: clk.Now})
	auth := workload.Chain(oidcGH, oidcGL, tokens)
	ctx := t.Context()

	plain, _, err := tokens.Create(ctx, "deploy-bot")
	if err != nil {
		t.Fatal(err)
	}
	if id, err := auth.Authenticate(ctx, plain); err != nil || id.Owner != "deploy-bot" {
		t.Fatalf("API token through the chain: %+v, %v", id, err)
	}
	if id, err := auth.Authenticate(ctx, gh.Sign(ghClaims())); err != nil || id.IssuerName != "github" {
		t.Fatalf("GitHub token through the chain: %+v, %v", id, err)
	}
	if id, err := auth.Authenticate(ctx, gl.Sign(ghClaims())); err != nil || id.IssuerName != "gitlab" {
		t.Fatalf("second issuer's token through the chain: %+v, %v", id, err)
	}
	// The verifier that knows the issuer speaks, not the first one that does not.
	bad := gl.SignWith(ghClaims(), oidcfake.BadSignature())
	wantRefused(t, errOf(auth.Authenticate(ctx, bad)), workload.ReasonBadSignature, bad)
	stranger := startIssuer(t, clk).Sign(ghClaims())
	wantRefused(t, errOf(auth.Authenticate(ctx, stranger)), workload.ReasonUnknownIssuer, stranger)
	wantRefused(t, errOf(auth.Authenticate(ctx, "password123")), workload.ReasonMalformed, "password123")
	wantRefused(t, errOf(auth.Authenticate(ctx, plain+"x")), workload.ReasonMalformed, plain+"x")
	// A JWT never reaches the token store, and an API token never reaches an issuer.
	if d := gh.DiscoveryRequests(); d != 1 {
		t.Fatalf("github discovery requests = %d, want 1", d)
	}
}

func TestBearerFromHeader(t *testing.T) {
	for _, tc := range []struct {
		header, want string
		ok           bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER   abc  ", "abc", true},
		{"Basic abc", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"", "", false},
		{"abc", "", false},
	} {
		got, ok := workload.BearerFromHeader(tc.header)
		if got != tc.want || ok != tc.ok {
			t.Errorf("BearerFromHeader(%q) = %q, %v; want %q, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

func TestReason(t *testing.T) {
	if workload.Reason(nil) != "" || workload.Reason(errors.New("x")) != "" || workload.Retryable(nil) {
		t.Fatal("Reason/Retryable of nil or a plain error")
	}
	wrapped := fmt.Errorf("api: %w", &workload.AuthError{Code: workload.ReasonExpired, Msg: "m"})
	if workload.Reason(wrapped) != workload.ReasonExpired || !errors.Is(wrapped, workload.ErrUnauthenticated) || workload.Retryable(wrapped) {
		t.Fatalf("wrapped refusal: %v", wrapped)
	}
}

func TestTokenManagementIsAudited(t *testing.T) {
	st := tokenBackends[0].open(t)
	clk := newClock()
	var events []store.AuditEvent
	fail := false
	tokens := workload.NewTokens(st, workload.TokensOptions{Now: clk.Now, Actor: "system:cli", AuditDetails: map[string]string{"os_user": "alice"},
		Audit: func(_ context.Context, e store.AuditEvent) error {
			if fail {
				return errors.New("audit log unavailable")
			}
			events = append(events, e)
			return nil
		}})
	ctx := t.Context()
	plain, info, err := tokens.CreateWith(ctx, "deploy-bot", workload.CreateOptions{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if err := tokens.Revoke(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if err := tokens.Revoke(ctx, info.ID); err != nil { // already revoked: no second event
		t.Fatal(err)
	}
	if len(events) != 2 || events[0].Type != workload.EventAPITokenCreated || events[1].Type != workload.EventAPITokenRevoked {
		t.Fatalf("events = %+v, want created then revoked", events)
	}
	for _, e := range events {
		if e.Actor != "system:cli" || e.Details["token_id"] != info.ID || e.Details["owner"] != "deploy-bot" || e.Details["os_user"] != "alice" || e.At.IsZero() {
			t.Fatalf("event %+v", e)
		}
		if strings.Contains(fmt.Sprint(e), plain[len(plain)-43:]) {
			t.Fatalf("event contains the token secret: %+v", e)
		}
	}
	if events[0].Details["expires_at"] == "" {
		t.Fatalf("created event lacks the expiry: %+v", events[0])
	}

	// An unauditable creation hands out nothing and leaves no working token.
	fail = true
	plain2, _, err := tokens.Create(ctx, "sneaky")
	if err == nil || plain2 != "" || !strings.Contains(err.Error(), "audit") {
		t.Fatalf("Create with a failing audit = %q, %v", plain2, err)
	}
	list, err := tokens.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range list {
		if tok.Owner == "sneaky" && !tok.Revoked() {
			t.Fatalf("unaudited token %s is active", tok.ID)
		}
	}
	// An unauditable revocation still revokes.
	fail = false
	plain3, info3, err := tokens.Create(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	fail = true
	if err := tokens.Revoke(ctx, info3.ID); err == nil || !strings.Contains(err.Error(), "is revoked") {
		t.Fatalf("Revoke with a failing audit = %v", err)
	}
	_, err = tokens.Authenticate(ctx, plain3)
	wantRefused(t, err, workload.ReasonRevokedToken, plain3)
}

// TestNoTokenMaterialInLogs runs every failure path with a debug logger in ctx and checks that neither the
// tokens nor their signatures or secrets reach the log.
func TestNoTokenMaterialInLogs(t *testing.T) {
	var logBuf strings.Builder
	var mu sync.Mutex
	logger := zerolog.New(zerolog.SyncWriter(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logBuf.Write(p)
	}))).Level(zerolog.DebugLevel)
	ctx := logger.WithContext(t.Context())

	clk := newClock()
	iss := startIssuer(t, clk)
	down := startIssuer(t, clk)
	down.SetAvailable(false)
	v := newVerifier(t, clk, ciConfig("github", iss), ciConfig("down", down))
	s, err := bolt.Open(filepath.Join(t.TempDir(), "jitbot.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	tokens := workload.NewTokens(failingTouch{s}, workload.TokensOptions{Now: clk.Now})
	plain, _, err := tokens.Create(ctx, "deploy-bot")
	if err != nil {
		t.Fatal(err)
	}
	var secrets []string
	try := func(a workload.Authenticator, tok string) {
		secrets = append(secrets, tok)
		if parts := strings.Split(tok, "."); len(parts) == 3 {
			secrets = append(secrets, parts[2])
		}
		_, _ = a.Authenticate(ctx, tok)
	}
	for _, tok := range []string{
		iss.SignWith(ghClaims(), oidcfake.BadSignature()), iss.SignWith(ghClaims(), oidcfake.WrongKey()),
		iss.SignWith(ghClaims(), oidcfake.Expired()), iss.SignWith(ghClaims(), oidcfake.Audience("x")),
		iss.Sign(ghClaims()), down.Sign(ghClaims()),
	} {
		try(v, tok)
	}
	try(tokens, plain) // the touch fails and is logged
	secrets = append(secrets, plain[len(plain)-43:])
	s.Close()
	try(tokens, plain) // the store is closed: logged as unavailable
	mu.Lock()
	logged := logBuf.String()
	mu.Unlock()
	if !strings.Contains(logged, "oidc discovery failed") || !strings.Contains(logged, "api token lookup failed") || !strings.Contains(logged, "last-used update failed") {
		t.Fatalf("expected failure logs are missing (the test would prove nothing):\n%s", logged)
	}
	for _, sec := range secrets {
		if strings.Contains(logged, sec) {
			t.Fatalf("log contains token material %q...:\n%s", sec[:12], logged)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// A revocation is audited once, when it happens, even when a second revoke arrives in the same millisecond
// (two CLI runs back to back, two admins at once): "first" must come from the store, not from comparing times.
func TestTokenRevokedOnceAuditedOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, st workload.TokenStore) {
		clk := newClock()
		var mu sync.Mutex
		var events []string
		tokens := workload.NewTokens(st, workload.TokensOptions{Now: clk.Now, Audit: func(_ context.Context, e store.AuditEvent) error {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, e.Type)
			return nil
		}})
		_, info, err := tokens.Create(t.Context(), "deploy-bot")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if err := tokens.Revoke(t.Context(), info.ID); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if err := tokens.Revoke(t.Context(), info.ID); err != nil { // the clock has not moved
			t.Fatal(err)
		}
		if want := workload.EventAPITokenCreated + "," + workload.EventAPITokenRevoked; strings.Join(events, ",") != want {
			t.Fatalf("audit events %v, want %s", events, want)
		}
	})
}
