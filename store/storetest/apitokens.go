package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitbot/jitbot/store"
)

// APITokenStore is the API token half of a store (see store.APIToken and workload.TokenStore). Every store
// that runs this suite must implement it: pipelines authenticate with these tokens on any back end.
type APITokenStore interface {
	CreateAPIToken(ctx context.Context, t store.APIToken) error
	GetAPIToken(ctx context.Context, id string) (store.APIToken, error)
	ListAPITokens(ctx context.Context) ([]store.APIToken, error)
	RevokeAPIToken(ctx context.Context, id string, at time.Time) (store.APIToken, bool, error)
	TouchAPIToken(ctx context.Context, id string, at time.Time) error
}

var apiTokenTests = []subtest{
	{"CreateGetRoundTrip", testTokenRoundTrip},
	{"CreateExistingIDConflicts", testTokenCreateConflict},
	{"CreateInvalid", testTokenCreateInvalid},
	{"UnknownIDNotFound", testTokenNotFound},
	{"ListOldestFirstWithRevoked", testTokenList},
	{"RevokeKeepsFirstTime", testTokenRevoke},
	{"TouchOnlyMovesForward", testTokenTouch},
	{"TouchDoesNotUndoRevoke", testTokenTouchAfterRevoke},
	{"ConcurrentCreateOneWinner", testTokenConcurrentCreate},
	{"ConcurrentRevokeAndTouch", testTokenConcurrentRevokeTouch},
	{"CancelledContext", testTokenCancelled},
}

func tokenStore(t *testing.T, s store.Store) APITokenStore {
	t.Helper()
	ts, ok := s.(APITokenStore)
	if !ok {
		t.Fatalf("%T does not implement the API token methods (storetest.APITokenStore)", s)
	}
	return ts
}

func newToken(id, owner string, created time.Time) store.APIToken {
	return store.APIToken{ID: id, Owner: owner, Hash: fmt.Sprintf("%064x", len(id)*7919+len(owner)), CreatedAt: created}
}

func mustGetToken(t *testing.T, ts APITokenStore, id string) store.APIToken {
	t.Helper()
	got, err := ts.GetAPIToken(t.Context(), id)
	if err != nil {
		t.Fatalf("GetAPIToken(%q): %v", id, err)
	}
	return got
}

func sameToken(t *testing.T, what string, got, want store.APIToken) {
	t.Helper()
	if got.ID != want.ID || got.Owner != want.Owner || got.Hash != want.Hash || !got.CreatedAt.Equal(want.CreatedAt) ||
		!got.ExpiresAt.Equal(want.ExpiresAt) || !got.LastUsedAt.Equal(want.LastUsedAt) || !got.RevokedAt.Equal(want.RevokedAt) {
		t.Fatalf("%s = %+v, want %+v", what, got, want)
	}
}

func testTokenRoundTrip(t *testing.T, s store.Store) {
	ts := tokenStore(t, s)
	tok := newToken("tok-a", "deploy-bot", at(0))
	tok.ExpiresAt = at(90 * 24 * time.Hour)
	if err := ts.CreateAPIToken(t.Context(), tok); err != nil {
		t.Fatalf("CreateAPIToken: %v", err)
	}
	sameToken(t, "GetAPIToken", mustGetToken(t, ts, "tok-a"), tok)
	never := newToken("tok-b", "ci@example.com", at(time.Millisecond))
	if err := ts.CreateAPIToken(t.Context(), never); err != nil {
		t.Fatalf("CreateAPIToken: %v", err)
	}
	got := mustGetToken(t, ts, "tok-b")
	sameToken(t, "GetAPIToken", got, never)
	if !got.ExpiresAt.IsZero() || !got.LastUsedAt.IsZero() || !got.RevokedAt.IsZero() {
		t.Fatalf("zero times did not stay zero: %+v", got)
	}
	// A record created with its mutable times set (a restore) keeps them.
	restored := newToken("tok-c", "restored", at(2*time.Millisecond))
	restored.LastUsedAt, restored.RevokedAt = at(time.Hour), at(2*time.Hour)
	if err := ts.CreateAPIToken(t.Context(), restored); err != nil {
		t.Fatalf("CreateAPIToken: %v", err)
	}
	sameToken(t, "GetAPIToken of a restored token", mustGetToken(t, ts, "tok-c"), restored)
}

