// Package pagerduty is an oncall.Source backed by PagerDuty's REST API v2.
//
// It calls GET /oncalls with schedule_ids[] and escalation_policy_ids[] (PagerDuty applies both filters), and
// since=At, until=At+1s: PagerDuty returns every on-call period that overlaps that range, and the client keeps
// the ones that cover At. Pages are followed with offset/limit while the answer says "more": true. Each entry's
// escalation_level becomes Shift.Level; a null schedule (the user is a direct target of the escalation policy)
// becomes Shift.Schedule ""; null start/end become zero times.
//
// With ResolveEmails, each on-call user's email is read with GET /users/{id} and cached (EmailTTL), for the
// Resolver's email mapping.
//
// Requests carry "Authorization: Token token=<key>" and "Accept: application/vnd.pagerduty+json;version=2".
// 401/403/404 and other 4xx answers are oncall.ErrConfig; 429, 5xx, network errors and timeouts are
// oncall.ErrUnavailable (429's Retry-After is reported on the *oncall.SourceError). The client does not retry:
// the Resolver's lookup timeout is short, and the caller applies its own policy. Errors never contain the key.
package pagerduty

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jitbot/jitbot/oncall"
)

// DefaultBaseURL is PagerDuty's REST API.
const DefaultBaseURL = "https://api.pagerduty.com"

// maxPages bounds pagination (a misbehaving server that always says "more" cannot loop forever).
const maxPages = 50

// Config configures a Client.
type Config struct {
	// BaseURL overrides DefaultBaseURL (a fake, a proxy; PagerDuty's EU accounts use the same API host).
	BaseURL string
	// APIKey is a REST API key (read-only is enough). Take it from the environment; never from the policy file.
	APIKey string
	// HTTPClient defaults to a client with a 10s timeout (the Resolver's per-lookup timeout is usually shorter).
	HTTPClient *http.Client
	// PageSize is the limit asked per page (default and maximum 100).
	PageSize int
	// ResolveEmails fills Shift.Email with GET /users/{id} (cached for EmailTTL, default 1h).
	ResolveEmails bool
	EmailTTL      time.Duration
	// Now is the clock for the email cache (default time.Now).
	Now func() time.Time
}

// Client is the PagerDuty source. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base *url.URL

	mu     sync.Mutex
	emails map[string]emailEntry
}

type emailEntry struct {
	email, name string
	expires     time.Time
}

