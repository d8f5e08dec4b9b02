// Package gcpfake is an in-memory Cloud Resource Manager v3 IAM policy server for tests: the getIamPolicy and
// setIamPolicy methods of projects, folders and organizations, in Google's documented REST format
// (https://cloud.google.com/resource-manager/reference/rest/v3/projects/getIamPolicy and setIamPolicy, the
// Policy, Binding and Expr messages, and the JSON error envelope
// {"error":{"code":409,"message":"...","status":"ABORTED"}}).
//
// It is written from the REST reference, not from what any adapter sends, and enforces what Google documents:
//
//   - Every resource has a Policy with an etag that changes on every write (base64 of a counter).
//   - getIamPolicy: options.requestedPolicyVersion must be 0, 1 or 3 (else 400 INVALID_ARGUMENT). A policy with
//     conditional bindings read with a version below 3 is returned as version 1 with the conditions hidden and
//     "_withcond_<hash>" appended to their role names. The response version is 3 only when the policy has
//     conditions.
//   - setIamPolicy: an etag that is not the current one is 409 ABORTED. Without an etag the write is a blind
//     overwrite (as Google allows; that is how conditions get lost). Conditions with a policy version below 3,
//     conditions on basic roles (roles/owner, roles/editor, roles/viewer), conditions without a title or
//     expression, version 2 or above 3, malformed members and an updateMask outside bindings, etag and
//     auditConfigs are 400 INVALID_ARGUMENT. Bindings with the same role and condition are merged and members
//     deduplicated, as IAM stores them.
//   - A resource that was never added answers 403 PERMISSION_DENIED, as Google does for a resource that does not
//     exist or that the caller cannot see ("Permission is denied if the policy or the resource do not exist").
//
// Tests can inject one-shot faults, add latency, change a policy behind the client's back (drift) and make a
// concurrent writer change the policy between a client's read and its write.
package gcpfake

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jitbot/jitbot/internal/httpfake"
)

// Policy is an IAM allow policy (google.iam.v1.Policy) as JSON.
type Policy struct {
	Version      int               `json:"version,omitempty"`
	Bindings     []Binding         `json:"bindings,omitempty"`
	AuditConfigs []json.RawMessage `json:"auditConfigs,omitempty"`
	Etag         string            `json:"etag,omitempty"`
}

// Binding associates members with a role, optionally under a condition.
type Binding struct {
	Role      string   `json:"role,omitempty"`
	Members   []string `json:"members,omitempty"`
	Condition *Expr    `json:"condition,omitempty"`
}

// Expr is a CEL condition (google.type.Expr).
type Expr struct {
	Expression  string `json:"expression,omitempty"`
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	Location    string `json:"location,omitempty"`
}

// HasCondition reports whether any binding is conditional.
func (p Policy) HasCondition() bool {
	return slices.ContainsFunc(p.Bindings, func(b Binding) bool { return b.Condition != nil })
}

// Clone returns a deep copy.
func (p Policy) Clone() Policy {
	c := p
	c.AuditConfigs = slices.Clone(p.AuditConfigs)
	c.Bindings = make([]Binding, len(p.Bindings))
	for i, b := range p.Bindings {
		c.Bindings[i] = Binding{Role: b.Role, Members: slices.Clone(b.Members)}
		if b.Condition != nil {
			e := *b.Condition
			c.Bindings[i].Condition = &e
		}
	}
	if len(p.Bindings) == 0 {
		c.Bindings = nil
	}
	return c
}

// Request is one call the fake received.
type Request struct {
	Method   string // "getIamPolicy" or "setIamPolicy" (or the unknown method named in the path)
	Resource string // "projects/p1"
	HTTP     string // HTTP method
	Path     string
	Query    url.Values
	Header   http.Header
	Body     []byte
	// Status is the HTTP status the fake answered.
	Status int
}

// GetBody is the JSON body of getIamPolicy.
type GetBody struct {
	Options *struct {
		RequestedPolicyVersion *int `json:"requestedPolicyVersion,omitempty"`
	} `json:"options,omitempty"`
}

