package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jitbot/jitbot/store"
)

var _ store.LockLister = (*Store)(nil)

// AcquireLockAndList implements store.LockLister: one script takes the lock and, once it is held, reads the
// binding's index and the hinted records. Index entries it did not read are read in one more round trip; a
// binding with more live grants than a list page is listed as ListGrants does.
func (s *Store) AcquireLockAndList(ctx context.Context, name, holder string, ttl time.Duration, bindingKey string, hint []string) (store.Lock, []store.Grant, error) {
	if name == "" || holder == "" || ttl <= 0 || bindingKey == "" {
		return store.Lock{}, nil, fmt.Errorf("redis: acquire lock and list: empty name, holder or binding, or non-positive ttl: %w", store.ErrInvalid)
	}
	if err := s.rel.await(ctx, name); err != nil {
		return store.Lock{}, nil, fmt.Errorf("redis: acquire lock %q: %w", name, err)
	}
	keys := []string{s.keys.lock(name), s.keys.fence(name), s.keys.binding(bindingKey)}
	for _, id := range hint {
		keys = append(keys, s.keys.grant(id))
	}
	res, err := scriptLockAcquireList.Run(ctx, s.c, keys, holder, ttlMillis(ttl), listPage+1).Slice()
	if errors.Is(err, goredis.Nil) {
		return store.Lock{}, nil, fmt.Errorf("redis: lock %q: %w", name, store.ErrLockHeld)
	}
	if err != nil {
		return store.Lock{}, nil, fmt.Errorf("redis: acquire lock %q: %w", name, err)
	}
	l, idx, recs, err := parseLockList(res, len(hint))
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
	read := make(map[string][]byte, len(hint))
	for i, id := range hint {
		if r := recs[i]; r != nil {
			s.known.note(keys[3+i], r[1], r[2])
			read[id] = []byte(r[0].(string))
		}
	}
	var missing []string
	for _, id := range idx {
		if _, ok := read[id]; !ok {
			missing = append(missing, s.keys.grant(id))
		}
	}
	if len(missing) > 0 {
		raws, err := s.fetch(ctx, missing)
		if err != nil {
			return l, nil, fmt.Errorf("redis: list grants: %w", err)
		}
		for i, raw := range raws {
			if raw != nil {
				read[missing[i][len(s.keys.grant("")):]] = raw
			}
		}
	}
	var out []store.Grant
	for _, id := range idx {
		raw, ok := read[id]
		if !ok {
			continue // deleted meanwhile
		}
		var g store.Grant
		if err := json.Unmarshal(raw, &g); err != nil {
			return l, nil, fmt.Errorf("redis: list grants: decode %q: %w", id, err)
		}
		if grantMatches(&g, q) {
			out = append(out, g)
		}
	}
	return l, out, nil
}

// parseLockList reads scriptLockAcquireList's reply: the lock's fence, the index's ids newest first, and per
// hinted record its j, v and x (nil for a missing record).
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
		if _, ok := vals[0].(string); ok {
			recs[i] = vals
		}
	}
	return l, ids, recs, nil
}
