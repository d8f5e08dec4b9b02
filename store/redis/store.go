package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jitbot/jitbot/store"
)

// DefaultPrefix is the key prefix used when Options.Prefix is empty.
const DefaultPrefix = "{jit}"

// Options configure a Store.
type Options struct {
	// Prefix starts every key. It must contain a Redis Cluster hash tag ("{...}" with something between the
	// braces) so that all keys share one slot. Default DefaultPrefix.
	Prefix string
	// Now stamps audit events committed with a zero At. Default time.Now.
	Now func() time.Time
	// MinReplicas, when positive, makes every Commit wait (WAIT) until that many replicas acknowledged it,
	// at most ReplicaTimeout (default DefaultReplicaTimeout), and fail with ErrNotReplicated otherwise.
	MinReplicas    int
	ReplicaTimeout time.Duration
}

// ValidatePrefix reports whether prefix contains a usable hash tag.
func ValidatePrefix(prefix string) error {
	i := strings.IndexByte(prefix, '{')
	if i < 0 {
		return fmt.Errorf("redis: key prefix %q has no hash tag {...}: %w", prefix, store.ErrInvalid)
	}
	j := strings.IndexByte(prefix[i+1:], '}')
	if j <= 0 {
		return fmt.Errorf("redis: key prefix %q has no non-empty hash tag {...}: %w", prefix, store.ErrInvalid)
	}
	return nil
}

func (o Options) withDefaults() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, ValidatePrefix(o.Prefix)
}

// Store is a store.Store on Redis. It is safe for concurrent use.
type Store struct {
	c    goredis.UniversalClient
	now  func() time.Time
	keys keys

	// linkKey, when set, keys every appended audit link (see SetAuditLinkKey).
	linkKey []byte

	// auditMu serialises this process's audited commits, and head caches the audit log's head as this
	// process last saw it: links are hashed here and the commit script only compare-and-sets the head, so
	// Redis never spends its single thread on SHA-256. Another replica's append makes the script answer
	// "stale" with the current head, and the commit is recomputed and retried.
	auditMu sync.Mutex
	head    auditHead
	// groupMu guards audit, the queue of audited commits waiting for the next pipeline (groupcommit.go).
	groupMu sync.Mutex
	audit   auditQueue

	minReplicas    int
	replicaTimeout time.Duration

	// known remembers the version and index list of the records last read or written (xcache.go).
	known xCache
	// rel tracks the lock releases in flight (release.go).
	rel releases
}

type auditHead struct {
	known bool
	seq   int64
	hash  string
}

var _ store.Store = (*Store)(nil)

// New returns a Store on client, which it takes over: Close closes it. New panics when opts.Prefix is
// invalid (see ValidatePrefix); Open returns an error instead.
func New(client goredis.UniversalClient, opts Options) *Store {
	o, err := opts.withDefaults()
	if err != nil {
		panic(err)
	}
	if o.ReplicaTimeout <= 0 {
		o.ReplicaTimeout = DefaultReplicaTimeout
	}
	return &Store{c: client, now: o.Now, keys: keys{p: o.Prefix + ":"}, minReplicas: o.MinReplicas, replicaTimeout: o.ReplicaTimeout}
}

// Open connects to the Redis at url (see the package documentation for the forms) and checks it answers.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	if _, err := opts.withDefaults(); err != nil {
		return nil, err
	}
	uo, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	c := goredis.NewUniversalClient(uo)
	s := New(c, opts)
	if err := s.Ping(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return s, nil
}

// Client returns the underlying client.
func (s *Store) Client() goredis.UniversalClient { return s.c }

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: ping: %w", err)
	}
	return nil
}

// Close implements store.Store; it closes the client.
func (s *Store) Close() error {
	s.rel.close() // releases in flight are answered first, later ones refused (release.go)
	if err := s.c.Close(); err != nil {
		return fmt.Errorf("redis: close: %w", err)
	}
	return nil
}

// keys builds key names; p is the prefix plus ":".
type keys struct{ p string }

func (k keys) request(id string) string     { return k.p + "req:" + id }
func (k keys) grant(id string) string       { return k.p + "grant:" + id }
func (k keys) due() string                  { return k.p + "idx:due" }
func (k keys) pending() string              { return k.p + "idx:pending" }
func (k keys) pendingByCreated() string     { return k.p + "idx:req:pending" }
func (k keys) requester(user string) string { return k.p + "idx:req:user:" + user }
func (k keys) grantUser(user string) string { return k.p + "idx:grant:user:" + user }
func (k keys) binding(bk string) string     { return k.p + "idx:grant:bind:" + bk }
func (k keys) grantState(st store.GrantState) string {
	return k.p + "idx:grant:state:" + string(st)
}
func (k keys) auditSeq() string         { return k.p + "audit:seq" }
func (k keys) auditHead() string        { return k.p + "audit:head" }
func (k keys) auditLog() string         { return k.p + "audit:log" }
func (k keys) lock(name string) string  { return k.p + "lock:" + name }
func (k keys) fence(name string) string { return k.p + "lock-fence:" + name }
func (k keys) seen(key string) string   { return k.p + "seen:" + key }
func (k keys) counter(key string) string {
	return k.p + "counter:" + key
}

