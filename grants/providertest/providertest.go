// Package providertest is the conformance suite every grants.Provider adapter passes: webhook today, and the
// AWS, GCP, Azure and Kubernetes adapters as they are added. An adapter's test builds a Harness around a fake of
// the provider's API (the ground truth) and calls Run.
//
// Run's subtests are sequential (never t.Parallel) and share whatever fake the Harness closes over: fault
// injection and latency may be global to the fake, and each subtest uses fresh assignments so that state does not
// leak between them. Harness.Reset, if set, runs before and after every subtest to clear pending faults and
// latency.
//
// # Expectations per fault
//
// Inject makes the next call the adapter makes to the fake fail like the real API would. The suite expects, by
// default (see DefaultOutcome; an adapter may override a cell with Harness.Outcome, and must document why):
//
//	fault         grant                 revoke                check
//	Throttled     retryable             retryable             retryable
//	ServerError   retryable             retryable             retryable
//	Conflict      retryable or success  retryable or success  retryable or success
//	AccessDenied  permanent             permanent             permanent
//	NotFound      permanent             success               success
//
// "retryable" is a non-nil error that grants.IsPermanent rejects; "success or retryable" lets an adapter retry a
// conflict internally (the fault only affects one call). NotFound means the fake reports the assignment, principal
// or target missing: on grant that cannot heal by retrying; on revoke the assignment is absent, which is what
// revoke wants; on check it means "not present" (the reported value is not asserted, the fake lied). After every
// fault the suite repeats the operation and expects it to succeed, with the ground truth right.
//
// No string in Harness.Secrets may appear in any error or reference the adapter returns, in any subtest.
package providertest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/store/bolt"
)

// Fault is a failure the fake can be told to produce once.
type Fault int

// Faults the Harness must be able to inject.
const (
	Throttled    Fault = iota + 1 // rate limited (HTTP 429, ThrottlingException, RESOURCE_EXHAUSTED)
	Conflict                      // concurrent modification (HTTP 409, etag mismatch, ConflictException)
	NotFound                      // the assignment, principal or target does not exist (HTTP 404)
	AccessDenied                  // the bot lacks permission (HTTP 403, AccessDeniedException)
	ServerError                   // the API failed (HTTP 500/503)
)

// Faults lists every Fault.
var Faults = []Fault{Throttled, Conflict, NotFound, AccessDenied, ServerError}

