// Package webhook is a grants.Provider that delivers grant, revoke and check operations to an HTTP endpoint as
// signed JSON, following Standard Webhooks (https://www.standardwebhooks.com). The receiver applies the access
// change in whatever system jitbot has no adapter for.
//
// # Integration contract (full text with examples in docs/webhook.md)
//
// Every operation is one POST of a Payload to Config.URL with the headers
//
//	Content-Type: application/json
//	User-Agent: jitbot
//	webhook-id: <id>
//	webhook-timestamp: <unix seconds of this attempt>
//	webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>
//	jitbot-generation: <the payload's generation, unsigned, for routing and logs only>
//
// Every grant and revoke carries a generation (Payload.Generation, from grants.Assignment.Generation) that
// increases with every operation on one binding_key. A receiver keeps the last generation it applied per
// binding_key and ignores (answering 2xx) an operation with a lower one: that is a call jitbot gave up on that
// arrived after a newer decision. Because receivers order by generation, the Provider is grants.Sequenced.
//
// webhook-id names one operation: "<type>_<grant part>_<generation>" (grant part: the grant_id when it is at
// most 128 bytes of [A-Za-z0-9_-], else "h_" and 32 hex digits of its SHA-256). An activation, an extension, a
// shortened expiry and a revoke are different operations with different ids, so a receiver that de-duplicates
// on webhook-id (as the specification suggests) never drops one of them. An operation without a generation
// (generation 0: not made by the grant manager) and every check gets a fresh random suffix instead:
// "<type>_<grant part>_r<16 hex>".
//
// Receivers must make grant mean "ensure present" and revoke "ensure absent": answer 2xx when the access is
// already in the requested state (never 404 or 409 for that).
//
// Answers: 2xx = done. Two optional fields of a 2xx body extend that (old receivers that answer an empty or
// other body keep today's meaning):
//
//   - {"pending": true}: accepted, not finished yet (asynchronous provisioning). The Provider sends the same
//     operation again (same webhook-id and generation: a resend) every Config.PollInterval until the receiver
//     answers without "pending", for at most Config.PendingTimeout (or the attempt timeout); then it returns a
//     retryable error, and jitbot resumes later. A receiver must not answer 2xx without "pending" to a grant
//     while a revoke of the same access is still running, or the other way round (answer pending or 409).
//   - {"pre_existing": true} to a grant: the principal already had this access by means jitbot did not create
//     (standing access); the receiver changed nothing and will not remove that access on a revoke. jitbot records
//     the grant as pre-existing (grants.PreExistingRef), tells the requester and sends no revoke for it. The
//     Provider honours it only when jitbot holds no reference of its own for the binding (grants.Assignment.Ref
//     empty, grants.RefUntouched or pre-existing): after a call of jitbot's that may have created the access
//     (grants.RefCallPending, an earlier grant), found access is treated as jitbot's.
//
// Check must answer 200 with {"present": true|false}. 409 Conflict, 408, 429 and 5xx are
// retried (honouring nothing but the caller's retry policy; the Retry-After value is exposed on StatusError).
// 3xx is never followed (the signed payload would go elsewhere) and is a permanent failure, as is every other
// 4xx: 400 malformed, 401/403 signature or authorisation, 404 wrong URL, 410 endpoint retired, 422 unknown
// principal or role. Network errors and timeouts are retried.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/policy"
)

// Operation types, the "type" field of the Payload.
const (
	TypeGrant  = "grant"
	TypeRevoke = "revoke"
	TypeCheck  = "check"
)

// DefaultTimeout bounds one delivery attempt when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

const (
	secretPrefix   = "whsec_"
	snippetLimit   = 256      // bytes of response body quoted in errors
	responseLimit  = 64 << 10 // bytes of response body read
	maxPlainIDPart = 128
)

