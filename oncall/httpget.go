package oncall

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// GetRequest is one authenticated GET to an on-call tool's API.
type GetRequest struct {
	Source  string // "pagerduty", "opsgenie": names the tool in errors
	Op      string // the operation, e.g. "GET /oncalls", for errors and logs
	URL     string
	Headers map[string]string // Authorization and Accept, as the tool documents them
	APIKey  string            // scrubbed from anything that reaches an error
	// ErrorMessage extracts the tool's own error text from a non-2xx body (already bounded).
	ErrorMessage func(body []byte) string
}

// GetJSON sends r and decodes a 2xx JSON answer into out. Failures are *SourceError: network errors,
// timeouts, 408/429/5xx and unreadable answers are ErrUnavailable; other 4xx are ErrConfig (KindForStatus).
func GetJSON(ctx context.Context, client *http.Client, r GetRequest, out any) error {
	fail := func(kind error, status int, msg string, err error) error {
		return &SourceError{Source: r.Source, Op: r.Op, Status: status, Kind: kind, Message: msg, Err: RedactError(err, r.APIKey)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL, nil)
	if err != nil {
		return fail(ErrConfig, 0, "", err)
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("User-Agent", "jitbot")
	resp, err := client.Do(req)
	if err != nil {
		return fail(ErrUnavailable, 0, "", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fail(ErrUnavailable, 0, "", err)
	}
	if resp.StatusCode/100 != 2 {
		se := &SourceError{Source: r.Source, Op: r.Op, Status: resp.StatusCode, Kind: KindForStatus(resp.StatusCode), Message: r.ErrorMessage(body)}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			se.RetryAfter = ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
		return se
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fail(ErrUnavailable, resp.StatusCode, "unreadable answer", err)
	}
	return nil
}

// ParseClientConfig checks what every on-call tool client needs, naming source in errors: an API key that can
// travel in a header (no spaces or control characters, so it cannot split or smuggle one), and an http(s)
// base URL (defaultBase when empty), returned without a trailing slash.
func ParseClientConfig(source, apiKey, baseURL, defaultBase string) (*url.URL, error) {
	if apiKey == "" {
		return nil, fmt.Errorf("%s: no API key", source)
	}
	if strings.ContainsFunc(apiKey, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, fmt.Errorf("%s: the API key contains spaces or control characters", source)
	}
	if baseURL == "" {
		baseURL = defaultBase
	}
	base, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("%s: base URL %q is not an http(s) URL", source, baseURL)
	}
	return base, nil
}
