package bolt

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/jitbot/jitbot/store"
)

// API tokens (see store.APIToken) live in their own bucket, created on the first write so that data files
// from before API tokens open unchanged:
//
//	api_tokens   id -> APIToken JSON
//
// There are few tokens (one per system that calls the API), so listing walks the bucket.
var bAPITokens = []byte("api_tokens")

// CreateAPIToken stores a new token; store.ErrConflict if the id exists.
func (s *Store) CreateAPIToken(ctx context.Context, t store.APIToken) error {
	if t.ID == "" || t.Hash == "" {
		return fmt.Errorf("bolt: create api token: empty id or hash: %w", store.ErrInvalid)
	}
	return s.update(ctx, "create api token", func(tx *bbolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(bAPITokens)
		if err != nil {
			return err
		}
		if bk.Get([]byte(t.ID)) != nil {
			return fmt.Errorf("api token %q exists: %w", t.ID, store.ErrConflict)
		}
		return putAPIToken(bk, t)
	})
}

func putAPIToken(bk *bbolt.Bucket, t store.APIToken) error {
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode api token %q: %w", t.ID, err)
	}
	return bk.Put([]byte(t.ID), data)
}

func loadAPIToken(bk *bbolt.Bucket, id string) (store.APIToken, error) {
	var t store.APIToken
	var data []byte
	if bk != nil && id != "" {
		data = bk.Get([]byte(id))
	}
	if data == nil {
		return t, fmt.Errorf("api token %q: %w", id, store.ErrNotFound)
	}
	if err := json.Unmarshal(data, &t); err != nil {
		return t, fmt.Errorf("decode api token %q: %w", id, err)
	}
	return t, nil
}

// GetAPIToken returns the token with id, or store.ErrNotFound.
func (s *Store) GetAPIToken(ctx context.Context, id string) (store.APIToken, error) {
	var t store.APIToken
	err := s.view(ctx, "get api token", func(tx *bbolt.Tx) error {
		var err error
		t, err = loadAPIToken(tx.Bucket(bAPITokens), id)
		return err
	})
	return t, err
}

// ListAPITokens returns every token, oldest first (ties by id).
func (s *Store) ListAPITokens(ctx context.Context) ([]store.APIToken, error) {
	var out []store.APIToken
	err := s.view(ctx, "list api tokens", func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bAPITokens)
		if bk == nil {
			return nil
		}
		return bk.ForEach(func(k, v []byte) error {
			var t store.APIToken
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("decode api token %q: %w", k, err)
			}
			out = append(out, t)
			return nil
		})
	})
	slices.SortFunc(out, func(a, b store.APIToken) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return out, err
}

// RevokeAPIToken marks the token revoked at at, unless it already is (the first revocation time stays);
// revoked reports whether this call revoked it.
func (s *Store) RevokeAPIToken(ctx context.Context, id string, at time.Time) (t store.APIToken, revoked bool, err error) {
	err = s.update(ctx, "revoke api token", func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bAPITokens)
		var err error
		revoked = false // the update may run its function again
		if t, err = loadAPIToken(bk, id); err != nil {
			return err
		}
		if !t.RevokedAt.IsZero() {
			return nil
		}
		t.RevokedAt = at
		revoked = true
		return putAPIToken(bk, t)
	})
	return t, revoked && err == nil, err
}

// TouchAPIToken moves LastUsedAt forward to at (never backward).
func (s *Store) TouchAPIToken(ctx context.Context, id string, at time.Time) error {
	return s.update(ctx, "touch api token", func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bAPITokens)
		t, err := loadAPIToken(bk, id)
		if err != nil {
			return err
		}
		if !at.After(t.LastUsedAt) {
			return nil
		}
		t.LastUsedAt = at
		return putAPIToken(bk, t)
	})
}
