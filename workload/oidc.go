package workload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/rs/zerolog"
)

// Defaults and bounds of the OIDC verifier.
const (
	// DefaultLeeway is the clock leeway for exp, nbf and iat when IssuerConfig.Leeway is zero. CI tokens live
	// minutes (GitHub's about 5, GitLab's as configured), so a skew beyond 30 s is a broken clock, not
	// something to paper over.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway bounds IssuerConfig.Leeway: a larger one would keep expired tokens alive.
	MaxLeeway = 5 * time.Minute

	// DefaultDiscoveryRetry is how long a failed discovery is remembered before the next attempt, so a flood
	// of calls while an issuer is down does not become a flood of requests to it.
	DefaultDiscoveryRetry = 5 * time.Second
	// DefaultKeyRefreshMin is the least time between two key set fetches triggered by a token whose kid is
	// unknown (a flood of tokens with made-up kids costs the issuer at most one fetch per interval).
	DefaultKeyRefreshMin = 5 * time.Second
	// DefaultKeyMaxAge is how old the cached key set may grow before it is fetched again on the next
	// verification, so keys an issuer retired stop being trusted within about this time. When that fetch
	// fails the cached keys stay in use (they were fetched from the issuer over TLS; refusing every token
	// because the issuer blipped would be an outage, not security).
	DefaultKeyMaxAge = time.Hour

	fetchTimeout = 10 * time.Second
	maxJWKSBytes = 1 << 20
	maxIssLen    = 200
	// MaxTokenBytes bounds the credential: CI ID tokens are 1-2 KiB, and nothing larger is decoded.
	MaxTokenBytes = 16 << 10
)

// IssuerConfig is one trusted OIDC issuer.
type IssuerConfig struct {
	Name      string   // policy name of the issuer, e.g. "github"
	URL       string   // issuer URL (discovery at URL/.well-known/openid-configuration); https, or http on loopback
	Audiences []string // accepted aud values (at least one)
	// Leeway is the clock leeway for exp/nbf/iat: 0 means DefaultLeeway (30 s); at most MaxLeeway (5 min).
	Leeway         time.Duration
	RequiredClaims []string // claims that must be present (not null and not the empty string)
}

// Well-known issuers.
const (
	GitHubActionsIssuer = "https://token.actions.githubusercontent.com"
	GitLabComIssuer     = "https://gitlab.com"
)

// OIDCOptions configures NewOIDC. The zero value is usable.
type OIDCOptions struct {
	HTTPClient *http.Client     // for discovery and JWKS; default: a client with a 10 s timeout
	Now        func() time.Time // default time.Now; drives exp/nbf/iat checks and the refresh intervals

	DiscoveryRetry time.Duration // 0: DefaultDiscoveryRetry
	KeyRefreshMin  time.Duration // 0: DefaultKeyRefreshMin
	KeyMaxAge      time.Duration // 0: DefaultKeyMaxAge
}

// OIDC verifies OIDC ID tokens from the configured issuers. It implements Authenticator and Recognizer (it
// handles credentials shaped like a JWT). Safe for concurrent use.
//
// Discovery happens on the first token of an issuer, not at construction, so jitbot starts while an issuer is
// down; until discovery succeeds that issuer's tokens are refused with "issuer_unavailable". Signatures are
// checked by go-oidc's IDTokenVerifier (issuer, algorithm, signature via go-jose) against a key set fetched
// from the discovered jwks_uri, cached and re-fetched when a token names an unknown kid. Audience,
// exp/nbf/iat (with the issuer's leeway) and required claims are checked here after the signature.
type OIDC struct {
	byURL map[string]*issuer
}

type issuer struct {
	cfg    IssuerConfig
	leeway time.Duration
	client *http.Client
	now    func() time.Time
	retry  time.Duration
	keyMin time.Duration
	keyAge time.Duration

	sem chan struct{} // one discovery at a time

	mu          sync.Mutex
	verifier    *oidc.IDTokenVerifier
	algs        []jose.SignatureAlgorithm
	failedAt    time.Time
	failMessage string
}

