package gcp_test

import (
	"fmt"
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
		Present: func(t *testing.T, a grants.Assignment) bool {
			return liveJitbotBinding(mustPolicy(t, srv, resource), role, member(a), a.GrantID, time.Now())
		},
		Count: func(t *testing.T, a grants.Assignment) int {
			return countTitle(mustPolicy(t, srv, resource), member(a), "jitbot "+a.GrantID)
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
		Latency: func(t *testing.T, d time.Duration) { srv.SetLatency(d) },
		Reset:   func(t *testing.T) { srv.Reset() },
		Secrets: []string{testToken},
	})
	if owner := mustPolicy(t, srv, resource).Bindings[0]; owner.Role != "roles/owner" || owner.Members[0] != "user:owner@example.com" {
		t.Errorf("the pre-existing owner binding was not preserved: %+v", owner)
	}
}
