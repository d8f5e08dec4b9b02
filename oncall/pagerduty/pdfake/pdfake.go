// Package pdfake is an in-process PagerDuty REST API v2 for tests: GET /oncalls (filters, since/until overlap,
// earliest, include[]=users, time_zone, limit/offset/more pagination with a configurable page-size cap) and
// GET /users/{id}, with API key checks (a wrong key gets 401 in PagerDuty's error format), fault injection and
// request recording. It follows PagerDuty's documented formats, not any client's needs.
package pdfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jitbot/jitbot/internal/httpfake"
)

// Fault and Request are the fault-injection and recording types (see FailNext, Requests).
type (
	Fault   = httpfake.Fault
	Request = httpfake.Request
)

// User is a PagerDuty user.
type User struct {
	ID, Name, Email string
}

// OnCall is one on-call entry: a user on call for an escalation policy at a level, through a schedule or
// (ScheduleID "") as a direct escalation target. Zero Start/End are rendered as null (permanent on-call).
type OnCall struct {
	UserID                                   string
	ScheduleID, ScheduleName                 string
	EscalationPolicyID, EscalationPolicyName string
	Level                                    int
	Start, End                               time.Time
}

// Server is a fake PagerDuty API. Embedded *httpfake.Box methods: FailNext, FailAlways, Heal, SetLatency,
// Requests, Reset.
type Server struct {
	*httptest.Server
	*httpfake.Box

	key string

	mu      sync.Mutex
	users   map[string]User
	oncalls []OnCall
	maxPage int
	now     func() time.Time
}

// New starts a fake that accepts the API key key ("Authorization: Token token=<key>"). Close it when done.
func New(key string) *Server {
	s := &Server{Box: &httpfake.Box{}, key: key, users: map[string]User{}, maxPage: 100, now: time.Now}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /oncalls", s.wrap(s.listOnCalls))
	mux.HandleFunc("GET /users/{id}", s.wrap(s.getUser))
	mux.HandleFunc("/", s.wrap(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, 2100, "Not Found")
	}))
	s.Server = httptest.NewServer(mux)
	return s
}

// SetPageSize caps the page size (PagerDuty's documented maximum for limit is 100; a small cap exercises
// pagination).
func (s *Server) SetPageSize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxPage = n
}

// SetNow sets the clock used when a request gives no since/until (default time.Now).
func (s *Server) SetNow(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// AddUser adds or replaces a user.
func (s *Server) AddUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[u.ID] = u
}

// AddOnCall adds on-call entries.
func (s *Server) AddOnCall(o ...OnCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oncalls = append(s.oncalls, o...)
}

// ClearOnCalls removes every on-call entry.
func (s *Server) ClearOnCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oncalls = nil
}

// Count returns how many recorded requests had the given path.
func (s *Server) Count(path string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Path == path {
			n++
		}
	}
	return n
}

func (s *Server) wrap(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ok := s.key != "" && r.Header.Get("Authorization") == "Token token="+s.key
		s.Serve(w, r, ok, errorBody, func(w http.ResponseWriter) {
			writeError(w, http.StatusUnauthorized, 2006, "Invalid Credentials")
		}, h)
	}
}

func errorBody(status int) string {
	code := 0
	msg := http.StatusText(status)
	switch status {
	case http.StatusTooManyRequests:
		code, msg = 2020, "Rate Limit Exceeded"
	case http.StatusUnauthorized:
		code, msg = 2006, "Invalid Credentials"
	case http.StatusForbidden:
		code, msg = 2010, "Access Denied"
	case http.StatusNotFound:
		code = 2100
	}
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "code": code}})
	return string(b)
}

func writeError(w http.ResponseWriter, status, code int, msg string, errs ...string) {
	e := map[string]any{"message": msg, "code": code}
	if len(errs) > 0 {
		e["errors"] = errs
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": e})
}

type ref struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Summary string `json:"summary"`
	Self    string `json:"self"`
	HTMLURL string `json:"html_url"`
	// Full user objects (include[]=users) also carry these.
	Name  string `json:"name,omitempty"`
	Email string `json:"email,omitempty"`
}

type entry struct {
	EscalationPolicy ref     `json:"escalation_policy"`
	EscalationLevel  int     `json:"escalation_level"`
	Schedule         *ref    `json:"schedule"`
	User             ref     `json:"user"`
	Start            *string `json:"start"`
	End              *string `json:"end"`
}

