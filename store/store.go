package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Implementations wrap them with %w; callers test with errors.Is.
var (
	// ErrNotFound: no record with that id.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a compare-and-swap lost (the record changed, or a create hit an existing id). Nothing in the
	// batch was written.
	ErrConflict = errors.New("conflict: record changed concurrently")
	// ErrLockHeld: another holder owns the lock.
	ErrLockHeld = errors.New("lock held by another holder")
	// ErrLockLost: the caller no longer owns the lock (expired, or taken over with a newer fence).
	ErrLockLost = errors.New("lock lost")
	// ErrInvalid: the caller passed something the store cannot accept (an empty id, a zero version, ...).
	ErrInvalid = errors.New("invalid argument")
)

// RequestPut writes one request. PrevVersion 0 creates it (ErrConflict if the id exists); otherwise the stored
// version must equal PrevVersion. Commit sets Request.Version to PrevVersion+1 on success.
type RequestPut struct {
	Request     *Request
	PrevVersion int64
}

// GrantPut writes one grant, with the same version rules as RequestPut.
type GrantPut struct {
	Grant       *Grant
	PrevVersion int64
}

// CounterPut writes one counter, with the same version rules as RequestPut.
type CounterPut struct {
	Counter     *Counter
	PrevVersion int64
}

// Batch is an all-or-nothing set of writes: every put's version check passes and every write and audit
// append lands, or nothing does.
type Batch struct {
	Requests []RequestPut
	Grants   []GrantPut
	// Audit events are appended to the hash-chained log in order, in the same atomic step.
	Audit []AuditEvent
	// Fence, when set, makes the batch conditional on the caller still holding that lock (same name, holder
	// and fence, not expired) at the instant the batch is applied: otherwise Commit returns ErrLockLost and
	// writes nothing. A holder that stalled past its lock's ttl (a GC pause, a slow provider call) cannot
	// then write over what the lock's next holder decided, even where its record versions still match.
	Fence *Lock
	// Counters are compare-and-swap limit records written in the same atomic step (see Counter).
	Counters []CounterPut
}

// RequestQuery selects requests. Exactly one of Requester or State must be set.
type RequestQuery struct {
	Requester string       // every request of this Slack user, any state
	State     RequestState // only RequestPending is indexed
	Limit     int          // 0: no limit
}

// GrantQuery selects grants. At least one of UserID, BindingKey or States must be set; when several are set,
// a grant must match all of them.
type GrantQuery struct {
	UserID     string       // every grant of this Slack user, any state
	BindingKey string       // live grants (see LiveGrantStates) of this binding
	States     []GrantState // grants in any of these states; only live states are indexed for a States-only query
	Limit      int          // 0: no limit
}

// Lock is a held lease lock. Fence increases every time the lock changes hands, so a write tagged with an
// older fence can be recognised as stale.
type Lock struct {
	Name   string
	Holder string
	Fence  uint64
}

