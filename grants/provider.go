package grants

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Assignment is what a provider grants or revokes: one principal's access to one target. Leases that share a
// binding produce the same Assignment apart from GrantID, RequestID and ExpiresAt.
type Assignment struct {
	// BindingKey names the access itself (provider instance, principal and target), shared by overlapping
	// grants. Adapters that create provider-side objects name and label them by BindingKey, so that the
	// leases of one binding share one object: jitbot calls Grant for every lease (with the latest expiry of
	// them all) and Revoke once, when no lease covers the access any more.
	BindingKey string
	GrantID    string
	RequestID  string
	UserID     string // Slack user id
	Role       string
	Principal  string            // the user's identity at the provider
	Target     map[string]string // provider-specific scope from the policy
	ExpiresAt  time.Time         // when jitbot will revoke (providers that can expire access themselves use it)
	// Generation orders the operations on one binding: it is greater for every later Grant or Revoke of the
	// same BindingKey, across replicas and restarts (see the binding lock's fence). A provider that can
	// remember the last generation it applied per binding must ignore an operation with a lower one: that is
	// a call jitbot gave up on (a timeout, a lock lost mid-call) arriving after a newer decision. 0 for
	// operations made outside a binding lock (Check calls of tools, tests).
	Generation uint64
	// Ref is the provider reference jitbot holds for this access: what an earlier Grant of this lease returned
	// (also after a failed attempt, e.g. an asynchronous request id to resume polling), else the reference of
	// another live lease of the binding; "" when jitbot has not touched the binding since its last revoke.
	// Grant uses it to tell access jitbot created from access that was there before (see PreExistingRef) and
	// to resume an operation in flight; Revoke uses it to leave pre-existing access in place.
	Ref string
}

// Provider applies and removes access. Every method must be idempotent: granting what is present and revoking
// what is absent succeed. Errors must be classified: wrap a failure that cannot succeed on retry (access denied,
// unknown principal, a malformed target) with ErrPermanent; every other error is treated as retryable.
// Errors and logs must never contain credentials.
type Provider interface {
	// Grant makes sure the assignment is present. It may return a provider reference (for example an
	// asynchronous request id) that jitbot keeps on the grant.
	Grant(ctx context.Context, a Assignment) (ref string, err error)
	// Revoke makes sure the assignment is absent.
	Revoke(ctx context.Context, a Assignment) error
	// Check reports whether the assignment is present at the provider now.
	Check(ctx context.Context, a Assignment) (present bool, err error)
}

// Sequenced is implemented by providers whose far end orders operations by Assignment.Generation and ignores
// one older than the last it applied (the webhook contract). For every other provider a call that jitbot
// gave up on could land after a later revoke, so the manager checks a revoked binding again once such a call
// can no longer arrive (Options.LateCallWindow) and revokes again if the access came back.
type Sequenced interface {
	OrdersByGeneration() bool
}

// preExistingPrefix starts every reference that says the access was present before jitbot granted it.
const preExistingPrefix = "pre-existing:"

// PreExistingRef is the reference a Grant returns when it found the access already present without jitbot
// having created it (standing access: an administrator's assignment, a membership made by other means): the
// access is not jitbot's to remove, so Revoke of an assignment carrying this Ref leaves it in place, the
// manager records it (audit detail pre_existing) and the requester is told. detail is adapter-specific (at
// most a short identifier, never a secret). Adapters decide "pre-existing" only when !OwnRef(Assignment.Ref)
// and nothing of jitbot's is in flight for the binding; with any other Ref (their own, RefCallPending, one they
// do not recognise) they treat found access as jitbot's.
func PreExistingRef(detail string) string { return preExistingPrefix + detail }

// RefCallPending is the reference the manager records before the first Grant of a lease whose binding has no
// reference yet. An adapter that receives it in Assignment.Ref is resuming after a process died mid-call: access
// it finds may be what that call created, so it must not report it as pre-existing (fail closed: jitbot removes
// it at revoke).
const RefCallPending = "grants:call-pending"

// RefUntouched is what an adapter returns with an error when the call changed nothing at the provider and
// decided nothing about whose the access is (its first look failed, the target was malformed, the context had
// ended). The manager records it: a Grant given it looks again as for "", and a revoke whose leases hold
// nothing but it (or pre-existing references) has nothing of jitbot's to remove. An adapter that may have
// changed something (a request sent whose answer was lost) must return a reference of its own instead.
const RefUntouched = "grants:untouched"

