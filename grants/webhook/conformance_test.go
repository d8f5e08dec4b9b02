package webhook_test

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providertest"
	"github.com/jitbot/jitbot/grants/webhook"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
)

// TestConformance runs the shared provider suite against the independent receiver; its present set is the
// ground truth.
func TestConformance(t *testing.T) {
	const secret = "whsec_c2VjcmV0LWtleS1mb3ItY29uZm9ybWFuY2UtdGVzdHM="
	key, err := webhook.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	rcv := webhookfake.NewServer(key)
	t.Cleanup(rcv.Close)
	var n atomic.Int64

	statuses := map[providertest.Fault]int{
		providertest.Throttled:    http.StatusTooManyRequests,
		providertest.Conflict:     http.StatusConflict,
		providertest.NotFound:     http.StatusNotFound,
		providertest.AccessDenied: http.StatusForbidden,
		providertest.ServerError:  http.StatusInternalServerError,
	}
	providertest.Run(t, providertest.Harness{
		New: func(t *testing.T) grants.Provider {
			// A receiver that provisions asynchronously may take tens of seconds: the policy's pending_timeout.
			p, err := webhook.New(webhook.Config{URL: rcv.URL + "/jitbot", Secret: key, PendingTimeout: time.Minute, PollInterval: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
		Assignment: func(t *testing.T) grants.Assignment {
			id := fmt.Sprintf("g-%d", n.Add(1))
			// A target of its own per case: standing access or an operation in flight left by one case must not
			// meet the next on a shared binding.
			return grants.Assignment{GrantID: id, RequestID: "r-" + id, UserID: "U1", Role: "admin", Principal: "alice",
				Target: map[string]string{"case": id}}
		},
		// The receiver keeps access under the binding when the payload names one (leases share it).
		Present: func(t *testing.T, a grants.Assignment) bool { return rcv.Present(accessOf(a)) },
		Count: func(t *testing.T, a grants.Assignment) int {
			if rcv.Present(accessOf(a)) {
				return 1
			}
			return 0
		},
		Inject:     func(t *testing.T, f providertest.Fault) { rcv.FailNext(statuses[f], 1) },
		SetPresent: func(t *testing.T, a grants.Assignment, present bool) { rcv.SetPresent(a.GrantID, present) },
		Latency:    func(t *testing.T, d time.Duration) { rcv.SetLatency(d) },
		Reset:      func(t *testing.T) { rcv.Reset() },
		// The optional parts of the contract (docs/webhook.md "Answering"), as the reference receiver models
		// them: standing access answered {"pre_existing": true}, operations in flight answered {"pending":
		// true} (and 409 for the opposite kind), the expires_at of the latest grant kept as the receiver's own end.
		Standing:           func(t *testing.T, a grants.Assignment, on bool) { rcv.SetStanding(accessOf(a), on) },
		StandingPresent:    func(t *testing.T, a grants.Assignment) bool { return rcv.Standing(accessOf(a)) },
		HonoursCallPending: true,
		InFlight: func(t *testing.T, a grants.Assignment, op providertest.Op) {
			typ := webhook.TypeGrant
			if op == providertest.OpRevoke {
				typ = webhook.TypeRevoke
			}
			rcv.StartInFlight(accessOf(a), typ)
		},
		Settle:         func(t *testing.T) { rcv.Settle() },
		ProviderExpiry: func(t *testing.T, a grants.Assignment) (time.Time, bool) { return rcv.Expiry(accessOf(a)) },
		SlowAsync:      func(t *testing.T, d time.Duration) { rcv.SetAsync(d) },
		Cycles:         20,
		// A 404 from a webhook URL cannot be told apart from a wrong URL: treating it as "already revoked"
		// would silently keep access. Receivers answer 2xx for absent assignments instead (docs/webhook.md).
		Outcome: func(op providertest.Op, f providertest.Fault) providertest.Outcome {
			if f == providertest.NotFound {
				return providertest.Permanent
			}
			return providertest.Default
		},
		Secrets: []string{secret, string(key)},
	})
}

// accessOf is the key the receiver keeps an assignment's access under.
func accessOf(a grants.Assignment) string {
	if a.BindingKey != "" {
		return a.BindingKey
	}
	return a.GrantID
}
