package approvals

import (
	"context"
	"fmt"

	"github.com/jitbot/jitbot/store"
)

// waitingLimit bounds how many pending requests WaitingFor looks at (the newest).
const waitingLimit = 50

// WaitingFor lists the pending requests approver could approve now, newest first: of the newest pending
// requests, those approver did not make (nor triggered, for a pipeline run's request), has not approved yet,
// and is an eligible approver of under the policy in force. A request whose role is no longer in the policy, or whose approvers cannot be checked
// right now, is left out (the decision itself checks everything again).
func (s *Service) WaitingFor(ctx context.Context, approver string) ([]store.Request, error) {
	pending, err := s.opts.Store.ListRequests(ctx, store.RequestQuery{State: store.RequestPending, Limit: waitingLimit})
	if err != nil {
		return nil, fmt.Errorf("approvals: list pending requests: %w", err)
	}
	var out []store.Request
	for _, r := range pending {
		if r.Requester == approver || isTriggeringActor(&r, approver) || r.HasApproval(approver) {
			continue
		}
		role, ok := s.Policy().Role(r.Role)
		if !ok {
			continue
		}
		if ok, err := s.CanApprove(ctx, role, approver); err == nil && ok {
			out = append(out, r)
		}
	}
	return out, nil
}