// Untouched is ref, or RefUntouched when ref is empty: what an adapter returns with an error before it has
// changed anything.
func Untouched(ref string) string {
	if ref == "" {
		return RefUntouched
	}
	return ref
}

// OwnRef reports whether ref says jitbot may have applied access for the lease: anything but "", RefUntouched
// and a pre-existing reference (RefCallPending and adapter references included). Only without one may access
// an adapter finds be standing access (see PreExistingRef); with one, it is jitbot's.
func OwnRef(ref string) bool { return ref != "" && ref != RefUntouched && !IsPreExisting(ref) }

// IsPreExisting reports whether ref says the access pre-existed the grant (see PreExistingRef).
func IsPreExisting(ref string) bool { return strings.HasPrefix(ref, preExistingPrefix) }

// AttemptBudgeter is implemented by providers whose operations legitimately take longer than the manager's
// AttemptTimeout (asynchronous provisioning that the adapter polls to completion). The manager bounds each call
// of op ("grant", "revoke", "check") by the budget instead of AttemptTimeout when it is positive, and keeps its
// binding locks long enough for the longest budget. Adapters should still make slow operations resumable
// (return a reference with the error, resume from Assignment.Ref), because a budget is only an upper bound.
type AttemptBudgeter interface {
	AttemptBudget(op string) time.Duration
}

// PropagationDelayer is implemented by providers whose documented behaviour is that a revoke takes effect
// only after some delay (eventually consistent APIs): jitbot verifies a revoke with Check that long after it.
// Providers without it are verified as soon as the revoke returns.
type PropagationDelayer interface {
	PropagationDelay() time.Duration
}

// ErrPermanent marks a provider failure that retrying cannot fix.
var ErrPermanent = errors.New("permanent provider error")

// Permanent wraps err so that IsPermanent reports true.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}

// IsPermanent reports whether err was marked permanent.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

// Owned is one assignment that a provider holds on jitbot's behalf, as found by listing the provider
// (tagged, labelled or conditional bindings that jitbot created).
type Owned struct {
	// BindingKey is the binding the provider-side object is named or labelled with (see
	// Assignment.BindingKey); "" when the object does not carry one.
	BindingKey string
	// GrantID is the jitbot grant id the provider-side object is labelled with ("" when the object carries
	// only a binding marker, e.g. a shared assignment).
	GrantID   string
	Principal string
	Target    map[string]string
	// Unattributed says the provider cannot label its objects, so this entry may be access that jitbot never
	// granted (standing access made by other means). The reconciler never removes an unattributed entry that
	// no live lease covers: it reports it (DriftReport.Unattributed, a warning log) for a human to decide.
	Unattributed bool
	// Ref identifies the provider-side object for humans (an ARN, a binding name, an assignment id).
	Ref string
}

// Inventory is implemented by providers that can list what jitbot owns there, for drift reconciliation:
// anything present but not tracked as live by the store is revoked and reported.
type Inventory interface {
	ListOwned(ctx context.Context) ([]Owned, error)
}

// Presence is what an OtherAccessInspector found for an assignment.
type Presence struct {
	// Ours says jitbot's own access for the binding is present (an object jitbot created, of any lease of
	// the binding), whatever Assignment.Ref says.
	Ours bool
	// Other names, for humans, the provider-side objects jitbot did not create that give the principal the
	// same access (a RoleBinding made by hand, an IAM binding without jitbot's condition): short identifiers,
	// never secrets. Empty when there are none.
	Other []string
}

// OtherAccessInspector is implemented by providers whose principal can hold the access of an assignment
// through objects jitbot did not create (standing access), so that "is the access there" has two answers:
// jitbot's own, and someone else's. The manager uses it instead of Check to verify a revoke: jitbot's access
// present is a revoke that did not take effect (revoked again, escalated); jitbot's gone while other access
// remains is recorded as access-remains (no retry, no escalation: it is not jitbot's to remove); both gone is
// revoke-verified. Inspect must be as idempotent and as classified as Check (grants.ErrPermanent).
type OtherAccessInspector interface {
	Inspect(ctx context.Context, a Assignment) (Presence, error)
}
