package approvals_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

const refsPolicy = `version: 1
defaults:
  approval_channel: C0APPROVALS
providers:
  fake:
    type: webhook
    principal_from: slack_user_id
    webhook: {url: "http://127.0.0.1:1/unused", secret_env: UNUSED_SECRET}
roles:
  db:
    provider: fake
    target: {db: main}
    requesters: {users: [U0ALICE, U0BOB]}
    approvers: {users: [U0ALICE, U0BOB, U0CAROL]}
    approvals: 2
  ops:
    provider: fake
    target: {db: ops}
    requesters: {users: [U0ALICE]}
    approvers: {users: [U0DAVE]}
`

// counting counts the audit events published.
type counting struct{ n int }

func (c *counting) Publish(_ context.Context, evs ...store.AuditEvent) { c.n += len(evs) }

func newRefsService(t *testing.T, st store.Store, pub approvals.Publisher) *approvals.Service {
	t.Helper()
	pol, err := policy.Parse("refs.yaml", []byte(refsPolicy))
	if err != nil {
		t.Fatal(err)
	}
	// Every reading of the clock is a second later: requests are ordered by creation.
	var mu sync.Mutex
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Second)
		return now
	}
	svc, err := approvals.New(approvals.Options{Store: st, Policy: pol, Publisher: pub, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// The front end's message references are written by the engine, on the request, on every back end: the
// approval message's (and whether the request moved since the message was rendered), and the grant DMs
// (the last MaxDMRefs, each once). They change no decision and publish no event.
func TestMessageRefs(t *testing.T) {
	for _, b := range backendtest.All() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			st := b.Open(t)
			pub := &counting{}
			svc := newRefsService(t, st, pub)
			req, err := svc.Create(ctx, approvals.NewRequest{Requester: "U0ALICE", Role: "db", Reason: "INC-1"})
			if err != nil {
				t.Fatal(err)
			}
			events := pub.n
			if _, ok := approvals.MessageRefOf(req); ok {
				t.Fatal("a new request has no message")
			}

			moved, err := svc.SetMessageRef(ctx, req.ID, approvals.MessageRef{Channel: "C0APPROVALS", TS: "1.1"}, req.Version)
			if err != nil || moved {
				t.Fatalf("SetMessageRef on the version rendered = moved %v, %v; want false, nil", moved, err)
			}
			if pub.n != events {
				t.Fatalf("recording a message published %d events", pub.n-events)
			}
			if _, err := svc.Approve(ctx, req.ID, "U0BOB", ""); err != nil {
				t.Fatal(err)
			}
			events = pub.n
			// Rendered from the first version, stored after the approval: the message must be rendered again.
			moved, err = svc.SetMessageRef(ctx, req.ID, approvals.MessageRef{Channel: "C0APPROVALS", TS: "1.2"}, req.Version)
			if err != nil || !moved {
				t.Fatalf("SetMessageRef on an older version = moved %v, %v; want true, nil", moved, err)
			}
			got := get(t, st, req.ID)
			if ref, ok := approvals.MessageRefOf(got); !ok || ref != (approvals.MessageRef{Channel: "C0APPROVALS", TS: "1.2"}) {
				t.Fatalf("MessageRefOf = %+v, %v", ref, ok)
			}
			if got.State != store.RequestPending || len(got.Approvals) != 1 || got.Requester != "U0ALICE" {
				t.Fatalf("recording the message changed the request: %+v", got)
			}

			for i := range approvals.MaxDMRefs + 2 {
				if err := svc.AddDMRef(ctx, req.ID, approvals.MessageRef{Channel: "D0ALICE", TS: fmt.Sprint(i)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := svc.AddDMRef(ctx, req.ID, approvals.MessageRef{Channel: "D0ALICE", TS: "9"}); err != nil {
				t.Fatal(err) // already recorded
			}
			refs := approvals.DMRefsOf(get(t, st, req.ID))
			if len(refs) != approvals.MaxDMRefs || refs[0].TS != "2" || refs[len(refs)-1] != (approvals.MessageRef{Channel: "D0ALICE", TS: "9"}) {
				t.Fatalf("DMRefsOf = %+v; want the last %d, oldest first", refs, approvals.MaxDMRefs)
			}
			if err := svc.AddDMRef(ctx, "", approvals.MessageRef{Channel: "D0ALICE", TS: "x"}); err != nil {
				t.Fatalf("AddDMRef without a request = %v", err)
			}
			if _, err := svc.SetMessageRef(ctx, "r-missing", approvals.MessageRef{Channel: "C", TS: "1"}, 1); err == nil {
				t.Fatal("SetMessageRef on a missing request succeeded")
			}
			if pub.n != events {
				t.Fatalf("message references published %d events", pub.n-events)
			}
		})
	}
}

func get(t *testing.T, st store.Store, id string) store.Request {
	t.Helper()
	r, err := st.GetRequest(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Approved and expired events carry the request's progress, typed for its readers (the bot, metrics) and
// stored as "n/m".
func TestProgressOf(t *testing.T) {
	for _, tc := range []struct {
		detail   string
		want     approvals.Progress
		ok, done bool
	}{
		{"1/2", approvals.Progress{Approvals: 1, Required: 2}, true, false},
		{"2/2", approvals.Progress{Approvals: 2, Required: 2}, true, true},
		{"", approvals.Progress{}, false, false},
		{"x/2", approvals.Progress{}, false, false},
		{"2", approvals.Progress{}, false, false},
	} {
		p, ok := approvals.ProgressOf(store.AuditEvent{Type: store.EventApproved, Details: map[string]string{"approvals": tc.detail}})
		if p != tc.want || ok != tc.ok || (ok && p.Complete() != tc.done) {
			t.Errorf("ProgressOf(%q) = %+v, %v (complete %v); want %+v, %v (complete %v)", tc.detail, p, ok, p.Complete(), tc.want, tc.ok, tc.done)
		}
		if ok && p.String() != tc.detail {
			t.Errorf("Progress(%q).String() = %q", tc.detail, p.String())
		}
	}
}
