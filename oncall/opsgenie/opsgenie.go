// Package opsgenie is an oncall.Source backed by Opsgenie's Who is On Call API:
// GET /v2/schedules/{identifier}/on-calls?scheduleIdentifierType=id|name&flat=false&date=<RFC3339>, one request
// per schedule in the query (Opsgenie answers per schedule; the endpoint is not paginated).
//
// What Opsgenie says, and what it does not:
//   - A participant of type "user" is a person on call for the schedule. Its "name" is the Opsgenie username,
//     which is the user's email address: Shift.Email and Shift.Name are set from it, Shift.UserID from "id".
//   - Opsgenie has no escalation level for schedule participants: users directly in the schedule get Level 0,
//     which the Resolver never counts as satisfying a max_level limit.
//   - A participant of type "escalation" carries nested onCallParticipants with "escalationTime" (the rule's
//     delay in minutes) and "notifyType". Opsgenie does not number the rules; this client infers a level from
//     the order of the distinct delays within that escalation (smallest delay = level 1) and sets
//     Shift.EscalationPolicy to the escalation's id. Treat such levels as a best effort.
//   - A participant of type "team" counts only through nested user participants (Level 0); a team without
//     listed members puts nobody on call.
//   - The answer has no shift start or end: Shift.Start and Shift.End stay zero.
//
// Requests carry "Authorization: GenieKey <key>". Status 401/402/403/404/422 are oncall.ErrConfig; 429, 5xx,
// network errors and timeouts are oncall.ErrUnavailable. The EU instance needs BaseURL EUBaseURL. Errors never
// contain the key. Opsgenie reaches end of support in April 2027; oncall.Source stays open for its successor.
package opsgenie

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jitbot/jitbot/oncall"
)

// Base URLs of Opsgenie's API.
const (
	DefaultBaseURL = "https://api.opsgenie.com"
	EUBaseURL      = "https://api.eu.opsgenie.com"
)

// Config configures a Client.
type Config struct {
	BaseURL string // default DefaultBaseURL; EUBaseURL for the EU instance; or a fake
	APIKey  string // an API integration key; from the environment, never from the policy file
	// IdentifierType says whether Query.Schedules are schedule ids ("id", default) or names ("name").
	IdentifierType string
	HTTPClient     *http.Client // default: 10s timeout
	Now            func() time.Time
}

// Client is the Opsgenie source. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base *url.URL
}

// New validates cfg.
func New(cfg Config) (*Client, error) {
	base, err := oncall.ParseClientConfig("opsgenie", cfg.APIKey, cfg.BaseURL, DefaultBaseURL)
	if err != nil {
		return nil, err
	}
	switch cfg.IdentifierType {
	case "":
		cfg.IdentifierType = "id"
	case "id", "name":
	default:
		return nil, fmt.Errorf("opsgenie: identifier type %q is neither id nor name", cfg.IdentifierType)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Client{cfg: cfg, base: base}, nil
}

type participant struct {
	ID                 string        `json:"id"`
	Name               string        `json:"name"`
	Type               string        `json:"type"`
	OnCallParticipants []participant `json:"onCallParticipants"`
	EscalationTime     *int          `json:"escalationTime"`
	NotifyType         string        `json:"notifyType"`
}

type onCallsResponse struct {
	Data struct {
		Parent struct {
			ID      string `json:"id"`
			Name    string `json:"name"`
			Enabled bool   `json:"enabled"`
		} `json:"_parent"`
		OnCallParticipants []participant `json:"onCallParticipants"`
	} `json:"data"`
}

// OnCall implements oncall.Source. Query.Schedules is required; Query.EscalationPolicies, if given, keeps only
// users reached through those escalations (by escalation id).
func (c *Client) OnCall(ctx context.Context, q oncall.Query) ([]oncall.Shift, error) {
	if len(q.Schedules) == 0 {
		return nil, oncall.Misconfigured("opsgenie", "", "name at least one schedule: Opsgenie answers per schedule")
	}
	at := q.At
	if at.IsZero() {
		at = c.cfg.Now()
	}
	var shifts []oncall.Shift
	for _, sched := range q.Schedules {
		var resp onCallsResponse
		if err := c.get(ctx, sched, at, &resp); err != nil {
			return nil, err
		}
		base := oncall.Shift{Schedule: sched, ScheduleName: resp.Data.Parent.Name}
		for _, p := range resp.Data.OnCallParticipants {
			collect(p, base, 0, &shifts)
		}
	}
	if len(q.EscalationPolicies) > 0 {
		shifts = slices.DeleteFunc(shifts, func(s oncall.Shift) bool {
			return !slices.Contains(q.EscalationPolicies, s.EscalationPolicy)
		})
	}
	return shifts, nil
}

// collect appends the users under p. level is the inherited level (0 outside escalations).
func collect(p participant, base oncall.Shift, level int, out *[]oncall.Shift) {
	switch p.Type {
	case "user":
		s := base
		s.UserID, s.Name, s.Level = p.ID, p.Name, level
		if strings.Contains(p.Name, "@") {
			s.Email = p.Name
		}
		*out = append(*out, s)
	case "escalation":
		esc := base
		esc.EscalationPolicy, esc.EscalationPolicyName = p.ID, p.Name
		var delays []int
		for _, m := range p.OnCallParticipants {
			if m.EscalationTime != nil && !slices.Contains(delays, *m.EscalationTime) {
				delays = append(delays, *m.EscalationTime)
			}
		}
		slices.Sort(delays)
		for _, m := range p.OnCallParticipants {
			l := 0
			if m.EscalationTime != nil {
				l = slices.Index(delays, *m.EscalationTime) + 1
			}
			collect(m, esc, l, out)
		}
	default: // "team", and anything new: only nested users count
		for _, m := range p.OnCallParticipants {
			collect(m, base, level, out)
		}
	}
}

func (c *Client) get(ctx context.Context, schedule string, at time.Time, out any) error {
	const op = "GET /v2/schedules/{identifier}/on-calls"
	u := *c.base
	u.Path = strings.TrimRight(u.Path, "/") + "/v2/schedules/" + schedule + "/on-calls"
	u.RawPath = strings.TrimRight(c.base.EscapedPath(), "/") + "/v2/schedules/" + url.PathEscape(schedule) + "/on-calls"
	// url.Values.Encode escapes the "+" of a time zone offset as %2B, as Opsgenie asks.
	u.RawQuery = url.Values{
		"scheduleIdentifierType": {c.cfg.IdentifierType},
		"flat":                   {"false"},
		"date":                   {at.Format(time.RFC3339)},
	}.Encode()
	return oncall.GetJSON(ctx, c.cfg.HTTPClient, oncall.GetRequest{Source: "opsgenie", Op: op, URL: u.String(), APIKey: c.cfg.APIKey,
		Headers: map[string]string{"Authorization": "GenieKey " + c.cfg.APIKey, "Accept": "application/json"}, ErrorMessage: c.errorMessage}, out)
}

// errorMessage reads Opsgenie's {"message","took","requestId"} (redacted, bounded), keeping the request id for
// Opsgenie support.
func (c *Client) errorMessage(body []byte) string {
	var e struct {
		Message   string `json:"message"`
		RequestID string `json:"requestId"`
	}
	if json.Unmarshal(body, &e) != nil || e.Message == "" {
		return ""
	}
	msg := e.Message
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	if e.RequestID != "" {
		msg += " (request " + e.RequestID + ")"
	}
	return oncall.Redact(msg, c.cfg.APIKey)
}