// New validates cfg.
func New(cfg Config) (*Client, error) {
	base, err := oncall.ParseClientConfig("pagerduty", cfg.APIKey, cfg.BaseURL, DefaultBaseURL)
	if err != nil {
		return nil, err
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.PageSize <= 0 || cfg.PageSize > 100 {
		cfg.PageSize = 100
	}
	if cfg.EmailTTL <= 0 {
		cfg.EmailTTL = time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Client{cfg: cfg, base: base, emails: map[string]emailEntry{}}, nil
}

type reference struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Summary string `json:"summary"`
	Name    string `json:"name"`
	Email   string `json:"email"`
}

type onCallEntry struct {
	User             reference  `json:"user"`
	Schedule         *reference `json:"schedule"`
	EscalationPolicy reference  `json:"escalation_policy"`
	EscalationLevel  int        `json:"escalation_level"`
	Start            *time.Time `json:"start"`
	End              *time.Time `json:"end"`
}

type onCallPage struct {
	OnCalls []onCallEntry `json:"oncalls"`
	Limit   int           `json:"limit"`
	Offset  int           `json:"offset"`
	More    bool          `json:"more"`
}

// OnCall implements oncall.Source.
func (c *Client) OnCall(ctx context.Context, q oncall.Query) ([]oncall.Shift, error) {
	at := q.At
	if at.IsZero() {
		at = c.cfg.Now()
	}
	params := url.Values{}
	for _, s := range q.Schedules {
		params.Add("schedule_ids[]", s)
	}
	for _, p := range q.EscalationPolicies {
		params.Add("escalation_policy_ids[]", p)
	}
	params.Set("since", at.UTC().Format(time.RFC3339))
	params.Set("until", at.Add(time.Second).UTC().Format(time.RFC3339))
	params.Set("time_zone", "UTC")
	params.Set("limit", strconv.Itoa(c.cfg.PageSize))

	var shifts []oncall.Shift
	offset := 0
	for page := 0; ; page++ {
		if page == maxPages {
			return nil, oncall.Unavailable("pagerduty", "GET /oncalls", "more than %d pages of on-calls", maxPages)
		}
		params.Set("offset", strconv.Itoa(offset))
		var p onCallPage
		if err := c.get(ctx, "/oncalls", params, &p); err != nil {
			return nil, err
		}
		for _, e := range p.OnCalls {
			s := oncall.Shift{
				UserID:               e.User.ID,
				Name:                 firstNonEmpty(e.User.Name, e.User.Summary),
				Email:                e.User.Email,
				EscalationPolicy:     e.EscalationPolicy.ID,
				EscalationPolicyName: e.EscalationPolicy.Summary,
				Level:                e.EscalationLevel,
			}
			if e.Schedule != nil {
				s.Schedule, s.ScheduleName = e.Schedule.ID, e.Schedule.Summary
			}
			if e.Start != nil {
				s.Start = *e.Start
			}
			if e.End != nil {
				s.End = *e.End
			}
			if s.Covers(at) {
				shifts = append(shifts, s)
			}
		}
		if !p.More || len(p.OnCalls) == 0 {
			break
		}
		offset += len(p.OnCalls)
	}
	if c.cfg.ResolveEmails {
		for i := range shifts {
			if shifts[i].Email != "" {
				continue
			}
			email, name, err := c.user(ctx, shifts[i].UserID)
			if err != nil {
				return nil, err
			}
			shifts[i].Email = email
			if shifts[i].Name == "" {
				shifts[i].Name = name
			}
		}
	}
	return shifts, nil
}

// user returns a user's email and name from the cache or GET /users/{id}. A user PagerDuty no longer knows
// (404) has no email; that is not an error.
func (c *Client) user(ctx context.Context, id string) (email, name string, err error) {
	now := c.cfg.Now()
	c.mu.Lock()
	e, ok := c.emails[id]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.email, e.name, nil
	}
	var body struct {
		User reference `json:"user"`
	}
	err = c.get(ctx, "/users/"+url.PathEscape(id), nil, &body)
	var se *oncall.SourceError
	if errors.As(err, &se) && se.Status == http.StatusNotFound {
		err = nil
	}
	if err != nil {
		return "", "", err
	}
	c.mu.Lock()
	c.emails[id] = emailEntry{email: body.User.Email, name: body.User.Name, expires: now.Add(c.cfg.EmailTTL)}
	c.mu.Unlock()
	return body.User.Email, body.User.Name, nil
}

func (c *Client) get(ctx context.Context, path string, params url.Values, out any) error {
	op := "GET " + path
	if strings.HasPrefix(path, "/users/") {
		op = "GET /users/{id}"
	}
	u := *c.base
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawQuery = params.Encode()
	return oncall.GetJSON(ctx, c.cfg.HTTPClient, oncall.GetRequest{Source: "pagerduty", Op: op, URL: u.String(), APIKey: c.cfg.APIKey,
		Headers: map[string]string{"Authorization": "Token token=" + c.cfg.APIKey, "Accept": "application/vnd.pagerduty+json;version=2"}, ErrorMessage: c.errorMessage}, out)
}

// errorMessage reads PagerDuty's {"error":{"message","code","errors"}} (redacted, bounded).
func (c *Client) errorMessage(body []byte) string {
	var e struct {
		Error struct {
			Message string   `json:"message"`
			Code    int      `json:"code"`
			Errors  []string `json:"errors"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.Message == "" {
		return ""
	}
	msg := e.Error.Message
	if e.Error.Code != 0 {
		msg += fmt.Sprintf(" (code %d)", e.Error.Code)
	}
	if len(e.Error.Errors) > 0 {
		msg += ": " + strings.Join(e.Error.Errors, "; ")
	}
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return oncall.Redact(msg, c.cfg.APIKey)
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
