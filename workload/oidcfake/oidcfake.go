// Package oidcfake is a local OIDC issuer for tests and the playground: it serves discovery
// (/.well-known/openid-configuration) and a JWKS on loopback HTTP with keys generated at start, signs ID
// tokens with any claims, rotates keys, and produces each kind of bad token a verifier must refuse.
//
// It also emulates GitHub Actions' token endpoint (ACTIONS_ID_TOKEN_REQUEST_URL), so a job client can be
// tested end to end:
//
//	iss, _ := oidcfake.New("127.0.0.1:0", oidcfake.Options{})
//	defer iss.Close()
//	os.Setenv("ACTIONS_ID_TOKEN_REQUEST_URL", iss.GitHubTokenURL())
//	os.Setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", iss.RequestToken())
//
// Nothing here uses *testing.T: the same Issuer runs inside `jitbot dev`.
//
// Key rotation: Rotate makes a new signing key (new kid) and keeps publishing the previous one, as real issuers
// do during a rollover, so tokens signed before one Rotate still verify; after a second Rotate the oldest key
// is gone from the JWKS and its tokens fail once the verifier re-fetches the key set.
package oidcfake

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DefaultAudience is the aud of tokens when Options.Audience is empty.
const DefaultAudience = "jitbot"

// Options configures an Issuer. The zero value is usable.
type Options struct {
	Audience  string                  // default DefaultAudience
	Algorithm jose.SignatureAlgorithm // RS256 (default) or ES256
	TTL       time.Duration           // token lifetime; default 5 minutes (GitHub's)
	Now       func() time.Time        // default time.Now; sets iat/nbf/exp
	// Claims are the claims of tokens handed out by the GitHub token endpoint (default:
	// GitHubActions("acme/app", "refs/heads/main", "production")).
	Claims map[string]any
	// RequestToken is the bearer the GitHub token endpoint requires (default: random).
	RequestToken string
}

// Issuer is a running fake issuer.
type Issuer struct {
	url  string
	opts Options
	ln   net.Listener
	srv  *http.Server

	mu      sync.Mutex
	keys    []*signingKey // keys[0] signs; every key is published
	foreign *signingKey   // never published: WrongKey and UnknownKeyID sign with it (made once: RSA is slow)

	available      atomic.Bool
	discoveryCalls atomic.Int64
	jwksCalls      atomic.Int64
}

type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

// New starts an issuer listening on addr ("127.0.0.1:0" picks a free port). Its issuer URL is
// http://<listen address>. Close stops it.
func New(addr string, opts Options) (*Issuer, error) {
	if opts.Audience == "" {
		opts.Audience = DefaultAudience
	}
	if opts.Algorithm == "" {
		opts.Algorithm = jose.RS256
	}
	if opts.Algorithm != jose.RS256 && opts.Algorithm != jose.ES256 {
		return nil, fmt.Errorf("oidcfake: algorithm %s not supported (RS256 or ES256)", opts.Algorithm)
	}
	if opts.TTL <= 0 {
		opts.TTL = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RequestToken == "" {
		opts.RequestToken = randomHex(16)
	}
	key, err := newKey(opts.Algorithm)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("oidcfake: listen: %w", err)
	}
	i := &Issuer{url: "http://" + ln.Addr().String(), opts: opts, ln: ln, keys: []*signingKey{key}}
	if opts.Claims == nil {
		i.opts.Claims = GitHubActions("acme/app", "refs/heads/main", "production")
	}
	i.available.Store(true)
	i.srv = &http.Server{Handler: i.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = i.srv.Serve(ln) }()
	return i, nil
}

// Close stops the server.
func (i *Issuer) Close() error { return i.srv.Close() }

// URL is the issuer URL (the iss of its tokens).
func (i *Issuer) URL() string { return i.url }

// Audience is the default aud of its tokens.
func (i *Issuer) Audience() string { return i.opts.Audience }