func (f Fault) String() string {
	switch f {
	case Throttled:
		return "Throttled"
	case Conflict:
		return "Conflict"
	case NotFound:
		return "NotFound"
	case AccessDenied:
		return "AccessDenied"
	case ServerError:
		return "ServerError"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// Op names a Provider method.
type Op string

// Provider methods.
const (
	OpGrant  Op = "Grant"
	OpRevoke Op = "Revoke"
	OpCheck  Op = "Check"
)

// Outcome is what the suite expects from an operation that meets a fault.
type Outcome int

// Outcomes.
const (
	Default            Outcome = iota // use DefaultOutcome (only meaningful as a Harness.Outcome answer)
	Retryable                         // non-nil error, not grants.IsPermanent
	Permanent                         // grants.IsPermanent error
	Success                           // nil error
	RetryableOrSuccess                // nil or a retryable error
	Skip                              // the fault does not apply to this adapter and operation
)

func (o Outcome) String() string {
	return [...]string{"default", "retryable", "permanent", "success", "retryable or success", "skip"}[o]
}

// DefaultOutcome is the suite's expectation for op meeting fault f (the table in the package documentation).
func DefaultOutcome(op Op, f Fault) Outcome {
	switch f {
	case Throttled, ServerError:
		return Retryable
	case Conflict:
		return RetryableOrSuccess
	case AccessDenied:
		return Permanent
	case NotFound:
		if op == OpGrant {
			return Permanent
		}
		return Success
	}
	return Skip
}

// Harness adapts one provider and its fake to the suite. New, Assignment, Present and Inject are required.
type Harness struct {
	// New returns an adapter talking to the fake.
	New func(t *testing.T) grants.Provider
	// Assignment returns a fresh valid assignment, distinct from every other one returned.
	Assignment func(t *testing.T) grants.Assignment
	// Present reads the ground truth from the fake, not through the adapter.
	Present func(t *testing.T, a grants.Assignment) bool
	// Inject makes the next call the adapter makes to the fake fail with fault kind.
	Inject func(t *testing.T, kind Fault)
	// Secrets are strings (credentials, signing keys) that must never appear in an error or a reference.
	Secrets []string

	// Optional hooks.

	// SetPresent changes the ground truth behind the adapter's back (drift); enables the drift subtests.
	SetPresent func(t *testing.T, a grants.Assignment, present bool)
	// Count returns how many grants the fake holds for a's binding; enables the "exactly one" assertion.
	Count func(t *testing.T, a grants.Assignment) int
	// Latency delays every following call to the fake by d (0 to stop); enables the in-flight deadline subtest.
	Latency func(t *testing.T, d time.Duration)
	// Reset clears pending faults and latency; run before and after every subtest.
	Reset func(t *testing.T)
	// Outcome overrides DefaultOutcome for some cells; return Default to keep the suite's expectation.
	Outcome func(op Op, f Fault) Outcome
	// Skip names subtests (as in t.Run, e.g. "Faults/Conflict/Revoke") to skip, with the reason as value.
	Skip map[string]string
	// Prompt bounds how long a call with a cancelled or expired context may take before the suite calls it
	// hung; default 1m. It is a hang guard, not a speed check: the provider's far end is made to answer only
	// after an hour, so a call that returns at all was ended by its context.
	Prompt time.Duration
	// CallTimeout bounds every ordinary call; default 30s.
	CallTimeout time.Duration

	// Lifecycle cases (lifecycle.go). Each runs only when the adapter declares the capability it needs by
	// setting the fields below; a case whose hooks are missing is skipped with the name of the missing field.

	// Standing creates (present=true) or removes standing access for a's principal and target the way an
	// administrator would outside jitbot (an Identity Center assignment made in the console, a group
	// membership, a role binding of the admin's own), and StandingPresent reports whether that standing access
	// still exists. Where jitbot's grant is the very same provider object (Identity Center, IAM group and
	// managed-policy modes) they are SetPresent and Present. Both are needed for "StandingAccessSurvives" and
	// "ResumedCallFailsClosed"; with Cycles also the admin assignment in the middle of "RepeatedCycles".
	Standing        func(t *testing.T, a grants.Assignment, present bool)
	StandingPresent func(t *testing.T, a grants.Assignment) bool
	// HonoursCallPending declares that the adapter treats grants.RefCallPending (the manager's write-ahead
	// marker, seen after a process died mid-call) as "access found may be jitbot's"; with Standing it enables
	// "ResumedCallFailsClosed". Set it when jitbot's grant is the very object an administrator would make, so
	// that only the reference can tell them apart (Identity Center, IAM memberships and attachments). Adapters
	// whose objects carry jitbot's name or label tell standing access apart by that and need not.
	HonoursCallPending bool
	// InFlight starts at the fake an asynchronous operation on a's access that has not finished yet: a
	// creation (op OpGrant) or a deletion (op OpRevoke), as an earlier jitbot attempt that timed out leaves
	// behind. The operation must stay in progress until the adapter has waited for it (polled it, or the
	// fake's own settle time passed) or Settle is called. Settle finishes every operation in flight. Both
	// enable "OppositeInFlight".
	InFlight func(t *testing.T, a grants.Assignment, op Op)
	Settle   func(t *testing.T)
	// ProviderExpiry reads from the fake when the provider itself will end a's access (an IAM inline policy's
	// aws:CurrentTime bound, a GCP condition's request.time, an Azure schedule's end); ok is false when the
	// provider holds no end. Set it for self-expiring providers: it enables "ExtensionHonoured" and
	// "ExpiryFollowsRemainingLease" (compared at one-second precision).
	ProviderExpiry func(t *testing.T, a grants.Assignment) (end time.Time, ok bool)
	// Cycles is how many grant/revoke cycles "RepeatedCycles" runs on one binding, each lease with a new
	// grant id (issue 10 asks for 20); 0 skips the case.
	Cycles int
	// SlowAsync makes every following asynchronous operation at the fake (creation, deletion, a provisioning
	// state) take d of real time before it finishes; 0 restores the fake's default. It enables
	// "SlowAsyncThroughManager", which drives the adapter through a real grants.Manager whose attempt timeout
	// is a tenth of d (the suite's scaled stand-in for tens of seconds of provisioning against a 10 s attempt
	// timeout) and expects activation and revocation to complete without an undo or a duplicate: in practice
	// the adapter must declare a grants.AttemptBudgeter budget that covers its slow operations.
	SlowAsync func(t *testing.T, d time.Duration)
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil || h.Assignment == nil || h.Present == nil || h.Inject == nil {
		t.Fatal("providertest: Harness.New, Assignment, Present and Inject are required")
	}
	if h.Prompt == 0 {
		h.Prompt = time.Minute
	}
	if h.CallTimeout == 0 {
		h.CallTimeout = 30 * time.Second
	}
	s := &suite{h: h}

	s.run(t, "GrantIsIdempotent", s.grantIsIdempotent)
	s.run(t, "RevokeAbsentSucceeds", s.revokeAbsent)
	s.run(t, "RevokeAfterGrant", s.revokeAfterGrant)
	s.run(t, "GrantAfterRevoke", s.grantAfterRevoke)
	s.run(t, "CheckReflectsReality", s.checkReflectsReality)
	s.run(t, "CheckSeesDrift", s.checkSeesDrift)
	s.run(t, "GrantRepairsDrift", s.grantRepairsDrift)
	s.run(t, "CancelledContext", s.cancelledContext)
	s.run(t, "DeadlineInFlight", s.deadlineInFlight)
	s.run(t, "StandingAccessSurvives", s.standingAccessSurvives)
	s.run(t, "ResumedCallFailsClosed", s.resumedCallFailsClosed)
	s.run(t, "OtherAccessRemains", s.otherAccessRemains)
	s.run(t, "OppositeInFlight/RevokeWhileCreating", s.revokeWhileCreating)
	s.run(t, "OppositeInFlight/GrantWhileDeleting", s.grantWhileDeleting)
	s.run(t, "ExtensionHonoured", s.extensionHonoured)
	s.run(t, "ExpiryFollowsRemainingLease", s.expiryFollowsRemainingLease)
	s.run(t, "RepeatedCycles", s.repeatedCycles)
	s.run(t, "SlowAsyncThroughManager", s.slowAsyncThroughManager)
	t.Run("Faults", func(t *testing.T) {
		for _, f := range Faults {
			t.Run(f.String(), func(t *testing.T) {
				for _, op := range []Op{OpGrant, OpRevoke, OpCheck} {
					s.run(t, string(op), func(t *testing.T, p grants.Provider) { s.fault(t, p, op, f) })
				}
			})
		}
	})
}

type suite struct {
	h     Harness
	store *bolt.Store // the store of the last manager a lifecycle case built
}

// run runs one subtest with a fresh adapter whose every error is checked for secrets.
func (s *suite) run(t *testing.T, name string, fn func(t *testing.T, p grants.Provider)) {
	t.Run(name, func(t *testing.T) {
		for skip, why := range s.h.Skip {
			if skip == t.Name() || strings.HasSuffix(t.Name(), "/"+skip) {
				t.Skip(why)
			}
		}
		if s.h.Reset != nil {
			s.h.Reset(t)
			t.Cleanup(func() { s.h.Reset(t) })
		}
		fn(t, &secretChecker{p: s.h.New(t), t: t, secrets: s.h.Secrets})
	})
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), s.h.CallTimeout)
	t.Cleanup(cancel)
	return ctx
}

