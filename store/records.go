// Package store holds jitbot's durable records (requests, grants, the audit log) and the Store interface that
// the Redis and embedded (bbolt) back ends implement. The store is the single source of truth: Slack messages
// and provider state are views of it.
package store

import (
	"time"
)

// RequestState is where an access request is in its life.
type RequestState string

const (
	RequestPending   RequestState = "pending"
	RequestApproved  RequestState = "approved"
	RequestDenied    RequestState = "denied"
	RequestCancelled RequestState = "cancelled"
	RequestExpired   RequestState = "expired"
)

// Terminal reports whether no further transition is possible.
func (s RequestState) Terminal() bool { return s != RequestPending }

// Decision is one approver's (or denier's) act on a request.
type Decision struct {
	By   string    `json:"by"`
	At   time.Time `json:"at"`
	Note string    `json:"note,omitempty"`
}

// Request is a person's (or a pipeline's) ask for a role, for a bounded time, with a reason.
type Request struct {
	ID        string        `json:"id"`
	Requester string        `json:"requester"` // Slack user id
	Role      string        `json:"role"`
	Duration  time.Duration `json:"duration"`
	Reason    string        `json:"reason"`
	State     RequestState  `json:"state"`

	RequiredApprovals int        `json:"required_approvals"`
	Approvals         []Decision `json:"approvals,omitempty"`
	Denial            *Decision  `json:"denial,omitempty"`
	CancelledBy       string     `json:"cancelled_by,omitempty"`
	BreakGlass        bool       `json:"break_glass,omitempty"`

	CreatedAt    time.Time `json:"created_at"`
	PendingUntil time.Time `json:"pending_until"` // a pending request expires at this instant
	DecidedAt    time.Time `json:"decided_at,omitzero"`
	GrantID      string    `json:"grant_id,omitempty"`

	// Review of a break-glass grant: ReviewDueAt is when it is next announced as unreviewed (zero once
	// reviewed, and for ordinary requests); Review records who reviewed it.
	ReviewDueAt time.Time `json:"review_due_at,omitzero"`
	Review      *Decision `json:"review,omitempty"`

	// Meta carries references owned by other layers (for example the Slack channel and message ts of the
	// approval message) so that views can be re-rendered from the store.
	Meta map[string]string `json:"meta,omitempty"`

	// RequesterKind is RequesterUser (also when empty, for records written before workloads existed) or
	// RequesterWorkload; for a workload, Requester is WorkloadRequester(Workload).
	RequesterKind string `json:"requester_kind,omitempty"`
	// Workload names the policy workload that made the request (RequesterWorkload only).
	Workload string `json:"workload,omitempty"`
	// Pipeline is the verified context of a workload's request, taken from its token's claims; never from
	// fields the caller sent.
	Pipeline *PipelineContext `json:"pipeline,omitempty"`

	// Version is the record's compare-and-swap version: 1 after creation, +1 on every committed write.
	Version int64 `json:"version"`
}

// Requester kinds.
const (
	RequesterUser     = "user"
	RequesterWorkload = "workload"
)

// WorkloadRequester is the Requester (and grant UserID) recorded for a request made by the named policy
// workload. It can never be mistaken for a Slack user id, which has no colon.
func WorkloadRequester(name string) string { return "workload:" + name }

// IsWorkload reports whether a workload made the request.
func (r *Request) IsWorkload() bool { return r.RequesterKind == RequesterWorkload }

// PipelineContext is what an approver is shown about the job behind a workload request. Every field comes
// from a verified token (OIDC claims, or the owner of an API token).
type PipelineContext struct {
	// Method is how the workload authenticated: "oidc" or "api_token".
	Method  string `json:"method"`
	Issuer  string `json:"issuer,omitempty"` // the policy issuer name (OIDC)
	Subject string `json:"subject"`          // the token's sub (OIDC) or the API token id
	// RunID identifies one run of the pipeline (GitHub run_id + run_attempt, GitLab job id); requests and
	// grants are bound to it, so another run of the same workflow cannot read or release them.
	RunID       string `json:"run_id,omitempty"`
	Repository  string `json:"repository,omitempty"`
	Workflow    string `json:"workflow,omitempty"`
	RunURL      string `json:"run_url,omitempty"`
	Commit      string `json:"commit,omitempty"`
	Ref         string `json:"ref,omitempty"`
	Environment string `json:"environment,omitempty"`
	// Actor is the person who triggered the run, as the CI system names them; ActorUser is their Slack user
	// id when the policy maps them (they may then not approve the request).
	Actor     string `json:"actor,omitempty"`
	ActorUser string `json:"actor_user,omitempty"`
}

// DueAt is when the request next needs the sweeper: its expiry while pending, else its break-glass review
// reminder. Zero: never.
func (r *Request) DueAt() time.Time {
	if r.State == RequestPending {
		return r.PendingUntil
	}
	return r.ReviewDueAt
}