// NewOIDC checks the issuer configurations and returns a verifier. It does not contact the issuers: serve
// starts when an issuer is down, and verification fails closed with "issuer_unavailable" until it is back.
func NewOIDC(ctx context.Context, issuers []IssuerConfig, opts OIDCOptions) (*OIDC, error) {
	client := &http.Client{Timeout: fetchTimeout}
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient // a copy, so that the caller's client keeps its own redirect policy
		client = &c
	}
	if client.CheckRedirect == nil {
		client.CheckRedirect = noDowngrade
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	o := &OIDC{byURL: map[string]*issuer{}}
	names := map[string]bool{}
	var problems []string
	for i, c := range issuers {
		where := fmt.Sprintf("issuer %d", i+1)
		if c.Name != "" {
			where = fmt.Sprintf("issuer %q", c.Name)
		}
		if err := checkIssuerConfig(c); err != nil {
			problems = append(problems, where+": "+err.Error())
			continue
		}
		if names[c.Name] {
			problems = append(problems, where+": name used twice")
			continue
		}
		if o.byURL[c.URL] != nil {
			problems = append(problems, fmt.Sprintf("%s: URL %s is also issuer %q", where, c.URL, o.byURL[c.URL].cfg.Name))
			continue
		}
		names[c.Name] = true
		leeway := c.Leeway
		if leeway == 0 {
			leeway = DefaultLeeway
		}
		c.Audiences = slices.Clone(c.Audiences)
		c.RequiredClaims = slices.Clone(c.RequiredClaims)
		o.byURL[c.URL] = &issuer{
			cfg: c, leeway: leeway, client: client, now: now,
			retry:  orDefault(opts.DiscoveryRetry, DefaultDiscoveryRetry),
			keyMin: orDefault(opts.KeyRefreshMin, DefaultKeyRefreshMin),
			keyAge: orDefault(opts.KeyMaxAge, DefaultKeyMaxAge),
			sem:    make(chan struct{}, 1),
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("workload: OIDC issuers: %s", strings.Join(problems, "; "))
	}
	return o, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func checkIssuerConfig(c IssuerConfig) error {
	if c.Name == "" {
		return errors.New("name is empty")
	}
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("URL %q is not an absolute URL without query, fragment or credentials, e.g. %s", c.URL, GitHubActionsIssuer)
	}
	switch u.Scheme {
	case "https":
	case "http":
		// Keys fetched over plain HTTP could be swapped by anyone on the path; only a local issuer (tests,
		// the playground) may use it.
		if !isLoopback(u.Hostname()) {
			return fmt.Errorf("URL %s uses http; only https is allowed (http only on loopback, for tests)", c.URL)
		}
	default:
		return fmt.Errorf("URL %q must use https", c.URL)
	}
	if len(c.Audiences) == 0 {
		return errors.New("no audiences: list the aud values jitbot accepts (for GitHub the audience the workflow asks for)")
	}
	for _, a := range c.Audiences {
		if a == "" {
			return errors.New("an audience is empty")
		}
	}
	if c.Leeway < 0 || c.Leeway > MaxLeeway {
		return fmt.Errorf("leeway %s must be between 0 and %s", c.Leeway, MaxLeeway)
	}
	for _, rc := range c.RequiredClaims {
		if rc == "" {
			return errors.New("a required claim name is empty")
		}
	}
	return nil
}

// noDowngrade refuses a redirect from https to plain http (keys fetched in clear could be swapped on the
// way), and follows at most 5 redirects.
func noDowngrade(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("stopped after 5 redirects")
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("refused redirect from https to %s", req.URL.Scheme)
	}
	return nil
}

// checkJWKSURL applies the issuer URL's rule to the key set URL: keys fetched over plain HTTP could be
// swapped on the way, so http is only for loopback.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("discovery document's jwks_uri %q is not an absolute URL", truncate(raw, maxIssLen))
	}
	if u.Scheme == "https" || (u.Scheme == "http" && isLoopback(u.Hostname())) {
		return nil
	}
	return fmt.Errorf("discovery document's jwks_uri %q is not https", truncate(raw, maxIssLen))
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Recognizes reports whether bearer is shaped like a JWT.
func (o *OIDC) Recognizes(bearer string) bool { return looksLikeJWT(bearer) }