func (s *suite) mustGrant(t *testing.T, p grants.Provider, a grants.Assignment) string {
	t.Helper()
	ref, err := p.Grant(s.ctx(t), a)
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	return ref
}

func (s *suite) mustRevoke(t *testing.T, p grants.Provider, a grants.Assignment) {
	t.Helper()
	if err := p.Revoke(s.ctx(t), a); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
}

func (s *suite) wantPresent(t *testing.T, a grants.Assignment, want bool) {
	t.Helper()
	if got := s.h.Present(t, a); got != want {
		t.Fatalf("ground truth: present = %v, want %v", got, want)
	}
}

func (s *suite) wantCheck(t *testing.T, p grants.Provider, a grants.Assignment, want bool) {
	t.Helper()
	got, err := p.Check(s.ctx(t), a)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got != want {
		t.Fatalf("Check = %v, want %v (ground truth %v)", got, want, s.h.Present(t, a))
	}
}

func (s *suite) grantIsIdempotent(t *testing.T, p grants.Provider) {
	a := s.h.Assignment(t)
	s.mustGrant(t, p, a)
	s.mustGrant(t, p, a)
	s.wantPresent(t, a, true)
	if s.h.Count != nil {
		if n := s.h.Count(t, a); n != 1 {
			t.Fatalf("after granting twice the fake holds %d grants, want 1", n)
		}
	}
	s.wantCheck(t, p, a, true)
}