// RequestToken is the bearer the GitHub token endpoint wants (ACTIONS_ID_TOKEN_REQUEST_TOKEN).
func (i *Issuer) RequestToken() string { return i.opts.RequestToken }

// GitHubTokenURL is the URL to put in ACTIONS_ID_TOKEN_REQUEST_URL. Like GitHub's it already has a query, so
// clients append "&audience=...".
func (i *Issuer) GitHubTokenURL() string { return i.url + "/github/token?api-version=2.0" }

// SetAvailable makes every endpoint answer 503 (false) or serve normally (true): an issuer that is down.
func (i *Issuer) SetAvailable(up bool) { i.available.Store(up) }

// DiscoveryRequests and JWKSRequests count the requests served so far (tests check that a verifier caches).
func (i *Issuer) DiscoveryRequests() int64 { return i.discoveryCalls.Load() }
func (i *Issuer) JWKSRequests() int64      { return i.jwksCalls.Load() }

// KeyID is the kid of the current signing key.
func (i *Issuer) KeyID() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.keys[0].kid
}

// Rotate makes a new signing key and returns its kid. The previous key stays published until the next Rotate.
func (i *Issuer) Rotate() string {
	k, err := newKey(i.opts.Algorithm)
	if err != nil {
		panic("oidcfake: " + err.Error())
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = []*signingKey{k, i.keys[0]}
	return k.kid
}

// Handler serves discovery, JWKS and the GitHub token endpoint (New serves it; exported to mount elsewhere).
func (i *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		i.discoveryCalls.Add(1)
		if !i.available.Load() {
			http.Error(w, "issuer unavailable", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, map[string]any{
			"issuer":                                i.url,
			"jwks_uri":                              i.url + "/.well-known/jwks",
			"subject_types_supported":               []string{"public", "pairwise"},
			"response_types_supported":              []string{"id_token"},
			"id_token_signing_alg_values_supported": []string{string(i.opts.Algorithm)},
			"claims_supported":                      []string{"sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "repository", "environment", "workflow"},
			"scopes_supported":                      []string{"openid"},
		})
	})
	mux.HandleFunc("GET /.well-known/jwks", func(w http.ResponseWriter, r *http.Request) {
		i.jwksCalls.Add(1)
		if !i.available.Load() {
			http.Error(w, "issuer unavailable", http.StatusServiceUnavailable)
			return
		}
		i.mu.Lock()
		var set jose.JSONWebKeySet
		for _, k := range i.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
		}
		i.mu.Unlock()
		writeJSON(w, set)
	})
	// GitHub Actions: GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD with "Authorization: bearer
	// $ACTIONS_ID_TOKEN_REQUEST_TOKEN" answers {"count": N, "value": "<jwt>"}.
	mux.HandleFunc("GET /github/token", func(w http.ResponseWriter, r *http.Request) {
		if !i.available.Load() {
			http.Error(w, "issuer unavailable", http.StatusServiceUnavailable)
			return
		}
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "bearer") || subtle.ConstantTimeCompare([]byte(tok), []byte(i.opts.RequestToken)) != 1 {
			http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
			return
		}
		claims := maps.Clone(i.opts.Claims)
		if aud := r.URL.Query().Get("audience"); aud != "" {
			claims["aud"] = aud
		}
		jwt := i.Sign(claims)
		writeJSON(w, map[string]any{"count": len(jwt), "value": jwt})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// TokenOption makes SignWith produce a particular (usually bad) token.
type TokenOption func(*tokenSpec)

type tokenSpec struct {
	claims   map[string]any
	now      int64  // unix seconds of the issuer's clock
	wrongKey bool   // sign with a key the issuer does not publish, under the current kid
	kid      string // override the kid header ("" keeps the signing key's)
	corrupt  bool
	embedJWK bool
}

// WrongKey signs with a fresh key the issuer never published, under the current kid (a forgery).
func WrongKey() TokenOption { return func(s *tokenSpec) { s.wrongKey = true } }

// UnknownKeyID signs with a fresh key under a kid the issuer does not publish.
func UnknownKeyID() TokenOption {
	return func(s *tokenSpec) { s.wrongKey, s.kid = true, "unknown-"+randomHex(4) }
}

// KeyID sets the kid header (the token is still signed with the key that would sign it otherwise).
func KeyID(kid string) TokenOption { return func(s *tokenSpec) { s.kid = kid } }

// EmbedJWK puts the signing key's public half in the token's "jwk" header: a verifier must ignore it.
func EmbedJWK() TokenOption { return func(s *tokenSpec) { s.embedJWK = true } }

// BadSignature signs correctly, then flips bits of the signature.
func BadSignature() TokenOption { return func(s *tokenSpec) { s.corrupt = true } }

// Audience sets aud (one value is a string, several a list).
func Audience(aud ...string) TokenOption {
	return func(s *tokenSpec) {
		if len(aud) == 1 {
			s.claims["aud"] = aud[0]
		} else {
			s.claims["aud"] = aud
		}
	}
}

// IssuerURL sets iss (a token claiming to come from another issuer, signed with this issuer's key).
func IssuerURL(iss string) TokenOption { return func(s *tokenSpec) { s.claims["iss"] = iss } }

// Expired makes the token expire an hour before now.
func Expired() TokenOption {
	return func(s *tokenSpec) {
		now := s.now
		s.claims["iat"], s.claims["nbf"], s.claims["exp"] = now-7200, now-7200, now-3600
	}
}

// ExpiresIn sets exp to now+d (negative: in the past) and leaves iat/nbf at now.
func ExpiresIn(d time.Duration) TokenOption {
	return func(s *tokenSpec) { s.claims["exp"] = s.now + int64(d/time.Second) }
}

// NotYetValid makes nbf and iat an hour after now.
func NotYetValid() TokenOption {
	return func(s *tokenSpec) {
		now := s.now
		s.claims["iat"], s.claims["nbf"], s.claims["exp"] = now+3600, now+3600, now+7200
	}
}

// Without removes claims (after the defaults are filled in), e.g. Without("exp") or Without("environment").
func Without(names ...string) TokenOption {
	return func(s *tokenSpec) {
		for _, n := range names {
			delete(s.claims, n)
		}
	}
}

// Sign signs claims with the current key. Missing registered claims get defaults: iss (this issuer), aud
// (Options.Audience), sub, iat and nbf (now), exp (now+TTL) and a random jti. It panics if signing fails
// (the keys are generated locally, so it cannot).
func (i *Issuer) Sign(claims map[string]any) string { return i.SignWith(claims) }

// SignWith is Sign with options that bend the token (see the TokenOption functions).
func (i *Issuer) SignWith(claims map[string]any, opts ...TokenOption) string {
	now := i.opts.Now().Unix()
	c := map[string]any{
		"iss": i.url, "aud": i.opts.Audience, "sub": "fake-subject",
		"iat": now, "nbf": now, "exp": now + int64(i.opts.TTL/time.Second), "jti": randomHex(8),
	}
	maps.Copy(c, claims)
	spec := &tokenSpec{claims: c, now: now}
	for _, o := range opts {
		o(spec)
	}
	i.mu.Lock()
	key, kid := i.keys[0], i.keys[0].kid
	if spec.wrongKey {
		if i.foreign == nil {
			k, err := newKey(key.alg)
			if err != nil {
				i.mu.Unlock()
				panic("oidcfake: " + err.Error())
			}
			i.foreign = k
		}
		key = i.foreign
	}
	i.mu.Unlock()
	if spec.kid != "" {
		kid = spec.kid
	}
	jwt, err := sign(key, kid, spec.claims, spec.embedJWK)
	if err != nil {
		panic("oidcfake: " + err.Error())
	}
	if spec.corrupt {
		jwt = corruptSignature(jwt)
	}
	return jwt
}

func sign(k *signingKey, kid string, claims map[string]any, embedJWK bool) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	key := jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: kid, Algorithm: string(k.alg)}}
	if embedJWK {
		// go-jose embeds the key only for a raw key; the kid goes in as an extra header.
		opts.EmbedJWK = true
		opts.WithHeader(jose.HeaderKey("kid"), kid)
		key.Key = k.priv
	}
	signer, err := jose.NewSigner(key, opts)
	if err != nil {
		return "", err
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

func corruptSignature(jwt string) string {
	parts := strings.Split(jwt, ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) == 0 {
		panic("oidcfake: cannot corrupt signature")
	}
	sig[len(sig)/2] ^= 0xff
	parts[2] = base64.RawURLEncoding.EncodeToString(sig)
	return strings.Join(parts, ".")
}

func newKey(alg jose.SignatureAlgorithm) (*signingKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		err = errors.New("unsupported algorithm " + string(alg))
	}
	if err != nil {
		return nil, fmt.Errorf("oidcfake: generate key: %w", err)
	}
	return &signingKey{kid: randomHex(8), alg: alg, priv: priv}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("oidcfake: crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// GitHubActions returns the claims GitHub Actions puts in a job's ID token (see GitHub's "About security
// hardening with OpenID Connect"), for a run of repository (owner/name) on ref in environment ("" for none).
func GitHubActions(repository, ref, environment string) map[string]any {
	owner, _, _ := strings.Cut(repository, "/")
	sub := "repo:" + repository + ":ref:" + ref
	if environment != "" {
		sub = "repo:" + repository + ":environment:" + environment
	}
	c := map[string]any{
		"sub":                   sub,
		"repository":            repository,
		"repository_id":         "123456789",
		"repository_owner":      owner,
		"repository_owner_id":   "987654",
		"repository_visibility": "private",
		"ref":                   ref,
		"ref_type":              "branch",
		"sha":                   "0123456789abcdef0123456789abcdef01234567",
		"workflow":              "deploy",
		"workflow_ref":          repository + "/.github/workflows/deploy.yml@" + ref,
		"job_workflow_ref":      repository + "/.github/workflows/deploy.yml@" + ref,
		"event_name":            "push",
		"run_id":                "4242424242",
		"run_number":            "17",
		"run_attempt":           "1",
		"actor":                 "octocat",
		"actor_id":              "583231",
		"runner_environment":    "github-hosted",
	}
	if environment != "" {
		c["environment"] = environment
	}
	return c
}

// GitLabCI returns the claims of a GitLab CI ID token (id_tokens:) for a pipeline of project (group/name) on
// ref in environment ("" for none).
func GitLabCI(project, ref, environment string) map[string]any {
	ns, _, _ := strings.Cut(project, "/")
	c := map[string]any{
		"sub":                   "project_path:" + project + ":ref_type:branch:ref:" + ref,
		"namespace_id":          "72",
		"namespace_path":        ns,
		"project_id":            "20",
		"project_path":          project,
		"user_id":               "1",
		"user_login":            "sample-user",
		"user_email":            "sample-user@example.com",
		"pipeline_id":           "574",
		"pipeline_source":       "push",
		"job_id":                "302",
		"ref":                   ref,
		"ref_type":              "branch",
		"ref_path":              "refs/heads/" + ref,
		"ref_protected":         "true",
		"runner_id":             "1",
		"runner_environment":    "gitlab-hosted",
		"sha":                   "714a629c0b401fdce83e847fc9589983fc6f46bc",
		"ci_config_ref_uri":     "gitlab.example.com/" + project + "//.gitlab-ci.yml@refs/heads/" + ref,
		"ci_config_sha":         "714a629c0b401fdce83e847fc9589983fc6f46bc",
		"project_visibility":    "private",
		"deployment_tier":       "production",
		"environment_protected": "true",
	}
	if environment != "" {
		c["environment"] = environment
	}
	return c
}
