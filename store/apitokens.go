package store

import "time"

// APIToken is the stored half of a jitbot API token (see package workload): everything except the secret.
// Hash is hex(sha256(plaintext)); the plaintext is shown once at creation and never stored.
//
// Stores that keep API tokens (bolt and Redis both do) implement these methods beside Store; the consumer
// (workload.Tokens) owns the interface:
//
//	CreateAPIToken(ctx, t APIToken) error                              // ErrConflict if t.ID exists; ErrInvalid for an empty ID or Hash
//	GetAPIToken(ctx, id string) (APIToken, error)                      // ErrNotFound for an unknown id
//	ListAPITokens(ctx) ([]APIToken, error)                             // every token, revoked ones too, oldest first
//	RevokeAPIToken(ctx, id string, at time.Time) (APIToken, bool, error) // sets RevokedAt once (a second revoke keeps the first time); the bool: this call revoked it; ErrNotFound
//	TouchAPIToken(ctx, id string, at time.Time) error                  // LastUsedAt = max(LastUsedAt, at); ErrNotFound
type APIToken struct {
	ID         string    `json:"id"`
	Owner      string    `json:"owner"`
	Hash       string    `json:"hash"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`   // zero: never
	LastUsedAt time.Time `json:"last_used_at,omitzero"` // zero: never used
	RevokedAt  time.Time `json:"revoked_at,omitzero"`   // zero: not revoked
}