// Config configures a Provider.
type Config struct {
	// URL is the absolute http(s) URL deliveries are POSTed to. Use https outside tests: the payload names
	// users and roles.
	URL string
	// Secret is the HMAC-SHA256 key (see ParseSecret). Required.
	Secret []byte
	// Timeout bounds one attempt, connection and response body included. Default DefaultTimeout.
	Timeout time.Duration
	// Client sends the requests; nil uses a client with its own transport. The Provider uses a copy whose
	// redirect policy is replaced so that redirects are never followed; the given client is not modified.
	Client *http.Client
	// Now returns the current time for webhook-timestamp and sent_at; nil uses time.Now.
	Now func() time.Time
	// PendingTimeout is how long one grant or revoke may wait for a receiver that answers {"pending": true}
	// (asynchronous provisioning); it becomes the operation's attempt budget (grants.AttemptBudgeter), so the
	// manager keeps its binding lock that long. 0: wait only within the manager's attempt timeout.
	PendingTimeout time.Duration
	// PollInterval is the wait between resends of a pending operation. Default DefaultPollInterval.
	PollInterval time.Duration
}

// DefaultPollInterval is the wait between resends of an operation the receiver answered pending.
const DefaultPollInterval = time.Second

// MaxPendingTimeout bounds Config.PendingTimeout (the policy's pending_timeout): a receiver that needs longer
// must answer pending and let jitbot resume in a later attempt.
const MaxPendingTimeout = policy.MaxWebhookPendingTimeout

// Payload is the JSON body of every delivery. Field names are the integration contract.
type Payload struct {
	Type    string `json:"type"`     // "grant", "revoke" or "check"
	GrantID string `json:"grant_id"` // jitbot's grant (lease) id
	// BindingKey names the access (principal + role target); overlapping grants share it.
	BindingKey string            `json:"binding_key,omitempty"`
	RequestID  string            `json:"request_id"`           // the access request the grant came from
	UserID     string            `json:"user_id"`              // Slack user id of the requester
	Principal  string            `json:"principal"`            // the user's identity at the target system
	Role       string            `json:"role"`                 // role to grant, from the policy
	Target     map[string]string `json:"target"`               // provider-specific scope from the policy; {} if none
	ExpiresAt  string            `json:"expires_at,omitempty"` // RFC 3339 UTC; when jitbot will revoke
	// Generation orders grants and revokes of one binding_key: a receiver ignores one older than the last it
	// applied. Omitted for checks (a read has nothing to order) and for operations without one (0).
	Generation uint64 `json:"generation,omitempty"`
	SentAt     string `json:"sent_at"` // RFC 3339 UTC; time of this attempt
}

// HeaderGeneration repeats Payload.Generation as a header. It is not covered by the signature: receivers
// decide on the signed payload field.
const HeaderGeneration = "jitbot-generation"

// OrdersByGeneration reports that webhook receivers order operations by generation (the integration
// contract), so the manager needs no re-check after a revoke.
func (p *Provider) OrdersByGeneration() bool { return true }

var _ grants.Sequenced = (*Provider)(nil)

// StatusError describes a non-2xx answer (or an unusable 2xx answer to a check). It is returned wrapped: use
// errors.As. Permanent answers are additionally wrapped with grants.Permanent.
type StatusError struct {
	Type       string        // operation type
	GrantID    string        // the grant concerned
	StatusCode int           // HTTP status
	RetryAfter time.Duration // from a Retry-After header, 0 if absent
	Body       string        // sanitised, truncated response body (secret and signature redacted)
	Reason     string        // extra explanation, may be empty
}

func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "webhook %s %s: receiver answered %d %s", e.Type, e.GrantID, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Reason != "" {
		b.WriteString(": " + e.Reason)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.Body != "" {
		fmt.Fprintf(&b, "; body %q", e.Body)
	}
	return b.String()
}

// Provider delivers operations to one webhook endpoint. It is safe for concurrent use.
type Provider struct {
	url      string
	shownURL string // scheme://host/path, for errors
	secret   sensitive
	timeout  time.Duration
	pending  time.Duration // Config.PendingTimeout
	poll     time.Duration
	client   *http.Client
	now      func() time.Time
}

var _ grants.Provider = (*Provider)(nil)

