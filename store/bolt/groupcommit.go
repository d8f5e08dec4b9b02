package bolt

import (
	"context"
	"sync"

	"go.etcd.io/bbolt"
)

// Group commit. bbolt has one writer at a time and every write transaction ends with an fsync, so on a real
// disk the store managed only a few hundred writes a second however many goroutines wrote: the sweeper's 64
// workers (each revocation is several writes: claim, binding lock, renew, commit, unlock) queued behind each
// other's fsyncs. Writes that arrive while a transaction is being written now wait and then run together in
// the next transaction, one fsync for all of them. A write that arrives when none is in progress runs at
// once, alone, exactly as before: grouping adds no delay, it only happens while writers queue anyway.
//
// Each write's fn runs inside the shared transaction after the earlier ones of its group, which is the same
// as running them one after the other. When one fails, the whole transaction is rolled back (its writes and
// the others'); like bbolt's own Batch, the failed write is judged again alone against the committed state
// (unless it ran first, so it already saw exactly that) and the others are retried without it. fn may
// therefore run more than once: it must reset whatever it captures (every fn in this package does). A caller
// gets its answer only once its transaction is committed (or has failed).

type pendingWrite struct {
	ctx  context.Context
	fn   func(*bbolt.Tx) error
	done chan writeResult // capacity 1: the lead hand-over, then the result
	// async: nobody waits for this write (see writeAsync); when the lead is handed to it, a new goroutine
	// leads instead.
	async bool
}

type writeResult struct {
	lead bool // take the queue and write it
	err  error
}

type groupCommitter struct {
	mu    sync.Mutex
	queue []*pendingWrite
	busy  bool // a leader is writing; later writes queue for the next transaction

	// txns counts write transactions begun (tests).
	txns int
	// leaders counts goroutines started to lead a queue of writeAsync writes; Close waits for them.
	leaders sync.WaitGroup
}

// write runs fn in a write transaction, possibly shared with other writes queued meanwhile.
func (s *Store) write(ctx context.Context, fn func(*bbolt.Tx) error) error {
	g := &s.group
	w := &pendingWrite{ctx: ctx, fn: fn, done: make(chan writeResult, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	lead := !g.busy
	g.busy = true
	g.mu.Unlock()
	if !lead {
		r := <-w.done
		if !r.lead {
			return r.err
		}
	}
	s.lead()
	return (<-w.done).err
}

// writeAsync queues fn for the next write transaction and returns without waiting for it. Its place in the
// queue is taken before writeAsync returns, so every write this process starts afterwards runs after it (in
// the same transaction or a later one); what is lost is only the wait for the fsync, and, if the process dies
// before the transaction is written, the write itself. fn's error is dropped.
func (s *Store) writeAsync(fn func(*bbolt.Tx) error) {
	g := &s.group
	w := &pendingWrite{ctx: context.Background(), fn: fn, done: make(chan writeResult, 1), async: true}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	lead := !g.busy
	g.busy = true
	if lead {
		g.leaders.Add(1)
	}
	g.mu.Unlock()
	if lead {
		go func() { defer g.leaders.Done(); s.lead() }()
	}
}

// lead writes everything queued so far in one transaction, then hands the queue to the first write that
// arrived meanwhile, so that a waiting caller returns after one transaction whatever the load.
func (s *Store) lead() {
	g := &s.group
	g.mu.Lock()
	batch := g.queue
	g.queue = nil
	g.mu.Unlock()
	s.runGroup(batch)
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case len(g.queue) == 0:
		g.busy = false
	case g.queue[0].async:
		g.leaders.Add(1)
		go func() { defer g.leaders.Done(); s.lead() }()
	default:
		g.queue[0].done <- writeResult{lead: true}
	}
}

// runGroup writes batch in one transaction, retrying without any write that fails (see above), and sends
// every write its result.
func (s *Store) runGroup(batch []*pendingWrite) {
	for len(batch) > 0 {
		failed := -1
		var failErr error
		err := s.update1(func(tx *bbolt.Tx) error {
			for i, w := range batch {
				err := w.ctx.Err()
				if err == nil {
					err = w.fn(tx)
				}
				if err != nil {
					failed, failErr = i, err
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, w := range batch {
				w.done <- writeResult{err: err}
			}
			return
		}
		solo := batch[failed]
		batch = append(batch[:failed:failed], batch[failed+1:]...)
		if failed > 0 {
			failErr = s.update1(func(tx *bbolt.Tx) error {
				if err := solo.ctx.Err(); err != nil {
					return err
				}
				return solo.fn(tx)
			})
		}
		solo.done <- writeResult{err: failErr}
	}
}

func (s *Store) update1(fn func(*bbolt.Tx) error) error {
	s.group.mu.Lock()
	s.group.txns++
	s.group.mu.Unlock()
	return s.db.Update(fn)
}
