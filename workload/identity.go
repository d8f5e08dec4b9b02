// Package workload verifies machine callers of jitbot's API: CI jobs presenting an OIDC ID token from their
// provider (GitHub Actions, GitLab CI, any OIDC issuer by configuration), and systems without OIDC presenting a
// jitbot API token. Both end in an Identity that holds only verified facts; Rule matches an OIDC identity
// against policy claim rules.
//
// Every refusal wraps ErrUnauthenticated and carries a stable code (Reason). Error messages are meant for a
// person and never contain token material (no token, no signature, no secret).
//
// See docs/workload-identity.md.
package workload

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Identity is a caller verified by an OIDC ID token or a jitbot API token. Only verified facts are here.
type Identity struct {
	Method  string         // "oidc" or "api_token"
	Issuer  string         // OIDC iss ("" for API tokens)
	Subject string         // OIDC sub; for API tokens the token id
	Owner   string         // API tokens: the owner named at creation; OIDC: ""
	Claims  map[string]any // every verified claim of the ID token; nil for API tokens
	Expiry  time.Time      // token expiry; zero for API tokens without one

	// TokenID names the OIDC token itself: the SHA-256 (hex) of its signed claims, so one value per token the
	// issuer issued however its signature is encoded (an ECDSA signature verifies in two forms). The API
	// lets one token create one request. "" for API tokens, which are long-lived by design.
	TokenID string

	// IssuerName is the IssuerConfig.Name of the issuer that verified an OIDC token ("" for API tokens): the
	// name policy rules use (Rule.Issuer).
	IssuerName string
}

// Identity methods.
const (
	MethodOIDC     = "oidc"
	MethodAPIToken = "api_token"
)

// Authenticator verifies the bearer credential of an API call. Errors wrap ErrUnauthenticated.
//
// bearer is the credential itself, without the "Bearer " scheme (see BearerFromHeader).
type Authenticator interface {
	Authenticate(ctx context.Context, bearer string) (Identity, error)
}

// ErrUnauthenticated is wrapped by every refusal of an Authenticator.
var ErrUnauthenticated = errors.New("unauthenticated")

// Refusal codes returned by Reason. They are stable: API clients and the audit log may rely on them.
const (
	ReasonMalformed         = "malformed"          // not a JWT / API token, or undecodable
	ReasonBadSignature      = "bad_signature"      // signature does not verify, unknown key, disallowed algorithm
	ReasonUnknownIssuer     = "unknown_issuer"     // iss is not a configured issuer
	ReasonWrongAudience     = "wrong_audience"     // aud names none of the accepted audiences
	ReasonExpired           = "expired"            // exp (plus leeway) has passed; also expired API tokens
	ReasonNotYetValid       = "not_yet_valid"      // nbf or iat is in the future (beyond leeway)
	ReasonMissingClaim      = "missing_claim"      // a required claim (or exp) is absent
	ReasonUnknownToken      = "unknown_token"      // an API token that does not exist (or whose secret is wrong)
	ReasonRevokedToken      = "revoked_token"      // an API token that was revoked
	ReasonIssuerUnavailable = "issuer_unavailable" // discovery or JWKS could not be fetched: fail closed, retry later
	// ReasonStoreUnavailable: the token store could not be read, so an API token could not be checked. Like
	// issuer_unavailable it is the server's problem, not the caller's: answer 503, not 401.
	ReasonStoreUnavailable = "store_unavailable"
)

// AuthError is a refusal: a stable Code and a message a person can act on. It wraps ErrUnauthenticated.
type AuthError struct {
	Code string
	Msg  string
}

func (e *AuthError) Error() string { return "workload: " + e.Code + ": " + e.Msg }

// Unwrap makes errors.Is(err, ErrUnauthenticated) true for every refusal.
func (e *AuthError) Unwrap() error { return ErrUnauthenticated }

func refuse(code, format string, args ...any) error {
	return &AuthError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Reason returns a stable code for a refusal: "malformed", "bad_signature", "unknown_issuer",
// "wrong_audience", "expired", "not_yet_valid", "missing_claim", "unknown_token", "revoked_token",
// "issuer_unavailable", "store_unavailable"; "" for nil. An error that is not a refusal (it does not wrap
// an *AuthError) also gives "": treat it as an internal error. err.Error() is a message a person can act
// on, never token material.
func Reason(err error) string {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

// Retryable reports whether a refusal is the server's temporary problem (issuer or store unavailable), so
// the same credential may succeed later: answer 503 rather than 401.
func Retryable(err error) bool {
	switch Reason(err) {
	case ReasonIssuerUnavailable, ReasonStoreUnavailable:
		return true
	}
	return false
}

// BearerFromHeader extracts the credential from an Authorization header value ("Bearer <credential>", the
// scheme case-insensitive as RFC 9110 says). ok is false when the header is not a bearer credential.
func BearerFromHeader(header string) (credential string, ok bool) {
	scheme, cred, found := strings.Cut(strings.TrimSpace(header), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimSpace(cred)
	return cred, cred != ""
}

// Recognizer is implemented by Authenticators that only handle one shape of credential; Chain skips an
// Authenticator whose Recognizes returns false.
type Recognizer interface {
	Recognizes(bearer string) bool
}

// Chain tries each Authenticator that recognises the token's shape (a JWT vs a jitbot API token), in order,
// and returns the first success. When none succeeds it returns the most telling refusal: the first one that
// is not "unknown_issuer" (so that with several OIDC authenticators, the one that knows the issuer speaks),
// else the first. A credential no Authenticator recognises is "malformed".
func Chain(auths ...Authenticator) Authenticator {
	return chain(auths)
}

type chain []Authenticator

func (c chain) Authenticate(ctx context.Context, bearer string) (Identity, error) {
	var first, telling error
	for _, a := range c {
		if r, ok := a.(Recognizer); ok && !r.Recognizes(bearer) {
			continue
		}
		id, err := a.Authenticate(ctx, bearer)
		if err == nil {
			return id, nil
		}
		if first == nil {
			first = err
		}
		if telling == nil && Reason(err) != ReasonUnknownIssuer {
			telling = err
		}
	}
	switch {
	case telling != nil:
		return Identity{}, telling
	case first != nil:
		return Identity{}, first
	}
	return Identity{}, refuse(ReasonMalformed, "the bearer credential is neither an OIDC ID token (JWT) nor a jitbot API token (%s...)", TokenPrefix)
}

// Recognizes reports whether any authenticator of the chain recognises bearer.
func (c chain) Recognizes(bearer string) bool {
	for _, a := range c {
		if r, ok := a.(Recognizer); !ok || r.Recognizes(bearer) {
			return true
		}
	}
	return false
}

// looksLikeJWT reports whether s has the shape of a compact JWS: three base64url segments whose first decodes
// to a JSON object. It verifies nothing.
func looksLikeJWT(s string) bool {
	if len(s) > MaxTokenBytes {
		return true // too long to be anything else; OIDC refuses it as malformed
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return false
	}
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return false
	}
	var m map[string]any
	return json.Unmarshal(hdr, &m) == nil
}
