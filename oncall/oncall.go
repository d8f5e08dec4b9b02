// Package oncall answers "is this Slack user on call for this role right now, and at which escalation level?"
// for break-glass access. A Source asks one on-call tool (oncall/pagerduty, oncall/opsgenie, or the policy's own
// rota in oncall/static); a Resolver maps the Slack user to the tool's user, caches answers briefly, bounds each
// lookup with a timeout and explains its decision in words meant for the requester.
//
// The Resolver never decides what to do when a source cannot answer: it returns ErrUnavailable and the caller
// applies its policy (deny by default). Configuration errors (a bad API key, an unknown schedule) are reported
// as ErrConfig so they can be told apart and alerted on. Errors never contain API keys.
package oncall

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Source is one on-call tool. It returns the shifts that are on call at q.At for the schedules and escalation
// policies named in q.
//
// Filters: a shift matches when it belongs to one of q.Schedules (if any are given) AND to one of
// q.EscalationPolicies (if any are given). With both lists empty a source returns every shift it knows at q.At,
// or refuses with ErrConfig when the tool needs a schedule to ask about.
//
// Errors must be classified with errors.Is:
//   - ErrUnavailable: the source cannot answer now (network error, timeout, 5xx, 429). Retrying later may work.
//   - ErrConfig: the question or the credentials are wrong (401/403: bad or unauthorised key; 404: unknown
//     schedule; a filter the tool does not support). Retrying will not help; an operator must act.
//
// Errors and logs must never contain API keys. Implementations must be safe for concurrent use.
type Source interface {
	OnCall(ctx context.Context, q Query) ([]Shift, error)
}

// Query selects shifts. Schedules and EscalationPolicies hold the tool's identifiers (ids, or names where the
// source is configured to use names). At is the instant asked about.
type Query struct {
	Schedules          []string
	EscalationPolicies []string
	At                 time.Time
}

// Shift is one person on call.
type Shift struct {
	UserID string // the on-call tool's user id (for oncall/static: the Slack user id)
	Email  string // "" when the source does not know it
	Name   string // display name, "" when unknown

	Schedule         string // schedule identifier as queried; "" when the person is on call without a schedule
	EscalationPolicy string // escalation policy identifier; "" when the tool has none
	// ScheduleName and EscalationPolicyName are display names for messages ("" when unknown).
	ScheduleName         string
	EscalationPolicyName string

	// Level is the escalation level: 1 = primary, 2 = secondary, ...; 0 when the tool has no level for this
	// shift (a Resolver never treats level 0 as satisfying a MaxLevel limit).
	Level int

	// Start and End bound the shift; the zero time means unbounded or unknown (Opsgenie does not report them).
	Start, End time.Time
}

// Covers reports whether the shift includes t (Start <= t < End; zero bounds are open).
func (s Shift) Covers(t time.Time) bool {
	if !s.Start.IsZero() && t.Before(s.Start) {
		return false
	}
	if !s.End.IsZero() && !t.Before(s.End) {
		return false
	}
	return true
}

// Kinds of failure; a *SourceError wraps exactly one of them.
var (
	// ErrUnavailable: the source cannot answer now (network, timeout, 5xx, 429).
	ErrUnavailable = errors.New("on-call source unavailable")
	// ErrConfig: bad credentials, an unknown schedule or source, or an unsupported question.
	ErrConfig = errors.New("on-call source misconfigured")
)

// SourceError describes a failed lookup. Its text never contains credentials: sources build it from the tool's
// status and message with the key removed.
type SourceError struct {
	Source  string // "pagerduty", "opsgenie", "static", or the resolver's source name
	Op      string // e.g. "GET /oncalls"
	Status  int    // HTTP status; 0 when there was no HTTP answer
	Message string // the tool's own explanation (redacted), or ours
	// RetryAfter is the tool's Retry-After for 429/503 answers (0 when absent).
	RetryAfter time.Duration
	Kind       error // ErrUnavailable or ErrConfig
	Err        error // the underlying error (already redacted), if any
}

func (e *SourceError) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.Op != "" {
		b.WriteString(" ")
		b.WriteString(e.Op)
	}
	b.WriteString(": ")
	b.WriteString(e.Kind.Error())
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

func (e *SourceError) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Kind}
}

// Unavailable returns a *SourceError of kind ErrUnavailable.
func Unavailable(source, op, format string, args ...any) error {
	return &SourceError{Source: source, Op: op, Kind: ErrUnavailable, Message: fmt.Sprintf(format, args...)}
}

// Misconfigured returns a *SourceError of kind ErrConfig.
func Misconfigured(source, op, format string, args ...any) error {
	return &SourceError{Source: source, Op: op, Kind: ErrConfig, Message: fmt.Sprintf(format, args...)}
}

// KindForStatus classifies a non-2xx HTTP status: 408, 425, 429 and 5xx are ErrUnavailable (the tool cannot
// answer now); every other status (400, 401, 403, 404, ...) is ErrConfig.
func KindForStatus(status int) error {
	switch {
	case status == 408 || status == 425 || status == 429 || status >= 500:
		return ErrUnavailable
	default:
		return ErrConfig
	}
}

// Redact replaces every occurrence of each non-empty secret in s with "[redacted]".
func Redact(s string, secrets ...string) string {
	for _, k := range secrets {
		if k != "" {
			s = strings.ReplaceAll(s, k, "[redacted]")
		}
	}
	return s
}

// RedactError returns an error whose text is err's text with secrets removed; errors.Is and errors.As still see
// err (and so context.DeadlineExceeded, for example).
func RedactError(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	return &redacted{msg: Redact(err.Error(), secrets...), err: err}
}

type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }

// ParseRetryAfter reads a Retry-After header value (delay seconds or an HTTP date); 0 when absent or invalid.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