// ms is the index score of t.
func ms(t time.Time) int64 { return t.UnixMilli() }

type indexEntry struct {
	key   string
	score int64
}

func isLive(st store.GrantState) bool {
	for _, l := range store.LiveGrantStates {
		if st == l {
			return true
		}
	}
	return false
}

func (k keys) requestIndexes(r *store.Request) []indexEntry {
	out := []indexEntry{{k.requester(r.Requester), ms(r.CreatedAt)}}
	if due := r.DueAt(); !due.IsZero() {
		out = append(out, indexEntry{k.pending(), ms(due)}) // the request due index
	}
	if r.State == store.RequestPending {
		out = append(out, indexEntry{k.pendingByCreated(), ms(r.CreatedAt)})
	}
	return out
}

func (k keys) grantIndexes(g *store.Grant) []indexEntry {
	created := ms(g.CreatedAt)
	out := []indexEntry{{k.grantUser(g.UserID), created}}
	if !g.DueAt.IsZero() {
		out = append(out, indexEntry{k.due(), ms(g.DueAt)})
	}
	if isLive(g.State) {
		out = append(out, indexEntry{k.grantState(g.State), created})
		if g.BindingKey != "" {
			out = append(out, indexEntry{k.binding(g.BindingKey), created})
		}
	}
	return out
}

// put is one record write prepared for the commit script.
type put struct {
	key, id   string
	prev, ver int64
	json      []byte
	idx       []indexEntry
	x         string   // JSON list of the new index keys
	oldX      string   // the stored x (updates only)
	oldKeys   []string // decoded oldX
	setResult func(v int64)
}

func encodeX(idx []indexEntry) (string, error) {
	ks := make([]string, len(idx))
	for i, e := range idx {
		ks[i] = e.key
	}
	b, err := json.Marshal(ks)
	return string(b), err
}

// Commit implements store.Store.
func (s *Store) Commit(ctx context.Context, b store.Batch) error {
	remembered, err := s.commit(ctx, b, true)
	if remembered && errors.Is(err, store.ErrConflict) {
		// A remembered index list may be what failed the script's check (see xcache.go): read it afresh.
		_, err = s.commit(ctx, b, false)
	}
	return err
}

