package approvals

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jitbot/jitbot/store"
)

// commitAndPublish is the one way approvals writes: b is stored in one atomic commit and, once committed,
// its audit events are published. A lost compare-and-swap comes back as store.ErrConflict, unwrapped, for
// the caller to re-read and retry; nothing is published then.
func (s *Service) commitAndPublish(ctx context.Context, b store.Batch) error {
	if err := s.opts.Store.Commit(ctx, b); err != nil {
		return err
	}
	s.publish(ctx, b.Audit...)
	return nil
}

// progressKey is the audit detail of approved and expired events that carries a request's Progress, as
// "n/m" (the stored form, kept for the audit logs written by earlier versions and for readers of the log).
const progressKey = "approvals"

// Progress is how far a request got towards its quorum: Approvals of the Required approvals.
type Progress struct {
	Approvals int
	Required  int
}

// Complete reports whether the quorum is reached: the approval that carries it decided the request.
func (p Progress) Complete() bool { return p.Approvals >= p.Required }

// String is the audit detail form, "n/m".
func (p Progress) String() string { return fmt.Sprintf("%d/%d", p.Approvals, p.Required) }

// ProgressOf reads the progress an approved (one per approval) or expired event carries; ok is false when
// the event carries none.
func ProgressOf(e store.AuditEvent) (p Progress, ok bool) {
	return parseProgress(e.Details[progressKey])
}

func parseProgress(s string) (Progress, bool) {
	got, need, ok := strings.Cut(s, "/")
	if !ok {
		return Progress{}, false
	}
	n, err1 := strconv.Atoi(got)
	m, err2 := strconv.Atoi(need)
	if err1 != nil || err2 != nil || n < 0 || m < 0 {
		return Progress{}, false
	}
	return Progress{Approvals: n, Required: m}, true
}

func progressOf(req *store.Request) string {
	return Progress{Approvals: len(req.Approvals), Required: req.RequiredApprovals}.String()
}
