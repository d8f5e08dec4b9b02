package workload

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/store"
)

// API tokens are for systems without OIDC. A token is
//
//	jit_<id>_<secret>
//
// where id is the token's public id ("tok-" and 10 characters, as store.NewID makes) and secret is 32 bytes
// from crypto/rand, base64url without padding (43 characters). The prefix makes a leaked token easy to
// recognise (secret scanners, log scrubbers); the id lets the server find the record without an index on the
// hash, and lets people revoke a token by a name that is not secret.
//
// Only hex(sha256(token)) is stored. A fast hash is right here, unlike for passwords: the secret has 256 bits
// of entropy, so no amount of hashing speed makes guessing it feasible, and a slow hash (bcrypt, argon2)
// would only let anyone holding a bad token burn the server's CPU on every API call. The stored hash is
// compared in constant time.
const (
	TokenPrefix = "jit_"

	tokenSecretBytes = 32
	tokenIDPrefix    = "tok"
)

// TouchInterval is the least time between two last-used updates of a token: a busy pipeline must not turn
// every API call into a store write.
const TouchInterval = time.Minute

// TokenStore keeps API token records. bolt.Store and redis.Store implement it. Error contract:
// CreateAPIToken returns store.ErrConflict when the id exists; GetAPIToken, RevokeAPIToken and TouchAPIToken
// return store.ErrNotFound for an unknown id. RevokeAPIToken sets RevokedAt only the first time and returns
// the record as stored, and whether this call was the one that revoked it. TouchAPIToken only ever moves LastUsedAt forward. ListAPITokens returns every token,
// revoked ones included, oldest first.
type TokenStore interface {
	CreateAPIToken(ctx context.Context, t store.APIToken) error
	GetAPIToken(ctx context.Context, id string) (store.APIToken, error)
	ListAPITokens(ctx context.Context) ([]store.APIToken, error)
	RevokeAPIToken(ctx context.Context, id string, at time.Time) (t store.APIToken, revoked bool, err error)
	TouchAPIToken(ctx context.Context, id string, at time.Time) error
}

// TokenInfo is what may be shown about a token: everything but the secret and its hash.
type TokenInfo struct {
	ID         string
	Owner      string
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never
	LastUsedAt time.Time // zero: never used; at most TouchInterval stale
	RevokedAt  time.Time // zero: not revoked
}

// Revoked reports whether the token was revoked.
func (t TokenInfo) Revoked() bool { return !t.RevokedAt.IsZero() }

// Expired reports whether the token has an expiry and it has passed at now.
func (t TokenInfo) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)
}

func infoOf(r store.APIToken) TokenInfo {
	return TokenInfo{ID: r.ID, Owner: r.Owner, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, LastUsedAt: r.LastUsedAt, RevokedAt: r.RevokedAt}
}

// Audit event types of token management (the token itself never appears in an event).
const (
	EventAPITokenCreated = "api-token-created"
	EventAPITokenRevoked = "api-token-revoked"
)

// TokensOptions configures Tokens. The zero value is usable.
type TokensOptions struct {
	Now func() time.Time // default time.Now
	// Audit, when set, records token creation and revocation (for example by committing the event to the
	// store's hash-chained audit log). A creation whose event cannot be recorded is undone (the token is
	// revoked before anyone has seen it) and Create fails: no token works without an audit trail.
	Audit func(ctx context.Context, e store.AuditEvent) error
	// Actor is the audit events' actor; default "system:tokens".
	Actor string
	// AuditDetails are added to every audit event (for example the operating-system user of the CLI).
	AuditDetails map[string]string
}

// Tokens creates, lists, revokes and verifies jitbot API tokens. It implements Authenticator (and
// Recognizer: it handles only credentials starting with TokenPrefix).
type Tokens struct {
	st   TokenStore
	now  func() time.Time
	opts TokensOptions
}

// NewTokens returns Tokens over st.
func NewTokens(st TokenStore, opts TokensOptions) *Tokens {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if opts.Actor == "" {
		opts.Actor = "system:tokens"
	}
	return &Tokens{st: st, now: now, opts: opts}
}