// commit is Commit; with useKnown, the index lists of updated records are taken from what this process last
// read or wrote at their PrevVersion where it can, and remembered reports whether any was.
func (s *Store) commit(ctx context.Context, b store.Batch, useKnown bool) (remembered bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("redis: commit: %w", err)
	}
	if err := b.Validate(); err != nil {
		return remembered, fmt.Errorf("redis: commit: %w", err)
	}
	var puts []*put
	for _, rp := range b.Requests {
		r := *rp.Request
		r.Version = rp.PrevVersion + 1
		raw, err := json.Marshal(&r)
		if err != nil {
			return remembered, fmt.Errorf("redis: commit: encode request %q: %w", r.ID, err)
		}
		orig := rp.Request
		puts = append(puts, &put{key: s.keys.request(r.ID), id: r.ID, prev: rp.PrevVersion, ver: r.Version,
			json: raw, idx: s.keys.requestIndexes(&r), setResult: func(v int64) { orig.Version = v }})
	}
	for _, gp := range b.Grants {
		g := *gp.Grant
		g.Version = gp.PrevVersion + 1
		raw, err := json.Marshal(&g)
		if err != nil {
			return remembered, fmt.Errorf("redis: commit: encode grant %q: %w", g.ID, err)
		}
		orig := gp.Grant
		puts = append(puts, &put{key: s.keys.grant(g.ID), id: g.ID, prev: gp.PrevVersion, ver: g.Version,
			json: raw, idx: s.keys.grantIndexes(&g), setResult: func(v int64) { orig.Version = v }})
	}
	for _, cp := range b.Counters {
		c := *cp.Counter
		c.Version = cp.PrevVersion + 1
		raw, err := json.Marshal(&c)
		if err != nil {
			return remembered, fmt.Errorf("redis: commit: encode counter %q: %w", c.Key, err)
		}
		orig := cp.Counter
		puts = append(puts, &put{key: s.keys.counter(c.Key), id: c.Key, prev: cp.PrevVersion, ver: c.Version,
			json: raw, setResult: func(v int64) { orig.Version = v }})
	}
	raws := make([][]byte, len(b.Audit))
	for i, e := range b.Audit {
		if e.At.IsZero() {
			e.At = s.now()
		}
		raw, err := store.EncodeEvent(e)
		if err != nil {
			return remembered, fmt.Errorf("redis: commit: %w", err)
		}
		raws[i] = raw
	}
	if len(puts) == 0 && len(raws) == 0 && b.Fence == nil {
		return remembered, nil
	}

	// The index keys that updated records occupy now, so that the script gets them in KEYS: remembered from
	// this process's last read or write of the record at PrevVersion (xcache.go), else read now. The script
	// re-checks version and x, so a concurrent change since is a conflict.
	var updates []*put
	for _, p := range puts {
		if p.prev <= 0 {
			continue
		}
		if x, ok := s.known.lookup(p.key, p.prev); useKnown && ok {
			if x != "" {
				if err := json.Unmarshal([]byte(x), &p.oldKeys); err != nil {
					return remembered, fmt.Errorf("redis: commit: %s: corrupt index list: %w", p.key, err)
				}
			}
			p.oldX, remembered = x, true
			continue
		}
		updates = append(updates, p)
	}
	if len(updates) > 0 {
		cmds := make([]*goredis.SliceCmd, len(updates))
		_, err := s.c.Pipelined(ctx, func(pl goredis.Pipeliner) error {
			for i, p := range updates {
				cmds[i] = pl.HMGet(ctx, p.key, "v", "x")
			}
			return nil
		})
		if err != nil {
			return remembered, fmt.Errorf("redis: commit: read current versions: %w", err)
		}
		for i, p := range updates {
			vals := cmds[i].Val()
			v, _ := vals[0].(string)
			x, _ := vals[1].(string)
			if v != strconv.FormatInt(p.prev, 10) {
				return remembered, fmt.Errorf("redis: commit: %s version is %q, want %d: %w", p.key, v, p.prev, store.ErrConflict)
			}
			if x != "" {
				if err := json.Unmarshal([]byte(x), &p.oldKeys); err != nil {
					return remembered, fmt.Errorf("redis: commit: %s: corrupt index list: %w", p.key, err)
				}
			}
			p.oldX = x
		}
	}

	keys := []string{s.keys.auditSeq(), s.keys.auditHead(), s.keys.auditLog()}
	args := []any{len(puts), len(raws)}
	for _, p := range puts {
		x, err := encodeX(p.idx)
		if err != nil {
			return remembered, fmt.Errorf("redis: commit: %w", err)
		}
		p.x = x
		keys = append(keys, p.key)
		keys = append(keys, p.oldKeys...)
		args = append(args, p.id, p.prev, p.oldX, p.ver, p.json, p.x, len(p.oldKeys), len(p.idx))
		for _, e := range p.idx {
			keys = append(keys, e.key)
			args = append(args, e.score)
		}
	}
	var tail []any
	if b.Fence != nil {
		if err := s.rel.await(ctx, b.Fence.Name); err != nil { // this process released it: see release.go
			return remembered, fmt.Errorf("redis: commit: %w", err)
		}
		keys = append(keys, s.keys.lock(b.Fence.Name))
		tail = append(tail, lockValue(*b.Fence))
	}
	res, err := s.runCommit(ctx, keys, args, raws, tail)
	if err != nil {
		for _, p := range puts {
			s.known.forget(p.key) // it may or may not have landed
		}
		return remembered, err
	}
	if res[0] == "lost" {
		return remembered, fmt.Errorf("redis: commit: batch fenced by lock %q (fence %d), which is no longer held: %w", b.Fence.Name, b.Fence.Fence, store.ErrLockLost)
	}
	if res[0] == "conflict" {
		i, _ := res[1].(int64)
		what := "?"
		if i >= 1 && int(i) <= len(puts) {
			what = puts[i-1].key
		}
		if i >= 1 && int(i) <= len(puts) {
			s.known.forget(puts[i-1].key)
		}
		return remembered, fmt.Errorf("redis: commit: %s changed concurrently or already exists: %w", what, store.ErrConflict)
	}
	if res[0] != "ok" {
		return remembered, fmt.Errorf("redis: commit: unexpected script reply %v", res)
	}
	for _, p := range puts {
		s.known.put(p.key, p.ver, p.x)
		p.setResult(p.ver)
	}
	return remembered, nil
}

