// Package webhookfake is a standalone Standard Webhooks (https://www.standardwebhooks.com) receiver for jitbot's
// webhook provider: a signature verifier written from the specification and an httptest-friendly Server that
// records deliveries and keeps the set of present grants, for tests, end-to-end checks and users' examples.
//
// It deliberately shares no code with the sender in package webhook, so that a test passing against it shows
// the sender is interoperable with the specification rather than merely consistent with itself.
package webhookfake

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Tolerance is how far webhook-timestamp may be from the receiver's clock, in either direction.
const Tolerance = 5 * time.Minute

// Verification errors. Verify wraps one of them; none of them carries the secret or a signature.
var (
	ErrNoSecret         = errors.New("receiver: empty secret")
	ErrMissingHeader    = errors.New("receiver: missing webhook header")
	ErrBadTimestamp     = errors.New("receiver: malformed webhook-timestamp")
	ErrTimestampSkew    = errors.New("receiver: webhook-timestamp outside tolerance")
	ErrInvalidSignature = errors.New("receiver: no valid v1 signature")
)

// Verify checks a delivery as the Standard Webhooks specification describes: the webhook-id, webhook-timestamp
// and webhook-signature headers must be present; the timestamp (unix seconds) must be within Tolerance of now;
// and at least one of the space-separated "v1,<base64>" entries of webhook-signature must equal
// base64(HMAC-SHA256(secret, "{webhook-id}.{webhook-timestamp}.{body}")), compared in constant time. Entries
// with another version (for example "v1a" asymmetric signatures) are ignored. body must be the raw request body,
// exactly as received (do not re-serialise parsed JSON).
//
// secret is the HMAC key: for a "whsec_<base64>" secret, the base64-decoded bytes.
func Verify(secret []byte, h http.Header, body []byte, now time.Time) error {
	if len(secret) == 0 {
		return ErrNoSecret
	}
	id := h.Get(HeaderID)
	ts := h.Get(HeaderTimestamp)
	sigs := strings.Join(h.Values(HeaderSignature), " ")
	for name, v := range map[string]string{HeaderID: id, HeaderTimestamp: ts, HeaderSignature: sigs} {
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("%w: %s", ErrMissingHeader, name)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrBadTimestamp
	}
	if skew := now.Sub(time.Unix(sec, 0)); skew > Tolerance || skew < -Tolerance {
		return fmt.Errorf("%w: %s off", ErrTimestampSkew, skew.Round(time.Second))
	}

	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	want := mac.Sum(nil)

	for _, entry := range strings.Fields(sigs) {
		version, value, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrInvalidSignature
}