func (t *Tokens) audit(ctx context.Context, typ string, rec store.APIToken, at time.Time) error {
	if t.opts.Audit == nil {
		return nil
	}
	details := map[string]string{"token_id": rec.ID, "owner": rec.Owner}
	if !rec.ExpiresAt.IsZero() {
		details["expires_at"] = rec.ExpiresAt.UTC().Format(time.RFC3339)
	}
	for k, v := range t.opts.AuditDetails {
		if _, taken := details[k]; !taken {
			details[k] = v
		}
	}
	if err := t.opts.Audit(ctx, store.AuditEvent{Type: typ, At: at, Actor: t.opts.Actor, Details: details}); err != nil {
		return fmt.Errorf("workload: audit %s of token %s: %w", typ, rec.ID, err)
	}
	return nil
}

// CreateOptions are the optional properties of a new token.
type CreateOptions struct {
	// TTL, when positive, makes the token expire TTL after creation. Zero: the token lives until revoked.
	TTL time.Duration
}

// ownerPattern is the policy's name syntax (policy/decode.go nameRE), because a workload refers to its tokens
// by owner (api_token_owner): a token whose owner no policy can name would be useless.
var ownerPattern = regexp.MustCompile(`\A[a-z0-9][a-z0-9_.-]{0,62}\z`)

// ErrInvalidOwner: the owner is not a policy name (lowercase letters, digits, - _ and ., starting with a
// letter or digit, at most 63).
var ErrInvalidOwner = errors.New("workload: invalid token owner")

// Create makes a token for owner and returns its plaintext, which is shown once and never stored.
func (t *Tokens) Create(ctx context.Context, owner string) (plaintext string, info TokenInfo, err error) {
	return t.CreateWith(ctx, owner, CreateOptions{})
}

// CreateWith is Create with options.
func (t *Tokens) CreateWith(ctx context.Context, owner string, opts CreateOptions) (plaintext string, info TokenInfo, err error) {
	if !ownerPattern.MatchString(owner) {
		return "", TokenInfo{}, fmt.Errorf("%w %q: use the name a policy workload gives as api_token_owner: 1-63 lowercase letters, digits and - _ . (starting with a letter or digit), e.g. deploy-bot", ErrInvalidOwner, owner)
	}
	if opts.TTL < 0 {
		return "", TokenInfo{}, fmt.Errorf("workload: token TTL %s is negative", opts.TTL)
	}
	var secret [tokenSecretBytes]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", TokenInfo{}, fmt.Errorf("workload: read random bytes: %w", err)
	}
	now := t.now().UTC().Truncate(time.Millisecond)
	rec := store.APIToken{ID: store.NewID(tokenIDPrefix), Owner: owner, CreatedAt: now}
	if opts.TTL > 0 {
		rec.ExpiresAt = now.Add(opts.TTL)
	}
	plaintext = TokenPrefix + rec.ID + "_" + base64.RawURLEncoding.EncodeToString(secret[:])
	rec.Hash = hashToken(plaintext)
	if err := t.st.CreateAPIToken(ctx, rec); err != nil {
		return "", TokenInfo{}, fmt.Errorf("workload: store token: %w", err)
	}
	if err := t.audit(ctx, EventAPITokenCreated, rec, now); err != nil {
		// Nobody has seen the plaintext yet; revoke so that an unaudited token never works.
		if _, _, rerr := t.st.RevokeAPIToken(context.WithoutCancel(ctx), rec.ID, now); rerr != nil {
			return "", TokenInfo{}, fmt.Errorf("%w (and revoking the unaudited token %s failed: %v; revoke it by hand)", err, rec.ID, rerr)
		}
		return "", TokenInfo{}, fmt.Errorf("%w; the token was revoked, nothing was handed out", err)
	}
	return plaintext, infoOf(rec), nil
}

// Get returns one token's information; the error wraps store.ErrNotFound for an unknown id.
func (t *Tokens) Get(ctx context.Context, id string) (TokenInfo, error) {
	rec, err := t.st.GetAPIToken(ctx, id)
	if err != nil {
		return TokenInfo{}, fmt.Errorf("workload: token %q: %w", id, err)
	}
	return infoOf(rec), nil
}

// List returns every token, revoked and expired ones too, oldest first.
func (t *Tokens) List(ctx context.Context) ([]TokenInfo, error) {
	recs, err := t.st.ListAPITokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("workload: list tokens: %w", err)
	}
	out := make([]TokenInfo, len(recs))
	for i, r := range recs {
		out[i] = infoOf(r)
	}
	return out, nil
}