// SetBody is the JSON body of setIamPolicy.
type SetBody struct {
	Policy     *Policy `json:"policy,omitempty"`
	UpdateMask string  `json:"updateMask,omitempty"`
}

// Fault is an error the fake answers once instead of handling a call.
type Fault struct {
	// Method limits the fault to "getIamPolicy" or "setIamPolicy"; empty means the next call of either.
	Method  string
	Code    int    // HTTP status
	Status  string // canonical status name: RESOURCE_EXHAUSTED, ABORTED, NOT_FOUND, PERMISSION_DENIED, INTERNAL, ...
	Message string
}

// Canonical faults.
var (
	Throttled    = Fault{Code: 429, Status: "RESOURCE_EXHAUSTED", Message: "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute' of service 'cloudresourcemanager.googleapis.com'."}
	Conflict     = Fault{Code: 409, Status: "ABORTED", Message: "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff."}
	NotFound     = Fault{Code: 404, Status: "NOT_FOUND", Message: "Requested entity was not found."}
	AccessDenied = Fault{Code: 403, Status: "PERMISSION_DENIED", Message: "The caller does not have permission"}
	ServerError  = Fault{Code: 500, Status: "INTERNAL", Message: "Internal error encountered."}
	Unavailable  = Fault{Code: 503, Status: "UNAVAILABLE", Message: "The service is currently unavailable."}
)

// Server is the fake. Create it with New; it is safe for concurrent use.
type Server struct {
	*httptest.Server

	mu         sync.Mutex
	policies   map[string]*Policy
	counter    uint64
	requests   []Request
	faults     httpfake.Injector[Fault]
	concurrent int // setIamPolicy calls still to be preceded by a concurrent writer
	writerN    int
}

// New starts a fake with no resources. Close it when done (t.Cleanup(s.Close)).
func New() *Server {
	s := &Server{policies: map[string]*Policy{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// AddResource creates resource ("projects/p1", "folders/123", "organizations/456") with the given bindings
// (copied). Adding an existing resource replaces its policy.
func (s *Server) AddResource(resource string, bindings ...Binding) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := Policy{Bindings: bindings}.Clone()
	p.Bindings = normalize(p.Bindings)
	s.store(resource, p)
}

// RemoveResource deletes a resource: later calls answer 403, as for a deleted project.
func (s *Server) RemoveResource(resource string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.policies, resource)
}

// Policy returns a copy of the stored policy (version 3 if it has conditions), and whether the resource exists.
func (s *Server) Policy(resource string) (Policy, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.policies[resource]
	if !ok {
		return Policy{}, false
	}
	return s.view(*p, 3), true
}

// Mutate changes a policy behind the client's back (drift): fn edits a copy, which is stored with a new etag.
// It reports false if the resource does not exist.
func (s *Server) Mutate(resource string, fn func(*Policy)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.policies[resource]
	if !ok {
		return false
	}
	c := p.Clone()
	fn(&c)
	c.Bindings = normalize(c.Bindings)
	s.store(resource, c)
	return true
}

// ConcurrentWrites makes the next n setIamPolicy calls meet a concurrent writer: just before each is handled,
// another principal's binding is added to the same policy, so its etag changes between the client's read and
// its write and the call answers 409 ABORTED. The added bindings are "roles/browser" for
// "user:concurrent-writer-<k>@example.com".
func (s *Server) ConcurrentWrites(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.concurrent = n
}

// Fail makes the next matching call fail with f (queued after faults injected before).
func (s *Server) Fail(f Fault) { s.faults.FailNext(1, f) }

// SetLatency delays every following call by d (0 stops it); a call whose client goes away stops waiting.
func (s *Server) SetLatency(d time.Duration) { s.faults.SetLatency(d) }

// Reset clears pending faults, latency and concurrent writers (not policies or recorded requests).
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.Clear()
	s.concurrent = 0
}

// Requests returns a copy of the calls received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// ClearRequests forgets the recorded calls.
func (s *Server) ClearRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