// GetRequest implements store.Store.
func (s *Store) GetRequest(ctx context.Context, id string) (store.Request, error) {
	var r store.Request
	if err := s.get(ctx, s.keys.request(id), "request", id, &r); err != nil {
		return store.Request{}, err
	}
	return r, nil
}

// GetCounter implements store.Store.
func (s *Store) GetCounter(ctx context.Context, key string) (store.Counter, error) {
	var c store.Counter
	if err := s.get(ctx, s.keys.counter(key), "counter", key, &c); err != nil {
		return store.Counter{}, err
	}
	return c, nil
}

// GetGrant implements store.Store.
func (s *Store) GetGrant(ctx context.Context, id string) (store.Grant, error) {
	var g store.Grant
	if err := s.get(ctx, s.keys.grant(id), "grant", id, &g); err != nil {
		return store.Grant{}, err
	}
	return g, nil
}

func (s *Store) get(ctx context.Context, key, kind, id string, dst any) error {
	if id == "" {
		return fmt.Errorf("redis: get %s: empty id: %w", kind, store.ErrInvalid)
	}
	vals, err := s.c.HMGet(ctx, key, "j", "v", "x").Result()
	if err != nil {
		return fmt.Errorf("redis: get %s %q: %w", kind, id, err)
	}
	j, ok := vals[0].(string)
	if !ok {
		return fmt.Errorf("redis: %s %q: %w", kind, id, store.ErrNotFound)
	}
	s.known.note(key, vals[1], vals[2])
	if err := json.Unmarshal([]byte(j), dst); err != nil {
		return fmt.Errorf("redis: decode %s %q: %w", kind, id, err)
	}
	return nil
}