func (s *suite) revokeAbsent(t *testing.T, p grants.Provider) {
	a := s.h.Assignment(t)
	s.mustRevoke(t, p, a)
	s.mustRevoke(t, p, a)
	s.wantPresent(t, a, false)
}

func (s *suite) revokeAfterGrant(t *testing.T, p grants.Provider) {
	a := s.h.Assignment(t)
	s.mustGrant(t, p, a)
	s.mustRevoke(t, p, a)
	s.wantPresent(t, a, false)
	s.mustRevoke(t, p, a)
	s.wantPresent(t, a, false)
	s.wantCheck(t, p, a, false)
}

func (s *suite) grantAfterRevoke(t *testing.T, p grants.Provider) {
	a := s.h.Assignment(t)
	s.mustGrant(t, p, a)
	s.mustRevoke(t, p, a)
	s.mustGrant(t, p, a)
	s.wantPresent(t, a, true)
}

func (s *suite) checkReflectsReality(t *testing.T, p grants.Provider) {
	a := s.h.Assignment(t)
	s.wantCheck(t, p, a, false)
	s.mustGrant(t, p, a)
	s.wantCheck(t, p, a, true)
	s.mustRevoke(t, p, a)
	s.wantCheck(t, p, a, false)
}

func (s *suite) checkSeesDrift(t *testing.T, p grants.Provider) {
	if s.h.SetPresent == nil {
		t.Skip("Harness.SetPresent not provided")
	}
	a := s.h.Assignment(t)
	s.h.SetPresent(t, a, true)
	s.wantCheck(t, p, a, true)
	s.h.SetPresent(t, a, false)
	s.wantCheck(t, p, a, false)
}

// grantRepairsDrift: access removed behind jitbot's back is restored by granting the same assignment again.
func (s *suite) grantRepairsDrift(t *testing.T, p grants.Provider) {
	if s.h.SetPresent == nil {
		t.Skip("Harness.SetPresent not provided")
	}
	a := s.h.Assignment(t)
	s.mustGrant(t, p, a)
	s.h.SetPresent(t, a, false)
	s.wantCheck(t, p, a, false)
	s.mustGrant(t, p, a)
	s.wantPresent(t, a, true)
}

func (s *suite) wantContextError(t *testing.T, what string, err error, elapsed time.Duration, target error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s with an ended context: nil error", what)
	case !errors.Is(err, target):
		t.Errorf("%s with an ended context: %v; want an error wrapping %v", what, err, target)
	case grants.IsPermanent(err):
		t.Errorf("%s with an ended context: %v is marked permanent", what, err)
	}
	if elapsed > s.h.Prompt {
		t.Errorf("%s with an ended context took %s, want at most %s", what, elapsed, s.h.Prompt)
	}
}