func testTokenCreateConflict(t *testing.T, s store.Store) {
	ts := tokenStore(t, s)
	first := newToken("tok-a", "first", at(0))
	if err := ts.CreateAPIToken(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	second := newToken("tok-a", "second", at(time.Second))
	second.Hash = fmt.Sprintf("%064d", 2)
	wantErrIs(t, "CreateAPIToken over an existing id", ts.CreateAPIToken(t.Context(), second), store.ErrConflict)
	sameToken(t, "the first token after a conflicting create", mustGetToken(t, ts, "tok-a"), first)
	if list, err := ts.ListAPITokens(t.Context()); err != nil || len(list) != 1 {
		t.Fatalf("ListAPITokens = %d tokens, %v; want the one token", len(list), err)
	}
}

func testTokenCreateInvalid(t *testing.T, s store.Store) {
	ts := tokenStore(t, s)
	noID := newToken("", "o", at(0))
	wantErrIs(t, "CreateAPIToken without id", ts.CreateAPIToken(t.Context(), noID), store.ErrInvalid)
	noHash := newToken("tok-a", "o", at(0))
	noHash.Hash = ""
	wantErrIs(t, "CreateAPIToken without hash", ts.CreateAPIToken(t.Context(), noHash), store.ErrInvalid)
	if list, err := ts.ListAPITokens(t.Context()); err != nil || len(list) != 0 {
		t.Fatalf("ListAPITokens = %v, %v; want nothing stored", list, err)
	}
}

func testTokenNotFound(t *testing.T, s store.Store) {
	ts := tokenStore(t, s)
	for _, id := range []string{"tok-missing", ""} {
		_, err := ts.GetAPIToken(t.Context(), id)
		wantErrIs(t, fmt.Sprintf("GetAPIToken(%q)", id), err, store.ErrNotFound)
		_, _, err = ts.RevokeAPIToken(t.Context(), id, at(0))
		wantErrIs(t, fmt.Sprintf("RevokeAPIToken(%q)", id), err, store.ErrNotFound)
		wantErrIs(t, fmt.Sprintf("TouchAPIToken(%q)", id), ts.TouchAPIToken(t.Context(), id, at(0)), store.ErrNotFound)
	}
	if list, err := ts.ListAPITokens(t.Context()); err != nil || len(list) != 0 {
		t.Fatalf("ListAPITokens = %v, %v; revoke/touch of unknown ids must create nothing", list, err)
	}
}

func testTokenList(t *testing.T, s store.Store) {
	ts := tokenStore(t, s)
	if list, err := ts.ListAPITokens(t.Context()); err != nil || len(list) != 0 {
		t.Fatalf("ListAPITokens on an empty store = %v, %v", list, err)
	}
	// Created out of order; two share a creation time (ordered by id).
	for _, tok := range []store.APIToken{
		newToken("tok-c", "o3", at(3*time.Second)),
		newToken("tok-a", "o1", at(time.Second)),
		newToken("tok-z", "o2", at(2*time.Second)),
		newToken("tok-b", "o2", at(2*time.Second)),
	} {
		if err := ts.CreateAPIToken(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := ts.RevokeAPIToken(t.Context(), "tok-z", at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	list, err := ts.ListAPITokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tok := range list {
		ids = append(ids, tok.ID)
	}
	if fmt.Sprint(ids) != "[tok-a tok-b tok-z tok-c]" {
		t.Fatalf("ListAPITokens ids = %v, want [tok-a tok-b tok-z tok-c] (oldest first, ties by id, revoked included)", ids)
	}
	if !list[2].RevokedAt.Equal(at(time.Hour)) {
		t.Fatalf("listed revoked token has RevokedAt %v, want %v", list[2].RevokedAt, at(time.Hour))
	}
}

func testTokenRevoke(t *testing.T, s store.Store) {
	ts := tokenStore(t, s)
	tok := newToken("tok-a", "o", at(0))
	if err := ts.CreateAPIToken(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	got, first, err := ts.RevokeAPIToken(t.Context(), "tok-a", at(time.Minute))
	if err != nil || !first {
		t.Fatalf("RevokeAPIToken = revoked %v, %v; want revoked by this call", first, err)
	}
	tok.RevokedAt = at(time.Minute)
	sameToken(t, "RevokeAPIToken result", got, tok)
	again, second, err := ts.RevokeAPIToken(t.Context(), "tok-a", at(time.Minute)) // the same instant
	if err != nil || second {
		t.Fatalf("second RevokeAPIToken = revoked %v, %v; want already revoked", second, err)
	}
	sameToken(t, "second RevokeAPIToken result (keeps the first time)", again, tok)
	sameToken(t, "GetAPIToken after revokes", mustGetToken(t, ts, "tok-a"), tok)
}

func testTokenTouch(t *testing.T, s store.Store) {
	ts := tokenStore(t, s)
	tok := newToken("tok-a", "o", at(0))
	if err := ts.CreateAPIToken(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		touch, want time.Duration
	}{{time.Minute, time.Minute}, {30 * time.Second, time.Minute}, {2*time.Minute + time.Millisecond, 2*time.Minute + time.Millisecond}} {
		if err := ts.TouchAPIToken(t.Context(), "tok-a", at(step.touch)); err != nil {
			t.Fatal(err)
		}
		if got := mustGetToken(t, ts, "tok-a").LastUsedAt; !got.Equal(at(step.want)) {
			t.Fatalf("after touch at +%s LastUsedAt = %v, want %v", step.touch, got, at(step.want))
		}
	}
	got := mustGetToken(t, ts, "tok-a")
	tok.LastUsedAt = at(2*time.Minute + time.Millisecond)
	sameToken(t, "token after touches", got, tok)
}

func testTokenTouchAfterRevoke(t *testing.T, s store.Store) {
	ts := tokenStore(t, s)
	if err := ts.CreateAPIToken(t.Context(), newToken("tok-a", "o", at(0))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ts.RevokeAPIToken(t.Context(), "tok-a", at(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := ts.TouchAPIToken(t.Context(), "tok-a", at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := mustGetToken(t, ts, "tok-a"); !got.RevokedAt.Equal(at(time.Minute)) {
		t.Fatalf("RevokedAt after a later touch = %v, want %v", got.RevokedAt, at(time.Minute))
	}
}

func testTokenConcurrentCreate(t *testing.T, s store.Store) {
	ts := tokenStore(t, s)
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = ts.CreateAPIToken(t.Context(), newToken("tok-a", fmt.Sprintf("owner-%02d", i), at(0)))
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("creators %d and %d both created tok-a", winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Fatalf("creator %d: %v, want nil or ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no creator succeeded")
	}
	if got := mustGetToken(t, ts, "tok-a"); got.Owner != fmt.Sprintf("owner-%02d", winner) {
		t.Fatalf("stored owner %q, want the winner's owner-%02d", got.Owner, winner)
	}
	if list, err := ts.ListAPITokens(t.Context()); err != nil || len(list) != 1 {
		t.Fatalf("ListAPITokens = %d tokens, %v; want 1", len(list), err)
	}
}

func testTokenConcurrentRevokeTouch(t *testing.T, s store.Store) {
	ts := tokenStore(t, s)
	if err := ts.CreateAPIToken(t.Context(), newToken("tok-a", "o", at(0))); err != nil {
		t.Fatal(err)
	}
	const n = 20
	errs := make([]error, 2*n)
	var firsts atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = ts.TouchAPIToken(t.Context(), "tok-a", at(time.Duration(i+1)*time.Second)) })
		wg.Go(func() {
			_, first, err := ts.RevokeAPIToken(t.Context(), "tok-a", at(time.Duration(i+1)*time.Minute))
			errs[n+i] = err
			if first {
				firsts.Add(1)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	got := mustGetToken(t, ts, "tok-a")
	if got.RevokedAt.IsZero() {
		t.Fatal("token not revoked after concurrent revokes and touches")
	}
	if firsts.Load() != 1 {
		t.Fatalf("%d concurrent revokes said they revoked the token, want exactly 1", firsts.Load())
	}
	if !got.LastUsedAt.Equal(at(n * time.Second)) {
		t.Fatalf("LastUsedAt = %v, want the latest touch %v", got.LastUsedAt, at(n*time.Second))
	}
}

func testTokenCancelled(t *testing.T, s store.Store) {
	ts := tokenStore(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := ts.CreateAPIToken(ctx, newToken("tok-a", "o", at(0))); err == nil {
		t.Fatal("CreateAPIToken with a cancelled context succeeded")
	}
	if _, err := ts.GetAPIToken(ctx, "tok-a"); err == nil {
		t.Fatal("GetAPIToken with a cancelled context succeeded")
	}
	if _, err := ts.GetAPIToken(t.Context(), "tok-a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("token written by a cancelled create: GetAPIToken err = %v", err)
	}
}
