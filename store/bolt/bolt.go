// Package bolt is jitbot's embedded single-node store: every record, index and the audit log live in one
// bbolt file; locks live in the process that holds the file, their fences reserved in it (locks.go). bbolt
// serializes writers, so each Commit (version checks, record writes, index upkeep and audit hash chaining) is
// one write transaction and is trivially atomic and isolated.
//
// Layout (all keys ordered so a cursor walk answers the query; see keys.go):
//
//	requests            id -> Request JSON
//	idx_req_requester   strKey(requester)+timeKey(CreatedAt)+id -> id
//	idx_req_pending     timeKey(PendingUntil)+id -> id            (pending requests only)
//	grants              id -> Grant JSON
//	idx_grant_user      strKey(user)+timeKey(CreatedAt)+id -> id
//	idx_grant_binding   strKey(binding)+timeKey(CreatedAt)+id -> id (live grants only)
//	idx_grant_state     strKey(state)+timeKey(CreatedAt)+id -> id   (live grants only)
//	idx_grant_due       timeKey(DueAt or hidden-until)+id -> id
//	idx_grant_due_key   id -> the grant's current key in idx_grant_due
//	audit               8-byte big-endian seq -> {"prev_hash","hash","raw"}
//	seen                key -> timeKey(expiry)
//	idx_seen_exp        timeKey(expiry)+key -> key
//	counters            key -> Counter JSON
//	meta                "audit_head" -> {"seq","hash"}; "lock_fence" -> 8-byte fence ceiling (locks.go)
//
// Index entries of a record other than the due index are derived from the previously stored record, so an
// update removes exactly the entries the old version occupied. The due index entry can be re-keyed by a claim
// (to its hidden-until time), so its current key is kept in idx_grant_due_key.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/jitbot/jitbot/store"
)

var (
	bRequests       = []byte("requests")
	bReqByRequester = []byte("idx_req_requester")
	bReqPending     = []byte("idx_req_pending")
	bGrants         = []byte("grants")
	bGrantByUser    = []byte("idx_grant_user")
	bGrantByBinding = []byte("idx_grant_binding")
	bGrantByState   = []byte("idx_grant_state")
	bGrantDue       = []byte("idx_grant_due")
	bGrantDueKey    = []byte("idx_grant_due_key")
	bAudit          = []byte("audit")
	bSeen           = []byte("seen")
	bSeenExp        = []byte("idx_seen_exp")
	bMeta           = []byte("meta")
	bCounters       = []byte("counters")

	allBuckets = [][]byte{bRequests, bReqByRequester, bReqPending, bGrants, bGrantByUser, bGrantByBinding,
		bGrantByState, bGrantDue, bGrantDueKey, bAudit, bSeen, bSeenExp, bMeta, bCounters}

	keyAuditHead = []byte("audit_head")
	keyLockFence = []byte("lock_fence")

	// bLegacyLocks held the locks before they moved into the process (locks.go); Open removes it.
	bLegacyLocks = []byte("locks")
)

// seenCleanupBatch bounds how many expired MarkSeen entries one MarkSeen call deletes (lazy cleanup).
const seenCleanupBatch = 64

// DefaultOpenTimeout is how long Open waits for the data file's lock when Options.OpenTimeout is zero.
const DefaultOpenTimeout = 2 * time.Second

// Options configures Open. The zero value is ready to use.
type Options struct {
	// Now is the clock for lock expiry and MarkSeen TTLs. Default time.Now.
	Now func() time.Time
	// OpenTimeout bounds the wait for the data file's exclusive lock (another process holding the file).
	// Default DefaultOpenTimeout.
	OpenTimeout time.Duration
	// NoSync skips fsync after each write transaction. TEST ONLY: a crash can lose or corrupt committed data.
	NoSync bool
	// AuditLinkKey, when set, makes every appended audit link keyed (store.KeyedChainHash).
	AuditLinkKey []byte
}

