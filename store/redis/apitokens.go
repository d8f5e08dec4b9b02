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

// API tokens (see store.APIToken):
//
//	<prefix>:apitoken:<id>   hash: j = the record's JSON without its mutable times, r = RevokedAt (unix ms),
//	                         u = LastUsedAt (unix ms); r and u are absent while zero
//	<prefix>:idx:apitokens   sorted set of ids by CreatedAt (unix ms)
//
// Revocation and last-used updates are single scripts on the r and u fields, so they are atomic without a
// read-modify-write of the JSON, and a touch racing a revoke never loses the revocation.
func (k keys) apiToken(id string) string { return k.p + "apitoken:" + id }
func (k keys) apiTokens() string         { return k.p + "idx:apitokens" }

// scriptTokenCreate: KEYS[1] record, KEYS[2] index; ARGV id, json, created ms. Returns 1, or 0 if the id exists.
var scriptTokenCreate = goredis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
redis.call("HSET", KEYS[1], "j", ARGV[2])
redis.call("ZADD", KEYS[2], ARGV[3], ARGV[1])
return 1
`)

// scriptTokenRevoke: KEYS[1] record; ARGV at ms. Sets r unless set. Returns {j, r, u, set} (set is 1 when
// this call revoked the token), or false when the record does not exist.
var scriptTokenRevoke = goredis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 0 then return false end
local set = redis.call("HSETNX", KEYS[1], "r", ARGV[1])
local v = redis.call("HMGET", KEYS[1], "j", "r", "u")
v[4] = set
return v
`)

// scriptTokenTouch: KEYS[1] record; ARGV at ms. Sets u to at when later. Returns 1, or 0 when the record does
// not exist.
var scriptTokenTouch = goredis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
local cur = redis.call("HGET", KEYS[1], "u")
if (not cur) or tonumber(cur) < tonumber(ARGV[1]) then redis.call("HSET", KEYS[1], "u", ARGV[1]) end
return 1
`)

// CreateAPIToken stores a new token; store.ErrConflict if the id exists.
func (s *Store) CreateAPIToken(ctx context.Context, t store.APIToken) error {
	if t.ID == "" || t.Hash == "" {
		return fmt.Errorf("redis: create api token: empty id or hash: %w", store.ErrInvalid)
	}
	base := t
	base.LastUsedAt, base.RevokedAt = time.Time{}, time.Time{}
	j, err := json.Marshal(base)
	if err != nil {
		return fmt.Errorf("redis: encode api token %q: %w", t.ID, err)
	}
	keys := []string{s.keys.apiToken(t.ID), s.keys.apiTokens()}
	n, err := scriptTokenCreate.Run(ctx, s.c, keys, t.ID, j, ms(t.CreatedAt)).Int64()
	if err != nil {
		return fmt.Errorf("redis: create api token %q: %w", t.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("redis: api token %q exists: %w", t.ID, store.ErrConflict)
	}
	// A token created with mutable times set (a restore, a test) keeps them.
	if !t.RevokedAt.IsZero() {
		if _, _, err := s.RevokeAPIToken(ctx, t.ID, t.RevokedAt); err != nil {
			return err
		}
	}
	if !t.LastUsedAt.IsZero() {
		return s.TouchAPIToken(ctx, t.ID, t.LastUsedAt)
	}
	return nil
}

// GetAPIToken returns the token with id, or store.ErrNotFound.
func (s *Store) GetAPIToken(ctx context.Context, id string) (store.APIToken, error) {
	if id == "" {
		return store.APIToken{}, fmt.Errorf("redis: api token %q: %w", id, store.ErrNotFound)
	}
	vals, err := s.c.HMGet(ctx, s.keys.apiToken(id), "j", "r", "u").Result()
	if err != nil {
		return store.APIToken{}, fmt.Errorf("redis: get api token %q: %w", id, err)
	}
	return decodeAPIToken(id, vals)
}

func decodeAPIToken(id string, vals []any) (store.APIToken, error) {
	var t store.APIToken
	if len(vals) != 3 || vals[0] == nil {
		return t, fmt.Errorf("redis: api token %q: %w", id, store.ErrNotFound)
	}
	j, ok := vals[0].(string)
	if !ok {
		return t, fmt.Errorf("redis: api token %q: unexpected reply %T", id, vals[0])
	}
	if err := json.Unmarshal([]byte(j), &t); err != nil {
		return t, fmt.Errorf("redis: decode api token %q: %w", id, err)
	}
	var err error
	if t.RevokedAt, err = msField(vals[1]); err != nil {
		return t, fmt.Errorf("redis: api token %q revoked time: %w", id, err)
	}
	if t.LastUsedAt, err = msField(vals[2]); err != nil {
		return t, fmt.Errorf("redis: api token %q last-used time: %w", id, err)
	}
	return t, nil
}

func msField(v any) (time.Time, error) {
	switch x := v.(type) {
	case nil:
		return time.Time{}, nil
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return time.Time{}, err
		}
		return time.UnixMilli(n).UTC(), nil
	case int64:
		return time.UnixMilli(x).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("unexpected reply %T", v)
}

// ListAPITokens returns every token, oldest first (ties by id).
func (s *Store) ListAPITokens(ctx context.Context) ([]store.APIToken, error) {
	ids, err := s.c.ZRangeArgs(ctx, goredis.ZRangeArgs{Key: s.keys.apiTokens(), Start: "-inf", Stop: "+inf", ByScore: true}).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: list api tokens: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := s.c.Pipeline()
	cmds := make([]*goredis.SliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HMGet(ctx, s.keys.apiToken(id), "j", "r", "u")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redis: list api tokens: %w", err)
	}
	out := make([]store.APIToken, 0, len(ids))
	for i, id := range ids {
		t, err := decodeAPIToken(id, cmds[i].Val())
		if errors.Is(err, store.ErrNotFound) {
			continue // an index entry without its record: nothing to show
		}
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// RevokeAPIToken marks the token revoked at at, unless it already is (the first revocation time stays);
// revoked reports whether this call revoked it.
func (s *Store) RevokeAPIToken(ctx context.Context, id string, at time.Time) (t store.APIToken, revoked bool, err error) {
	if id == "" {
		return store.APIToken{}, false, fmt.Errorf("redis: api token %q: %w", id, store.ErrNotFound)
	}
	vals, err := scriptTokenRevoke.Run(ctx, s.c, []string{s.keys.apiToken(id)}, ms(at)).Slice()
	if errors.Is(err, goredis.Nil) {
		return store.APIToken{}, false, fmt.Errorf("redis: api token %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.APIToken{}, false, fmt.Errorf("redis: revoke api token %q: %w", id, err)
	}
	if len(vals) != 4 {
		return store.APIToken{}, false, fmt.Errorf("redis: revoke api token %q: unexpected reply of %d values", id, len(vals))
	}
	set, _ := vals[3].(int64)
	t, err = decodeAPIToken(id, vals[:3])
	return t, set == 1, err
}

// TouchAPIToken moves LastUsedAt forward to at (never backward).
func (s *Store) TouchAPIToken(ctx context.Context, id string, at time.Time) error {
	if id == "" {
		return fmt.Errorf("redis: api token %q: %w", id, store.ErrNotFound)
	}
	n, err := scriptTokenTouch.Run(ctx, s.c, []string{s.keys.apiToken(id)}, ms(at)).Int64()
	if err != nil {
		return fmt.Errorf("redis: touch api token %q: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("redis: api token %q: %w", id, store.ErrNotFound)
	}
	return nil
}