func (s *suite) cancelledContext(t *testing.T, p grants.Provider) {
	a := s.h.Assignment(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	start := time.Now()
	_, err := p.Grant(ctx, a)
	s.wantContextError(t, "Grant", err, time.Since(start), context.Canceled)
	s.wantPresent(t, a, false)

	start = time.Now()
	err = p.Revoke(ctx, a)
	s.wantContextError(t, "Revoke", err, time.Since(start), context.Canceled)

	start = time.Now()
	_, err = p.Check(ctx, a)
	s.wantContextError(t, "Check", err, time.Since(start), context.Canceled)
}

func (s *suite) deadlineInFlight(t *testing.T, p grants.Provider) {
	if s.h.Latency == nil {
		t.Skip("Harness.Latency not provided")
	}
	a := s.h.Assignment(t)
	s.h.Latency(t, time.Hour)
	t.Cleanup(func() { s.h.Latency(t, 0) })

	const budget = 200 * time.Millisecond
	ops := map[Op]func(context.Context) error{
		OpGrant:  func(ctx context.Context) error { _, err := p.Grant(ctx, a); return err },
		OpRevoke: func(ctx context.Context) error { return p.Revoke(ctx, a) },
		OpCheck:  func(ctx context.Context) error { _, err := p.Check(ctx, a); return err },
	}
	for _, op := range []Op{OpGrant, OpRevoke, OpCheck} {
		ctx, cancel := context.WithTimeout(t.Context(), budget)
		start := time.Now()
		err := ops[op](ctx)
		cancel()
		s.wantContextError(t, string(op), err, time.Since(start), context.DeadlineExceeded)
	}
	// Cancellation (rather than a deadline) in flight.
	ctx, cancel := context.WithCancel(t.Context())
	timer := time.AfterFunc(budget, cancel)
	defer timer.Stop()
	start := time.Now()
	_, err := p.Check(ctx, a)
	s.wantContextError(t, "Check cancelled in flight", err, time.Since(start), context.Canceled)
}

func (s *suite) outcome(op Op, f Fault) Outcome {
	if s.h.Outcome != nil {
		if o := s.h.Outcome(op, f); o != Default {
			return o
		}
	}
	return DefaultOutcome(op, f)
}

func (s *suite) fault(t *testing.T, p grants.Provider, op Op, f Fault) {
	want := s.outcome(op, f)
	if want == Skip {
		t.Skipf("%s on %s does not apply to this adapter", f, op)
	}
	a := s.h.Assignment(t)
	if op != OpGrant {
		s.mustGrant(t, p, a)
	}
	s.h.Inject(t, f)

	var err error
	switch op {
	case OpGrant:
		_, err = p.Grant(s.ctx(t), a)
	case OpRevoke:
		err = p.Revoke(s.ctx(t), a)
	case OpCheck:
		_, err = p.Check(s.ctx(t), a)
	}
	ok := false
	switch want {
	case Retryable:
		ok = err != nil && !grants.IsPermanent(err)
	case Permanent:
		ok = err != nil && grants.IsPermanent(err)
	case Success:
		ok = err == nil
	case RetryableOrSuccess:
		ok = err == nil || !grants.IsPermanent(err)
	}
	if !ok {
		t.Fatalf("%s meeting %s: err = %v (permanent: %v); want %s", op, f, err, grants.IsPermanent(err), want)
	}
	t.Logf("%s meeting %s: %v", op, f, err)

	// The fault was for one call: repeating the operation succeeds and leaves the truth right.
	switch op {
	case OpGrant:
		s.mustGrant(t, p, a)
		s.wantPresent(t, a, true)
	case OpRevoke:
		s.mustRevoke(t, p, a)
		s.wantPresent(t, a, false)
	case OpCheck:
		s.wantCheck(t, p, a, true)
	}
}

// secretChecker fails the test when an error or reference contains a secret.
type secretChecker struct {
	p       grants.Provider
	t       *testing.T
	secrets []string
}

func (c *secretChecker) check(what, s string) {
	for i, secret := range c.secrets {
		if secret != "" && strings.Contains(s, secret) {
			c.t.Errorf("%s contains Harness.Secrets[%d]", what, i) // the secret itself is not logged
		}
	}
}

func (c *secretChecker) checkErr(op string, err error) {
	if err != nil {
		c.check(op+" error", err.Error())
		c.check(op+" error (%+v)", fmt.Sprintf("%+v", err))
	}
}

// AttemptBudget forwards the adapter's grants.AttemptBudgeter (0, the manager's default, when it has none).
func (c *secretChecker) AttemptBudget(op string) time.Duration {
	if b, ok := c.p.(grants.AttemptBudgeter); ok {
		return b.AttemptBudget(op)
	}
	return 0
}

func (c *secretChecker) Grant(ctx context.Context, a grants.Assignment) (string, error) {
	ref, err := c.p.Grant(ctx, a)
	c.check("Grant reference", ref)
	c.checkErr("Grant", err)
	return ref, err
}

func (c *secretChecker) Revoke(ctx context.Context, a grants.Assignment) error {
	err := c.p.Revoke(ctx, a)
	c.checkErr("Revoke", err)
	return err
}

func (c *secretChecker) Check(ctx context.Context, a grants.Assignment) (bool, error) {
	present, err := c.p.Check(ctx, a)
	c.checkErr("Check", err)
	return present, err
}

// Inspect forwards the adapter's grants.OtherAccessInspector; for an adapter without one it answers as the
// manager would ask: what Check reports present is jitbot's.
func (c *secretChecker) Inspect(ctx context.Context, a grants.Assignment) (grants.Presence, error) {
	in, ok := c.p.(grants.OtherAccessInspector)
	if !ok {
		present, err := c.Check(ctx, a)
		return grants.Presence{Ours: present}, err
	}
	pr, err := in.Inspect(ctx, a)
	for _, o := range pr.Other {
		c.check("Inspect's other access", o)
	}
	c.checkErr("Inspect", err)
	return pr, err
}