// Revoke revokes the token with this id, effective for every later Authenticate on every replica (the
// record is read on each call). Revoking a revoked token is not an error and keeps the first revocation
// time. The error wraps store.ErrNotFound for an unknown id.
func (t *Tokens) Revoke(ctx context.Context, id string) error {
	_, err := t.RevokeInfo(ctx, id)
	return err
}

// RevokeInfo is Revoke returning the token as stored afterwards (its RevokedAt is the first revocation).
// The revocation is audited once, when it happens; if the audit event cannot be recorded the token stays
// revoked and the error says so.
func (t *Tokens) RevokeInfo(ctx context.Context, id string) (TokenInfo, error) {
	now := t.now().UTC().Truncate(time.Millisecond)
	rec, revoked, err := t.st.RevokeAPIToken(ctx, id, now)
	if err != nil {
		return TokenInfo{}, fmt.Errorf("workload: revoke token %q: %w", id, err)
	}
	if revoked {
		if err := t.audit(ctx, EventAPITokenRevoked, rec, now); err != nil {
			return infoOf(rec), fmt.Errorf("%w (the token is revoked)", err)
		}
	}
	return infoOf(rec), nil
}

// Recognizes reports whether bearer has the shape of a jitbot API token.
func (t *Tokens) Recognizes(bearer string) bool { return strings.HasPrefix(bearer, TokenPrefix) }

// Authenticate verifies an API token. Refusals: malformed (not a jitbot token), unknown_token (no such id,
// or the secret does not match: the two are not told apart), revoked_token, expired, store_unavailable.
func (t *Tokens) Authenticate(ctx context.Context, bearer string) (Identity, error) {
	id, ok := parseToken(bearer)
	if !ok {
		return Identity{}, refuse(ReasonMalformed, "not a jitbot API token (they look like %s<id>_<secret>)", TokenPrefix)
	}
	rec, err := t.st.GetAPIToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return Identity{}, refuse(ReasonUnknownToken, "API token %s does not exist; create one with `jitbot tokens create --owner NAME`", id)
	}
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Str("token_id", id).Msg("api token lookup failed")
		return Identity{}, refuse(ReasonStoreUnavailable, "API token %s could not be checked because the store is unavailable; retry later", id)
	}
	want, err := hex.DecodeString(rec.Hash)
	got := sha256.Sum256([]byte(bearer))
	if err != nil || subtle.ConstantTimeCompare(want, got[:]) != 1 {
		// The id exists but the secret is wrong: someone holds a token id (not secret) and is guessing.
		return Identity{}, refuse(ReasonUnknownToken, "API token %s does not exist; create one with `jitbot tokens create --owner NAME`", id)
	}
	now := t.now()
	if !rec.RevokedAt.IsZero() {
		return Identity{}, refuse(ReasonRevokedToken, "API token %s (owner %s) was revoked at %s; create a new one", id, rec.Owner, rec.RevokedAt.UTC().Format(time.RFC3339))
	}
	if !rec.ExpiresAt.IsZero() && !now.Before(rec.ExpiresAt) {
		return Identity{}, refuse(ReasonExpired, "API token %s (owner %s) expired at %s; create a new one", id, rec.Owner, rec.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if now.Sub(rec.LastUsedAt) >= TouchInterval {
		// Last-used is bookkeeping: a failed write must not refuse a valid token.
		if err := t.st.TouchAPIToken(ctx, id, now.UTC().Truncate(time.Millisecond)); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Str("token_id", id).Msg("api token last-used update failed")
		}
	}
	return Identity{Method: MethodAPIToken, Subject: rec.ID, Owner: rec.Owner, Expiry: rec.ExpiresAt}, nil
}

// parseToken returns the id of a well-formed token.
func parseToken(s string) (id string, ok bool) {
	rest, found := strings.CutPrefix(s, TokenPrefix)
	if !found {
		return "", false
	}
	id, secret, found := strings.Cut(rest, "_")
	if !found || !strings.HasPrefix(id, tokenIDPrefix+"-") || len(id) != len(tokenIDPrefix)+11 {
		return "", false
	}
	for _, c := range id[len(tokenIDPrefix)+1:] {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return "", false
		}
	}
	raw, err := base64.RawURLEncoding.DecodeString(secret)
	if err != nil || len(raw) != tokenSecretBytes {
		return "", false
	}
	return id, true
}

func hashToken(plaintext string) string {
	sum := sha256.Sum256([]byte(plaintext))
	return hex.EncodeToString(sum[:])
}
