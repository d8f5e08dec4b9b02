package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jitbot/jitbot/store"
)

var _ store.LockLister = (*Store)(nil)

// AcquireLockAndList implements store.LockLister: one script takes the lock and, once it is held, reads the
// binding's index and the hinted records. Index entries it did not read are read in one more round trip; a
// binding with more live grants than a list page is listed as ListGrants does.
func (s *Store) AcquireLockAndList(ctx context.Context, name, holder string, ttl time.Duration, bindingKey string, hint []store.Grant) (store.Lock, []store.Grant, error) {
	if name == "" || holder == "" || ttl <= 0 || bindingKey == "" {
		return store.Lock{}, nil, fmt.Errorf("redis: acquire lock and list: empty name, holder or binding, or non-positive ttl: %w", store.ErrInvalid)
	}
	if err := s.rel.await(ctx, name); err != nil {
		return store.Lock{}, nil, fmt.Errorf("redis: acquire lock %q: %w", name, err)
	}
	keys := []string{s.keys.lock(name), s.keys.fence(name), s.keys.binding(bindingKey)}
	args := []any{holder, ttlMillis(ttl), listPage + 1}
	byID := make(map[string]*store.Grant, len(hint))
	var ids []string // of the hinted records, in KEYS order
	for i := range hint {
		if _, dup := byID[hint[i].ID]; dup || hint[i].ID == "" {
			continue
		}
		byID[hint[i].ID] = &hint[i]
		ids = append(ids, hint[i].ID)
		keys = append(keys, s.keys.grant(hint[i].ID))
		args = append(args, strconv.FormatInt(hint[i].Version, 10))
	}
	res, err := scriptLockAcquireList.Run(ctx, s.c, keys, args...).Slice()
	if errors.Is(err, goredis.Nil) {
		return store.Lock{}, nil, fmt.Errorf("redis: lock %q: %w", name, store.ErrLockHeld)
	}
	if err != nil {
		return store.Lock{}, nil, fmt.Errorf("redis: acquire lock %q: %w", name, err)
	}
	l, idx, recs, err := parseLockList(res, len(ids))
	if err != nil {
		return store.Lock{}, nil, fmt.Errorf("redis: acquire lock %q: %w", name, err)
	}
	l.Name, l.Holder = name, holder
	// From here on the lock is held: a failed read is returned with it, so the caller releases it.
	q := store.GrantQuery{BindingKey: bindingKey}
	if len(idx) > listPage {
		gs, err := s.ListGrants(ctx, q)
		return l, gs, err
	}
	read := make(map[string][]byte, len(ids))
	same := make(map[string]*store.Grant, len(ids)) // hinted, and still at the hinted version
	for i, r := range recs {
		if r == nil {
			continue // no such record
		}
		id := ids[i]
		s.known.note(s.keys.grant(id), r[1], r[2])
		if j, ok := r[0].(string); ok {
			read[id] = []byte(j)
		} else {
			same[id] = byID[id]
		}
	}
	var missing, missingKeys []string
	for _, id := range idx {
		_, ok := read[id]
		if _, hinted := same[id]; !ok && !hinted {
			missing, missingKeys = append(missing, id), append(missingKeys, s.keys.grant(id))
		}
	}
	if len(missing) > 0 {
		raws, err := s.fetch(ctx, missingKeys)
		if err != nil {
			return l, nil, fmt.Errorf("redis: list grants: %w", err)
		}
		for i, raw := range raws {
			if raw != nil {
				read[missing[i]] = raw
			}
		}
	}
	var out []store.Grant
	for _, id := range idx {
		var g store.Grant
		if h := same[id]; h != nil {
			g = *h
			g.Target = maps.Clone(h.Target)
		} else if raw, ok := read[id]; ok {
			if err := json.Unmarshal(raw, &g); err != nil {
				return l, nil, fmt.Errorf("redis: list grants: decode %q: %w", id, err)
			}
		} else {
			continue // deleted meanwhile
		}
		if grantMatches(&g, q) {
			out = append(out, g)
		}
	}
	return l, out, nil
}

// parseLockList reads scriptLockAcquireList's reply: the lock's fence, the index's ids newest first, and per
// hinted record its j (absent while at the hinted version), v and x (nil for a missing record).
func parseLockList(res []any, hints int) (l store.Lock, ids []string, recs [][]any, err error) {
	if len(res) != 3 {
		return l, nil, nil, fmt.Errorf("unexpected reply of %d parts", len(res))
	}
	f, _ := res[0].(string)
	if l.Fence, err = strconv.ParseUint(f, 10, 64); err != nil {
		return l, nil, nil, fmt.Errorf("bad fence %q", f)
	}
	flat, _ := res[1].([]any)
	for i := 0; i+1 < len(flat); i += 2 {
		id, ok := flat[i].(string)
		if !ok {
			return l, nil, nil, fmt.Errorf("bad index entry %v", flat[i])
		}
		ids = append(ids, id)
	}
	rs, _ := res[2].([]any)
	if len(rs) != hints {
		return l, nil, nil, fmt.Errorf("%d records read for %d keys", len(rs), hints)
	}
	recs = make([][]any, hints)
	for i, r := range rs {
		vals, _ := r.([]any)
		if len(vals) != 3 {
			return l, nil, nil, fmt.Errorf("bad record reply %v", r)
		}
		if _, ok := vals[1].(string); ok { // a record has a version
			recs[i] = vals
		}
	}
	return l, ids, recs, nil
}
