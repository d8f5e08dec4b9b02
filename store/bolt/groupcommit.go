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
	// Leading: write everything queued so far (w included), then hand the queue to the first write that
	// arrived meanwhile, so that this caller returns after one transaction whatever the load.
	g.mu.Lock()
	batch := g.queue
	g.queue = nil
	g.mu.Unlock()
	s.runGroup(batch)
	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].done <- writeResult{lead: true}
	} else {
		g.busy = false
	}
	g.mu.Unlock()
	return (<-w.done).err
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