// Store is jitbot's durable state. Every method honours ctx cancellation. All timestamps are stored with at
// least millisecond precision; indexes are kept by the store from the records themselves.
type Store interface {
	// Commit applies b atomically. Returns ErrConflict (nothing written) when a version check fails, and
	// ErrLockLost (nothing written) when b.Fence is set and that lock is no longer held as given.
	Commit(ctx context.Context, b Batch) error

	// GetRequest returns ErrNotFound for an unknown id.
	GetRequest(ctx context.Context, id string) (Request, error)
	// ListRequests returns matching requests, newest first (by CreatedAt).
	ListRequests(ctx context.Context, q RequestQuery) ([]Request, error)
	// DueRequests returns requests whose DueAt() <= now (pending requests past PendingUntil, break-glass
	// requests whose review reminder is due), earliest first, at most limit.
	DueRequests(ctx context.Context, now time.Time, limit int) ([]Request, error)

	// GetCounter returns ErrNotFound for a counter never written.
	GetCounter(ctx context.Context, key string) (Counter, error)

	// GetGrant returns ErrNotFound for an unknown id.
	GetGrant(ctx context.Context, id string) (Grant, error)
	// ListGrants returns matching grants, newest first (by CreatedAt).
	ListGrants(ctx context.Context, q GrantQuery) ([]Grant, error)
	// CountGrants returns how many grants are in a live state (ErrInvalid for a terminal state), cheaply
	// enough for a metrics scrape.
	CountGrants(ctx context.Context, state GrantState) (int, error)
	// ClaimDueGrants returns at most limit grants whose DueAt <= now, earliest first, and atomically hides
	// each from further claims until now+hold, so concurrent sweepers never claim the same grant twice within
	// hold. The records themselves are not changed; the next Commit of a grant re-indexes it from its DueAt.
	ClaimDueGrants(ctx context.Context, now time.Time, limit int, hold time.Duration) ([]Grant, error)
	// NextDue returns the earliest DueAt of any grant or request (claimed grants count at their hidden-until
	// time); ok is false when nothing is scheduled.
	NextDue(ctx context.Context) (at time.Time, ok bool, err error)

	// AcquireLock takes the named lock for holder for ttl, or returns ErrLockHeld. Re-acquiring a lock the
	// same holder still owns renews it and keeps its fence.
	AcquireLock(ctx context.Context, name, holder string, ttl time.Duration) (Lock, error)
	// RenewLock extends a held lock; ErrLockLost when it expired or another holder took it.
	RenewLock(ctx context.Context, l Lock, ttl time.Duration) error
	// ReleaseLock frees a held lock; releasing a lock no longer held is not an error. It may return before the
	// release is written (both back ends do): every later operation of this Store on the same lock runs after
	// it, Close waits for it, and one that never lands (a crash) leaves the lock to expire.
	ReleaseLock(ctx context.Context, l Lock) error

	// ReadAudit returns audit records with Seq > afterSeq in order, at most limit (0: no limit). Records are
	// returned as stored, without verification: see VerifyChain.
	ReadAudit(ctx context.Context, afterSeq uint64, limit int) ([]AuditRecord, error)
	// AuditHead returns the audit log's head as the store records it beside the entries: the seq and hash of
	// the last appended entry ({0, GenesisHash} for an empty log). A log whose last entry is not the head was
	// cut off (see audit.Verify).
	AuditHead(ctx context.Context) (AuditHead, error)

	// MarkSeen records key for ttl and reports whether this is the first time it was seen within ttl (used to
	// drop redelivered Slack events and replayed requests).
	MarkSeen(ctx context.Context, key string, ttl time.Duration) (first bool, err error)

	// Ping reports whether the store is reachable (for /readyz).
	Ping(ctx context.Context) error
	Close() error
}

// LockLister is implemented by a Store that can take a lock and read one binding's live grants under it in
// one round trip (Redis: a sweeper revocation took three, lock, index and records, before its provider call).
// AcquireLockAndList returns what AcquireLock followed by ListGrants(GrantQuery{BindingKey: bindingKey})
// return, or AcquireLock's error (then nothing was read). hint holds grants the caller expects among them, as
// it read them (the ones it claimed): a record still at the hinted version is returned as hinted (a record's
// version changes with every write of it), any other is read, those the hint did not name in one more round
// trip.
type LockLister interface {
	AcquireLockAndList(ctx context.Context, name, holder string, ttl time.Duration, bindingKey string, hint []Grant) (Lock, []Grant, error)
}

// Validate reports, as ErrInvalid, a batch no store accepts: a nil record, an empty id, a negative
// PrevVersion, the same record twice, or an audit event without a type. Every Store calls it first, so both
// back ends refuse the same batches.
func (b Batch) Validate() error {
	seen := map[string]bool{}
	for i, p := range b.Requests {
		if p.Request == nil || p.Request.ID == "" || p.PrevVersion < 0 {
			return fmt.Errorf("request put %d: nil request, empty id or negative version: %w", i, ErrInvalid)
		}
		if seen["r/"+p.Request.ID] {
			return fmt.Errorf("request %q written twice in one batch: %w", p.Request.ID, ErrInvalid)
		}
		seen["r/"+p.Request.ID] = true
	}
	for i, p := range b.Grants {
		if p.Grant == nil || p.Grant.ID == "" || p.PrevVersion < 0 {
			return fmt.Errorf("grant put %d: nil grant, empty id or negative version: %w", i, ErrInvalid)
		}
		if seen["g/"+p.Grant.ID] {
			return fmt.Errorf("grant %q written twice in one batch: %w", p.Grant.ID, ErrInvalid)
		}
		seen["g/"+p.Grant.ID] = true
	}
	for i, p := range b.Counters {
		if p.Counter == nil || p.Counter.Key == "" || p.PrevVersion < 0 {
			return fmt.Errorf("counter put %d: nil counter, empty key or negative version: %w", i, ErrInvalid)
		}
		if seen["c/"+p.Counter.Key] {
			return fmt.Errorf("counter %q written twice in one batch: %w", p.Counter.Key, ErrInvalid)
		}
		seen["c/"+p.Counter.Key] = true
	}
	for i, e := range b.Audit {
		if e.Type == "" {
			return fmt.Errorf("audit event %d has no type: %w", i, ErrInvalid)
		}
	}
	if b.Fence != nil && (b.Fence.Name == "" || b.Fence.Holder == "") {
		return fmt.Errorf("batch fence without lock name or holder: %w", ErrInvalid)
	}
	return nil
}