// HasApproval reports whether user already approved the request.
func (r *Request) HasApproval(user string) bool {
	for _, d := range r.Approvals {
		if d.By == user {
			return true
		}
	}
	return false
}

// GrantState is where a grant is in its life.
//
//	activating ──> active ──> revoking ──> revoked
//	    │                        │
//	    └──> failed              └──> revoke_failed ──> revoked
type GrantState string

const (
	// GrantActivating: the record is written (write-ahead) and the provider has not confirmed yet.
	GrantActivating GrantState = "activating"
	// GrantActive: the provider confirmed; ExpiresAt is set and the grant sits in the expiry index.
	GrantActive GrantState = "active"
	// GrantRevoking: the grant ended (expired or released) and its provider access is being removed.
	GrantRevoking GrantState = "revoking"
	// GrantRevokeFailed: revocation failed too often; humans were alerted and a slow job keeps retrying.
	GrantRevokeFailed GrantState = "revoke_failed"
	// GrantRevoked: access is gone (or is still covered by an overlapping lease; see Grant.CoveredBy).
	GrantRevoked GrantState = "revoked"
	// GrantFailed: the provider refused the grant; nothing (of this lease) remains at the provider.
	GrantFailed GrantState = "failed"
)

// Terminal reports whether the grant will never change provider state again.
func (s GrantState) Terminal() bool { return s == GrantRevoked || s == GrantFailed }

// LiveGrantStates are the states in which a grant may hold, or be about to hold, access at the provider.
var LiveGrantStates = []GrantState{GrantActivating, GrantActive, GrantRevoking, GrantRevokeFailed}