func (s *Server) listOnCalls(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	now := s.now()
	maxPage := s.maxPage
	all := slices.Clone(s.oncalls)
	users := make(map[string]User, len(s.users))
	for k, v := range s.users {
		users[k] = v
	}
	s.mu.Unlock()

	loc := time.UTC
	if tz := q.Get("time_zone"); tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil {
			writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "Time zone is invalid.")
			return
		}
		loc = l
	}
	since, until := now, now
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "Since is not a valid date.")
			return
		}
		since = t
		if q.Get("until") == "" {
			until = since
		}
	}
	if v := q.Get("until"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "Until is not a valid date.")
			return
		}
		until = t
	}
	if until.Before(since) {
		writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "Until cannot be before since.")
		return
	}
	limit := 25
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "Limit must be a positive integer.")
			return
		}
		limit = n
	}
	limit = min(limit, maxPage)
	offset := 0
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, 2001, "Invalid Input Provided", "Offset must be a non-negative integer.")
			return
		}
		offset = n
	}
	schedules, policies, userIDs := q["schedule_ids[]"], q["escalation_policy_ids[]"], q["user_ids[]"]
	includeUsers := slices.Contains(q["include[]"], "users")

	var hits []OnCall
	for _, o := range all {
		if len(schedules) > 0 {
			want := o.ScheduleID
			if want == "" {
				want = "null" // permanent on-calls: direct user escalation targets
			}
			if !slices.Contains(schedules, want) {
				continue
			}
		}
		if len(policies) > 0 && !slices.Contains(policies, o.EscalationPolicyID) {
			continue
		}
		if len(userIDs) > 0 && !slices.Contains(userIDs, o.UserID) {
			continue
		}
		// Overlap with [since, until]: an on-call period that overlaps the range is included.
		if !o.Start.IsZero() && o.Start.After(until) {
			continue
		}
		if !o.End.IsZero() && !o.End.After(since) {
			continue
		}
		hits = append(hits, o)
	}
	sort.SliceStable(hits, func(i, j int) bool {
		a, b := hits[i], hits[j]
		if a.EscalationPolicyID != b.EscalationPolicyID {
			return a.EscalationPolicyID < b.EscalationPolicyID
		}
		if a.Level != b.Level {
			return a.Level < b.Level
		}
		return a.Start.Before(b.Start)
	})
	if q.Get("earliest") == "true" {
		seen := map[string]bool{}
		var first []OnCall
		for _, o := range hits {
			k := o.EscalationPolicyID + "\x00" + strconv.Itoa(o.Level) + "\x00" + o.UserID
			if !seen[k] {
				seen[k] = true
				first = append(first, o)
			}
		}
		hits = first
	}

	page := []entry{}
	end := min(offset+limit, len(hits))
	for i := offset; i < end; i++ {
		page = append(page, s.render(r, hits[i], users, includeUsers, loc))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"oncalls": page, "limit": limit, "offset": offset, "more": end < len(hits), "total": nil,
	})
}

func (s *Server) render(r *http.Request, o OnCall, users map[string]User, includeUsers bool, loc *time.Location) entry {
	base := "http://" + r.Host
	u := users[o.UserID]
	e := entry{
		EscalationPolicy: ref{ID: o.EscalationPolicyID, Type: "escalation_policy_reference", Summary: o.EscalationPolicyName,
			Self: base + "/escalation_policies/" + o.EscalationPolicyID, HTMLURL: "https://example.pagerduty.com/escalation_policies/" + o.EscalationPolicyID},
		EscalationLevel: o.Level,
		User: ref{ID: o.UserID, Type: "user_reference", Summary: u.Name,
			Self: base + "/users/" + o.UserID, HTMLURL: "https://example.pagerduty.com/users/" + o.UserID},
	}
	if includeUsers {
		e.User.Type, e.User.Name, e.User.Email = "user", u.Name, u.Email
	}
	if o.ScheduleID != "" {
		e.Schedule = &ref{ID: o.ScheduleID, Type: "schedule_reference", Summary: o.ScheduleName,
			Self: base + "/schedules/" + o.ScheduleID, HTMLURL: "https://example.pagerduty.com/schedules/" + o.ScheduleID}
	}
	if !o.Start.IsZero() {
		v := o.Start.In(loc).Format(time.RFC3339)
		e.Start = &v
	}
	if !o.End.IsZero() {
		v := o.End.In(loc).Format(time.RFC3339)
		e.End = &v
	}
	return e
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	u, ok := s.users[id]
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, 2100, "Not Found")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"user": map[string]any{
		"id": u.ID, "type": "user", "summary": u.Name, "name": u.Name, "email": u.Email, "time_zone": "Etc/UTC",
		"self": "http://" + r.Host + "/users/" + u.ID, "html_url": "https://example.pagerduty.com/users/" + u.ID,
	}})
}

// String describes the fake (never the key).
func (s *Server) String() string {
	return fmt.Sprintf("pdfake at %s", strings.TrimPrefix(s.URL, "http://"))
}