// ParseSecret turns a configured secret into HMAC key bytes. A "whsec_<base64>" secret (the Standard Webhooks
// format, what receivers' libraries expect) yields the base64-decoded bytes; any other non-empty string is used
// as raw bytes (receivers using a Standard Webhooks library must then be given "whsec_" + base64 of it).
// Surrounding white space is ignored. Errors never contain the secret.
func ParseSecret(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("webhook: empty secret")
	}
	if enc, ok := strings.CutPrefix(s, secretPrefix); ok {
		key, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return nil, errors.New("webhook: secret has the whsec_ prefix but is not valid standard base64")
		}
		if len(key) == 0 {
			return nil, errors.New("webhook: empty secret after the whsec_ prefix")
		}
		return key, nil
	}
	return []byte(s), nil
}

// New validates cfg and returns a Provider.
func New(cfg Config) (*Provider, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, errors.New("webhook: URL must be an absolute http or https URL")
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("webhook: empty secret")
	}
	if cfg.Timeout < 0 {
		return nil, errors.New("webhook: negative timeout")
	}
	if cfg.PendingTimeout < 0 || cfg.PendingTimeout > MaxPendingTimeout {
		return nil, fmt.Errorf("webhook: pending timeout must be between 0 and %s", MaxPendingTimeout)
	}
	if cfg.PollInterval < 0 {
		return nil, errors.New("webhook: negative poll interval")
	}
	p := &Provider{
		url:      u.String(),
		shownURL: u.Scheme + "://" + u.Host + u.EscapedPath(),
		secret:   sensitive{key: append([]byte(nil), cfg.Secret...)},
		timeout:  cfg.Timeout,
		pending:  cfg.PendingTimeout,
		poll:     cfg.PollInterval,
		now:      cfg.Now,
	}
	if p.poll == 0 {
		p.poll = DefaultPollInterval
	}
	if p.timeout == 0 {
		p.timeout = DefaultTimeout
	}
	if p.now == nil {
		p.now = time.Now
	}
	var c http.Client
	if cfg.Client != nil {
		c = *cfg.Client
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// The sweeper calls one receiver from many workers at once; the default of 2 idle connections per
		// host would open (and leave in TIME_WAIT) a new connection for most calls.
		t.MaxIdleConnsPerHost = 128
		c.Transport = t
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	p.client = &c
	b64 := base64.StdEncoding.EncodeToString(p.secret.key)
	p.secret.forms = []string{string(p.secret.key), b64, strings.TrimRight(b64, "="), base64.URLEncoding.EncodeToString(p.secret.key)}
	return p, nil
}

// sensitive holds the key and the forms of it never to echo from a response body. Its String and GoString
// keep it out of fmt output whichever way a Provider is printed.
type sensitive struct {
	key   []byte
	forms []string
}

func (sensitive) String() string   { return "[redacted]" }
func (sensitive) GoString() string { return "[redacted]" }

// String describes the provider without its secret.
func (p Provider) String() string { return "webhook(" + p.shownURL + ")" }

// GoString keeps %#v from printing the secret.
func (p Provider) GoString() string { return p.String() }

// Grant delivers a "grant". The reference is the receiver's {"ref": "..."} if its 2xx answer carries a short
// printable one, otherwise the webhook-id; grants.PreExistingRef when the receiver answers that the access was
// already there (see the package documentation for when that is believed).
func (p *Provider) Grant(ctx context.Context, a grants.Assignment) (string, error) {
	id := operationID(TypeGrant, a.GrantID, a.Generation)
	ans, err := p.apply(ctx, TypeGrant, id, a)
	if err != nil {
		if errors.Is(err, errPending) {
			// The receiver accepted the operation: whatever it creates is jitbot's.
			return id, err
		}
		return "", err
	}
	if ans.PreExisting && !grants.OwnRef(a.Ref) {
		return grants.PreExistingRef("webhook"), nil
	}
	if ans.Ref != "" && len(ans.Ref) <= 256 && printable(ans.Ref) && !grants.IsPreExisting(ans.Ref) {
		return ans.Ref, nil
	}
	return id, nil
}

// Revoke delivers a "revoke". An assignment whose reference says the access was there before jitbot's grant
// (grants.PreExistingRef) is not jitbot's to remove: nothing is sent.
func (p *Provider) Revoke(ctx context.Context, a grants.Assignment) error {
	if grants.IsPreExisting(a.Ref) {
		return nil
	}
	_, err := p.apply(ctx, TypeRevoke, operationID(TypeRevoke, a.GrantID, a.Generation), a)
	return err
}

