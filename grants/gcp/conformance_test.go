package gcp_test

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/gcp/gcpfake"
	"github.com/jitbot/jitbot/grants/providertest"
)

// TestConformance runs the shared provider suite against the fake; the fake's stored policy is the ground truth.
func TestConformance(t *testing.T) {
	srv := newFake(t)
	const project, resource, role = "jitbot-conformance", "projects/jitbot-conformance", "roles/cloudsql.admin"
	srv.AddResource(resource, gcpfake.Binding{Role: "roles/owner", Members: []string{"user:owner@example.com"}})
	var n atomic.Int64

	faults := map[providertest.Fault]gcpfake.Fault{
		providertest.Throttled:    gcpfake.Throttled,
		providertest.Conflict:     gcpfake.Conflict,
		providertest.NotFound:     gcpfake.NotFound,
		providertest.AccessDenied: gcpfake.AccessDenied,
		providertest.ServerError:  gcpfake.ServerError,
	}
	member := func(a grants.Assignment) string { return "user:" + a.Principal }
	providertest.Run(t, providertest.Harness{
		New: func(t *testing.T) grants.Provider { return newProvider(t, srv) },
		Assignment: func(t *testing.T) grants.Assignment {
			id := fmt.Sprintf("g-%d", n.Add(1))
			return grants.Assignment{
				GrantID: id, RequestID: "r-" + id, UserID: "U01ALICE", Role: "db-admin",
				Principal: fmt.Sprintf("alice-%s@example.com", id), // a bare email: a user
				Target:    map[string]string{"project": project, "role": role},
				ExpiresAt: time.Now().Add(time.Hour),
			}
		},
		// The ground truth of "the member holds the role": a live jitbot binding (whichever lease's title it
		// carries: the leases of one access share one binding) or a human's unconditional one.
		Present: func(t *testing.T, a grants.Assignment) bool {
			pol := mustPolicy(t, srv, resource)
			return liveAnyJitbotBinding(pol, role, member(a), time.Now()) || hasUnconditional(pol, role, member(a))
		},
		Count: func(t *testing.T, a grants.Assignment) int {
			return countJitbot(mustPolicy(t, srv, resource), role, member(a))
		},
		Inject: func(t *testing.T, f providertest.Fault) { srv.Fail(faults[f]) },
		SetPresent: func(t *testing.T, a grants.Assignment, present bool) {
			srv.Mutate(resource, func(p *gcpfake.Policy) {
				if present {
					exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
					p.Bindings = append(p.Bindings, gcpfake.Binding{Role: role, Members: []string{member(a)},
						Condition: &gcpfake.Expr{Title: "jitbot " + a.GrantID, Expression: `request.time < timestamp("` + exp + `")`}})
					return
				}
				for i, b := range p.Bindings {
					if b.Condition != nil && b.Condition.Title == "jitbot "+a.GrantID {
						p.Bindings[i].Members = nil // the fake drops empty bindings
					}
				}
			})
		},
		// A human's own unconditional binding of the same member and role.
		Standing: func(t *testing.T, a grants.Assignment, present bool) {
			srv.Mutate(resource, func(p *gcpfake.Policy) {
				if present {
					p.Bindings = append(p.Bindings, gcpfake.Binding{Role: role, Members: []string{member(a)}})
					return
				}
				for i, b := range p.Bindings {
					if b.Role == role && b.Condition == nil {
						p.Bindings[i].Members = slices.DeleteFunc(slices.Clone(b.Members), func(m string) bool { return m == member(a) })
					}
				}
			})
		},
		StandingPresent: func(t *testing.T, a grants.Assignment) bool {
			return hasUnconditional(mustPolicy(t, srv, resource), role, member(a))
		},
		ProviderExpiry: func(t *testing.T, a grants.Assignment) (time.Time, bool) {
			ends := jitbotEnds(mustPolicy(t, srv, resource), role, member(a))
			if len(ends) != 1 {
				return time.Time{}, false // none, or more than one: the provider's end is not one time
			}
			return ends[0], true
		},
		Cycles:  20,
		Latency: func(t *testing.T, d time.Duration) { srv.SetLatency(d) },
		Reset:   func(t *testing.T) { srv.Reset() },
		Secrets: []string{testToken},
	})
	if owner := mustPolicy(t, srv, resource).Bindings[0]; owner.Role != "roles/owner" || owner.Members[0] != "user:owner@example.com" {
		t.Errorf("the pre-existing owner binding was not preserved: %+v", owner)
	}
}
