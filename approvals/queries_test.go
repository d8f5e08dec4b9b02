package approvals_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

// WaitingFor lists, newest first, the pending requests an approver could approve now: not their own, not
// already approved by them, of a role they approve under the policy in force. On every back end.
func TestWaitingFor(t *testing.T) {
	for _, b := range backendtest.All() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			svc := newRefsService(t, b.Open(t), nil)
			create := func(requester, role string) string {
				t.Helper()
				r, err := svc.Create(ctx, approvals.NewRequest{Requester: requester, Role: role, Reason: "INC-1"})
				if err != nil {
					t.Fatal(err)
				}
				return r.ID
			}
			byAlice := create("U0ALICE", "db")
			byBob := create("U0BOB", "db")
			ops := create("U0ALICE", "ops")
			denied := create("U0ALICE", "db")
			if _, err := svc.Deny(ctx, denied, "U0CAROL", "not now"); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Approve(ctx, byAlice, "U0BOB", ""); err != nil { // 1 of 2: still pending
				t.Fatal(err)
			}
			want := func(approver string, ids ...string) {
				t.Helper()
				got, err := svc.WaitingFor(ctx, approver)
				if err != nil {
					t.Fatal(err)
				}
				gotIDs := make([]string, len(got))
				for i, r := range got {
					gotIDs[i] = r.ID
					if r.State != store.RequestPending {
						t.Errorf("WaitingFor(%s) lists %s, which is %s", approver, r.ID, r.State)
					}
				}
				if ids == nil {
					ids = []string{}
				}
				if !slices.Equal(gotIDs, ids) {
					t.Errorf("WaitingFor(%s) = %v; want %v", approver, gotIDs, ids)
				}
			}
			want("U0CAROL", byBob, byAlice) // newest first; not the denied one, not another role's
			want("U0BOB")                   // his own request, and one he approved already
			want("U0ALICE", byBob)          // not her own requests
			want("U0DAVE", ops)
			want("U0NOBODY")

			// A role gone from the policy in force leaves its requests out.
			pol, err := policy.Parse("refs.yaml", []byte(strings.Split(refsPolicy, "  ops:\n")[0]))
			if err != nil {
				t.Fatal(err)
			}
			svc.SetPolicy(pol)
			want("U0DAVE")
			want("U0CAROL", byBob, byAlice)
		})
	}
}

// The person who triggered a pipeline run cannot approve its request (Approve refuses them), so the App Home
// must not list it as waiting for them.
func TestWaitingForLeavesOutTheRunsTrigger(t *testing.T) {
	for _, b := range backendtest.All() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			st := b.Open(t)
			svc := newRefsService(t, st, nil)
			r, err := svc.Create(ctx, approvals.NewRequest{Requester: "U0ALICE", Role: "db", Reason: "INC-1"})
			if err != nil {
				t.Fatal(err)
			}
			// The request as a pipeline run that U0CAROL triggered (what a workload request records).
			req, err := st.GetRequest(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			req.Pipeline = &store.PipelineContext{Issuer: "github", Actor: "carol", ActorUser: "U0CAROL"}
			if err := st.Commit(ctx, store.Batch{Requests: []store.RequestPut{{Request: &req, PrevVersion: req.Version}}}); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Approve(ctx, r.ID, "U0CAROL", ""); !errors.Is(err, approvals.ErrSelfApproval) {
				t.Fatalf("Approve by the run's trigger: %v, want ErrSelfApproval", err)
			}
			for approver, want := range map[string]int{"U0CAROL": 0, "U0BOB": 1} {
				got, err := svc.WaitingFor(ctx, approver)
				if err != nil || len(got) != want {
					t.Errorf("WaitingFor(%s) = %d requests, %v; want %d", approver, len(got), err, want)
				}
			}
		})
	}
}