// AttemptBudget implements grants.AttemptBudgeter: with Config.PendingTimeout a grant or revoke may wait that
// long for a pending receiver, plus one delivery.
func (p *Provider) AttemptBudget(op string) time.Duration {
	if op == "check" || p.pending == 0 {
		return 0
	}
	return p.pending + p.timeout
}

var _ grants.AttemptBudgeter = (*Provider)(nil)

// answer is what a 2xx answer to a grant or revoke may carry (every field optional).
type answer struct {
	Ref         string `json:"ref"`
	Pending     bool   `json:"pending"`
	PreExisting bool   `json:"pre_existing"`
}

// errPending: the receiver still answered pending when the wait ended.
var errPending = errors.New("the receiver is still applying the operation (it answered pending)")

// apply delivers a grant or revoke and, while the receiver answers pending, resends it (same id and
// generation) every poll interval, within PendingTimeout when set, else within ctx.
func (p *Provider) apply(ctx context.Context, typ, id string, a grants.Assignment) (answer, error) {
	if p.pending > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.pending+p.timeout)
		defer cancel()
	}
	for pending := false; ; pending = true {
		body, err := p.deliver(ctx, typ, id, a)
		if err != nil && pending {
			// The receiver has accepted the operation: say so, so that Grant keeps the reference.
			return answer{}, fmt.Errorf("webhook %s %s: %w; resending it failed: %w", typ, a.GrantID, errPending, err)
		}
		if err != nil {
			return answer{}, err
		}
		var ans answer
		_ = json.Unmarshal(body, &ans) // any 2xx body is an answer; only the optional fields are read
		if !ans.Pending {
			return ans, nil
		}
		t := time.NewTimer(p.poll)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return answer{}, fmt.Errorf("webhook %s %s: %w", typ, a.GrantID, errPending)
		}
	}
}

// Check delivers a "check" and expects 200 with {"present": true|false}.
func (p *Provider) Check(ctx context.Context, a grants.Assignment) (bool, error) {
	body, err := p.deliver(ctx, TypeCheck, operationID(TypeCheck, a.GrantID, 0), a)
	if err != nil {
		return false, err
	}
	var ans struct {
		Present *bool `json:"present"`
	}
	if json.Unmarshal(body, &ans) != nil || ans.Present == nil {
		return false, grants.Permanent(&StatusError{
			Type: TypeCheck, GrantID: a.GrantID, StatusCode: http.StatusOK,
			Reason: `check answer must be JSON {"present": true|false}`, Body: p.snippet(body, ""),
		})
	}
	return *ans.Present, nil
}

// operationID is the webhook-id of one operation: "<type>_<grant part>_<generation>", where the grant part is
// the grant id when it is short and made of [A-Za-z0-9_-], else "h_<32 hex of SHA-256(grant id)>". Without a
// generation the suffix is "r" and 16 random hex digits, new on every call. It never contains '.'.
func operationID(typ, grantID string, generation uint64) string {
	part := grantID
	if len(grantID) > maxPlainIDPart || !plainID(grantID) {
		sum := sha256.Sum256([]byte(grantID))
		part = "h_" + hex.EncodeToString(sum[:16])
	}
	if generation > 0 {
		return typ + "_" + part + "_" + strconv.FormatUint(generation, 10)
	}
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	return typ + "_" + part + "_r" + hex.EncodeToString(nonce[:])
}

func plainID(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return s != ""
}

