package telemetry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/store"
)

func TestMetricsCountOutcomesAttemptsAndLag(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, func(_ context.Context, st store.GrantState) (int, error) {
		if st == store.GrantActive {
			return 7, nil
		}
		return 0, nil
	})
	m.Publish(context.Background(),
		store.AuditEvent{Type: store.EventRequested},
		store.AuditEvent{Type: store.EventApproved, Details: map[string]string{"approvals": "1/2"}},
		store.AuditEvent{Type: store.EventApproved, Details: map[string]string{"approvals": "2/2"}},
		store.AuditEvent{Type: store.EventRevokeFailed},
	)
	m.ProviderCall("revoke", nil)
	m.ProviderCall("revoke", errors.New("timeout"))
	m.ProviderCall("grant", grants.Permanent(errors.New("denied")))
	m.Revoked(30 * time.Millisecond)

	expect := `
# HELP jitbot_requests_total Access requests by outcome (requested, approved, granted, denied, cancelled, expired, break_glass).
# TYPE jitbot_requests_total counter
jitbot_requests_total{outcome="approved"} 1
jitbot_requests_total{outcome="requested"} 1
# HELP jitbot_provider_failures_total Failed provider attempts, by kind (retryable, permanent).
# TYPE jitbot_provider_failures_total counter
jitbot_provider_failures_total{kind="permanent",op="grant"} 1
jitbot_provider_failures_total{kind="retryable",op="revoke"} 1
# HELP jitbot_revoke_failed_total Grants escalated because revocation kept failing. Alert on any increase.
# TYPE jitbot_revoke_failed_total counter
jitbot_revoke_failed_total 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expect), "jitbot_requests_total", "jitbot_provider_failures_total", "jitbot_revoke_failed_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.revocationLag); n != 1 {
		t.Fatalf("lag histogram series = %d", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "jitbot_grants" {
			for _, mm := range mf.GetMetric() {
				if mm.GetLabel()[0].GetValue() == "active" && mm.GetGauge().GetValue() == 7 {
					found = true
				}
			}
		}
	}
	if !found {
		t.Fatal("jitbot_grants{state=active} does not report the store's count")
	}
}

func TestDecisionWaitFromTheDecidingEvent(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, nil)
	m.Publish(context.Background(),
		store.AuditEvent{Type: store.EventApproved, Details: map[string]string{"approvals": "1/2"}},                              // not the decision
		store.AuditEvent{Type: store.EventApproved, Details: map[string]string{"approvals": "2/2", "decision_wait_ms": "90000"}}, // 90 s
		store.AuditEvent{Type: store.EventDenied, Details: map[string]string{"decision_wait_ms": "3000"}},
	)
	if n := testutil.CollectAndCount(m.decisionWait); n != 2 {
		t.Fatalf("want one approved and one denied series, got %d", n)
	}
	var got struct{ sum float64 }
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "jitbot_request_decision_seconds" {
			for _, mm := range mf.GetMetric() {
				got.sum += mm.GetHistogram().GetSampleSum()
			}
		}
	}
	if got.sum != 93 {
		t.Fatalf("sum of decision waits = %v s, want 93", got.sum)
	}
}

func TestRevokeVerifiedLag(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, nil)
	m.Publish(context.Background(),
		store.AuditEvent{Type: store.EventRevokeVerified, Details: map[string]string{"lag_ms": "1500"}},
		store.AuditEvent{Type: store.EventRevokeVerified, Details: map[string]string{"lag_ms": "garbage"}},
	)
	expect := `
# HELP jitbot_revoke_verified_lag_seconds Time from a grant's end (expiry or release) until a check at the provider confirmed its access gone.
# TYPE jitbot_revoke_verified_lag_seconds histogram
jitbot_revoke_verified_lag_seconds_bucket{le="0.005"} 0
jitbot_revoke_verified_lag_seconds_bucket{le="0.01"} 0
jitbot_revoke_verified_lag_seconds_bucket{le="0.025"} 0
jitbot_revoke_verified_lag_seconds_bucket{le="0.05"} 0
jitbot_revoke_verified_lag_seconds_bucket{le="0.1"} 0
jitbot_revoke_verified_lag_seconds_bucket{le="0.25"} 0
jitbot_revoke_verified_lag_seconds_bucket{le="0.5"} 0
jitbot_revoke_verified_lag_seconds_bucket{le="1"} 0
jitbot_revoke_verified_lag_seconds_bucket{le="2.5"} 1
jitbot_revoke_verified_lag_seconds_bucket{le="5"} 1
jitbot_revoke_verified_lag_seconds_bucket{le="10"} 1
jitbot_revoke_verified_lag_seconds_bucket{le="30"} 1
jitbot_revoke_verified_lag_seconds_bucket{le="60"} 1
jitbot_revoke_verified_lag_seconds_bucket{le="300"} 1
jitbot_revoke_verified_lag_seconds_bucket{le="900"} 1
jitbot_revoke_verified_lag_seconds_bucket{le="+Inf"} 1
jitbot_revoke_verified_lag_seconds_sum 1.5
jitbot_revoke_verified_lag_seconds_count 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expect), "jitbot_revoke_verified_lag_seconds"); err != nil {
		t.Fatal(err)
	}
}

func TestRevokeAccessRemainsCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, nil)
	m.Publish(context.Background(),
		store.AuditEvent{Type: store.EventAccessRemains, Details: map[string]string{"other": "rolebinding/payments/by-hand", "lag_ms": "20"}},
		store.AuditEvent{Type: store.EventRevokeVerified, Details: map[string]string{"lag_ms": "10"}},
		store.AuditEvent{Type: store.EventAccessRemains},
	)
	expect := `
# HELP jitbot_revoke_access_remains_total Revokes verified at the provider after which the principal still held the access through objects jitbot did not grant (access-remains events).
# TYPE jitbot_revoke_access_remains_total counter
jitbot_revoke_access_remains_total 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expect), "jitbot_revoke_access_remains_total"); err != nil {
		t.Fatal(err)
	}
	// jitbot's access was confirmed gone in both kinds of event: both are in the verified-revocation lag.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "jitbot_revoke_verified_lag_seconds" {
			if h := mf.GetMetric()[0].GetHistogram(); h.GetSampleCount() != 2 || h.GetSampleSum() != 0.03 {
				t.Fatalf("verified lag: %d samples, sum %v; want the revoke-verified (10 ms) and the access-remains (20 ms)", h.GetSampleCount(), h.GetSampleSum())
			}
			return
		}
	}
	t.Fatal("jitbot_revoke_verified_lag_seconds not gathered")
}