// fetch reads the JSON of the records at keys in one pipeline; missing records give nil.
func (s *Store) fetch(ctx context.Context, keys []string) ([][]byte, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	cmds := make([]*goredis.SliceCmd, len(keys))
	_, err := s.c.Pipelined(ctx, func(pl goredis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = pl.HMGet(ctx, k, "j", "v", "x")
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, err
	}
	out := make([][]byte, len(keys))
	for i, c := range cmds {
		vals, err := c.Result()
		if err != nil {
			return nil, err
		}
		j, ok := vals[0].(string)
		if !ok {
			continue // missing record
		}
		s.known.note(keys[i], vals[1], vals[2])
		out[i] = []byte(j)
	}
	return out, nil
}

// listPage is how many index entries a list reads per round trip.
const listPage = 128

// ListRequests implements store.Store.
func (s *Store) ListRequests(ctx context.Context, q store.RequestQuery) ([]store.Request, error) {
	var key string
	switch {
	case q.Requester != "" && q.State != "":
		return nil, fmt.Errorf("redis: list requests: set only one of Requester and State: %w", store.ErrInvalid)
	case q.Requester != "":
		key = s.keys.requester(q.Requester)
	case q.State == store.RequestPending:
		key = s.keys.pendingByCreated()
	case q.State != "":
		return nil, fmt.Errorf("redis: list requests: only state %q is indexed: %w", store.RequestPending, store.ErrInvalid)
	default:
		return nil, fmt.Errorf("redis: list requests: set Requester or State: %w", store.ErrInvalid)
	}
	if q.Limit < 0 {
		return nil, fmt.Errorf("redis: list requests: negative limit: %w", store.ErrInvalid)
	}
	var out []store.Request
	err := s.scan(ctx, []string{key}, s.keys.request, func(raw []byte) (bool, error) {
		var r store.Request
		if err := json.Unmarshal(raw, &r); err != nil {
			return false, err
		}
		if (q.Requester != "" && r.Requester != q.Requester) || (q.State != "" && r.State != q.State) {
			return true, nil
		}
		out = append(out, r)
		return q.Limit == 0 || len(out) < q.Limit, nil
	})
	if err != nil {
		return nil, fmt.Errorf("redis: list requests: %w", err)
	}
	return out, nil
}

// ListGrants implements store.Store.
func (s *Store) ListGrants(ctx context.Context, q store.GrantQuery) ([]store.Grant, error) {
	if q.Limit < 0 {
		return nil, fmt.Errorf("redis: list grants: negative limit: %w", store.ErrInvalid)
	}
	var idx []string
	switch {
	case q.UserID != "":
		idx = []string{s.keys.grantUser(q.UserID)}
	case q.BindingKey != "":
		idx = []string{s.keys.binding(q.BindingKey)}
	case len(q.States) > 0:
		seen := map[store.GrantState]bool{}
		for _, st := range q.States {
			if !isLive(st) {
				return nil, fmt.Errorf("redis: list grants: state %q is not indexed (only live states are): %w", st, store.ErrInvalid)
			}
			if !seen[st] {
				seen[st] = true
				idx = append(idx, s.keys.grantState(st))
			}
		}
	default:
		return nil, fmt.Errorf("redis: list grants: set UserID, BindingKey or States: %w", store.ErrInvalid)
	}
	var out []store.Grant
	err := s.scan(ctx, idx, s.keys.grant, func(raw []byte) (bool, error) {
		var g store.Grant
		if err := json.Unmarshal(raw, &g); err != nil {
			return false, err
		}
		if !grantMatches(&g, q) {
			return true, nil
		}
		out = append(out, g)
		return q.Limit == 0 || len(out) < q.Limit, nil
	})
	if err != nil {
		return nil, fmt.Errorf("redis: list grants: %w", err)
	}
	return out, nil
}

func grantMatches(g *store.Grant, q store.GrantQuery) bool {
	if q.UserID != "" && g.UserID != q.UserID {
		return false
	}
	if q.BindingKey != "" && (g.BindingKey != q.BindingKey || !isLive(g.State)) {
		return false
	}
	if len(q.States) > 0 {
		ok := false
		for _, st := range q.States {
			if g.State == st {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// scan walks the union of the index zsets idx from the highest score down (newest first; ties by member,
// descending), a page at a time, fetching each page's records in one pipeline and passing their JSON to
// visit until it returns false. A record met twice (it moved between two of the zsets during the walk) is
// visited once.
func (s *Store) scan(ctx context.Context, idx []string, recordKey func(string) string, visit func([]byte) (bool, error)) error {
	curs := make([]*zcursor, len(idx))
	for i, k := range idx {
		curs[i] = &zcursor{key: k}
	}
	var (
		lastScore  float64
		sameScore  = map[string]bool{} // ids visited at lastScore, for de-duplication
		started    bool
		ids        = make([]string, 0, listPage)
		recordKeys = make([]string, 0, listPage)
	)
	for {
		ids, recordKeys = ids[:0], recordKeys[:0]
		for len(ids) < listPage {
			var best *zcursor
			for _, c := range curs {
				if err := c.fill(ctx, s.c); err != nil {
					return err
				}
				if len(c.buf) == 0 {
					continue
				}
				if best == nil || zAfter(c.buf[0], best.buf[0]) {
					best = c
				}
			}
			if best == nil {
				break
			}
			z := best.pop()
			id := z.Member.(string)
			if !started || z.Score != lastScore {
				started, lastScore = true, z.Score
				clear(sameScore)
			}
			if sameScore[id] {
				continue
			}
			sameScore[id] = true
			ids = append(ids, id)
			recordKeys = append(recordKeys, recordKey(id))
		}
		if len(ids) == 0 {
			return nil
		}
		raws, err := s.fetch(ctx, recordKeys)
		if err != nil {
			return err
		}
		for _, raw := range raws {
			if raw == nil {
				continue
			}
			more, err := visit(raw)
			if err != nil {
				return err
			}
			if !more {
				return nil
			}
		}
	}
}

// zAfter reports whether a comes before b in newest-first order.
func zAfter(a, b goredis.Z) bool {
	if a.Score != b.Score {
		return a.Score > b.Score
	}
	return a.Member.(string) > b.Member.(string)
}

// zcursor pages through one zset from the highest score down. It resumes by score rather than by offset,
// so concurrent inserts and removals do not make it skip or repeat entries.
type zcursor struct {
	key        string
	buf        []goredis.Z
	started    bool
	done       bool
	lastScore  float64
	lastMember string
	ties       int // entries returned so far with score lastScore
}

func (c *zcursor) fill(ctx context.Context, cl goredis.UniversalClient) error {
	extra := 0
	for len(c.buf) == 0 && !c.done {
		max := "+inf"
		if c.started {
			max = strconv.FormatFloat(c.lastScore, 'f', -1, 64)
		}
		n := listPage + c.ties + extra
		zs, err := cl.ZRevRangeByScoreWithScores(ctx, c.key, &goredis.ZRangeBy{Max: max, Min: "-inf", Count: int64(n)}).Result()
		if err != nil {
			return err
		}
		if len(zs) < n {
			c.done = true
		}
		for _, z := range zs {
			if c.started && z.Score == c.lastScore && z.Member.(string) >= c.lastMember {
				continue // already returned
			}
			c.buf = append(c.buf, z)
		}
		extra += listPage // all of a full page were ties already returned: read further
	}
	return nil
}

func (c *zcursor) pop() goredis.Z {
	z := c.buf[0]
	c.buf = c.buf[1:]
	if c.started && z.Score == c.lastScore {
		c.ties++
	} else {
		c.ties = 1
	}
	c.started, c.lastScore, c.lastMember = true, z.Score, z.Member.(string)
	return z
}

// DueRequests implements store.Store. A limit <= 0 returns every due request.
func (s *Store) DueRequests(ctx context.Context, now time.Time, limit int) ([]store.Request, error) {
	count := int64(limit)
	if limit <= 0 {
		count = -1 // all
	}
	ids, err := s.c.ZRangeByScore(ctx, s.keys.pending(), &goredis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(ms(now), 10), Count: count,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: due requests: %w", err)
	}
	out := make([]store.Request, 0, len(ids))
	for start := 0; start < len(ids); start += listPage {
		page := ids[start:min(start+listPage, len(ids))]
		ks := make([]string, len(page))
		for i, id := range page {
			ks[i] = s.keys.request(id)
		}
		raws, err := s.fetch(ctx, ks)
		if err != nil {
			return nil, fmt.Errorf("redis: due requests: %w", err)
		}
		for i, raw := range raws {
			if raw == nil {
				continue
			}
			var r store.Request
			if err := json.Unmarshal(raw, &r); err != nil {
				return nil, fmt.Errorf("redis: due requests: decode %q: %w", page[i], err)
			}
			if due := r.DueAt(); !due.IsZero() && ms(due) <= ms(now) {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// ClaimDueGrants implements store.Store. A limit <= 0 claims every due grant; a negative hold is ErrInvalid.
func (s *Store) ClaimDueGrants(ctx context.Context, now time.Time, limit int, hold time.Duration) ([]store.Grant, error) {
	if hold < 0 {
		return nil, fmt.Errorf("redis: claim due grants: negative hold: %w", store.ErrInvalid)
	}
	count := limit
	if limit <= 0 {
		count = -1 // all
	}
	until := now.Add(hold)
	ids, err := scriptClaimDue.Run(ctx, s.c, []string{s.keys.due()}, ms(now), count, ms(until)).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("redis: claim due grants: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	ks := make([]string, len(ids))
	for i, id := range ids {
		ks[i] = s.keys.grant(id)
	}
	raws, err := s.fetch(ctx, ks)
	if err != nil {
		return nil, fmt.Errorf("redis: claim due grants: %w", err)
	}
	out := make([]store.Grant, 0, len(ids))
	for i, raw := range raws {
		if raw == nil {
			continue
		}
		var g store.Grant
		if err := json.Unmarshal(raw, &g); err != nil {
			return nil, fmt.Errorf("redis: claim due grants: decode %q: %w", ids[i], err)
		}
		out = append(out, g)
	}
	return out, nil
}

// NextDue implements store.Store.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var due, pending *goredis.ZSliceCmd
	_, err := s.c.Pipelined(ctx, func(pl goredis.Pipeliner) error {
		due = pl.ZRangeWithScores(ctx, s.keys.due(), 0, 0)
		pending = pl.ZRangeWithScores(ctx, s.keys.pending(), 0, 0)
		return nil
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("redis: next due: %w", err)
	}
	var best float64
	ok := false
	for _, zs := range [][]goredis.Z{due.Val(), pending.Val()} {
		if len(zs) > 0 && (!ok || zs[0].Score < best) {
			best, ok = zs[0].Score, true
		}
	}
	if !ok {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(int64(best)).UTC(), true, nil
}

func ttlMillis(ttl time.Duration) int64 {
	m := ttl.Milliseconds()
	if ttl%time.Millisecond != 0 {
		m++
	}
	return m
}

// AcquireLock implements store.Store.
func (s *Store) AcquireLock(ctx context.Context, name, holder string, ttl time.Duration) (store.Lock, error) {
	if name == "" || holder == "" || ttl <= 0 {
		return store.Lock{}, fmt.Errorf("redis: acquire lock: empty name or holder, or non-positive ttl: %w", store.ErrInvalid)
	}
	if err := s.rel.await(ctx, name); err != nil {
		return store.Lock{}, fmt.Errorf("redis: acquire lock %q: %w", name, err)
	}
	f, err := scriptLockAcquire.Run(ctx, s.c, []string{s.keys.lock(name), s.keys.fence(name)}, holder, ttlMillis(ttl)).Text()
	if errors.Is(err, goredis.Nil) {
		return store.Lock{}, fmt.Errorf("redis: lock %q: %w", name, store.ErrLockHeld)
	}
	if err != nil {
		return store.Lock{}, fmt.Errorf("redis: acquire lock %q: %w", name, err)
	}
	fence, err := strconv.ParseUint(f, 10, 64)
	if err != nil {
		return store.Lock{}, fmt.Errorf("redis: acquire lock %q: bad fence %q", name, f)
	}
	return store.Lock{Name: name, Holder: holder, Fence: fence}, nil
}

func lockValue(l store.Lock) string { return l.Holder + "|" + strconv.FormatUint(l.Fence, 10) }

// RenewLock implements store.Store.
func (s *Store) RenewLock(ctx context.Context, l store.Lock, ttl time.Duration) error {
	if l.Name == "" || ttl <= 0 {
		return fmt.Errorf("redis: renew lock: empty name or non-positive ttl: %w", store.ErrInvalid)
	}
	if err := s.rel.await(ctx, l.Name); err != nil {
		return fmt.Errorf("redis: renew lock %q: %w", l.Name, err)
	}
	n, err := scriptLockRenew.Run(ctx, s.c, []string{s.keys.lock(l.Name)}, lockValue(l), ttlMillis(ttl)).Int64()
	if err != nil {
		return fmt.Errorf("redis: renew lock %q: %w", l.Name, err)
	}
	if n != 1 {
		return fmt.Errorf("redis: lock %q: %w", l.Name, store.ErrLockLost)
	}
	return nil
}

// MarkSeen implements store.Store.
func (s *Store) MarkSeen(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if key == "" || ttl <= 0 {
		return false, fmt.Errorf("redis: mark seen: empty key or non-positive ttl: %w", store.ErrInvalid)
	}
	err := s.c.Do(ctx, "SET", s.keys.seen(key), "1", "NX", "PX", ttlMillis(ttl)).Err()
	if errors.Is(err, goredis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("redis: mark seen: %w", err)
	}
	return true, nil
}

// auditPage is how many audit entries ReadAudit asks for per round trip.
const auditPage = 512

// ReadAudit implements store.Store. It reads up to the sequence counter or the number of stored entries,
// whichever is higher, and then a page further while entries turn up: entries past a counter that was set
// back (a lost write, or an attacker hiding the tail) are returned, so verification sees them.
func (s *Store) ReadAudit(ctx context.Context, afterSeq uint64, limit int) ([]store.AuditRecord, error) {
	if limit < 0 {
		return nil, fmt.Errorf("redis: read audit: negative limit: %w", store.ErrInvalid)
	}
	var seqCmd *goredis.StringCmd
	var lenCmd *goredis.IntCmd
	if _, err := s.c.Pipelined(ctx, func(pl goredis.Pipeliner) error {
		seqCmd = pl.Get(ctx, s.keys.auditSeq())
		lenCmd = pl.HLen(ctx, s.keys.auditLog())
		return nil
	}); err != nil && !errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("redis: read audit: %w", err)
	}
	last, err := seqCmd.Uint64()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("redis: read audit: sequence counter: %w", err)
	}
	bound := max(last, uint64(max(lenCmd.Val(), 0)))
	var out []store.AuditRecord
	for next := afterSeq + 1; limit == 0 || len(out) < limit; {
		n := uint64(auditPage)
		if next <= bound {
			n = min(n, bound-next+1)
		}
		if limit > 0 {
			n = min(n, uint64(limit-len(out)))
		}
		fields := make([]string, n)
		for i := range fields {
			fields[i] = strconv.FormatUint(next+uint64(i), 10)
		}
		vals, err := s.c.HMGet(ctx, s.keys.auditLog(), fields...).Result()
		if err != nil {
			return nil, fmt.Errorf("redis: read audit: %w", err)
		}
		found := false
		for i, v := range vals {
			str, ok := v.(string)
			if !ok {
				continue // missing entry: VerifyChain reports the gap
			}
			found = true
			out = append(out, decodeAudit(next+uint64(i), str))
		}
		if next > bound && !found {
			break
		}
		next += n
	}
	return out, nil
}

// AuditHead implements store.Store: the sequence counter and head hash the commit script keeps.
func (s *Store) AuditHead(ctx context.Context) (store.AuditHead, error) {
	vals, err := s.c.MGet(ctx, s.keys.auditSeq(), s.keys.auditHead()).Result()
	if err != nil {
		return store.AuditHead{}, fmt.Errorf("redis: audit head: %w", err)
	}
	h := store.AuditHead{Hash: store.GenesisHash}
	if v, ok := vals[0].(string); ok {
		if h.Seq, err = strconv.ParseUint(v, 10, 64); err != nil {
			return store.AuditHead{}, fmt.Errorf("redis: audit head: corrupt sequence counter %q", v)
		}
	}
	if v, ok := vals[1].(string); ok {
		h.Hash = v
	}
	return h, nil
}

// decodeAudit parses a stored "<prev>\n<hash>\n<raw>" entry. A malformed entry is returned as best it can be,
// for VerifyChain to reject.
func decodeAudit(seq uint64, v string) store.AuditRecord {
	rec := store.AuditRecord{Seq: seq}
	prev, rest, ok1 := strings.Cut(v, "\n")
	hash, raw, ok2 := strings.Cut(rest, "\n")
	if !ok1 || !ok2 {
		rec.Raw = []byte(v)
		return rec
	}
	rec.PrevHash, rec.Hash, rec.Raw = prev, hash, []byte(raw)
	_ = json.Unmarshal(rec.Raw, &rec.Event)
	return rec
}

// CountGrants is ZCARD of the live state's index.
func (s *Store) CountGrants(ctx context.Context, state store.GrantState) (int, error) {
	if !isLive(state) {
		return 0, fmt.Errorf("redis: count grants: state %q is not indexed: %w", state, store.ErrInvalid)
	}
	n, err := s.c.ZCard(ctx, s.keys.grantState(state)).Result()
	if err != nil {
		return 0, fmt.Errorf("redis: count grants: %w", err)
	}
	return int(n), nil
}

// runCommit runs the commit script with the audit links chained onto the head. A stale head (another
// replica appended) is refreshed from the script's answer and the links recomputed.
// tail (the fence's expected lock value, if any) goes after the audit arguments.
func (s *Store) runCommit(ctx context.Context, keys []string, args []any, raws [][]byte, tail []any) ([]any, error) {
	if len(raws) == 0 {
		res, err := s.evalCommit(ctx, keys, append(append(args, 0, ""), tail...)...)
		if err != nil {
			return nil, fmt.Errorf("redis: commit: %w", err)
		}
		return checkReply(res)
	}
	return s.commitAudited(ctx, keys, args, raws, tail)
}

// commitChainedLocked chains one audited commit onto the head and runs it, re-chaining while the head moved.
// The caller holds auditMu.
func (s *Store) commitChainedLocked(ctx context.Context, keys []string, args []any, raws [][]byte, tail []any) ([]any, error) {
	if !s.head.known {
		if err := s.loadHead(ctx); err != nil {
			return nil, err
		}
	}
	for attempt := range 100 {
		if attempt >= 2 {
			// Another replica keeps appending between our reads of the head: step aside for a random moment so
			// that its burst ends, instead of losing every race (starvation under load).
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("redis: commit: %w", ctx.Err())
			case <-time.After(time.Duration(rand.N(min(attempt, 20))+1) * time.Millisecond):
			}
		}
		full := append(append([]any{}, args...), s.head.seq, s.head.hash)
		prev := s.head.hash
		for i, raw := range raws {
			h := store.LinkHash(s.linkKey, prev, uint64(s.head.seq)+uint64(i)+1, raw)
			full = append(full, raw, h)
			prev = h
		}
		full = append(full, tail...)
		res, err := s.evalCommit(ctx, keys, full...)
		if err != nil {
			s.head.known = false // the commit may or may not have landed
			return nil, fmt.Errorf("redis: commit: %w", err)
		}
		if len(res) == 3 && res[0] == "stale" {
			seq, _ := res[1].(int64)
			hash, _ := res[2].(string)
			s.head = auditHead{known: true, seq: seq, hash: hash}
			continue
		}
		res, err = checkReply(res)
		if err == nil && res[0] == "ok" {
			s.head = auditHead{known: true, seq: s.head.seq + int64(len(raws)), hash: prev}
		}
		return res, err
	}
	return nil, fmt.Errorf("redis: commit: the audit log kept moving under this commit: %w", store.ErrConflict)
}

func (s *Store) loadHead(ctx context.Context) error {
	vals, err := s.c.MGet(ctx, s.keys.auditSeq(), s.keys.auditHead()).Result()
	if err != nil {
		return fmt.Errorf("redis: commit: read audit head: %w", err)
	}
	h := auditHead{known: true, hash: store.GenesisHash}
	if v, ok := vals[0].(string); ok {
		if h.seq, err = strconv.ParseInt(v, 10, 64); err != nil {
			return fmt.Errorf("redis: commit: corrupt audit sequence %q", v)
		}
	}
	if v, ok := vals[1].(string); ok {
		h.hash = v
	}
	s.head = h
	return nil
}

func checkReply(res []any) ([]any, error) {
	if len(res) < 2 {
		return nil, fmt.Errorf("redis: commit: unexpected script reply %v", res)
	}
	return res, nil
}
