package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jitbot/jitbot/store"
	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

// newStore opens a Store on the test Redis under a fresh prefix.
func newStore(t testing.TB) (*jitredis.Store, string) {
	t.Helper()
	prefix := redistest.Prefix(t)
	s, err := jitredis.Open(context.Background(), redistest.URL(t), jitredis.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, prefix
}

var t0 = time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)

func grant(id, user, binding string, created time.Time, state store.GrantState, due time.Time) *store.Grant {
	return &store.Grant{ID: id, UserID: user, BindingKey: binding, State: state, CreatedAt: created, DueAt: due,
		Role: "db-admin", Provider: "aws", Target: map[string]string{"account": "1"}}
}

func ids[T any](xs []T, id func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = id(x)
	}
	return out
}

func grantIDs(gs []store.Grant) string {
	return strings.Join(ids(gs, func(g store.Grant) string { return g.ID }), ",")
}

func requestIDs(rs []store.Request) string {
	return strings.Join(ids(rs, func(r store.Request) string { return r.ID }), ",")
}

func commit(t testing.TB, s store.Store, b store.Batch) {
	t.Helper()
	if err := s.Commit(context.Background(), b); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func TestCommitIndexesAndLists(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	var b store.Batch
	for i := range 300 {
		st := store.GrantActive
		if i%3 == 0 {
			st = store.GrantRevoked
		}
		// Several grants share a CreatedAt so that ties cross page boundaries.
		g := grant(fmt.Sprintf("g-%03d", i), "U"+strconv.Itoa(i%2), "B", t0.Add(time.Duration(i/7)*time.Second), st, time.Time{})
		b.Grants = append(b.Grants, store.GrantPut{Grant: g})
	}
	commit(t, s, b)

	all, err := s.ListGrants(ctx, store.GrantQuery{UserID: "U0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 150 {
		t.Fatalf("ListGrants(U0) returned %d, want 150", len(all))
	}
	for i := 1; i < len(all); i++ {
		a, b := all[i-1], all[i]
		if a.CreatedAt.Before(b.CreatedAt) || (a.CreatedAt.Equal(b.CreatedAt) && a.ID < b.ID) {
			t.Fatalf("ListGrants not newest first at %d: %s %v then %s %v", i, a.ID, a.CreatedAt, b.ID, b.CreatedAt)
		}
	}
	seen := map[string]bool{}
	for _, g := range all {
		if seen[g.ID] {
			t.Fatalf("duplicate %s", g.ID)
		}
		seen[g.ID] = true
	}
	live, err := s.ListGrants(ctx, store.GrantQuery{BindingKey: "B", Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if got := grantIDs(live); got != "g-299,g-298,g-296,g-295,g-293" {
		t.Fatalf("ListGrants(B, 5) = %s", got)
	}
	both, err := s.ListGrants(ctx, store.GrantQuery{UserID: "U1", States: []store.GrantState{store.GrantActive}, Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := grantIDs(both); got != "g-299,g-295,g-293" {
		t.Fatalf("ListGrants(U1, active, 3) = %s", got)
	}
	multi, err := s.ListGrants(ctx, store.GrantQuery{States: []store.GrantState{store.GrantActive, store.GrantRevoking}})
	if err != nil {
		t.Fatal(err)
	}
	if len(multi) != 200 {
		t.Fatalf("ListGrants(active|revoking) returned %d, want 200", len(multi))
	}
	if _, err := s.ListGrants(ctx, store.GrantQuery{States: []store.GrantState{store.GrantRevoked}}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("ListGrants(revoked only) err = %v, want ErrInvalid", err)
	}

	// Moving a grant out of the live states removes it from the binding index.
	g, err := s.GetGrant(ctx, "g-299")
	if err != nil {
		t.Fatal(err)
	}
	g.State = store.GrantRevoked
	commit(t, s, store.Batch{Grants: []store.GrantPut{{Grant: &g, PrevVersion: 1}}})
	if g.Version != 2 {
		t.Fatalf("Version after update = %d", g.Version)
	}
	live, _ = s.ListGrants(ctx, store.GrantQuery{BindingKey: "B", Limit: 1})
	if got := grantIDs(live); got != "g-298" {
		t.Fatalf("ListGrants(B, 1) after revoking g-299 = %s", got)
	}
}

func TestRequestsPendingAndDue(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	mk := func(id, user string, created time.Time) *store.Request {
		return &store.Request{ID: id, Requester: user, State: store.RequestPending, CreatedAt: created,
			PendingUntil: created.Add(time.Minute)}
	}
	r1, r2, r3 := mk("r1", "U1", t0), mk("r2", "U1", t0.Add(time.Second)), mk("r3", "U2", t0.Add(2*time.Second))
	commit(t, s, store.Batch{Requests: []store.RequestPut{{Request: r1}, {Request: r2}, {Request: r3}}})
	due, err := s.DueRequests(ctx, t0.Add(time.Minute+time.Second), 0)
	if err != nil || requestIDs(due) != "r1,r2" {
		t.Fatalf("DueRequests = %s, %v", requestIDs(due), err)
	}
	r1.State = store.RequestApproved
	commit(t, s, store.Batch{Requests: []store.RequestPut{{Request: r1, PrevVersion: 1}}})
	due, _ = s.DueRequests(ctx, t0.Add(time.Hour), 10)
	if requestIDs(due) != "r2,r3" {
		t.Fatalf("DueRequests after approval = %s", requestIDs(due))
	}
	pend, _ := s.ListRequests(ctx, store.RequestQuery{State: store.RequestPending})
	if requestIDs(pend) != "r3,r2" {
		t.Fatalf("ListRequests(pending) = %s", requestIDs(pend))
	}
	mine, _ := s.ListRequests(ctx, store.RequestQuery{Requester: "U1"})
	if requestIDs(mine) != "r2,r1" {
		t.Fatalf("ListRequests(U1) = %s", requestIDs(mine))
	}
	at, ok, err := s.NextDue(ctx)
	if err != nil || !ok || !at.Equal(t0.Add(time.Minute+time.Second)) {
		t.Fatalf("NextDue = %v %v %v", at, ok, err)
	}
}

func TestClaimDueGrants(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	if _, ok, err := s.NextDue(ctx); ok || err != nil {
		t.Fatalf("NextDue on empty store = %v, %v", ok, err)
	}
	commit(t, s, store.Batch{Grants: []store.GrantPut{
		{Grant: grant("a", "U", "B", t0, store.GrantActive, t0.Add(time.Second))},
		{Grant: grant("b", "U", "B", t0, store.GrantActive, t0.Add(2*time.Second))},
		{Grant: grant("c", "U", "B", t0, store.GrantActive, t0.Add(time.Hour))},
	}})
	var wg sync.WaitGroup
	results := make([][]store.Grant, 8)
	for i := range results {
		wg.Go(func() {
			gs, err := s.ClaimDueGrants(ctx, t0.Add(time.Minute), 10, time.Minute)
			if err != nil {
				t.Error(err)
			}
			results[i] = gs
		})
	}
	wg.Wait()
	claimed := 0
	for _, r := range results {
		if len(r) > 0 {
			claimed++
			if grantIDs(r) != "a,b" {
				t.Fatalf("claimed %s, want a,b", grantIDs(r))
			}
		}
	}
	if claimed != 1 {
		t.Fatalf("%d concurrent sweepers claimed grants, want exactly 1", claimed)
	}
	at, ok, _ := s.NextDue(ctx)
	if !ok || !at.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("NextDue after claim = %v, want %v", at, t0.Add(2*time.Minute))
	}
	gs, _ := s.ClaimDueGrants(ctx, t0.Add(2*time.Minute), 1, time.Minute)
	if grantIDs(gs) != "a" {
		t.Fatalf("re-claim after hold = %s, want a", grantIDs(gs))
	}
}

func TestLocksAndMarkSeen(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	l, err := s.AcquireLock(ctx, "sweeper", "h|1", time.Minute)
	if err != nil || l.Fence == 0 {
		t.Fatalf("AcquireLock = %+v, %v", l, err)
	}
	if _, err := s.AcquireLock(ctx, "sweeper", "h2", time.Minute); !errors.Is(err, store.ErrLockHeld) {
		t.Fatalf("second holder err = %v", err)
	}
	again, err := s.AcquireLock(ctx, "sweeper", "h|1", time.Minute)
	if err != nil || again.Fence != l.Fence {
		t.Fatalf("re-acquire = %+v, %v; want fence %d", again, err, l.Fence)
	}
	if err := s.RenewLock(ctx, l, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseLock(ctx, l); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseLock(ctx, l); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if err := s.RenewLock(ctx, l, time.Minute); !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("renew after release err = %v", err)
	}
	l2, err := s.AcquireLock(ctx, "sweeper", "h2", 50*time.Millisecond)
	if err != nil || l2.Fence <= l.Fence {
		t.Fatalf("new holder = %+v, %v", l2, err)
	}
	time.Sleep(120 * time.Millisecond)
	l3, err := s.AcquireLock(ctx, "sweeper", "h3", time.Minute)
	if err != nil || l3.Fence <= l2.Fence {
		t.Fatalf("after expiry = %+v, %v", l3, err)
	}
	if err := s.RenewLock(ctx, l2, time.Minute); !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("renew by expired holder err = %v", err)
	}

	first, err := s.MarkSeen(ctx, "ev-1", time.Minute)
	if err != nil || !first {
		t.Fatalf("MarkSeen first = %v, %v", first, err)
	}
	if first, _ := s.MarkSeen(ctx, "ev-1", time.Minute); first {
		t.Fatal("MarkSeen second = true")
	}
}

func auditEvent(i int) store.AuditEvent {
	return store.AuditEvent{Type: store.EventRequested, At: t0.Add(time.Duration(i) * time.Second), Actor: "U1",
		RequestID: fmt.Sprintf("req-%d", i), Details: map[string]string{"reason": strings.Repeat("é✓", i%40) + "\n\"x\""}}
}

// TestAuditChain checks the chain the Lua script writes against store.ChainHash, across batches and pages.
func TestAuditChain(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	n := 0
	for batch := range 30 {
		var evs []store.AuditEvent
		for range batch % 4 {
			n++
			evs = append(evs, auditEvent(n))
		}
		commit(t, s, store.Batch{Audit: evs})
	}
	recs, err := s.ReadAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != n {
		t.Fatalf("ReadAudit returned %d records, want %d", len(recs), n)
	}
	if _, _, err := store.VerifyChain(recs, 0, store.GenesisHash); err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if r.Event.RequestID != fmt.Sprintf("req-%d", i+1) {
			t.Fatalf("record %d = %+v", i, r.Event)
		}
	}
	// Page by page.
	seq, hash := uint64(0), store.GenesisHash
	for {
		page, err := s.ReadAudit(ctx, seq, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if seq, hash, err = store.VerifyChain(page, seq, hash); err != nil {
			t.Fatal(err)
		}
	}
	if seq != uint64(n) || hash != recs[n-1].Hash {
		t.Fatalf("paged verification ended at %d %s", seq, hash)
	}
}

func TestAuditTamperDetected(t *testing.T) {
	s, prefix := newStore(t)
	ctx := t.Context()
	for i := 1; i <= 5; i++ {
		commit(t, s, store.Batch{Audit: []store.AuditEvent{auditEvent(i)}})
	}
	raw := redistest.Client(t)
	logKey := prefix + ":audit:log"

	// Edit the raw JSON of seq 3, keeping the stored hashes.
	v, err := raw.HGet(ctx, logKey, "3").Result()
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(v, `"actor":"U1"`, `"actor":"U666"`, 1)
	if edited == v {
		t.Fatalf("test bug: nothing to edit in %q", v)
	}
	if err := raw.HSet(ctx, logKey, "3", edited).Err(); err != nil {
		t.Fatal(err)
	}
	wantBreak(t, s, 3)
	if err := raw.HSet(ctx, logKey, "3", v).Err(); err != nil {
		t.Fatal(err)
	}
	wantBreak(t, s, 0)

	// Delete seq 2.
	if err := raw.HDel(ctx, logKey, "2").Err(); err != nil {
		t.Fatal(err)
	}
	wantBreak(t, s, 2)
}

// wantBreak reads the whole log and checks that VerifyChain breaks at seq (0: does not break).
func wantBreak(t *testing.T, s store.Store, seq uint64) {
	t.Helper()
	recs, err := s.ReadAudit(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = store.VerifyChain(recs, 0, store.GenesisHash)
	if seq == 0 {
		if err != nil {
			t.Fatalf("VerifyChain on an intact log: %v", err)
		}
		return
	}
	var ce *store.ChainError
	if !errors.As(err, &ce) || ce.Seq != seq {
		t.Fatalf("VerifyChain err = %v, want *store.ChainError at seq %d", err, seq)
	}
}

// keyRecorder records the keys of every command sent.
type keyRecorder struct {
	mu   sync.Mutex
	keys map[string]string // key -> command
}

func (r *keyRecorder) recordAll(cmds []goredis.Cmder) {
	for _, c := range cmds {
		r.record(c)
	}
}

func (r *keyRecorder) record(cmd goredis.Cmder) {
	args := cmd.Args()
	name := strings.ToLower(cmd.Name())
	var keys []string
	switch name {
	case "ping", "hello", "client", "script":
	case "eval", "evalsha", "eval_ro", "evalsha_ro":
		n, _ := strconv.Atoi(fmt.Sprint(args[2]))
		for _, k := range args[3 : 3+n] {
			keys = append(keys, fmt.Sprint(k))
		}
	default:
		keys = append(keys, fmt.Sprint(args[1]))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		r.keys[k] = name
	}
}

func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// TestEveryKeySharesTheHashTag runs every Store method and checks that every key of every command, including
// every key passed to a script, has the prefix's hash tag (so everything lives in one Cluster slot).
func TestEveryKeySharesTheHashTag(t *testing.T) {
	prefix := redistest.Prefix(t)
	rec := &keyRecorder{keys: map[string]string{}}
	c := redistest.Client(t)
	c.AddHook(redistest.Sent(rec.recordAll))
	s := jitredis.New(c, jitredis.Options{Prefix: prefix})
	ctx := t.Context()

	r := &store.Request{ID: "r{x}1", Requester: "U{1}", State: store.RequestPending, CreatedAt: t0, PendingUntil: t0}
	g := grant("g{y}1", "U{1}", "bind{z}", t0, store.GrantActive, t0)
	commit(t, s, store.Batch{Requests: []store.RequestPut{{Request: r}}, Grants: []store.GrantPut{{Grant: g}},
		Audit: []store.AuditEvent{auditEvent(1)}})
	r.State = store.RequestApproved
	g.State = store.GrantRevoking
	commit(t, s, store.Batch{Requests: []store.RequestPut{{Request: r, PrevVersion: 1}},
		Grants: []store.GrantPut{{Grant: g, PrevVersion: 1}}, Audit: []store.AuditEvent{auditEvent(2)}})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.GetRequest(ctx, r.ID)
	must(err)
	_, err = s.GetGrant(ctx, g.ID)
	must(err)
	_, err = s.ListRequests(ctx, store.RequestQuery{Requester: "U{1}"})
	must(err)
	_, err = s.ListRequests(ctx, store.RequestQuery{State: store.RequestPending})
	must(err)
	_, err = s.DueRequests(ctx, t0, 0)
	must(err)
	_, err = s.ListGrants(ctx, store.GrantQuery{UserID: "U{1}"})
	must(err)
	_, err = s.ListGrants(ctx, store.GrantQuery{BindingKey: "bind{z}"})
	must(err)
	_, err = s.ListGrants(ctx, store.GrantQuery{States: store.LiveGrantStates})
	must(err)
	_, err = s.ClaimDueGrants(ctx, t0, 10, time.Minute)
	must(err)
	_, _, err = s.NextDue(ctx)
	must(err)
	l, err := s.AcquireLock(ctx, "lock{q}", "h", time.Minute)
	must(err)
	must(s.RenewLock(ctx, l, time.Minute))
	must(s.ReleaseLock(ctx, l))
	_, err = s.MarkSeen(ctx, "seen{k}", time.Minute)
	must(err)
	_, err = s.ReadAudit(ctx, 0, 0)
	must(err)

	want := hashTag(prefix)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.keys) < 15 {
		t.Fatalf("recorded only %d keys: %v", len(rec.keys), rec.keys)
	}
	for k, cmd := range rec.keys {
		if !strings.HasPrefix(k, prefix+":") || hashTag(k) != want {
			t.Errorf("%s key %q is not under the hash tag {%s}", cmd, k, want)
		}
	}
}

func TestContextCancelled(t *testing.T) {
	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Commit(ctx, store.Batch{Audit: []store.AuditEvent{auditEvent(1)}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit with cancelled ctx err = %v", err)
	}
	if _, err := s.GetGrant(ctx, "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("GetGrant with cancelled ctx err = %v", err)
	}
	if recs, err := s.ReadAudit(t.Context(), 0, 0); err != nil || len(recs) != 0 {
		t.Fatalf("cancelled commit wrote: %v %v", recs, err)
	}
}
