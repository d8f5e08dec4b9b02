package redis_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jitbot/jitbot/store"
	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

func groupEvent(i int) store.AuditEvent {
	return store.AuditEvent{Type: "test", At: time.Date(2031, 1, 1, 0, 0, i, 0, time.UTC), Actor: fmt.Sprintf("a%d", i)}
}

func verifyWhole(t *testing.T, s *jitredis.Store, want uint64) {
	t.Helper()
	ctx := context.Background()
	head, err := s.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := s.ReadAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	last, hash, err := store.VerifyChain(recs, 0, store.GenesisHash)
	if err != nil || last != want || head.Seq != want || hash != head.Hash {
		t.Fatalf("chain: %v; verified to %d (%s), head %d (%s), want %d", err, last, hash, head.Seq, head.Hash, want)
	}
}

// Audited commits that queue while one is in flight go out in one pipeline, in order; a commit in the middle
// that conflicts appends nothing, and the ones chained after it are re-chained and land.
func TestAuditGroupCommitPipelinesAndRechains(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	release := jitredis.HoldAudit(s) // the first commit's leader waits here; the next ones queue behind it
	var wg sync.WaitGroup
	errs := make([]error, 4)
	start := func(i int, b store.Batch, queued int) {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.Commit(ctx, b) }()
		for jitredis.AuditQueued(s) < queued {
			time.Sleep(time.Millisecond)
		}
	}
	mkGrant := func() *store.Grant {
		return &store.Grant{ID: "g-dup", UserID: "U1", BindingKey: "b1", State: store.GrantActive, CreatedAt: time.Now(),
			Role: "r", Provider: "p", Target: map[string]string{"k": "v"}}
	}
	start(0, store.Batch{Audit: []store.AuditEvent{groupEvent(0)}}, 0)
	for jitredis.AuditQueued(s) != 0 || !jitredis.AuditBusy(s) { // the leader took its batch of one
		time.Sleep(time.Millisecond)
	}
	start(1, store.Batch{Grants: []store.GrantPut{{Grant: mkGrant()}}, Audit: []store.AuditEvent{groupEvent(1)}}, 1)
	start(2, store.Batch{Grants: []store.GrantPut{{Grant: mkGrant()}}, Audit: []store.AuditEvent{groupEvent(2)}}, 2)
	start(3, store.Batch{Audit: []store.AuditEvent{groupEvent(3), groupEvent(4)}}, 3)
	release()
	wg.Wait()
	for i, err := range errs {
		if i == 2 {
			if !errors.Is(err, store.ErrConflict) {
				t.Fatalf("the duplicate create: %v, want a conflict", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	if got := jitredis.AuditRounds(s); got != 2 {
		t.Fatalf("%d pipelines, want 2 (the three queued commits, then the one re-chained after the conflict)", got)
	}
	verifyWhole(t, s, 4) // 1 + 1 + 2: the conflicting commit appended nothing
}

// Many concurrent audited commits from two replicas on one Redis leave one unbroken chain holding every entry.
func TestAuditGroupCommitConcurrentReplicas(t *testing.T) {
	a, prefix := newStore(t)
	b, err := jitredis.Open(context.Background(), redistest.URL(t), jitredis.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Keyed links (JITBOT_AUDIT_LINK_KEY) are chained by the grouped path too.
	key := []byte("group-commit-test-link-key-0123456789")
	a.SetAuditLinkKey(key)
	b.SetAuditLinkKey(key)
	const n = 100
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := a
			if i%3 == 0 {
				s = b
			}
			if err := s.Commit(context.Background(), store.Batch{Audit: []store.AuditEvent{groupEvent(i)}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	verifyWhole(t, a, n)
	recs, err := a.ReadAudit(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	v := store.ChainVerifier{Hash: store.GenesisHash, Key: key}
	if err := v.Verify(recs); err != nil || v.Keyed != n {
		t.Fatalf("keyed verification: %v, %d keyed entries checked, want %d", err, v.Keyed, n)
	}
}
