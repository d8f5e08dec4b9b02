package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/jitbot/jitbot/store"
)

var bGroupTest = []byte("group_test")

// incr is a write that adds one to counter key (rerun-safe: it reads what the transaction holds).
func incr(key string) func(*bbolt.Tx) error {
	return func(tx *bbolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(bGroupTest)
		if err != nil {
			return err
		}
		var n uint64
		if v := bk.Get([]byte(key)); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		return bk.Put([]byte(key), binary.BigEndian.AppendUint64(nil, n+1))
	}
}

func readCount(t *testing.T, s *Store, key string) uint64 {
	t.Helper()
	var n uint64
	if err := s.db.View(func(tx *bbolt.Tx) error {
		if bk := tx.Bucket(bGroupTest); bk != nil {
			if v := bk.Get([]byte(key)); len(v) == 8 {
				n = binary.BigEndian.Uint64(v)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

func (s *Store) queued() int {
	s.group.mu.Lock()
	defer s.group.mu.Unlock()
	return len(s.group.queue)
}

func (s *Store) txnCount() int {
	s.group.mu.Lock()
	defer s.group.mu.Unlock()
	return s.group.txns
}

// Writes that arrive while a transaction is being written share the next one; each is applied exactly once.
func TestGroupCommitSharesOneTransaction(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "g.db"))
	defer s.Close()
	ctx := context.Background()

	entered, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- s.update(ctx, "hold", func(tx *bbolt.Tx) error {
			close(entered)
			<-release
			return incr("held")(tx)
		})
	}()
	<-entered
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.update(ctx, "incr", incr(fmt.Sprintf("k%d", i%5)))
		}()
	}
	for s.queued() < n { // every later write is waiting behind the held transaction
		time.Sleep(time.Millisecond)
	}
	before := s.txnCount()
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if got := s.txnCount() - before; got != 1 {
		t.Fatalf("the %d queued writes took %d transactions, want 1", n, got)
	}
	for k := range 5 {
		if got := readCount(t, s, fmt.Sprintf("k%d", k)); got != n/5 {
			t.Fatalf("k%d = %d, want %d", k, got, n/5)
		}
	}
	if got := readCount(t, s, "held"); got != 1 {
		t.Fatalf("held = %d, want 1", got)
	}
}

// A write that fails inside a shared transaction gets its own error, leaves nothing behind, and does not
// cost the others their writes (they are applied once, not twice, although they ran twice).
func TestGroupCommitFailureIsolated(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "g.db"))
	defer s.Close()
	boom := errors.New("boom")
	runs := 0
	failing := func(tx *bbolt.Tx) error {
		runs++
		if err := incr("failed-write")(tx); err != nil {
			return err
		}
		return boom
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	mk := func(ctx context.Context, fn func(*bbolt.Tx) error) *pendingWrite {
		return &pendingWrite{ctx: ctx, fn: fn, done: make(chan writeResult, 1)}
	}
	ctx := context.Background()
	batch := []*pendingWrite{mk(ctx, incr("a")), mk(ctx, failing), mk(ctx, incr("b")), mk(cancelled, incr("c")), mk(ctx, incr("a"))}
	s.runGroup(batch)
	want := []error{nil, boom, nil, context.Canceled, nil}
	for i, w := range batch {
		if got := (<-w.done).err; !errors.Is(got, want[i]) || (want[i] == nil && got != nil) {
			t.Fatalf("write %d: got %v, want %v", i, got, want[i])
		}
	}
	if runs != 2 {
		t.Fatalf("the failing write ran %d times, want 2 (in the group, then alone)", runs)
	}
	for key, want := range map[string]uint64{"a": 2, "b": 1, "c": 0, "failed-write": 0} {
		if got := readCount(t, s, key); got != want {
			t.Fatalf("%s = %d, want %d", key, got, want)
		}
	}
}

// Under concurrency the grouped store keeps the semantics the engine relies on: one winner per lock, one
// first MarkSeen per key, every audit entry chained exactly once.
func TestGroupCommitConcurrentSemantics(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "g.db"))
	defer s.Close()
	ctx := context.Background()
	const n = 64
	var wg sync.WaitGroup
	var mu sync.Mutex
	locks, firsts := 0, 0
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.AcquireLock(ctx, "binding:x", fmt.Sprintf("h%d", i), time.Minute); err == nil {
				mu.Lock()
				locks++
				mu.Unlock()
			} else if !errors.Is(err, store.ErrLockHeld) {
				t.Error(err)
			}
			if first, err := s.MarkSeen(ctx, "slack-sig:same", time.Minute); err != nil {
				t.Error(err)
			} else if first {
				mu.Lock()
				firsts++
				mu.Unlock()
			}
			if err := s.Commit(ctx, store.Batch{Audit: []store.AuditEvent{{Type: "test", At: time.Now(), Actor: fmt.Sprintf("a%d", i)}}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if locks != 1 || firsts != 1 {
		t.Fatalf("%d lock winners and %d first MarkSeen, want 1 and 1", locks, firsts)
	}
	head, err := s.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := s.ReadAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if head.Seq != n || len(recs) != n {
		t.Fatalf("audit head %d, %d records, want %d", head.Seq, len(recs), n)
	}
	if _, last, err := store.VerifyChain(recs, 0, store.GenesisHash); err != nil || last != head.Hash {
		t.Fatalf("chain: %v (last %s, head %s)", err, last, head.Hash)
	}
}
