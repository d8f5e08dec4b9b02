package workload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// keySet is the oidc.KeySet jitbot verifies with. It does what go-oidc's RemoteKeySet does (cache the
// issuer's JWKS, re-fetch when a token names a kid not in the cache), with three differences that matter for
// a server anyone can send tokens to:
//
//   - RemoteKeySet re-fetches on every signature failure, even for a known kid, so a stream of forged tokens
//     becomes a stream of requests to the issuer (and gets jitbot rate-limited by it). Here a failure with a
//     known kid is a bad signature, and fetches triggered by unknown kids are at most one per refreshMin.
//   - The cached set is re-fetched once it is older than maxAge, so keys the issuer retired stop verifying.
//   - go-oidc flattens key set errors into strings; the outcome is reported through a verifyNote in ctx so
//     that "issuer unreachable" (retry later) is not mistaken for "bad signature" (the token is bad).
type keySet struct {
	url        string
	client     *http.Client
	now        func() time.Time
	refreshMin time.Duration
	maxAge     time.Duration

	mu        sync.Mutex
	keys      []jose.JSONWebKey
	fetchedAt time.Time // last successful fetch; zero: never
	triedAt   time.Time // last fetch attempt
	inflight  chan struct{}
	lastErr   error
}

func newKeySet(url string, client *http.Client, now func() time.Time, refreshMin, maxAge time.Duration) *keySet {
	return &keySet{url: url, client: client, now: now, refreshMin: refreshMin, maxAge: maxAge}
}

// verifyNote carries the outcome of VerifySignature out through go-oidc, which does not wrap errors.
type verifyNote struct{ stage string }

type verifyNoteKey struct{}

const (
	stageUnavailable = "keys_unavailable"
	stageUnknownKey  = "unknown_key"
	stageBadSig      = "bad_signature"
	stageVerified    = "signature_verified"
)

func note(ctx context.Context, stage string) {
	if n, ok := ctx.Value(verifyNoteKey{}).(*verifyNote); ok {
		n.stage = stage
	}
}

var errKeysUnavailable = errors.New("key set unavailable")

// VerifySignature implements oidc.KeySet. The IDTokenVerifier has already checked the algorithm.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(jwt, allAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, errors.New("malformed jws")
	}
	kid := jws.Signatures[0].Header.KeyID

	keys, fresh, known := k.cached(kid)
	if !known || !fresh {
		refreshed, err := k.refresh(ctx, !known)
		switch {
		case err == nil:
			keys = refreshed
		case len(keys) == 0 || !known:
			note(ctx, stageUnavailable)
			return nil, err
		}
		// A failed refresh of a stale set for a known kid keeps the cached keys.
	}
	tried := false
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		tried = true
		if payload, err := jws.Verify(&keys[i]); err == nil {
			note(ctx, stageVerified)
			return payload, nil
		}
	}
	if !tried {
		note(ctx, stageUnknownKey)
		return nil, errors.New("no key with this kid")
	}
	note(ctx, stageBadSig)
	return nil, errors.New("signature does not verify")
}

// cached returns the cached keys, whether they are younger than maxAge, and whether one has this kid (any
// key counts for a token without a kid).
func (k *keySet) cached(kid string) (keys []jose.JSONWebKey, fresh, known bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	keys = k.keys
	fresh = !k.fetchedAt.IsZero() && k.now().Sub(k.fetchedAt) < k.maxAge
	for _, key := range keys {
		if kid == "" || key.KeyID == kid {
			known = true
			break
		}
	}
	return keys, fresh, known
}

// refresh fetches the key set, unless one was fetched (or tried) less than refreshMin ago, in which case it
// returns the cached keys (or the last error). Concurrent callers share one fetch; each waits with its own ctx.
func (k *keySet) refresh(ctx context.Context, unknownKid bool) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	if k.inflight == nil {
		if !k.triedAt.IsZero() && k.now().Sub(k.triedAt) < k.refreshMin {
			keys, err := k.keys, k.lastErr
			k.mu.Unlock()
			if err != nil && (unknownKid || len(keys) == 0) {
				return nil, err
			}
			return keys, nil
		}
		k.inflight = make(chan struct{})
		k.triedAt = k.now()
		go k.fetch(k.inflight)
	}
	wait := k.inflight
	k.mu.Unlock()
	select {
	case <-wait:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", errKeysUnavailable, ctx.Err())
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.lastErr != nil {
		return nil, k.lastErr
	}
	return k.keys, nil
}

// fetch runs detached from any one caller's ctx, so a caller that gives up does not fail the others.
func (k *keySet) fetch(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	keys, err := k.get(ctx)
	k.mu.Lock()
	if err == nil {
		k.keys, k.fetchedAt, k.lastErr = keys, k.now(), nil
	} else {
		k.lastErr = err
	}
	k.inflight = nil
	k.mu.Unlock()
	close(done)
}

func (k *keySet) get(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: bad jwks_uri", errKeysUnavailable)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errKeysUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: jwks_uri answered %s", errKeysUnavailable, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read jwks: %v", errKeysUnavailable, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("%w: jwks larger than %d bytes", errKeysUnavailable, maxJWKSBytes)
	}
	return parseJWKS(body)
}

// parseJWKS keeps the public signing keys jitbot can use and skips the rest (unknown key types, algorithms
// or uses), as RFC 7517 section 5 asks, instead of failing on the whole set.
func parseJWKS(body []byte) ([]jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%w: jwks is not JSON: %v", errKeysUnavailable, err)
	}
	var keys []jose.JSONWebKey
	for _, r := range raw.Keys {
		var meta struct {
			Alg string `json:"alg"`
			Use string `json:"use"`
		}
		if json.Unmarshal(r, &meta) != nil {
			continue
		}
		if meta.Use != "" && meta.Use != "sig" {
			continue
		}
		if meta.Alg != "" && !isAllowedAlg(meta.Alg) {
			continue
		}
		var key jose.JSONWebKey
		if err := json.Unmarshal(r, &key); err != nil || !key.Valid() {
			continue
		}
		if !key.IsPublic() {
			key = key.Public()
			if !key.Valid() {
				continue
			}
		}
		keys = append(keys, key)
	}
	return keys, nil
}

func isAllowedAlg(a string) bool {
	for _, x := range allAlgs {
		if string(x) == a {
			return true
		}
	}
	return false
}