// sign returns the webhook-signature value for one attempt.
func sign(key []byte, id, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// deliver sends one attempt and returns the 2xx response body, or a classified error.
func (p *Provider) deliver(ctx context.Context, typ, id string, a grants.Assignment) ([]byte, error) {
	if a.GrantID == "" {
		return nil, grants.Permanent(fmt.Errorf("webhook %s: assignment has no grant id", typ))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("webhook %s %s: %w", typ, a.GrantID, err)
	}
	now := p.now().UTC()
	pl := Payload{
		Type: typ, GrantID: a.GrantID, BindingKey: a.BindingKey, RequestID: a.RequestID, UserID: a.UserID,
		Principal: a.Principal, Role: a.Role, Target: a.Target, SentAt: now.Format(time.RFC3339),
	}
	if typ != TypeCheck {
		pl.Generation = a.Generation
	}
	if pl.Target == nil {
		pl.Target = map[string]string{}
	}
	if !a.ExpiresAt.IsZero() {
		pl.ExpiresAt = a.ExpiresAt.UTC().Format(time.RFC3339)
	}
	body, err := json.Marshal(pl)
	if err != nil {
		return nil, grants.Permanent(fmt.Errorf("webhook %s %s: encoding payload: %w", typ, a.GrantID, err))
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := sign(p.secret.key, id, ts, body)

	actx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return nil, grants.Permanent(fmt.Errorf("webhook %s %s: building request for %s", typ, a.GrantID, p.shownURL))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "jitbot")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", ts)
	req.Header.Set("webhook-signature", sig)
	if pl.Generation > 0 {
		req.Header.Set(HeaderGeneration, strconv.FormatUint(pl.Generation, 10))
	}

	resp, err := p.client.Do(req)
	if err != nil {
		return nil, p.transportError(ctx, actx, typ, a.GrantID, err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, responseLimit))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, responseLimit)) // let the connection be reused
	code := resp.StatusCode
	if err != nil && code >= 200 && code < 300 {
		return nil, p.transportError(ctx, actx, typ, a.GrantID, err)
	}
	if code >= 200 && code < 300 {
		return respBody, nil
	}

	se := &StatusError{Type: typ, GrantID: a.GrantID, StatusCode: code, Body: p.snippet(respBody, sig)}
	switch {
	case code >= 300 && code < 400:
		se.Reason = "redirects are not followed (the signed payload would be sent elsewhere); configure the final URL"
		if loc, err := resp.Location(); err == nil {
			se.Reason += " (Location: " + loc.Scheme + "://" + loc.Host + loc.EscapedPath() + ")"
		}
		return nil, grants.Permanent(se)
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code == http.StatusConflict:
		se.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
		return nil, se
	case code >= 400 && code < 500:
		return nil, grants.Permanent(se)
	default: // 5xx, and anything outside the usual classes
		se.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now)
		return nil, se
	}
}

// transportError words a failure to get a response. The caller's cancellation is wrapped as is; our own
// per-attempt timeout is reported as such; both, and network errors, are retryable. The request URL is shown
// without user info or query (the url.Error text would include them).
func (p *Provider) transportError(ctx, actx context.Context, typ, grantID string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("webhook %s %s: POST %s: %w", typ, grantID, p.shownURL, cerr)
	}
	if actx.Err() != nil {
		return fmt.Errorf("webhook %s %s: POST %s: no answer within %s: %w", typ, grantID, p.shownURL, p.timeout, context.DeadlineExceeded)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return fmt.Errorf("webhook %s %s: POST %s: %w", typ, grantID, p.shownURL, redactErr{err, p.redactString(err.Error(), "")})
}

// redactErr keeps the wrapped error for errors.Is/As but shows a redacted message.
type redactErr struct {
	err error
	msg string
}

func (e redactErr) Error() string { return e.msg }
func (e redactErr) Unwrap() error { return e.err }

func (p *Provider) redactString(s, sig string) string {
	forms := p.secret.forms
	if sig != "" {
		_, value, _ := strings.Cut(sig, ",")
		forms = append(forms[:len(forms):len(forms)], sig, value)
	}
	for _, f := range forms {
		if f != "" {
			s = strings.ReplaceAll(s, f, "[redacted]")
		}
	}
	return s
}

// snippet returns at most snippetLimit bytes of body, with the secret and signature redacted and control or
// invalid characters replaced, for an error message.
func (p *Provider) snippet(body []byte, sig string) string {
	s := p.redactString(strings.ToValidUTF8(string(body), "?"), sig)
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || !unicode.IsPrint(r) && r != ' ' {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > snippetLimit {
		cut := snippetLimit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// retryAfter parses a Retry-After header (seconds or HTTP date).
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