// Authenticate verifies an OIDC ID token. Refusals: malformed, unknown_issuer, issuer_unavailable,
// bad_signature, wrong_audience, expired, not_yet_valid, missing_claim.
func (o *OIDC) Authenticate(ctx context.Context, bearer string) (Identity, error) {
	if len(bearer) > MaxTokenBytes {
		return Identity{}, refuse(ReasonMalformed, "the credential is %d bytes long; ID tokens are at most %d", len(bearer), MaxTokenBytes)
	}
	if !looksLikeJWT(bearer) {
		return Identity{}, refuse(ReasonMalformed, "the credential is not a JWT (three base64url parts separated by dots)")
	}
	jws, err := jose.ParseSignedCompact(bearer, allAlgs)
	if err != nil {
		if isAlgError(err) {
			return Identity{}, refuse(ReasonBadSignature, "the token is signed with an algorithm jitbot does not accept (only asymmetric algorithms such as RS256 and ES256)")
		}
		return Identity{}, refuse(ReasonMalformed, "the token is not a valid compact JWS")
	}
	if len(jws.Signatures) != 1 {
		return Identity{}, refuse(ReasonMalformed, "the token must carry exactly one signature")
	}
	// The issuer is read before verification only to choose the keys to verify with; go-oidc checks it again
	// after the signature.
	var unverified struct {
		Iss any `json:"iss"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified); err != nil {
		return Identity{}, refuse(ReasonMalformed, "the token's payload is not a JSON object")
	}
	issURL, _ := unverified.Iss.(string)
	if issURL == "" {
		return Identity{}, refuse(ReasonMissingClaim, "the token has no iss (issuer) claim")
	}
	is := o.byURL[issURL]
	if is == nil {
		// The configured issuers are not listed: the caller is not authenticated, and an internal GitLab's
		// host name is nobody else's business. The policy file says which issuers are trusted.
		return Identity{}, refuse(ReasonUnknownIssuer, "the token was issued by %q, which is not an issuer in jitbot's policy (issuers: url)", truncate(issURL, maxIssLen))
	}
	return is.authenticate(ctx, bearer, jws)
}

var allAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}

func isAlgError(err error) bool {
	var algErr *jose.ErrUnexpectedSignatureAlgorithm
	return errors.As(err, &algErr)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (is *issuer) authenticate(ctx context.Context, bearer string, jws *jose.JSONWebSignature) (Identity, error) {
	name := is.cfg.Name
	v, algs, err := is.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	alg := jws.Signatures[0].Header.Algorithm
	if !slices.Contains(algs, jose.SignatureAlgorithm(alg)) {
		return Identity{}, refuse(ReasonBadSignature, "the token is signed with %s; issuer %q signs with %s", truncate(alg, 20), name, algList(algs))
	}
	note := &verifyNote{}
	tok, err := v.Verify(context.WithValue(ctx, verifyNoteKey{}, note), bearer)
	if err != nil {
		zerolog.Ctx(ctx).Debug().Str("issuer", name).Str("stage", note.stage).Msg("oidc verification failed")
		switch note.stage {
		case stageUnavailable:
			return Identity{}, refuse(ReasonIssuerUnavailable, "the signing keys of issuer %q could not be fetched; retry later", name)
		case stageVerified:
			return Identity{}, refuse(ReasonMalformed, "the token's claims could not be decoded")
		case stageUnknownKey:
			return Identity{}, refuse(ReasonBadSignature, "the token is signed with a key issuer %q does not publish", name)
		}
		return Identity{}, refuse(ReasonBadSignature, "the token's signature does not verify with the keys of issuer %q", name)
	}
	var payload json.RawMessage // the payload go-oidc verified
	err = tok.Claims(&payload)
	var claims map[string]any
	if err == nil {
		claims, err = decodeClaims(payload)
	}
	if err != nil {
		return Identity{}, refuse(ReasonMalformed, "the token's claims could not be decoded")
	}
	if !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(is.cfg.Audiences, a) }) {
		return Identity{}, refuse(ReasonWrongAudience, "the token's audience is %s; issuer %q accepts %s (ask your CI for a token with that audience)", quoteList(truncateAll(tok.Audience)), name, quoteList(is.cfg.Audiences))
	}
	now := is.now()
	exp, ok := numericDate(claims["exp"])
	if !ok {
		return Identity{}, refuse(ReasonMissingClaim, "the token has no exp (expiry) claim; jitbot accepts only tokens that expire")
	}
	if !now.Before(exp.Add(is.leeway)) {
		return Identity{}, refuse(ReasonExpired, "the token expired at %s (now %s, leeway %s); get a fresh token", exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), is.leeway)
	}
	for _, c := range []string{"nbf", "iat"} {
		raw, present := claims[c]
		if !present {
			continue
		}
		t, ok := numericDate(raw)
		if !ok {
			return Identity{}, refuse(ReasonMalformed, "the token's %s claim is not a number of seconds", c)
		}
		if now.Add(is.leeway).Before(t) {
			return Identity{}, refuse(ReasonNotYetValid, "the token's %s is %s, in the future (now %s, leeway %s): check the clocks", c, t.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), is.leeway)
		}
	}
	if tok.Subject == "" {
		return Identity{}, refuse(ReasonMissingClaim, "the token has no sub (subject) claim")
	}
	for _, rc := range is.cfg.RequiredClaims {
		if v, ok := claims[rc]; !ok || v == nil || v == "" {
			return Identity{}, refuse(ReasonMissingClaim, "the token has no %q claim, which issuer %q requires", rc, name)
		}
	}
	return Identity{
		Method: MethodOIDC, Issuer: tok.Issuer, IssuerName: name, Subject: tok.Subject,
		Claims: claims, Expiry: exp, TokenID: claimsDigest(payload),
	}, nil
}

// claimsDigest is the SHA-256 of the payload bytes the signature covers. Those bytes cannot be re-encoded
// without breaking the signature, unlike the signature itself.
func claimsDigest(payload []byte) string {
	sum := sha256.Sum256(payload)
	return hex.EncodeToString(sum[:])
}

func algList(algs []jose.SignatureAlgorithm) string {
	s := make([]string, len(algs))
	for i, a := range algs {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

func truncateAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = truncate(s, maxIssLen)
	}
	return out
}

// decodeClaims decodes the verified payload, turning whole numbers into int64 (so CEL conditions compare
// them as ints) and other numbers into float64.
func decodeClaims(payload []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("payload is null")
	}
	for k, v := range m {
		m[k] = normalizeNumbers(v)
	}
	return m, nil
}

func normalizeNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = normalizeNumbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = normalizeNumbers(x[k])
		}
	}
	return v
}

func numericDate(v any) (time.Time, bool) {
	switch x := v.(type) {
	case int64:
		return time.Unix(x, 0), true
	case float64:
		sec := int64(x)
		return time.Unix(sec, int64((x-float64(sec))*1e9)), true
	}
	return time.Time{}, false
}

// discover returns the verifier, running discovery on first use (and again after a failure, at most every
// retry interval).
func (is *issuer) discover(ctx context.Context) (*oidc.IDTokenVerifier, []jose.SignatureAlgorithm, error) {
	is.mu.Lock()
	if is.verifier != nil {
		v, algs := is.verifier, is.algs
		is.mu.Unlock()
		return v, algs, nil
	}
	if !is.failedAt.IsZero() && is.now().Sub(is.failedAt) < is.retry {
		msg := is.failMessage
		is.mu.Unlock()
		return nil, nil, refuse(ReasonIssuerUnavailable, "%s; retry later", msg)
	}
	is.mu.Unlock()

	select {
	case is.sem <- struct{}{}:
		defer func() { <-is.sem }()
	case <-ctx.Done():
		return nil, nil, refuse(ReasonIssuerUnavailable, "gave up waiting for the discovery of issuer %q: %v", is.cfg.Name, ctx.Err())
	}
	is.mu.Lock()
	if is.verifier != nil { // another caller finished discovery while this one waited
		v, algs := is.verifier, is.algs
		is.mu.Unlock()
		return v, algs, nil
	}
	is.mu.Unlock()

	dctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(dctx, is.client), is.cfg.URL)
	var meta struct {
		JWKSURL string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err == nil {
		err = p.Claims(&meta)
	}
	var docErr error // a problem with the document itself, safe and useful to show
	if err == nil && meta.JWKSURL == "" {
		docErr = errors.New("discovery document has no jwks_uri")
	}
	if err == nil && docErr == nil {
		docErr = checkJWKSURL(meta.JWKSURL)
	}
	if err == nil {
		err = docErr
	}
	if err != nil {
		msg := fmt.Sprintf("discovery of issuer %q at %s failed", is.cfg.Name, is.cfg.URL)
		if docErr != nil {
			msg += ": " + docErr.Error()
		}
		var mismatch *oidc.IssuerMismatchError
		if errors.As(err, &mismatch) {
			msg = fmt.Sprintf("issuer %q: the discovery document names issuer %q, not %q (check the URL, including a trailing slash)", is.cfg.Name, truncate(mismatch.Discovered, maxIssLen), is.cfg.URL)
		}
		zerolog.Ctx(ctx).Warn().Err(err).Str("issuer", is.cfg.Name).Str("url", is.cfg.URL).Msg("oidc discovery failed")
		if ctx.Err() == nil { // the caller giving up is not the issuer's failure
			is.mu.Lock()
			is.failedAt, is.failMessage = is.now(), msg
			is.mu.Unlock()
		}
		return nil, nil, refuse(ReasonIssuerUnavailable, "%s; retry later", msg)
	}
	var algs []jose.SignatureAlgorithm
	for _, a := range meta.Algs {
		if slices.Contains(allAlgs, jose.SignatureAlgorithm(a)) {
			algs = append(algs, jose.SignatureAlgorithm(a))
		}
	}
	if len(algs) == 0 {
		algs = []jose.SignatureAlgorithm{jose.RS256} // the OIDC default when the document says nothing
	}
	ks := newKeySet(meta.JWKSURL, is.client, is.now, is.keyMin, is.keyAge)
	algStrings := make([]string, len(algs))
	for i, a := range algs {
		algStrings[i] = string(a)
	}
	v := oidc.NewVerifier(is.cfg.URL, ks, &oidc.Config{
		SupportedSigningAlgs: algStrings,
		// Audience (several accepted values) and exp/nbf/iat (configurable leeway) are checked by
		// authenticate after this verifier has checked issuer and signature.
		SkipClientIDCheck: true,
		SkipExpiryCheck:   true,
	})
	is.mu.Lock()
	is.verifier, is.algs, is.failedAt = v, algs, time.Time{}
	is.mu.Unlock()
	return v, algs, nil
}
