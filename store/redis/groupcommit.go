package redis

import (
	"context"
	"fmt"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jitbot/jitbot/store"
)

// Group commit of audited commits. Every audited commit is chained onto the audit head this process last saw,
// so this process's audited commits are serialised (auditMu): one at a time, each waiting for its script's
// reply before the next could be chained. That capped a replica at one audited commit per Redis round trip:
// the sweeper's 64 workers revoking 10,000 grants queued behind each other for the whole run (13 s on a loaded
// 2-core machine against a 3.1 s provider-bound limit). Commits that arrive while one is in flight now queue;
// the next leader chains all of them, one after the other, onto the head and sends their scripts in one
// pipeline (one connection, so Redis runs them in that order, each atomically and on its own, exactly as if
// they had been sent one by one). A commit that finds none in flight is sent at once, alone, as before.
//
// Chaining them all up front assumes the earlier ones append: one that does not (a version conflict, a lost
// fence) leaves the head where it was, so the later ones answer "stale" with the real head, and they are
// re-chained and sent again, as a commit that met another replica's append always was.

type auditJob struct {
	ctx  context.Context
	keys []string
	args []any
	raws [][]byte
	tail []any
	done chan auditResult // capacity 1: the lead hand-over, then the result
}

type auditResult struct {
	lead bool
	res  []any
	err  error
}

type auditQueue struct {
	queue []*auditJob
	busy  bool
	// rounds counts pipelines sent (tests).
	rounds int
}

// commitAudited runs an audited commit through the group (see above) and returns the script's reply.
func (s *Store) commitAudited(ctx context.Context, keys []string, args []any, raws [][]byte, tail []any) ([]any, error) {
	j := &auditJob{ctx: ctx, keys: keys, args: args, raws: raws, tail: tail, done: make(chan auditResult, 1)}
	s.groupMu.Lock()
	q := &s.audit
	q.queue = append(q.queue, j)
	lead := !q.busy
	q.busy = true
	s.groupMu.Unlock()
	if !lead {
		r := <-j.done
		if !r.lead {
			return r.res, r.err
		}
	}
	s.groupMu.Lock()
	batch := q.queue
	q.queue = nil
	s.groupMu.Unlock()
	s.runAuditGroup(batch)
	s.groupMu.Lock()
	if len(q.queue) > 0 {
		q.queue[0].done <- auditResult{lead: true}
	} else {
		q.busy = false
	}
	s.groupMu.Unlock()
	r := <-j.done
	return r.res, r.err
}

// runAuditGroup commits batch in order and answers every job.
func (s *Store) runAuditGroup(batch []*auditJob) {
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	if s.minReplicas > 0 || len(batch) == 1 {
		// One at a time: the WAIT path (durability.go) pipelines each script with its own WAIT.
		for _, j := range batch {
			res, err := s.commitChainedLocked(j.ctx, j.keys, j.args, j.raws, j.tail)
			j.done <- auditResult{res: res, err: err}
		}
		return
	}
	pending := batch
	for round := 0; len(pending) > 0; round++ {
		var live []*auditJob
		for _, j := range pending {
			if err := j.ctx.Err(); err != nil {
				j.done <- auditResult{err: fmt.Errorf("redis: commit: %w", err)}
				continue
			}
			live = append(live, j)
		}
		pending = live
		if len(pending) == 0 {
			return
		}
		if round == 100 {
			for _, j := range pending {
				j.done <- auditResult{err: fmt.Errorf("redis: commit: the audit log kept moving under this commit: %w", store.ErrConflict)}
			}
			return
		}
		if !s.head.known {
			if err := s.loadHead(pending[0].ctx); err != nil {
				for _, j := range pending {
					j.done <- auditResult{err: err}
				}
				return
			}
		}
		// Chain every job onto the head as if the ones before it append.
		type sent struct {
			cmd      *goredis.Cmd
			seq      int64
			lastHash string
		}
		out := make([]sent, len(pending))
		seq, hash := s.head.seq, s.head.hash
		pl := s.c.Pipeline()
		// One caller's cancellation must not fail the others' commits in the same pipeline.
		plCtx := context.WithoutCancel(pending[0].ctx)
		for i, j := range pending {
			full := append(append([]any{}, j.args...), seq, hash)
			prev := hash
			for k, raw := range j.raws {
				h := store.LinkHash(s.linkKey, prev, uint64(seq)+uint64(k)+1, raw)
				full = append(full, raw, h)
				prev = h
			}
			full = append(full, j.tail...)
			out[i] = sent{cmd: scriptCommit.EvalSha(plCtx, pl, j.keys, full...), seq: seq + int64(len(j.raws)), lastHash: prev}
			seq, hash = seq+int64(len(j.raws)), prev
		}
		s.groupMu.Lock()
		s.audit.rounds++
		s.groupMu.Unlock()
		_, _ = pl.Exec(plCtx)

		var again []*auditJob
		noScript := false
		for i, j := range pending {
			res, err := out[i].cmd.Slice()
			switch {
			case err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT"):
				noScript = true // the script did not run: send it again once loaded
				again = append(again, j)
			case err != nil:
				s.head.known = false // the commit may or may not have landed
				j.done <- auditResult{err: fmt.Errorf("redis: commit: %w", err)}
			case len(res) == 3 && res[0] == "stale":
				cur, _ := res[1].(int64)
				h, _ := res[2].(string)
				s.head = auditHead{known: true, seq: cur, hash: h}
				again = append(again, j)
			default:
				res, err = checkReply(res)
				if err == nil && res[0] == "ok" {
					s.head = auditHead{known: true, seq: out[i].seq, hash: out[i].lastHash}
				}
				j.done <- auditResult{res: res, err: err}
			}
		}
		if noScript {
			if err := scriptCommit.Load(plCtx, s.c).Err(); err != nil {
				for _, j := range again {
					j.done <- auditResult{err: fmt.Errorf("redis: commit: load script: %w", err)}
				}
				return
			}
		}
		pending = again
	}
}
