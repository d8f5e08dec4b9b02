// Package ogfake is an in-process Opsgenie "Who is On Call" API for tests: GET /v2/schedules/{identifier}/on-calls
// with scheduleIdentifierType (id|name), flat (onCallRecipients) and date, answering in Opsgenie's documented
// format ({"data":{"_parent":{...},"onCallParticipants":[...]},"took":..,"requestId":..}). It checks the API key
// ("Authorization: GenieKey <key>"; a wrong key gets 401 in Opsgenie's error format), injects faults and records
// requests. Opsgenie's on-calls endpoint is not paginated.
package ogfake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/jitbot/jitbot/internal/httpfake"
)

// Fault and Request are the fault-injection and recording types (see FailNext, Requests).
type (
	Fault   = httpfake.Fault
	Request = httpfake.Request
)

// Schedule is an Opsgenie schedule.
type Schedule struct {
	ID, Name string
	Disabled bool
}

// Participant is an on-call participant: Type "user" (Name is the username, an email address), "team" or
// "escalation"; Members are its nested onCallParticipants. EscalationTime (minutes) and NotifyType are only set
// on participants nested in an escalation.
type Participant struct {
	ID, Name, Type string
	Members        []Participant
	EscalationTime int
	NotifyType     string
}

// Shift puts a participant on call for a schedule from Start until End (zero: open-ended).
type Shift struct {
	Schedule    string // schedule id
	Participant Participant
	Start, End  time.Time
}

// Server is a fake Opsgenie API. Embedded *httpfake.Box methods: FailNext, FailAlways, Heal, SetLatency,
// Requests, Reset.
type Server struct {
	*httptest.Server
	*httpfake.Box

	key string

	mu        sync.Mutex
	schedules []Schedule
	shifts    []Shift
	now       func() time.Time
}

// New starts a fake accepting "Authorization: GenieKey <key>". Close it when done.
func New(key string) *Server {
	s := &Server{Box: &httpfake.Box{}, key: key, now: time.Now}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/schedules/{identifier}/on-calls", s.wrap(s.onCalls))
	mux.HandleFunc("/", s.wrap(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "Could not find handler for the request")
	}))
	s.Server = httptest.NewServer(mux)
	return s
}

// SetNow sets the clock used when a request has no date (default time.Now).
func (s *Server) SetNow(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// AddSchedule adds a schedule.
func (s *Server) AddSchedule(sc Schedule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.schedules = append(s.schedules, sc)
}

// AddShift adds shifts.
func (s *Server) AddShift(sh ...Shift) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shifts = append(s.shifts, sh...)
}

// Count returns how many recorded requests were made.
func (s *Server) Count() int { return len(s.Requests()) }

func (s *Server) wrap(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ok := s.key != "" && r.Header.Get("Authorization") == "GenieKey "+s.key
		s.Serve(w, r, ok, errorBody, func(w http.ResponseWriter) {
			writeError(w, http.StatusUnauthorized, "Could not authenticate")
		}, h)
	}
}

func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func errorBody(status int) string {
	msg := http.StatusText(status)
	if status == http.StatusTooManyRequests {
		msg = "Request throttled"
	}
	b, _ := json.Marshal(map[string]any{"message": msg, "took": 0.001, "requestId": requestID()})
	return string(b)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"message": msg, "took": 0.001, "requestId": requestID()})
}

type participantJSON struct {
	ID                 string            `json:"id"`
	Name               string            `json:"name"`
	Type               string            `json:"type"`
	OnCallParticipants []participantJSON `json:"onCallParticipants,omitempty"`
	EscalationTime     *int              `json:"escalationTime,omitempty"`
	NotifyType         string            `json:"notifyType,omitempty"`
}

func render(p Participant, inEscalation bool) participantJSON {
	j := participantJSON{ID: p.ID, Name: p.Name, Type: p.Type}
	if inEscalation {
		t := p.EscalationTime
		j.EscalationTime, j.NotifyType = &t, p.NotifyType
		if j.NotifyType == "" {
			j.NotifyType = "default"
		}
	}
	for _, m := range p.Members {
		j.OnCallParticipants = append(j.OnCallParticipants, render(m, p.Type == "escalation"))
	}
	return j
}

func userNames(p Participant, out *[]string) {
	if p.Type == "user" {
		*out = append(*out, p.Name)
	}
	for _, m := range p.Members {
		userNames(m, out)
	}
}

func (s *Server) onCalls(w http.ResponseWriter, r *http.Request) {
	ident := r.PathValue("identifier")
	q := r.URL.Query()
	byName := false
	switch q.Get("scheduleIdentifierType") {
	case "", "id":
	case "name":
		byName = true
	default:
		writeError(w, http.StatusUnprocessableEntity, "Invalid schedule identifier type")
		return
	}
	s.mu.Lock()
	date := s.now()
	var sc *Schedule
	for i := range s.schedules {
		if (byName && s.schedules[i].Name == ident) || (!byName && s.schedules[i].ID == ident) {
			c := s.schedules[i]
			sc = &c
		}
	}
	shifts := append([]Shift(nil), s.shifts...)
	s.mu.Unlock()

	if v := q.Get("date"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			t, err = time.Parse("2006-01-02T15:04:05-0700", v)
		}
		if err != nil {
			writeError(w, http.StatusUnprocessableEntity, "Invalid date format")
			return
		}
		date = t
	}
	if sc == nil {
		kind := "id"
		if byName {
			kind = "name"
		}
		writeError(w, http.StatusNotFound, "No schedule exists with "+kind+" ["+ident+"]")
		return
	}
	data := map[string]any{"_parent": map[string]any{"id": sc.ID, "name": sc.Name, "enabled": !sc.Disabled}}
	var parts []participantJSON
	var names []string
	for _, sh := range shifts {
		if sh.Schedule != sc.ID || sc.Disabled {
			continue
		}
		if (!sh.Start.IsZero() && date.Before(sh.Start)) || (!sh.End.IsZero() && !date.Before(sh.End)) {
			continue
		}
		parts = append(parts, render(sh.Participant, false))
		userNames(sh.Participant, &names)
	}
	if q.Get("flat") == "true" {
		if names == nil {
			names = []string{}
		}
		data["onCallRecipients"] = names
	} else {
		if parts == nil {
			parts = []participantJSON{}
		}
		data["onCallParticipants"] = parts
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"data": data, "took": 0.012, "requestId": requestID()})
}