var pathRe = regexp.MustCompile(`^/v3/((?:projects|folders|organizations)/[^/:]+):([A-Za-z]+)$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	rec := Request{HTTP: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(), Body: body}
	m := pathRe.FindStringSubmatch(r.URL.Path)
	if m != nil {
		rec.Resource, rec.Method = m[1], m[2]
	}
	status := s.handle(w, r, &rec, m != nil)
	rec.Status = status
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	s.mu.Unlock()
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request, rec *Request, matched bool) int {
	if !httpfake.Wait(r.Context(), s.faults.Latency(), nil) {
		return 499
	}
	if !matched || (rec.Method != "getIamPolicy" && rec.Method != "setIamPolicy") {
		return writeError(w, Fault{Code: 404, Status: "NOT_FOUND", Message: "Method not found."})
	}
	if r.Method != http.MethodPost {
		return writeError(w, Fault{Code: 405, Status: "INVALID_ARGUMENT", Message: "Method " + r.Method + " not allowed; use POST."})
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return writeError(w, invalid("Content-Type must be application/json"))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.faults.Take(func(f Fault) bool { return f.Method == "" || f.Method == rec.Method }); ok {
		return writeError(w, f)
	}
	pol, ok := s.policies[rec.Resource]
	if !ok {
		return writeError(w, AccessDenied)
	}
	if rec.Method == "getIamPolicy" {
		return s.get(w, rec, *pol)
	}
	return s.set(w, rec, pol)
}

func (s *Server) get(w http.ResponseWriter, rec *Request, pol Policy) int {
	var body GetBody
	if len(rec.Body) > 0 {
		if err := strictJSON(rec.Body, &body); err != nil {
			return writeError(w, invalid("Invalid JSON payload received. "+err.Error()))
		}
	}
	requested := 0
	if body.Options != nil && body.Options.RequestedPolicyVersion != nil {
		requested = *body.Options.RequestedPolicyVersion
	}
	switch requested {
	case 0, 1, 3:
	default:
		return writeError(w, invalid(fmt.Sprintf("Invalid requested policy version %d: valid values are 0, 1 and 3.", requested)))
	}
	return writeJSON(w, s.view(pol, requested))
}

// view formats a stored policy for a reader that asked for version requested.
func (s *Server) view(pol Policy, requested int) Policy {
	out := pol.Clone()
	out.Version = 1
	if !pol.HasCondition() {
		return out
	}
	if requested == 3 {
		out.Version = 3
		return out
	}
	for i, b := range out.Bindings {
		if b.Condition != nil {
			h := sha256.Sum256([]byte(b.Condition.Title + "\x00" + b.Condition.Description + "\x00" + b.Condition.Expression))
			out.Bindings[i].Role = b.Role + "_withcond_" + hex.EncodeToString(h[:10])
			out.Bindings[i].Condition = nil
		}
	}
	return out
}

var basicRoles = map[string]bool{"roles/owner": true, "roles/editor": true, "roles/viewer": true}

var memberRe = regexp.MustCompile(`^(?:(?:user|group|serviceAccount):[^@\s:]+@[^@\s:]+|domain:[a-z0-9.-]+|deleted:(?:user|group|serviceAccount):[^@\s]+@[^@\s?]+\?uid=[0-9]+|principal(?:Set)?://\S+|allUsers|allAuthenticatedUsers|projectOwner:\S+|projectEditor:\S+|projectViewer:\S+)$`)

func (s *Server) set(w http.ResponseWriter, rec *Request, stored *Policy) int {
	var body SetBody
	if err := strictJSON(rec.Body, &body); err != nil {
		return writeError(w, invalid("Invalid JSON payload received. "+err.Error()))
	}
	if body.Policy == nil {
		return writeError(w, invalid("Request contains an invalid argument: policy is required."))
	}
	// The default mask is "bindings, etag"; fields outside the mask keep their stored value.
	mask := []string{"bindings", "etag"}
	if body.UpdateMask != "" {
		mask = nil
		for _, f := range strings.Split(body.UpdateMask, ",") {
			switch f = strings.TrimSpace(f); f {
			case "bindings", "etag":
				mask = append(mask, f)
			case "auditConfigs", "audit_configs":
				mask = append(mask, "auditConfigs")
			default:
				return writeError(w, invalid(fmt.Sprintf("Invalid update mask path %q.", f)))
			}
		}
	}
	if s.concurrent > 0 {
		s.concurrent--
		s.writerN++
		c := stored.Clone()
		c.Bindings = normalize(append(c.Bindings, Binding{Role: "roles/browser",
			Members: []string{fmt.Sprintf("user:concurrent-writer-%d@example.com", s.writerN)}}))
		s.store(rec.Resource, c)
		stored = s.policies[rec.Resource]
	}
	p := body.Policy.Clone()
	if p.Etag != "" && p.Etag != stored.Etag {
		return writeError(w, Conflict)
	}
	switch p.Version {
	case 0, 1, 3:
	default:
		return writeError(w, invalid(fmt.Sprintf("Invalid policy version %d: valid values are 0, 1 and 3.", p.Version)))
	}
	for _, b := range p.Bindings {
		if b.Role == "" {
			return writeError(w, invalid("Request contains an invalid argument: a binding has no role."))
		}
		if strings.Contains(b.Role, "_withcond_") {
			return writeError(w, invalid(fmt.Sprintf("Role %s is not supported: it is a version 1 placeholder for a conditional binding; read and write the policy with version 3.", b.Role)))
		}
		for _, m := range b.Members {
			if !memberRe.MatchString(m) {
				return writeError(w, invalid(fmt.Sprintf("Invalid member name %q.", m)))
			}
		}
		if b.Condition == nil {
			continue
		}
		if p.Version < 3 {
			return writeError(w, invalid("Request contains an invalid argument: policies with conditions must be set with version 3."))
		}
		if basicRoles[b.Role] {
			return writeError(w, invalid("LintValidationUnits/BindingRoleAllowConditionCheck Error: Conditions can't be set on primitive roles"))
		}
		if b.Condition.Title == "" || b.Condition.Expression == "" {
			return writeError(w, invalid("Request contains an invalid argument: a condition needs a title and an expression."))
		}
	}
	if !slices.Contains(mask, "bindings") {
		p.Bindings = stored.Clone().Bindings
	}
	p.Bindings = normalize(p.Bindings)
	if !slices.Contains(mask, "auditConfigs") {
		p.AuditConfigs = slices.Clone(stored.AuditConfigs)
	}
	s.store(rec.Resource, p)
	return writeJSON(w, s.view(*s.policies[rec.Resource], 3))
}

// store saves p under resource with a fresh etag. Callers hold s.mu.
func (s *Server) store(resource string, p Policy) {
	s.counter++
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], s.counter)
	p.Etag = base64.StdEncoding.EncodeToString(b[:])
	p.Version = 0
	s.policies[resource] = &p
}

// normalize merges bindings with the same role and condition, deduplicates members and drops empty bindings.
func normalize(bs []Binding) []Binding {
	var out []Binding
	for _, b := range bs {
		i := slices.IndexFunc(out, func(o Binding) bool { return o.Role == b.Role && sameExpr(o.Condition, b.Condition) })
		if i < 0 {
			out = append(out, Binding{Role: b.Role, Condition: b.Condition})
			i = len(out) - 1
		}
		for _, m := range b.Members {
			if !slices.Contains(out[i].Members, m) {
				out[i].Members = append(out[i].Members, m)
			}
		}
	}
	return slices.DeleteFunc(out, func(b Binding) bool { return len(b.Members) == 0 })
}

func sameExpr(a, b *Expr) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func invalid(msg string) Fault { return Fault{Code: 400, Status: "INVALID_ARGUMENT", Message: msg} }

func writeError(w http.ResponseWriter, f Fault) int {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(f.Code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": f.Code, "message": f.Message, "status": f.Status}})
	return f.Code
}

func writeJSON(w http.ResponseWriter, v any) int {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(v)
	return http.StatusOK
}
