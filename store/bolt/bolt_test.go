package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/storetest"
)

func openTest(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := openTest(t, filepath.Join(t.TempDir(), "jitbot.db"))
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	})
}

func TestReopenKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jitbot.db")
	s := openTest(t, path)
	ctx := t.Context()
	g := &store.Grant{ID: "g-1", UserID: "U1", BindingKey: "B1", State: store.GrantActive, CreatedAt: time.Now(), DueAt: time.Unix(100, 0)}
	r := &store.Request{ID: "r-1", Requester: "U1", State: store.RequestPending, CreatedAt: time.Now(), PendingUntil: time.Unix(50, 0)}
	if err := s.Commit(ctx, store.Batch{Requests: []store.RequestPut{{Request: r}}, Grants: []store.GrantPut{{Grant: g}},
		Audit: []store.AuditEvent{{Type: store.EventRequested, Actor: "U1"}}}); err != nil {
		t.Fatal(err)
	}
	l, err := s.AcquireLock(ctx, "sweeper", "A", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, path)
	defer s.Close()
	if _, err := s.GetGrant(ctx, "g-1"); err != nil {
		t.Fatal(err)
	}
	if at, ok, err := s.NextDue(ctx); err != nil || !ok || !at.Equal(time.Unix(50, 0)) {
		t.Fatalf("NextDue after reopen = %v %v %v", at, ok, err)
	}
	// Locks end with the process that held them (locks.go).
	if err := s.RenewLock(ctx, l, time.Hour); !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("renewing a lock of the closed store after reopen: %v, want ErrLockLost", err)
	}
	if err := s.Commit(ctx, store.Batch{Audit: []store.AuditEvent{{Type: "test-event"}}}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.ReadAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.VerifyChain(recs, 0, store.GenesisHash); err != nil || len(recs) != 2 {
		t.Fatalf("chain after reopen: %d records, %v", len(recs), err)
	}
	// A fence keeps growing across restarts.
	if err := s.ReleaseLock(ctx, l); err != nil {
		t.Fatal(err)
	}
	l2, err := s.AcquireLock(ctx, "sweeper", "B", time.Hour)
	if err != nil || l2.Fence <= l.Fence {
		t.Fatalf("fence after reopen = %d (%v), want > %d", l2.Fence, err, l.Fence)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jitbot.db")
	s := openTest(t, path)
	defer s.Close()
	_, err := Open(path, Options{OpenTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrFileLocked) || !strings.Contains(err.Error(), "data file locked by another jitbot process") {
		t.Fatalf("second Open: err = %v, want ErrFileLocked", err)
	}
}

func TestInjectedClock(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := Open(filepath.Join(t.TempDir(), "jitbot.db"), Options{NoSync: true, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if first, _ := s.MarkSeen(ctx, "k", time.Minute); !first {
		t.Fatal("first MarkSeen = false")
	}
	a, err := s.AcquireLock(ctx, "l", "A", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(59 * time.Second)
	if first, _ := s.MarkSeen(ctx, "k", time.Minute); first {
		t.Fatal("MarkSeen at +59s = true")
	}
	if _, err := s.AcquireLock(ctx, "l", "B", time.Minute); !errors.Is(err, store.ErrLockHeld) {
		t.Fatalf("B acquire at +59s: %v", err)
	}
	now = now.Add(time.Second)
	if first, _ := s.MarkSeen(ctx, "k", time.Minute); !first {
		t.Fatal("MarkSeen at +60s = false")
	}
	b, err := s.AcquireLock(ctx, "l", "B", time.Minute)
	if err != nil || b.Fence <= a.Fence {
		t.Fatalf("B acquire at +60s = %+v, %v", b, err)
	}
	// Lazy cleanup: many expired keys are removed by later calls.
	for i := range 200 {
		if _, err := s.MarkSeen(ctx, fmt.Sprint("bulk-", i), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Hour)
	for range 5 {
		if _, err := s.MarkSeen(ctx, "tick", time.Second); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := s.db.View(func(tx *bbolt.Tx) error { n = tx.Bucket(bSeen).Stats().KeyN; return nil }); err != nil {
		t.Fatal(err)
	}
	if n > 1 {
		t.Fatalf("%d MarkSeen entries left after cleanup, want 1", n)
	}
}

func TestTimeKeyOrder(t *testing.T) {
	times := []time.Time{
		{},
		time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Unix(-1, 999_999_999),
		time.Unix(0, 0),
		time.Unix(0, 1),
		time.Unix(1_700_000_000, 5),
		time.Date(2262, 4, 12, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for i, tm := range times {
		if got := decodeTimeKey(timeKey(tm)); !got.Equal(tm) {
			t.Fatalf("decode(encode(%v)) = %v", tm, got)
		}
		if i > 0 && bytes.Compare(timeKey(times[i-1]), timeKey(tm)) >= 0 {
			t.Fatalf("timeKey(%v) !< timeKey(%v)", times[i-1], tm)
		}
	}
	if got := prefixSuccessor([]byte{1, 0xff, 0xff}); !bytes.Equal(got, []byte{2}) {
		t.Fatalf("prefixSuccessor = %v", got)
	}
	if got := prefixSuccessor([]byte{0xff}); got != nil {
		t.Fatalf("prefixSuccessor(ff) = %v", got)
	}
}

// ---- tamper evidence ----

// seedAudit writes n audit events (in several commits) and closes the store.
func seedAudit(t *testing.T, path string, n int) {
	t.Helper()
	s := openTest(t, path)
	for i := 0; i < n; i += 2 {
		b := store.Batch{}
		for j := i; j < i+2 && j < n; j++ {
			b.Audit = append(b.Audit, store.AuditEvent{Type: store.EventApproved, At: time.Unix(int64(j), 0), Actor: "U-alice",
				RequestID: fmt.Sprintf("req-%d", j), Details: map[string]string{"approvals": "1/1"}})
		}
		if err := s.Commit(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// tamper edits the raw bbolt file behind the store's back.
func tamper(t *testing.T, path string, fn func(b *bbolt.Bucket) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return fn(tx.Bucket(bAudit)) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// verifyAt reopens the store, reads the whole log and requires VerifyChain to report a break at seq.
func verifyAt(t *testing.T, path string, seq uint64, reason string) {
	t.Helper()
	s := openTest(t, path)
	defer s.Close()
	recs, err := s.ReadAudit(t.Context(), 0, 0)
	if err != nil {
		t.Fatalf("ReadAudit of a tampered log: %v", err)
	}
	_, _, err = store.VerifyChain(recs, 0, store.GenesisHash)
	var ce *store.ChainError
	if !errors.As(err, &ce) {
		t.Fatalf("VerifyChain of a tampered log: err = %v, want *store.ChainError", err)
	}
	if ce.Seq != seq || !strings.Contains(ce.Reason, reason) {
		t.Fatalf("VerifyChain: %v; want a break at seq %d (%s)", ce, seq, reason)
	}
}

func TestTamperEditedEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jitbot.db")
	seedAudit(t, path, 7)
	tamper(t, path, func(b *bbolt.Bucket) error {
		v := bytes.Clone(b.Get(seqKey(4)))
		edited := bytes.Replace(v, []byte("U-alice"), []byte("U-mallo"), 1)
		if bytes.Equal(v, edited) {
			return errors.New("actor not found in stored entry")
		}
		return b.Put(seqKey(4), edited)
	})
	verifyAt(t, path, 4, "entry edited")
}

func TestTamperGarbledEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jitbot.db")
	seedAudit(t, path, 5)
	tamper(t, path, func(b *bbolt.Bucket) error {
		v := bytes.Clone(b.Get(seqKey(2)))
		v[len(v)/2] ^= 0x5a
		v[len(v)/2+1] ^= 0x22
		return b.Put(seqKey(2), v)
	})
	verifyAt(t, path, 2, "")
}

func TestTamperDeletedEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jitbot.db")
	seedAudit(t, path, 6)
	tamper(t, path, func(b *bbolt.Bucket) error { return b.Delete(seqKey(3)) })
	verifyAt(t, path, 3, "entry missing")
}

func TestTamperRechainedEntry(t *testing.T) {
	// An attacker who edits an entry and recomputes its own hash still breaks the next link.
	path := filepath.Join(t.TempDir(), "jitbot.db")
	seedAudit(t, path, 4)
	tamper(t, path, func(b *bbolt.Bucket) error {
		var e auditEntry
		if err := json.Unmarshal(b.Get(seqKey(2)), &e); err != nil {
			return err
		}
		e.Raw = strings.Replace(e.Raw, "U-alice", "U-mallo", 1)
		e.Hash = store.ChainHash(e.PrevHash, 2, []byte(e.Raw))
		v, err := json.Marshal(e)
		if err != nil {
			return err
		}
		return b.Put(seqKey(2), v)
	})
	verifyAt(t, path, 3, "prev_hash")
}

func TestTamperDeletedLastEntry(t *testing.T) {
	// Truncating the tail is caught on the next append: the new entry's seq skips the deleted one.
	path := filepath.Join(t.TempDir(), "jitbot.db")
	seedAudit(t, path, 4)
	tamper(t, path, func(b *bbolt.Bucket) error { return b.Delete(seqKey(4)) })
	s := openTest(t, path)
	if err := s.Commit(t.Context(), store.Batch{Audit: []store.AuditEvent{{Type: "test-event"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	verifyAt(t, path, 4, "entry missing")
}

// ---- benchmark ----

func BenchmarkClaimDueNoneDue(b *testing.B) {
	const total, batch = 100_000, 1000
	s, err := Open(filepath.Join(b.TempDir(), "jitbot.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := b.Context()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < total; i += batch {
		var bt store.Batch
		for j := i; j < i+batch; j++ {
			bt.Grants = append(bt.Grants, store.GrantPut{Grant: &store.Grant{
				ID: fmt.Sprintf("grant-%06d", j), UserID: fmt.Sprintf("U%d", j%500), BindingKey: fmt.Sprintf("B%d", j),
				State: store.GrantActive, CreatedAt: now, DueAt: now.Add(time.Minute + time.Duration(j)*time.Millisecond),
			}})
		}
		if err := s.Commit(ctx, bt); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		gs, err := s.ClaimDueGrants(ctx, now, 100, time.Minute)
		if err != nil || len(gs) != 0 {
			b.Fatalf("ClaimDueGrants = %d grants, %v", len(gs), err)
		}
	}
}

// boltTamperer edits the audit bucket and head through the open database, behind the Store's API.
type boltTamperer struct{ s *Store }

func (b boltTamperer) DeleteAuditEntry(_ context.Context, seq uint64) error {
	return b.s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bAudit).Delete(seqKey(seq)) })
}

func (b boltTamperer) SetAuditHead(_ context.Context, h store.AuditHead) error {
	data, err := json.Marshal(auditHead{Seq: h.Seq, Hash: h.Hash})
	if err != nil {
		return err
	}
	return b.s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bMeta).Put(keyAuditHead, data) })
}

func TestAuditTamper(t *testing.T) {
	storetest.RunAuditTamper(t, func(t *testing.T) (store.Store, storetest.AuditTamperer) {
		s := openTest(t, filepath.Join(t.TempDir(), "jitbot.db"))
		t.Cleanup(func() { _ = s.Close() })
		return s, boltTamperer{s}
	})
}

func (b boltTamperer) PutAuditEntry(_ context.Context, rec store.AuditRecord) error {
	data, err := json.Marshal(auditEntry{PrevHash: rec.PrevHash, Hash: rec.Hash, Raw: string(rec.Raw)})
	if err != nil {
		return err
	}
	return b.s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bAudit).Put(seqKey(rec.Seq), data) })
}

func TestAuditKeyed(t *testing.T) {
	storetest.RunAuditKeyed(t, func(t *testing.T) storetest.KeyedStorage {
		path := filepath.Join(t.TempDir(), "jitbot.db")
		return func(key []byte) (store.Store, storetest.AuditTamperer) {
			s, err := Open(path, Options{NoSync: true, AuditLinkKey: key})
			if err != nil {
				t.Fatal(err)
			}
			return s, boltTamperer{s}
		}
	})
}