// Grant is one lease of provider access. Grants that share a BindingKey are leases on one provider grant:
// access is removed only when no live lease still covers it.
type Grant struct {
	ID        string `json:"id"`
	RequestID string `json:"request_id"`
	UserID    string `json:"user_id"` // Slack user id of the person holding access
	Role      string `json:"role"`

	Provider  string            `json:"provider"`  // provider instance name from the policy
	Principal string            `json:"principal"` // the user's identity at that provider
	Target    map[string]string `json:"target"`    // provider-specific scope (account + permission set, ...)
	// BindingKey identifies the provider grant this lease shares with overlapping leases.
	BindingKey string `json:"binding_key"`

	State    GrantState    `json:"state"`
	Duration time.Duration `json:"duration"` // how long access lasts from activation
	// MaxDuration bounds Duration through extensions, copied from the role when the grant was made.
	MaxDuration time.Duration `json:"max_duration"`
	BreakGlass  bool          `json:"break_glass,omitempty"`

	CreatedAt   time.Time `json:"created_at"`
	ActivatedAt time.Time `json:"activated_at,omitzero"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	EndedAt     time.Time `json:"ended_at,omitzero"` // when the grant stopped being wanted (expiry or release)
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
	EndReason   string    `json:"end_reason,omitempty"` // expired, released, activation_failed, ...
	EndedBy     string    `json:"ended_by,omitempty"`
	CoveredBy   string    `json:"covered_by,omitempty"` // an overlapping lease that still held access at revocation

	// DueAt is when the sweeper must next look at this grant (expiry, retry, resume). Zero: never.
	DueAt time.Time `json:"due_at,omitzero"`
	// Attempts counts consecutive failed provider attempts for the current step.
	Attempts    int    `json:"attempts,omitempty"`
	LastError   string `json:"last_error,omitempty"`
	ProviderRef string `json:"provider_ref,omitempty"` // e.g. an asynchronous provider request id
	// RecheckAt is when the provider is next asked whether a revoked lease's access is really gone: first to
	// verify the revoke (after the provider's propagation delay), then, for providers that cannot order
	// operations (see grants.Sequenced), once more after a provider call that jitbot gave up on can no longer
	// land and bring the access back. Access found still there is revoked again. While it is set, the
	// (terminal) grant's DueAt is RecheckAt. Zero: no check pending.
	RecheckAt time.Time `json:"recheck_at,omitzero"`
	// VerifiedAt is when a check after the revoke found jitbot's access gone (the revoke-verified event, or
	// access-remains when the principal still held the access through objects jitbot did not grant).
	VerifiedAt time.Time `json:"verified_at,omitzero"`
	// Generation is the order number (grants.Assignment.Generation) of the last provider operation made for
	// this lease. The next operation on the binding always gets a greater one, so the order stays durable
	// with the leases even beyond the binding lock's fence counter.
	Generation uint64 `json:"generation,omitempty"`
	// RemindAt is when the holder of an active grant is told that it is about to end (the grant-reminder
	// event), zero once that happened or when no reminder is due. While it is set, the grant's DueAt is the
	// earlier of RemindAt and ExpiresAt, so the reminder lives in the durable due index and survives restarts.
	RemindAt time.Time `json:"remind_at,omitzero"`

	Meta map[string]string `json:"meta,omitempty"`

	// HeartbeatTimeout, when positive, makes the grant task-bound: it ends (EndReason "heartbeat_missed")
	// unless its holder sends a heartbeat at least that often. HeartbeatDeadline is the last heartbeat (or
	// the activation) plus HeartbeatTimeout; DueAt is never later than it while the grant is active.
	HeartbeatTimeout  time.Duration `json:"heartbeat_timeout,omitempty"`
	HeartbeatDeadline time.Time     `json:"heartbeat_deadline,omitzero"`
	LastHeartbeat     time.Time     `json:"last_heartbeat,omitzero"`

	Version int64 `json:"version"`
}

// HeartbeatMissed reports whether an active task-bound grant's holder stopped sending heartbeats before the
// grant expired.
func (g *Grant) HeartbeatMissed(now time.Time) bool {
	return g.State == GrantActive && g.HeartbeatTimeout > 0 && !g.HeartbeatDeadline.IsZero() &&
		!now.Before(g.HeartbeatDeadline) && g.HeartbeatDeadline.Before(g.ExpiresAt)
}

// ActiveDueAt is the due time of an active grant: its expiry, or its heartbeat deadline when that is earlier.
func (g *Grant) ActiveDueAt() time.Time {
	if g.HeartbeatTimeout > 0 && !g.HeartbeatDeadline.IsZero() && g.HeartbeatDeadline.Before(g.ExpiresAt) {
		return g.HeartbeatDeadline
	}
	return g.ExpiresAt
}

// AuditEvent is one step in the life of a request or grant.
type AuditEvent struct {
	Type      string            `json:"type"`
	At        time.Time         `json:"at"`
	Actor     string            `json:"actor"` // a Slack user id, or "system:<component>"
	RequestID string            `json:"request_id,omitempty"`
	GrantID   string            `json:"grant_id,omitempty"`
	Role      string            `json:"role,omitempty"`
	Details   map[string]string `json:"details,omitempty"`
}

// Audit event types.
const (
	EventRequested     = "requested"
	EventApproved      = "approved" // one approval; Details["approvals"] = "n/m"
	EventDenied        = "denied"
	EventCancelled     = "cancelled"
	EventExpired       = "expired" // a pending request nobody decided in time
	EventGranted       = "granted"
	EventGrantRetry    = "grant-retry"
	EventGrantFailed   = "grant-failed"
	EventExtended      = "extended"
	EventReleased      = "released"
	EventGrantExpired  = "grant-expired"
	EventRevoked       = "revoked"
	EventRevokeRetry   = "revoke-retry"
	EventRevokeFailed  = "revoke-failed" // an alert: humans must look
	EventBreakGlass    = "break-glass"
	EventDriftRevoked  = "drift-revoked"          // access found at a provider that no live grant covers, removed
	EventReviewPending = "break-glass-unreviewed" // a reminder: a break-glass grant still awaits review
	EventReviewed      = "break-glass-reviewed"
	// EventHeartbeatMissed: a task-bound grant's holder stopped sending heartbeats; the grant ended.
	EventHeartbeatMissed = "heartbeat-missed"
	// EventAuthRefused: an API call's credentials were refused (rate-limited; Details["reason"] is a code).
	EventAuthRefused   = "auth-refused"
	EventGrantReminder = "grant-reminder" // the holder is reminded that the grant ends soon (Details["expires_at"])
	// EventRevokeVerified: a check at the provider after the revoke found the access gone. Details: provider,
	// verified_at, lag_ms (from the grant's end, expiry or release, to the verification); after a drift removal
	// (actor system:reconciler) ref, the provider-side object, instead of lag_ms.
	EventRevokeVerified = "revoke-verified"
	// EventAccessRemains: a check after the revoke found jitbot's own access gone, but the principal still
	// holds the same access through objects jitbot did not grant (a provider's grants.OtherAccessInspector).
	// Not an alert and not retried: jitbot does not remove what it did not grant. Details: provider, other
	// (the objects, "; "-separated) and the details of revoke-verified.
	EventAccessRemains = "access-remains"
)

// AuditRecord is an AuditEvent as stored: its position in the log, the exact bytes that were hashed, and
// the hash chain links.
type AuditRecord struct {
	Seq      uint64     `json:"seq"`
	Event    AuditEvent `json:"event"`
	Raw      []byte     `json:"-"` // the exact JSON of Event that was hashed
	PrevHash string     `json:"prev_hash"`
	Hash     string     `json:"hash"`
}

// Counter is a small compare-and-swap record that makes a limit hold across concurrent requests and replicas:
// the event it counts is appended in the same atomic Commit as the action it limits, so of N concurrent
// actions racing for the last slot exactly one commits and the others get ErrConflict and re-read it.
type Counter struct {
	Key string `json:"key"`
	// Events are the instants of the counted events, oldest first. The owner prunes events that fell out of
	// its window before it appends, so the record stays as small as the limit.
	Events  []time.Time `json:"events,omitempty"`
	Version int64       `json:"version"`
}

// BreakGlassCounterKey is the Counter that records a person's break-glass activations of a role.
func BreakGlassCounterKey(user, role string) string { return "breakglass/" + user + "/" + role }