// Store is the bbolt-backed store.Store.
type Store struct {
	db      *bbolt.DB
	now     func() time.Time
	linkKey []byte
	group   groupCommitter // see groupcommit.go
	locks   lockTable      // see locks.go
}

var _ store.Store = (*Store)(nil)

// ErrFileLocked is returned (wrapped) by Open when another process holds the data file.
var ErrFileLocked = errors.New("data file locked by another jitbot process")

// Open opens (creating if needed) the bbolt data file at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = DefaultOpenTimeout
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.OpenTimeout, NoSync: opts.NoSync})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("bolt: open %s: %w (waited %s)", path, ErrFileLocked, opts.OpenTimeout)
		}
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		if tx.Bucket(bLegacyLocks) != nil {
			if err := tx.DeleteBucket(bLegacyLocks); err != nil {
				return fmt.Errorf("remove the old locks bucket: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	s := &Store{db: db, now: opts.Now, linkKey: opts.AuditLinkKey}
	s.locks.reserve = s.reserveFences
	return s, nil
}

// Close closes the data file.
func (s *Store) Close() error {
	s.locks.close()
	s.group.leaders.Wait() // queued asynchronous writes are written first
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt: close: %w", err)
	}
	return nil
}

// Ping reports whether the data file is open and readable.
func (s *Store) Ping(ctx context.Context) error {
	return s.view(ctx, "ping", func(tx *bbolt.Tx) error {
		if tx.Bucket(bMeta) == nil {
			return errors.New("meta bucket missing")
		}
		return nil
	})
}

// view and update run fn in a read or write transaction with ctx checked on entry (and, for writes, again
// once the writer lock is held), wrapping every error as "bolt: <op>: ...".
func (s *Store) view(ctx context.Context, op string, fn func(tx *bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt: %s: %w", op, err)
	}
	if err := s.db.View(fn); err != nil {
		return fmt.Errorf("bolt: %s: %w", op, err)
	}
	return nil
}

func (s *Store) update(ctx context.Context, op string, fn func(tx *bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt: %s: %w", op, err)
	}
	// Possibly in one transaction with other writes (group commit): fn may run more than once.
	if err := s.write(ctx, fn); err != nil {
		return fmt.Errorf("bolt: %s: %w", op, err)
	}
	return nil
}

// ---- Commit ----

type auditEntry struct {
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
	Raw      string `json:"raw"`
}

type auditHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// Commit applies b atomically (see store.Store).
func (s *Store) Commit(ctx context.Context, b store.Batch) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("bolt: commit: %w", err)
	}
	// Encode audit events before taking the writer lock.
	raws := make([][]byte, len(b.Audit))
	for i, e := range b.Audit {
		raw, err := store.EncodeEvent(e)
		if err != nil {
			return fmt.Errorf("bolt: commit: %w", err)
		}
		raws[i] = raw
	}
	if b.Fence != nil {
		// Until the transaction is written, nobody else may take the lock, even once it has expired: the next
		// holder must read what this commit wrote (see lockTable.pin).
		if err := s.locks.pin(*b.Fence, s.now()); err != nil {
			return fmt.Errorf("bolt: commit: %w", err)
		}
		defer s.locks.unpin(b.Fence.Name)
	}
	// Encode the grants too: bbolt has one writer, and every moment a transaction holds it, every other
	// write waits (a mass expiry's revocations share transactions).
	grantJSON := make([][]byte, len(b.Grants))
	for i, p := range b.Grants {
		rec := *p.Grant
		rec.Version = p.PrevVersion + 1
		data, err := json.Marshal(&rec)
		if err != nil {
			return fmt.Errorf("bolt: commit: encode grant %q: %w", p.Grant.ID, err)
		}
		grantJSON[i] = data
	}
	err := s.update(ctx, "commit", func(tx *bbolt.Tx) error {
		if b.Fence != nil {
			if err := s.locks.check(*b.Fence, s.now()); err != nil {
				return err
			}
		}
		for _, p := range b.Requests {
			if err := putRequest(tx, p); err != nil {
				return err
			}
		}
		for i, p := range b.Grants {
			if err := putGrant(tx, p, grantJSON[i]); err != nil {
				return err
			}
		}
		for _, p := range b.Counters {
			if err := putCounter(tx, p); err != nil {
				return err
			}
		}
		if len(raws) > 0 {
			if err := appendAudit(tx, raws, s.linkKey); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Only a committed batch changes the callers' records.
	for _, p := range b.Requests {
		p.Request.Version = p.PrevVersion + 1
	}
	for _, p := range b.Grants {
		p.Grant.Version = p.PrevVersion + 1
	}
	for _, p := range b.Counters {
		p.Counter.Version = p.PrevVersion + 1
	}
	return nil
}

func putCounter(tx *bbolt.Tx, p store.CounterPut) error {
	bk := tx.Bucket(bCounters)
	if _, err := checkVersion(bk, "counter", p.Counter.Key, p.PrevVersion, func(c *store.Counter) int64 { return c.Version }); err != nil {
		return err
	}
	rec := *p.Counter
	rec.Version = p.PrevVersion + 1
	data, err := json.Marshal(&rec)
	if err != nil {
		return fmt.Errorf("encode counter %q: %w", rec.Key, err)
	}
	return bk.Put([]byte(rec.Key), data)
}

// GetCounter returns the counter with key, or store.ErrNotFound.
func (s *Store) GetCounter(ctx context.Context, key string) (store.Counter, error) {
	var c store.Counter
	if key == "" {
		return c, fmt.Errorf("bolt: get counter: empty key: %w", store.ErrInvalid)
	}
	err := s.view(ctx, "get counter", func(tx *bbolt.Tx) error {
		return load(tx, bCounters, "counter", key, &c)
	})
	return c, err
}

// checkVersion loads the stored record (nil if absent) and applies the PrevVersion rules.
func checkVersion[T any](bk *bbolt.Bucket, kind, id string, prev int64, version func(*T) int64) (*T, error) {
	data := bk.Get([]byte(id))
	if prev == 0 {
		if data != nil {
			return nil, fmt.Errorf("%s %q already exists: %w", kind, id, store.ErrConflict)
		}
		return nil, nil
	}
	if data == nil {
		return nil, fmt.Errorf("%s %q does not exist (PrevVersion %d): %w", kind, id, prev, store.ErrConflict)
	}
	old := new(T)
	if err := json.Unmarshal(data, old); err != nil {
		return nil, fmt.Errorf("decode %s %q: %w", kind, id, err)
	}
	if v := version(old); v != prev {
		return nil, fmt.Errorf("%s %q is at version %d, not %d: %w", kind, id, v, prev, store.ErrConflict)
	}
	return old, nil
}

func requestIndexKeys(r *store.Request) (byRequester, pending []byte) {
	if r.Requester != "" {
		byRequester = ownerKey(r.Requester, r.CreatedAt, r.ID)
	}
	if due := r.DueAt(); !due.IsZero() {
		pending = timeIDKey(due, r.ID) // the request due index
	}
	return byRequester, pending
}

func putRequest(tx *bbolt.Tx, p store.RequestPut) error {
	id := p.Request.ID
	old, err := checkVersion(tx.Bucket(bRequests), "request", id, p.PrevVersion,
		func(r *store.Request) int64 { return r.Version })
	if err != nil {
		return err
	}
	if old != nil {
		k1, k2 := requestIndexKeys(old)
		if err := del(tx, bReqByRequester, k1); err != nil {
			return err
		}
		if err := del(tx, bReqPending, k2); err != nil {
			return err
		}
	}
	rec := *p.Request
	rec.Version = p.PrevVersion + 1
	data, err := json.Marshal(&rec)
	if err != nil {
		return fmt.Errorf("encode request %q: %w", id, err)
	}
	if err := tx.Bucket(bRequests).Put([]byte(id), data); err != nil {
		return err
	}
	k1, k2 := requestIndexKeys(&rec)
	if err := put(tx, bReqByRequester, k1, []byte(id)); err != nil {
		return err
	}
	return put(tx, bReqPending, k2, []byte(id))
}

func liveState(s store.GrantState) bool { return slices.Contains(store.LiveGrantStates, s) }

func grantIndexKeys(g *store.Grant) (byUser, byBinding, byState []byte) {
	if g.UserID != "" {
		byUser = ownerKey(g.UserID, g.CreatedAt, g.ID)
	}
	if liveState(g.State) {
		if g.BindingKey != "" {
			byBinding = ownerKey(g.BindingKey, g.CreatedAt, g.ID)
		}
		byState = ownerKey(string(g.State), g.CreatedAt, g.ID)
	}
	return byUser, byBinding, byState
}

// storedGrantKeys is what a grant's version check and index upkeep read of the stored record: decoding only
// these fields keeps the writer's transaction short.
type storedGrantKeys struct {
	ID         string           `json:"id"`
	UserID     string           `json:"user_id"`
	BindingKey string           `json:"binding_key"`
	State      store.GrantState `json:"state"`
	CreatedAt  time.Time        `json:"created_at"`
	Version    int64            `json:"version"`
}

// putGrant writes p's grant, encoded as data (at version PrevVersion+1), and its index entries.
func putGrant(tx *bbolt.Tx, p store.GrantPut, data []byte) error {
	id := p.Grant.ID
	old, err := checkVersion(tx.Bucket(bGrants), "grant", id, p.PrevVersion,
		func(g *storedGrantKeys) int64 { return g.Version })
	if err != nil {
		return err
	}
	if old != nil {
		k1, k2, k3 := grantIndexKeys(&store.Grant{ID: old.ID, UserID: old.UserID, BindingKey: old.BindingKey, State: old.State, CreatedAt: old.CreatedAt})
		for _, e := range []struct {
			b, k []byte
		}{{bGrantByUser, k1}, {bGrantByBinding, k2}, {bGrantByState, k3}} {
			if err := del(tx, e.b, e.k); err != nil {
				return err
			}
		}
	}
	// The due index entry may have been re-keyed by a claim: remove whatever key it currently has.
	dueKeys := tx.Bucket(bGrantDueKey)
	if cur := dueKeys.Get([]byte(id)); cur != nil {
		if err := tx.Bucket(bGrantDue).Delete(bytes.Clone(cur)); err != nil {
			return err
		}
		if err := dueKeys.Delete([]byte(id)); err != nil {
			return err
		}
	}

	if err := tx.Bucket(bGrants).Put([]byte(id), data); err != nil {
		return err
	}
	rec := p.Grant
	k1, k2, k3 := grantIndexKeys(rec)
	if err := put(tx, bGrantByUser, k1, []byte(id)); err != nil {
		return err
	}
	if err := put(tx, bGrantByBinding, k2, []byte(id)); err != nil {
		return err
	}
	if err := put(tx, bGrantByState, k3, []byte(id)); err != nil {
		return err
	}
	if !rec.DueAt.IsZero() {
		k := timeIDKey(rec.DueAt, id)
		if err := tx.Bucket(bGrantDue).Put(k, []byte(id)); err != nil {
			return err
		}
		if err := dueKeys.Put([]byte(id), k); err != nil {
			return err
		}
	}
	return nil
}

func put(tx *bbolt.Tx, bucket, k, v []byte) error {
	if k == nil {
		return nil
	}
	return tx.Bucket(bucket).Put(k, v)
}

func del(tx *bbolt.Tx, bucket, k []byte) error {
	if k == nil {
		return nil
	}
	return tx.Bucket(bucket).Delete(k)
}

func appendAudit(tx *bbolt.Tx, raws [][]byte, linkKey []byte) error {
	meta := tx.Bucket(bMeta)
	head := auditHead{Hash: store.GenesisHash}
	if data := meta.Get(keyAuditHead); data != nil {
		if err := json.Unmarshal(data, &head); err != nil {
			return fmt.Errorf("decode audit head: %w", err)
		}
	}
	ab := tx.Bucket(bAudit)
	for _, raw := range raws {
		seq := head.Seq + 1
		hash := store.LinkHash(linkKey, head.Hash, seq, raw)
		data, err := json.Marshal(auditEntry{PrevHash: head.Hash, Hash: hash, Raw: string(raw)})
		if err != nil {
			return fmt.Errorf("encode audit entry: %w", err)
		}
		if err := ab.Put(seqKey(seq), data); err != nil {
			return err
		}
		head = auditHead{Seq: seq, Hash: hash}
	}
	data, err := json.Marshal(head)
	if err != nil {
		return fmt.Errorf("encode audit head: %w", err)
	}
	return meta.Put(keyAuditHead, data)
}

// ---- requests ----

// GetRequest returns the request with id, or store.ErrNotFound.
func (s *Store) GetRequest(ctx context.Context, id string) (store.Request, error) {
	var r store.Request
	err := s.view(ctx, "get request", func(tx *bbolt.Tx) error {
		return load(tx, bRequests, "request", id, &r)
	})
	return r, err
}

func load(tx *bbolt.Tx, bucket []byte, kind, id string, v any) error {
	data := tx.Bucket(bucket).Get([]byte(id))
	if data == nil {
		return fmt.Errorf("%s %q: %w", kind, id, store.ErrNotFound)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s %q: %w", kind, id, err)
	}
	return nil
}

// ListRequests returns matching requests, newest first.
func (s *Store) ListRequests(ctx context.Context, q store.RequestQuery) ([]store.Request, error) {
	switch {
	case q.Limit < 0:
		return nil, fmt.Errorf("bolt: list requests: negative limit: %w", store.ErrInvalid)
	case (q.Requester == "") == (q.State == ""):
		return nil, fmt.Errorf("bolt: list requests: exactly one of Requester or State must be set: %w", store.ErrInvalid)
	case q.State != "" && q.State != store.RequestPending:
		return nil, fmt.Errorf("bolt: list requests: only state %q is indexed, not %q: %w",
			store.RequestPending, q.State, store.ErrInvalid)
	}
	var out []store.Request
	err := s.view(ctx, "list requests", func(tx *bbolt.Tx) error {
		if q.Requester != "" {
			var ferr error
			scanPrefixDesc(tx.Bucket(bReqByRequester).Cursor(), strKey(q.Requester), func(_, id []byte) bool {
				var r store.Request
				if ferr = load(tx, bRequests, "request", string(id), &r); ferr != nil {
					return false
				}
				out = append(out, r)
				return q.Limit == 0 || len(out) < q.Limit
			})
			return ferr
		}
		// Pending requests: the index is ordered by PendingUntil; the pending set is small, so sort here.
		c := tx.Bucket(bReqPending).Cursor()
		for k, id := c.First(); k != nil; k, id = c.Next() {
			var r store.Request
			if err := load(tx, bRequests, "request", string(id), &r); err != nil {
				return err
			}
			if r.State == store.RequestPending {
				out = append(out, r)
			}
		}
		slices.SortFunc(out, func(a, b store.Request) int {
			if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
				return c
			}
			return cmpStr(b.ID, a.ID)
		})
		if q.Limit > 0 && len(out) > q.Limit {
			out = out[:q.Limit]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// DueRequests returns pending requests with PendingUntil <= now, oldest first, at most limit (<= 0: all).
func (s *Store) DueRequests(ctx context.Context, now time.Time, limit int) ([]store.Request, error) {
	var out []store.Request
	nowKey := timeKey(now)
	err := s.view(ctx, "due requests", func(tx *bbolt.Tx) error {
		c := tx.Bucket(bReqPending).Cursor()
		for k, id := c.First(); k != nil && bytes.Compare(k[:timeKeyLen], nowKey) <= 0; k, id = c.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			var r store.Request
			if err := load(tx, bRequests, "request", string(id), &r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// scanPrefixDesc calls fn for every key with prefix, last key first, until fn returns false.
func scanPrefixDesc(c *bbolt.Cursor, prefix []byte, fn func(k, v []byte) bool) {
	var k, v []byte
	if succ := prefixSuccessor(prefix); succ != nil {
		if k, _ = c.Seek(succ); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	} else {
		k, v = c.Last()
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
		if !fn(k, v) {
			return
		}
	}
}

// ---- grants ----

// GetGrant returns the grant with id, or store.ErrNotFound.
func (s *Store) GetGrant(ctx context.Context, id string) (store.Grant, error) {
	var g store.Grant
	err := s.view(ctx, "get grant", func(tx *bbolt.Tx) error {
		return load(tx, bGrants, "grant", id, &g)
	})
	return g, err
}

// ListGrants returns matching grants, newest first. A States-only query may name live states only (those are
// the only ones indexed by state); any other state is store.ErrInvalid.
func (s *Store) ListGrants(ctx context.Context, q store.GrantQuery) ([]store.Grant, error) {
	if q.Limit < 0 {
		return nil, fmt.Errorf("bolt: list grants: negative limit: %w", store.ErrInvalid)
	}
	if q.UserID == "" && q.BindingKey == "" && len(q.States) == 0 {
		return nil, fmt.Errorf("bolt: list grants: one of UserID, BindingKey or States must be set: %w", store.ErrInvalid)
	}
	if q.UserID == "" && q.BindingKey == "" {
		for _, st := range q.States {
			if !liveState(st) {
				return nil, fmt.Errorf("bolt: list grants: state %q is not indexed (query it with a UserID): %w",
					st, store.ErrInvalid)
			}
		}
	}
	match := func(g *store.Grant) bool {
		return (q.UserID == "" || g.UserID == q.UserID) &&
			(q.BindingKey == "" || (g.BindingKey == q.BindingKey && liveState(g.State))) &&
			(len(q.States) == 0 || slices.Contains(q.States, g.State))
	}
	var out []store.Grant
	err := s.view(ctx, "list grants", func(tx *bbolt.Tx) error {
		var ferr error
		visit := func(id []byte) bool {
			var g store.Grant
			if ferr = load(tx, bGrants, "grant", string(id), &g); ferr != nil {
				return false
			}
			if match(&g) {
				out = append(out, g)
			}
			return q.Limit == 0 || len(out) < q.Limit
		}
		switch {
		case q.UserID != "":
			scanPrefixDesc(tx.Bucket(bGrantByUser).Cursor(), strKey(q.UserID), func(_, id []byte) bool { return visit(id) })
		case q.BindingKey != "":
			scanPrefixDesc(tx.Bucket(bGrantByBinding).Cursor(), strKey(q.BindingKey), func(_, id []byte) bool { return visit(id) })
		default:
			// Merge the per-state index ranges by their (CreatedAt, id) suffix, newest first.
			type hit struct{ order, id []byte }
			var hits []hit
			seen := map[store.GrantState]bool{}
			for _, st := range q.States {
				if seen[st] {
					continue
				}
				seen[st] = true
				prefix := strKey(string(st))
				scanPrefixDesc(tx.Bucket(bGrantByState).Cursor(), prefix, func(k, id []byte) bool {
					hits = append(hits, hit{order: bytes.Clone(k[len(prefix):]), id: bytes.Clone(id)})
					return true
				})
			}
			slices.SortFunc(hits, func(a, b hit) int { return bytes.Compare(b.order, a.order) })
			for _, h := range hits {
				if !visit(h.id) {
					break
				}
			}
		}
		return ferr
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ClaimDueGrants returns at most limit (<= 0: all) grants with DueAt <= now, earliest first, and re-keys their
// due index entries to now+hold so no other claim returns them before then.
func (s *Store) ClaimDueGrants(ctx context.Context, now time.Time, limit int, hold time.Duration) ([]store.Grant, error) {
	if hold < 0 {
		return nil, fmt.Errorf("bolt: claim due grants: negative hold: %w", store.ErrInvalid)
	}
	nowKey := timeKey(now)
	// Fast path: a read transaction when nothing is due, so an idle sweeper never takes the writer lock (or
	// pays for an fsync).
	anyDue := false
	err := s.view(ctx, "claim due grants", func(tx *bbolt.Tx) error {
		k, _ := tx.Bucket(bGrantDue).Cursor().First()
		anyDue = k != nil && bytes.Compare(k[:timeKeyLen], nowKey) <= 0
		return nil
	})
	if err != nil || !anyDue {
		return nil, err
	}

	// The records are copied in the transaction and decoded after it (see Commit: the writer is shared).
	var raws [][]byte
	var rawIDs []string
	err = s.update(ctx, "claim due grants", func(tx *bbolt.Tx) error {
		raws, rawIDs = raws[:0], rawIDs[:0]
		grants := tx.Bucket(bGrants)
		due, dueKeys := tx.Bucket(bGrantDue), tx.Bucket(bGrantDueKey)
		type entry struct{ key, id []byte }
		var claimed []entry
		c := due.Cursor()
		for k, id := c.First(); k != nil && bytes.Compare(k[:timeKeyLen], nowKey) <= 0; k, id = c.Next() {
			if limit > 0 && len(claimed) >= limit {
				break
			}
			claimed = append(claimed, entry{bytes.Clone(k), bytes.Clone(id)})
		}
		until := now.Add(hold)
		for _, e := range claimed {
			if err := due.Delete(e.key); err != nil {
				return err
			}
			data := grants.Get(e.id)
			if data == nil { // a dangling entry: drop it
				if err := dueKeys.Delete(e.id); err != nil {
					return err
				}
				continue
			}
			nk := timeIDKey(until, string(e.id))
			if err := due.Put(nk, e.id); err != nil {
				return err
			}
			if err := dueKeys.Put(e.id, nk); err != nil {
				return err
			}
			raws, rawIDs = append(raws, bytes.Clone(data)), append(rawIDs, string(e.id))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]store.Grant, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &out[i]); err != nil {
			return nil, fmt.Errorf("bolt: claim due grants: decode grant %q: %w", rawIDs[i], err)
		}
	}
	return out, nil
}

// NextDue returns the earliest scheduled instant: grant due index (claimed grants at their hidden-until time)
// and pending requests' PendingUntil.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var at time.Time
	var ok bool
	err := s.view(ctx, "next due", func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bGrantDue, bReqPending} {
			k, _ := tx.Bucket(b).Cursor().First()
			if k == nil {
				continue
			}
			t := decodeTimeKey(k)
			if !ok || t.Before(at) {
				at, ok = t, true
			}
		}
		return nil
	})
	if err != nil {
		return time.Time{}, false, err
	}
	return at, ok, nil
}

// ---- audit ----

// ReadAudit returns audit records with Seq > afterSeq, in order, at most limit (0: all), unverified. An entry
// whose stored bytes cannot be decoded is returned with its bytes as Raw and empty hashes, so VerifyChain
// reports it rather than ReadAudit failing.
func (s *Store) ReadAudit(ctx context.Context, afterSeq uint64, limit int) ([]store.AuditRecord, error) {
	if limit < 0 {
		return nil, fmt.Errorf("bolt: read audit: negative limit: %w", store.ErrInvalid)
	}
	var out []store.AuditRecord
	err := s.view(ctx, "read audit", func(tx *bbolt.Tx) error {
		c := tx.Bucket(bAudit).Cursor()
		for k, v := c.Seek(seqKey(afterSeq + 1)); k != nil; k, v = c.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			if len(k) != 8 {
				continue // not an audit key; a gap (if any) is reported by VerifyChain
			}
			rec := store.AuditRecord{Seq: binary.BigEndian.Uint64(k)}
			var e auditEntry
			if json.Unmarshal(v, &e) != nil {
				rec.Raw = bytes.Clone(v)
			} else {
				rec.Raw, rec.PrevHash, rec.Hash = []byte(e.Raw), e.PrevHash, e.Hash
				_ = json.Unmarshal(rec.Raw, &rec.Event) // undecodable: VerifyChain reports it
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AuditHead returns the head that appends keep in the meta bucket.
func (s *Store) AuditHead(ctx context.Context) (store.AuditHead, error) {
	h := store.AuditHead{Hash: store.GenesisHash}
	err := s.view(ctx, "audit head", func(tx *bbolt.Tx) error {
		data := tx.Bucket(bMeta).Get(keyAuditHead)
		if data == nil {
			return nil
		}
		var stored auditHead
		if err := json.Unmarshal(data, &stored); err != nil {
			return fmt.Errorf("decode audit head: %w", err)
		}
		h = store.AuditHead{Seq: stored.Seq, Hash: stored.Hash}
		return nil
	})
	if err != nil {
		return store.AuditHead{}, err
	}
	return h, nil
}

// ---- MarkSeen ----

// MarkSeen records key for ttl and reports whether it was not already recorded (within its ttl). A repeated
// call within ttl returns false and does not extend the original ttl.
func (s *Store) MarkSeen(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if key == "" || ttl <= 0 {
		return false, fmt.Errorf("bolt: mark seen: empty key or non-positive ttl: %w", store.ErrInvalid)
	}
	first := false
	err := s.update(ctx, "mark seen", func(tx *bbolt.Tx) error {
		first = false
		now := s.now()
		nowKey := timeKey(now)
		seen, exp := tx.Bucket(bSeen), tx.Bucket(bSeenExp)

		// Lazy cleanup of a bounded number of expired entries.
		type entry struct{ expKey, key []byte }
		var expired []entry
		c := exp.Cursor()
		for k, v := c.First(); k != nil && len(expired) < seenCleanupBatch && bytes.Compare(k[:timeKeyLen], nowKey) <= 0; k, v = c.Next() {
			expired = append(expired, entry{bytes.Clone(k), bytes.Clone(v)})
		}
		for _, e := range expired {
			if err := exp.Delete(e.expKey); err != nil {
				return err
			}
			if err := seen.Delete(e.key); err != nil {
				return err
			}
		}

		k := []byte(key)
		if cur := seen.Get(k); cur != nil {
			if bytes.Compare(cur, nowKey) > 0 {
				return nil // still within its ttl
			}
			if err := exp.Delete(cat(cur, k)); err != nil {
				return err
			}
		}
		until := timeKey(now.Add(ttl))
		if err := seen.Put(k, until); err != nil {
			return err
		}
		if err := exp.Put(cat(until, k), k); err != nil {
			return err
		}
		first = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return first, nil
}

// CountGrants counts the grant-state index entries of a live state.
func (s *Store) CountGrants(ctx context.Context, state store.GrantState) (int, error) {
	if !liveState(state) {
		return 0, fmt.Errorf("bolt: count grants: state %q is not indexed: %w", state, store.ErrInvalid)
	}
	n := 0
	err := s.view(ctx, "count grants", func(tx *bbolt.Tx) error {
		prefix := strKey(string(state))
		c := tx.Bucket(bGrantByState).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n, err
}
