// Package azurefake is an in-memory Azure Resource Manager for tests of jitbot's Azure adapter: an
// httptest TLS server that speaks the documented wire format of Microsoft.Authorization roleAssignments
// (api-version 2022-04-01) and of PIM roleAssignmentScheduleRequests / roleAssignmentScheduleInstances
// (api-version 2020-10-01), including ARM's error bodies ({"error":{"code":...,"message":...}}).
//
// It is built from Microsoft's REST reference and examples (azure-rest-api-specs), not from what the adapter
// sends: it requires the api-version of each resource type and a Bearer token (never echoed), keeps state per
// scope, answers 409 RoleAssignmentExists when the same principal, role and scope is assigned under another
// name, can simulate Entra replication delay (400 PrincipalNotFound for the first N writes naming a new
// principal), records every request, injects one-shot faults, and lets a test change state behind the
// adapter's back (drift).
//
// PIM is modelled as the adapter needs it and as documented: an AdminAssign creates a schedule (named like the
// request) and its active instance; AdminExtend (later end only) and AdminUpdate change the end of the existing
// assignment in place and become the schedule's roleAssignmentScheduleRequestId; AdminRemove ends it;
// GET roleAssignmentSchedules/{name} answers the schedule of an active instance; every request the adapter
// makes has requestor CallerID, and $filter=asRequestor() lists only those. AdminAssign (the method) assigns as
// a human administrator would, through a request of AdminID.
//
// Divergences from Azure, known and deliberate:
//   - requests are processed at once unless SetProvisionDelay (or StartRequest) makes them pending; a pending
//     request answers PendingProvisioning / PendingRevocation, while real PIM may also show Accepted or
//     ProvisioningStarted; the checks of a request (RoleAssignmentExists, ...) are made when it is PUT;
//   - a schedule is forgotten with its instance (404 after it ends or is removed); Azure keeps ended schedules;
//   - which request a schedule names after an AdminExtend/AdminUpdate (the fake: the last one) is not documented;
//     the adapter's ownership test holds either way for its own changes;
//   - an AdminExtend that does not move the end later answers 400 InvalidScheduleInfo (the real code is not
//     documented), as does a schedule ending in the past;
//   - the 14-day "expiring soon" window of the portal's Extend is not enforced (jitbot's leases are hours);
//   - the back doors AddAssignment, AdminAssign and SetInstance create an assignment even when the principal
//     already holds the role at the scope; through the API ARM answers 409 RoleAssignmentExists and PIM 400
//     RoleAssignmentExists, so Azure never shows two at once (an administrator's equal assignment appears only
//     before jitbot's grant or after its revoke). The shared suite's OtherAccessRemains case holds jitbot's and
//     an administrator's at once through them. On that state, which PIM cannot hold, an AdminRemove ends only
//     the instances whose schedule a request of the same requestor made (if there are any; else all, as for
//     the one assignment Azure holds); a roleAssignments DELETE removes the one it names, as always.
package azurefake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jitbot/jitbot/internal/httpfake"
)

// API versions the fake serves.
const (
	RoleAssignmentsAPIVersion = "2022-04-01"
	PIMAPIVersion             = "2020-10-01"
)

const authzProviders = "/providers/microsoft.authorization/"

// Request is one recorded request. The Authorization header is never recorded: only whether a Bearer token
// was present.
type Request struct {
	Method    string
	Path      string     // URL path as received
	Query     url.Values // decoded query
	RawQuery  string
	Body      []byte
	HadBearer bool
	Status    int    // the status the fake answered
	ErrorCode string // the ARM error code answered, if any
	ClientUA  string
}

// Fault is a one-shot failure.
type Fault struct {
	Status     int
	Code       string
	Message    string
	RetryAfter string // Retry-After header value, "" for none
	// Match limits the fault to requests it accepts (nil: the next request of any kind).
	Match func(method, path string) bool
}

// Fault constructors with ARM's codes and messages.
func Throttled(retryAfterSeconds int) Fault {
	return Fault{Status: http.StatusTooManyRequests, Code: "TooManyRequests", RetryAfter: strconv.Itoa(retryAfterSeconds),
		Message: "The request is being throttled as the limit has been reached for operation type - Write_ObservationWindow_00:05:00."}
}
func Conflict() Fault {
	return Fault{Status: http.StatusConflict, Code: "Conflict", Message: "The request failed due to conflict with a concurrent request."}
}
func NotFound() Fault {
	return Fault{Status: http.StatusNotFound, Code: "RoleAssignmentNotFound", Message: "The role assignment is not found."}
}
func AuthorizationFailed() Fault {
	return Fault{Status: http.StatusForbidden, Code: "AuthorizationFailed",
		Message: "The client 'jitbot' with object id '00000000-0000-0000-0000-000000000000' does not have authorization to perform action 'Microsoft.Authorization/roleAssignments/write' over scope or the scope is invalid. If access was recently granted, please refresh your credentials."}
}
func ServerError() Fault {
	return Fault{Status: http.StatusInternalServerError, Code: "InternalServerError", Message: "Encountered internal server error. Diagnostic information: timestamp '', subscription id '', tracking id '', request correlation id ''."}
}
func PrincipalNotFound(principal string) Fault {
	return Fault{Status: http.StatusBadRequest, Code: "PrincipalNotFound", Message: principalNotFoundMessage(principal)}
}

func principalNotFoundMessage(principal string) string {
	return fmt.Sprintf("Principal %s does not exist in the directory %s. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype", strings.ReplaceAll(principal, "-", ""), TenantID)
}

// Requestor identities: every request the adapter makes is made by CallerID (the bot's service principal);
// AdminAssign makes requests as AdminID (a human administrator in the portal). $filter=asRequestor() lists only
// CallerID's requests.
const (
	CallerID = "00000000-0000-0000-0000-0000000000b0"
	AdminID  = "00000000-0000-0000-0000-0000000000ad"
)

// TenantID is the fake directory's tenant id.
const TenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"

// Assignment is a role assignment held by the fake.
type Assignment struct {
	ID, Name, Scope               string
	PrincipalID, PrincipalType    string
	RoleDefinitionID, Description string
	CreatedOn                     time.Time
}

// ScheduleRequest is a PIM role assignment schedule request held by the fake.
type ScheduleRequest struct {
	ID, Name, Scope                    string
	PrincipalID, RoleDefinitionID      string
	RequestType, Status, Justification string
	StartDateTime                      time.Time
	ExpirationType, Duration           string
	EndDateTime                        *time.Time
	TargetRoleAssignmentScheduleID     string
	RequestorID                        string // CallerID for the adapter's requests, AdminID for AdminAssign's
	CreatedOn                          time.Time
}

// Instance is an active PIM role assignment schedule instance.
type Instance struct {
	ID, Name, Scope            string
	PrincipalID, PrincipalType string
	RoleDefinitionID           string
	ScheduleID                 string
	// RequestID is the schedule request that created the instance's schedule or changed it last ("" for an
	// instance made with SetInstance, as if assigned before PIM kept requests). The schedule's
	// roleAssignmentScheduleRequestId answers it.
	RequestID     string
	StartDateTime time.Time
	EndDateTime   *time.Time
	CreatedOn     time.Time
}

// Server is the fake. Configure it through its fields before use or through its methods at any time.
type Server struct {
	*httptest.Server

	// Now is the fake's clock (default time.Now). PIM instances end at their EndDateTime by this clock.
	Now func() time.Time
	// MinActiveDuration: an AdminRemove earlier than this after the assignment started answers 400
	// ActiveDurationTooShort (PIM's five-minute floor). Default 0 (off).
	MinActiveDuration time.Duration
	// MaxDuration: an AdminAssign longer than this answers 400 RoleAssignmentRequestPolicyValidationFailed
	// (ExpirationRule). Default 0 (no limit).
	MaxDuration time.Duration
	// IdempotentPut makes a repeated PUT of the same role assignment (same name, principal, role and scope)
	// answer 200. By default it answers 409 RoleAssignmentExists, as ARM has been reported to do.
	IdempotentPut bool
	// PendingStatus is the status a pending AdminAssign/AdminExtend/AdminUpdate answers (SetProvisionDelay);
	// default PendingProvisioning. PIM also shows Accepted, Granted or ScheduleCreated before Provisioned.
	PendingStatus string
	// Drift, if set, runs before every request is handled (without the fake's lock), e.g. to remove an
	// assignment between two calls of the adapter.
	Drift func(s *Server, method, path string)

	mu          sync.Mutex
	assignments map[string]*Assignment      // key: lower-case id
	requests    map[string]*ScheduleRequest // key: lower-case id
	instances   map[string]*Instance        // key: lower-case id
	roleDefs    map[string]bool             // allowed role definition GUIDs (nil: any)
	faults      httpfake.Injector[Fault]
	replication int            // PrincipalNotFound for the first N writes naming a new principal
	attempts    map[string]int // writes seen per principal
	replicated  map[string]bool
	log         []Request
	seq         int
	delay       time.Duration // SetProvisionDelay
	pending     []*pendingOp
}

// pendingOp is a schedule request PIM has accepted but not processed yet.
type pendingOp struct {
	req     *ScheduleRequest
	effect  func()
	final   string
	readyAt time.Time
}

// New starts a fake. Close it when done (t.Cleanup(s.Close)).
func New() *Server {
	s := &Server{
		assignments: map[string]*Assignment{},
		requests:    map[string]*ScheduleRequest{},
		instances:   map[string]*Instance{},
		attempts:    map[string]int{},
		replicated:  map[string]bool{},
	}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// --- test controls ---

// FailNext queues one-shot faults, used in order by the next matching requests.
func (s *Server) FailNext(f ...Fault) {
	for _, f := range f {
		s.faults.FailNext(1, f)
	}
}

// SetLatency delays every following request by d (0 to stop). A request whose client goes away stops waiting.
func (s *Server) SetLatency(d time.Duration) { s.faults.SetLatency(d) }

// SetReplicationDelay makes the first n writes (role assignment PUTs and AdminAssign requests) naming a
// principal the fake has not seen answer 400 PrincipalNotFound, as Entra replication to ARM does.
func (s *Server) SetReplicationDelay(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replication = n
}

// SetRoleDefinitions restricts the role definitions that exist (by GUID); others answer 400
// RoleDefinitionDoesNotExist. No call: every role definition exists.
func (s *Server) SetRoleDefinitions(guids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roleDefs = map[string]bool{}
	for _, g := range guids {
		s.roleDefs[strings.ToLower(g)] = true
	}
}

// Reset clears pending faults and latency (state is kept).
func (s *Server) Reset() { s.faults.Clear() }

// Requests returns the recorded requests.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.log...)
}

// ClearRequests forgets the recorded requests.
func (s *Server) ClearRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = nil
}

func guidOf(roleDefID string) string {
	i := strings.LastIndexByte(roleDefID, '/')
	return strings.ToLower(roleDefID[i+1:])
}

func normScope(scope string) string {
	scope = strings.TrimSuffix(scope, "/")
	if !strings.HasPrefix(scope, "/") {
		scope = "/" + scope
	}
	return scope
}

// Assignments returns the role assignments that grant roleDefinitionID (any form; compared by GUID) to principal
// exactly at scope.
func (s *Server) Assignments(scope, principal, roleDefinitionID string) []Assignment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Assignment
	for _, a := range s.assignments {
		if strings.EqualFold(a.Scope, normScope(scope)) && strings.EqualFold(a.PrincipalID, principal) && guidOf(a.RoleDefinitionID) == guidOf(roleDefinitionID) {
			out = append(out, *a)
		}
	}
	return out
}

// AllAssignments returns every role assignment, sorted by id.
func (s *Server) AllAssignments() []Assignment {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Assignment
	for _, a := range s.assignments {
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// AddAssignment creates a role assignment behind the adapter's back (drift, or a standing assignment), even
// when an equal one exists (ARM's PUT refuses that; see the package documentation).
func (s *Server) AddAssignment(scope, name, principal, principalType, roleDefinitionID, description string) Assignment {
	s.mu.Lock()
	defer s.mu.Unlock()
	scope = normScope(scope)
	a := &Assignment{ID: scope + "/providers/Microsoft.Authorization/roleAssignments/" + name, Name: name, Scope: scope,
		PrincipalID: principal, PrincipalType: principalType, RoleDefinitionID: roleDefinitionID, Description: description, CreatedOn: s.now()}
	s.assignments[strings.ToLower(a.ID)] = a
	return *a
}

// RemoveAssignments deletes the role assignments of roleDefinitionID to principal at scope behind the adapter's
// back and returns how many there were.
func (s *Server) RemoveAssignments(scope, principal, roleDefinitionID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, a := range s.assignments {
		if strings.EqualFold(a.Scope, normScope(scope)) && strings.EqualFold(a.PrincipalID, principal) && guidOf(a.RoleDefinitionID) == guidOf(roleDefinitionID) {
			delete(s.assignments, k)
			n++
		}
	}
	return n
}

// ActiveInstances returns the active PIM instances of roleDefinitionID for principal exactly at scope.
func (s *Server) ActiveInstances(scope, principal, roleDefinitionID string) []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Instance
	for _, in := range s.activeLocked() {
		if strings.EqualFold(in.Scope, normScope(scope)) && strings.EqualFold(in.PrincipalID, principal) && guidOf(in.RoleDefinitionID) == guidOf(roleDefinitionID) {
			out = append(out, *in)
		}
	}
	return out
}

// SetInstance makes principal hold roleDefinitionID at scope through PIM until end (nil: permanent) when present
// is true (even when it holds it already: see the package documentation), and removes every such instance when
// false: drift behind the adapter's back.
func (s *Server) SetInstance(scope, principal, roleDefinitionID string, present bool, end *time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	scope = normScope(scope)
	if !present {
		for k, in := range s.instances {
			if strings.EqualFold(in.Scope, scope) && strings.EqualFold(in.PrincipalID, principal) && guidOf(in.RoleDefinitionID) == guidOf(roleDefinitionID) {
				delete(s.instances, k)
			}
		}
		return
	}
	s.addInstanceLocked(scope, principal, "User", roleDefinitionID, s.now(), end, "")
}

// ScheduleRequests returns every schedule request, sorted by creation.
func (s *Server) ScheduleRequests() []ScheduleRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ScheduleRequest
	for _, r := range s.requests {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].CreatedOn.Before(out[j].CreatedOn) || (out[i].CreatedOn.Equal(out[j].CreatedOn) && out[i].ID < out[j].ID)
	})
	return out
}

// --- HTTP ---

type armError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), RawQuery: r.URL.RawQuery, Body: body, ClientUA: r.UserAgent()}
	auth := r.Header.Get("Authorization")
	rec.HadBearer = strings.HasPrefix(auth, "Bearer ") && len(auth) > len("Bearer ")

	s.mu.Lock()
	s.seq++
	reqID := fmt.Sprintf("00000000-0000-4000-8000-%012d", s.seq)
	s.mu.Unlock()
	w.Header().Set("x-ms-request-id", reqID)
	w.Header().Set("x-ms-correlation-request-id", reqID)

	status, code := s.handle(w, r, &rec)
	rec.Status, rec.ErrorCode = status, code
	s.mu.Lock()
	s.log = append(s.log, rec)
	s.mu.Unlock()
}

// handle answers one request and returns the status and error code written.
func (s *Server) handle(w http.ResponseWriter, r *http.Request, rec *Request) (int, string) {
	if !httpfake.Wait(r.Context(), s.faults.Latency(), nil) {
		return 0, "client gone"
	}
	if !rec.HadBearer {
		if r.Header.Get("Authorization") == "" {
			return writeErr(w, http.StatusUnauthorized, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
		}
		return writeErr(w, http.StatusUnauthorized, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is provided in an invalid format.")
	}
	if s.Drift != nil {
		s.Drift(s, r.Method, r.URL.Path)
	}

	// Route: {scope}/providers/Microsoft.Authorization/{type}[/{name}]
	path := r.URL.Path
	if strings.Contains(path, "//") {
		return writeErr(w, http.StatusBadRequest, "InvalidResourceId", fmt.Sprintf("The resource id '%s' is not valid.", path))
	}
	i := strings.LastIndex(strings.ToLower(path), authzProviders)
	if i < 0 {
		return writeErr(w, http.StatusNotFound, "NoRegisteredProviderFound", "No registered resource provider found for the request path.")
	}
	scope, rest := path[:i], path[i+len(authzProviders):]
	if !validScope(scope) {
		return writeErr(w, http.StatusBadRequest, "InvalidScope", fmt.Sprintf("The scope '%s' is not valid.", scope))
	}
	typ, name, _ := strings.Cut(rest, "/")
	typ = strings.ToLower(typ)
	want := ""
	switch typ {
	case "roleassignments":
		want = RoleAssignmentsAPIVersion
	case "roleassignmentschedulerequests", "roleassignmentscheduleinstances", "roleassignmentschedules":
		want = PIMAPIVersion
	default:
		return writeErr(w, http.StatusNotFound, "InvalidResourceType", fmt.Sprintf("The resource type '%s' could not be found in the namespace 'Microsoft.Authorization'.", typ))
	}
	av := r.URL.Query().Get("api-version")
	if av == "" {
		return writeErr(w, http.StatusBadRequest, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
	}
	if av != want {
		return writeErr(w, http.StatusBadRequest, "InvalidApiVersionParameter",
			fmt.Sprintf("The api-version '%s' is invalid. The supported versions are '%s'.", av, want))
	}

	if fault, ok := s.faults.Take(func(f Fault) bool { return f.Match == nil || f.Match(r.Method, path) }); ok {
		if fault.RetryAfter != "" {
			w.Header().Set("Retry-After", fault.RetryAfter)
		}
		return writeErr(w, fault.Status, fault.Code, fault.Message)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked(false)
	scope = normScope(scope)
	switch {
	case typ == "roleassignments" && name == "" && r.Method == http.MethodGet:
		return s.listAssignments(w, r, scope)
	case typ == "roleassignments" && name != "" && !strings.Contains(name, "/"):
		switch r.Method {
		case http.MethodPut:
			return s.putAssignment(w, scope, name, rec.Body)
		case http.MethodGet:
			a, ok := s.assignments[strings.ToLower(assignmentID(scope, name))]
			if !ok {
				return writeErr(w, http.StatusNotFound, "RoleAssignmentNotFound", fmt.Sprintf("The role assignment '%s' is not found.", name))
			}
			return writeJSON(w, http.StatusOK, assignmentJSON(a))
		case http.MethodDelete:
			k := strings.ToLower(assignmentID(scope, name))
			a, ok := s.assignments[k]
			if !ok {
				w.WriteHeader(http.StatusNoContent)
				return http.StatusNoContent, ""
			}
			delete(s.assignments, k)
			return writeJSON(w, http.StatusOK, assignmentJSON(a))
		}
	case typ == "roleassignmentschedulerequests" && name == "" && r.Method == http.MethodGet:
		return s.listRequests(w, r, scope)
	case typ == "roleassignmentschedulerequests" && name != "" && !strings.Contains(name, "/"):
		switch r.Method {
		case http.MethodPut:
			return s.putRequest(w, scope, name, rec.Body)
		case http.MethodGet:
			req, ok := s.requests[strings.ToLower(requestID(scope, name))]
			if !ok {
				return writeErr(w, http.StatusNotFound, "RoleAssignmentScheduleRequestNotFound", fmt.Sprintf("The role assignment schedule request '%s' is not found.", name))
			}
			return writeJSON(w, http.StatusOK, requestJSON(req))
		}
	case typ == "roleassignmentscheduleinstances" && name == "" && r.Method == http.MethodGet:
		return s.listInstances(w, r, scope)
	case typ == "roleassignmentschedules" && name != "" && !strings.Contains(name, "/") && r.Method == http.MethodGet:
		return s.getSchedule(w, scope, name)
	}
	return writeErr(w, http.StatusMethodNotAllowed, "MethodNotAllowed", fmt.Sprintf("The requested method '%s' is not allowed on this resource.", r.Method))
}

var (
	guidRE     = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	subScopeRE = regexp.MustCompile(`^/subscriptions/[0-9a-fA-F-]{36}(/resourceGroups/[^/]+(/providers/[^/]+(/[^/]+/[^/]+)+)?)?$`)
	mgScopeRE  = regexp.MustCompile(`(?i)^/providers/Microsoft\.Management/managementGroups/[^/]+$`)
	roleDefRE  = regexp.MustCompile(`(?i)^(/subscriptions/[0-9a-f-]{36}|/providers/Microsoft\.Management/managementGroups/[^/]+)?/providers/Microsoft\.Authorization/roleDefinitions/[0-9a-f-]{36}$`)
)

func validScope(scope string) bool {
	return subScopeRE.MatchString(scope) || mgScopeRE.MatchString(scope)
}

func writeJSON(w http.ResponseWriter, status int, v any) (int, string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
	return status, ""
}

func writeErr(w http.ResponseWriter, status int, code, msg string) (int, string) {
	var e armError
	e.Error.Code, e.Error.Message = code, msg
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("x-ms-failure-cause", "service")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(e)
	return status, code
}

func assignmentID(scope, name string) string {
	return scope + "/providers/Microsoft.Authorization/roleAssignments/" + name
}

func requestID(scope, name string) string {
	return scope + "/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/" + name
}

// subscriptionOf returns "/subscriptions/<id>" of a scope, "" for management groups.
func subscriptionOf(scope string) string {
	parts := strings.Split(scope, "/")
	if len(parts) >= 3 && strings.EqualFold(parts[1], "subscriptions") {
		return "/subscriptions/" + parts[2]
	}
	return ""
}

// tenantRoleID is the form ARM answers role definition ids in (the documented examples show
// "/providers/Microsoft.Authorization/roleDefinitions/<guid>" for a request that named the subscription form).
func tenantRoleID(id string) string {
	return "/providers/Microsoft.Authorization/roleDefinitions/" + guidOf(id)
}

func assignmentJSON(a *Assignment) map[string]any {
	props := map[string]any{
		"roleDefinitionId": tenantRoleID(a.RoleDefinitionID),
		"principalId":      a.PrincipalID,
		"principalType":    a.PrincipalType,
		"scope":            a.Scope,
		"createdOn":        a.CreatedOn.Format(time.RFC3339Nano),
		"updatedOn":        a.CreatedOn.Format(time.RFC3339Nano),
	}
	if a.Description != "" {
		props["description"] = a.Description
	}
	return map[string]any{"properties": props, "id": a.ID, "type": "Microsoft.Authorization/roleAssignments", "name": a.Name}
}

type assignmentBody struct {
	Properties *struct {
		RoleDefinitionID string  `json:"roleDefinitionId"`
		PrincipalID      string  `json:"principalId"`
		PrincipalType    string  `json:"principalType"`
		Description      *string `json:"description"`
		Condition        *string `json:"condition"`
		ConditionVersion *string `json:"conditionVersion"`
	} `json:"properties"`
}

// replicatedLocked applies the replication delay to a write naming principal; false means "answer
// PrincipalNotFound".
func (s *Server) replicatedLocked(principal string) bool {
	p := strings.ToLower(principal)
	if s.replicated[p] {
		return true
	}
	s.attempts[p]++
	if s.attempts[p] > s.replication {
		s.replicated[p] = true
		return true
	}
	return false
}

func (s *Server) checkRoleDefLocked(w http.ResponseWriter, scope, roleDefID string) (int, string, bool) {
	if !roleDefRE.MatchString(roleDefID) {
		st, c := writeErr(w, http.StatusBadRequest, "InvalidRoleDefinitionId", fmt.Sprintf("The role definition ID '%s' is not valid.", roleDefID))
		return st, c, false
	}
	if sub := subscriptionOf(roleDefID); sub != "" && !strings.EqualFold(sub, subscriptionOf(scope)) {
		st, c := writeErr(w, http.StatusBadRequest, "RoleDefinitionDoesNotExist", fmt.Sprintf("The specified role definition with ID '%s' does not exist.", guidOf(roleDefID)))
		return st, c, false
	}
	if s.roleDefs != nil && !s.roleDefs[guidOf(roleDefID)] {
		st, c := writeErr(w, http.StatusBadRequest, "RoleDefinitionDoesNotExist", fmt.Sprintf("The specified role definition with ID '%s' does not exist.", guidOf(roleDefID)))
		return st, c, false
	}
	return 0, "", true
}

func (s *Server) putAssignment(w http.ResponseWriter, scope, name string, raw []byte) (int, string) {
	if !guidRE.MatchString(name) {
		return writeErr(w, http.StatusBadRequest, "InvalidRoleAssignmentId", fmt.Sprintf("The role assignment ID '%s' is not valid. The role assignment ID must be a GUID.", name))
	}
	var b assignmentBody
	if err := json.Unmarshal(raw, &b); err != nil || b.Properties == nil {
		return writeErr(w, http.StatusBadRequest, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
	}
	p := b.Properties
	if !guidRE.MatchString(p.PrincipalID) {
		return writeErr(w, http.StatusBadRequest, "InvalidPrincipalId", fmt.Sprintf("The Principal ID '%s' is not valid. Principal ID must be a GUID.", p.PrincipalID))
	}
	if st, c, ok := s.checkRoleDefLocked(w, scope, p.RoleDefinitionID); !ok {
		return st, c
	}
	switch p.PrincipalType {
	case "", "User", "Group", "ServicePrincipal", "ForeignGroup", "Device":
	default:
		return writeErr(w, http.StatusBadRequest, "InvalidPrincipalType", fmt.Sprintf("The principal type '%s' is not valid.", p.PrincipalType))
	}
	id := assignmentID(scope, name)
	if cur, ok := s.assignments[strings.ToLower(id)]; ok {
		if !strings.EqualFold(cur.PrincipalID, p.PrincipalID) || guidOf(cur.RoleDefinitionID) != guidOf(p.RoleDefinitionID) {
			return writeErr(w, http.StatusBadRequest, "RoleAssignmentUpdateNotPermitted", "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.")
		}
		if !s.IdempotentPut {
			return writeErr(w, http.StatusConflict, "RoleAssignmentExists", "The role assignment already exists.")
		}
		if p.Description != nil {
			cur.Description = *p.Description
		}
		return writeJSON(w, http.StatusOK, assignmentJSON(cur))
	}
	for _, a := range s.assignments {
		if strings.EqualFold(a.Scope, scope) && strings.EqualFold(a.PrincipalID, p.PrincipalID) && guidOf(a.RoleDefinitionID) == guidOf(p.RoleDefinitionID) {
			return writeErr(w, http.StatusConflict, "RoleAssignmentExists", "The role assignment already exists.")
		}
	}
	if !s.replicatedLocked(p.PrincipalID) {
		return writeErr(w, http.StatusBadRequest, "PrincipalNotFound", principalNotFoundMessage(p.PrincipalID))
	}
	pt := p.PrincipalType
	if pt == "" {
		pt = "User"
	}
	a := &Assignment{ID: id, Name: name, Scope: scope, PrincipalID: p.PrincipalID, PrincipalType: pt, RoleDefinitionID: p.RoleDefinitionID, CreatedOn: s.now()}
	if p.Description != nil {
		a.Description = *p.Description
	}
	s.assignments[strings.ToLower(id)] = a
	return writeJSON(w, http.StatusCreated, assignmentJSON(a))
}

// scopeRelation: "at", "above" (assignment scope is an ancestor of the query scope), "below", or "".
func scopeRelation(assignment, query string) string {
	a, q := strings.ToLower(assignment), strings.ToLower(query)
	switch {
	case a == q:
		return "at"
	case strings.HasPrefix(q, a+"/"):
		return "above"
	case strings.HasPrefix(a, q+"/"):
		return "below"
	}
	return ""
}

var (
	principalFilterRE  = regexp.MustCompile(`^principalId eq '([0-9a-fA-F-]{36})'$`)
	assignedToFilterRE = regexp.MustCompile(`^assignedTo\('([0-9a-fA-F-]{36})'\)$`)
)

// filterFn parses the $filter values the Authorization API documents: "atScope()", "principalId eq '{id}'",
// "assignedTo('{id}')", "asRequestor()" (requests only). It returns a predicate on (scope relation, principal).
func filterFn(filter string, requests bool) (func(rel, principal string) bool, bool) {
	filter = strings.TrimSpace(filter)
	switch {
	case filter == "":
		return func(rel, _ string) bool { return rel != "" }, true
	case filter == "atScope()":
		return func(rel, _ string) bool { return rel == "at" || rel == "above" }, true
	case filter == "asRequestor()" && requests:
		return func(rel, _ string) bool { return rel != "" }, true // the caller's own requests: see listRequests
	}
	if m := principalFilterRE.FindStringSubmatch(filter); m != nil {
		return func(rel, p string) bool { return rel != "" && strings.EqualFold(p, m[1]) }, true
	}
	if m := assignedToFilterRE.FindStringSubmatch(filter); m != nil {
		return func(rel, p string) bool { return rel != "" && strings.EqualFold(p, m[1]) }, true
	}
	return nil, false
}

func (s *Server) listAssignments(w http.ResponseWriter, r *http.Request, scope string) (int, string) {
	keep, ok := filterFn(r.URL.Query().Get("$filter"), false)
	if !ok {
		return writeErr(w, http.StatusBadRequest, "UnsupportedQuery", fmt.Sprintf("The filter '%s' is not supported.", r.URL.Query().Get("$filter")))
	}
	var out []map[string]any
	ids := make([]string, 0, len(s.assignments))
	for k := range s.assignments {
		ids = append(ids, k)
	}
	sort.Strings(ids)
	for _, k := range ids {
		a := s.assignments[k]
		if keep(scopeRelation(a.Scope, scope), a.PrincipalID) {
			out = append(out, assignmentJSON(a))
		}
	}
	if out == nil {
		out = []map[string]any{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"value": out})
}

// --- PIM ---

var isoDurRE = regexp.MustCompile(`^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$`)

func parseISODuration(s string) (time.Duration, bool) {
	m := isoDurRE.FindStringSubmatch(s)
	if m == nil || s == "P" || s == "PT" {
		return 0, false
	}
	var d time.Duration
	for i, unit := range []time.Duration{24 * time.Hour, time.Hour, time.Minute, time.Second} {
		if m[i+1] != "" {
			n, _ := strconv.Atoi(m[i+1])
			d += time.Duration(n) * unit
		}
	}
	return d, true
}

type requestBody struct {
	Properties *struct {
		PrincipalID      string  `json:"principalId"`
		RoleDefinitionID string  `json:"roleDefinitionId"`
		RequestType      string  `json:"requestType"`
		Justification    *string `json:"justification"`
		// TargetRoleAssignmentScheduleID names the schedule an AdminExtend/AdminUpdate changes.
		TargetRoleAssignmentScheduleID *string `json:"targetRoleAssignmentScheduleId"`
		ScheduleInfo                   *struct {
			StartDateTime *time.Time `json:"startDateTime"`
			Expiration    *struct {
				Type        string     `json:"type"`
				Duration    *string    `json:"duration"`
				EndDateTime *time.Time `json:"endDateTime"`
			} `json:"expiration"`
		} `json:"scheduleInfo"`
	} `json:"properties"`
}

// settleLocked processes the pending requests whose time has come; the caller holds s.mu.
func (s *Server) settleLocked(all bool) {
	now := s.now()
	kept := s.pending[:0]
	for _, op := range s.pending {
		if all || !now.Before(op.readyAt) {
			op.effect()
			op.req.Status = op.final
			continue
		}
		kept = append(kept, op)
	}
	s.pending = kept
}

// SetProvisionDelay makes every following schedule request take d (by the fake's clock) before PIM processes
// it: until then it answers with status PendingProvisioning (PendingRevocation for AdminRemove) and has no
// effect, as real PIM may. 0 (the default) processes requests at once.
func (s *Server) SetProvisionDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Settle processes every pending schedule request now.
func (s *Server) Settle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked(true)
}

// Pending returns how many schedule requests are accepted but not processed yet.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked(false)
	return len(s.pending)
}

// StartRequest leaves a schedule request of the adapter's identity (CallerID) in flight, as an earlier attempt
// that timed out leaves it: requestType AdminAssign (until end) or AdminRemove, named name at scope, processed
// after d by the fake's clock or at Settle.
func (s *Server) StartRequest(scope, name, principal, roleDefinitionID, requestType string, end *time.Time, justification string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	scope = normScope(scope)
	now := s.now()
	id := requestID(scope, name)
	req := &ScheduleRequest{ID: id, Name: name, Scope: scope, PrincipalID: principal, RoleDefinitionID: roleDefinitionID,
		RequestType: requestType, Justification: justification, RequestorID: CallerID, StartDateTime: now, EndDateTime: end, CreatedOn: now}
	op := &pendingOp{req: req, readyAt: now.Add(d)}
	switch requestType {
	case "AdminAssign":
		req.ExpirationType, req.Status, op.final = "AfterDateTime", "PendingProvisioning", "Provisioned"
		req.TargetRoleAssignmentScheduleID = scope + "/providers/Microsoft.Authorization/roleAssignmentSchedules/" + name
		op.effect = func() {
			in := s.addInstanceLocked(scope, principal, "User", roleDefinitionID, now, end, req.TargetRoleAssignmentScheduleID)
			in.RequestID = id
		}
	default:
		req.Status, op.final = "PendingRevocation", "Revoked"
		op.effect = func() { s.removeInstancesLocked(scope, principal, roleDefinitionID, req.RequestorID) }
	}
	s.requests[strings.ToLower(id)] = req
	s.pending = append(s.pending, op)
}

// removeInstancesLocked ends the principal's assignment of roleDef at scope for an AdminRemove of requestor.
// PIM holds one per principal, role and scope; when the back doors (AdminAssign, SetInstance) made several and
// some were made by requests of requestor, only those end (see the package documentation), else all.
func (s *Server) removeInstancesLocked(scope, principal, roleDef, requestor string) {
	var match []string
	mine := map[string]bool{}
	for k, in := range s.instances {
		if strings.EqualFold(in.Scope, scope) && strings.EqualFold(in.PrincipalID, principal) && guidOf(in.RoleDefinitionID) == guidOf(roleDef) {
			match = append(match, k)
			if r := s.requests[strings.ToLower(in.RequestID)]; r != nil && r.RequestorID == requestor {
				mine[k] = true
			}
		}
	}
	for _, k := range match {
		if len(mine) == 0 || mine[k] {
			delete(s.instances, k)
		}
	}
}

// DeleteAssignment deletes one role assignment by scope and name behind the adapter's back; it reports whether
// it existed.
func (s *Server) DeleteAssignment(scope, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := strings.ToLower(assignmentID(normScope(scope), name))
	_, ok := s.assignments[k]
	delete(s.assignments, k)
	return ok
}

func (s *Server) activeLocked() []*Instance {
	s.settleLocked(false)
	now := s.now()
	var out []*Instance
	for k, in := range s.instances {
		if in.EndDateTime != nil && !in.EndDateTime.After(now) {
			delete(s.instances, k) // PIM ends it at its expiry
			continue
		}
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (s *Server) addInstanceLocked(scope, principal, principalType, roleDef string, start time.Time, end *time.Time, scheduleID string) *Instance {
	s.seq++
	name := fmt.Sprintf("%08x-0000-4000-8000-%012x", s.seq, s.seq)
	if scheduleID == "" {
		scheduleID = scope + "/providers/Microsoft.Authorization/roleAssignmentSchedules/" + name
	}
	in := &Instance{ID: scope + "/providers/Microsoft.Authorization/roleAssignmentScheduleInstances/" + name, Name: name, Scope: scope,
		PrincipalID: principal, PrincipalType: principalType, RoleDefinitionID: roleDef, ScheduleID: scheduleID,
		StartDateTime: start, EndDateTime: end, CreatedOn: s.now()}
	s.instances[strings.ToLower(in.ID)] = in
	return in
}

func (s *Server) putRequest(w http.ResponseWriter, scope, name string, raw []byte) (int, string) {
	if !guidRE.MatchString(name) {
		return writeErr(w, http.StatusBadRequest, "InvalidRoleAssignmentScheduleRequestName", fmt.Sprintf("The role assignment schedule request name '%s' is not valid. It must be a GUID.", name))
	}
	id := requestID(scope, name)
	if _, ok := s.requests[strings.ToLower(id)]; ok {
		// Observed for schedule requests (azure-quickstart-templates#12838); the code is not documented.
		return writeErr(w, http.StatusBadRequest, "RoleAssignmentRequestExists", fmt.Sprintf("A role assignment request with Id: %s already exists", name))
	}
	var b requestBody
	if err := json.Unmarshal(raw, &b); err != nil || b.Properties == nil {
		return writeErr(w, http.StatusBadRequest, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
	}
	p := b.Properties
	if !guidRE.MatchString(p.PrincipalID) {
		return writeErr(w, http.StatusBadRequest, "InvalidPrincipalId", fmt.Sprintf("The Principal ID '%s' is not valid. Principal ID must be a GUID.", p.PrincipalID))
	}
	if st, c, ok := s.checkRoleDefLocked(w, scope, p.RoleDefinitionID); !ok {
		return st, c
	}
	now := s.now()
	var matching []*Instance
	for _, in := range s.activeLocked() {
		if strings.EqualFold(in.Scope, scope) && strings.EqualFold(in.PrincipalID, p.PrincipalID) && guidOf(in.RoleDefinitionID) == guidOf(p.RoleDefinitionID) {
			matching = append(matching, in)
		}
	}
	req := &ScheduleRequest{ID: id, Name: name, Scope: scope, PrincipalID: p.PrincipalID, RoleDefinitionID: p.RoleDefinitionID,
		RequestType: p.RequestType, RequestorID: CallerID, CreatedOn: now}
	if p.Justification != nil {
		req.Justification = *p.Justification
	}
	switch p.RequestType {
	case "AdminAssign", "AdminExtend", "AdminUpdate":
		si := p.ScheduleInfo
		if si == nil || si.Expiration == nil {
			return writeErr(w, http.StatusBadRequest, "RoleAssignmentRequestPolicyValidationFailed", `The following policy rules failed: ["ExpirationRule"]`)
		}
		start := now
		if si.StartDateTime != nil {
			start = si.StartDateTime.UTC()
		}
		var end *time.Time
		switch si.Expiration.Type {
		case "AfterDuration":
			if si.Expiration.Duration == nil {
				return writeErr(w, http.StatusBadRequest, "InvalidScheduleInfo", "The duration is required for expiration type AfterDuration.")
			}
			d, ok := parseISODuration(*si.Expiration.Duration)
			if !ok || d <= 0 {
				return writeErr(w, http.StatusBadRequest, "InvalidScheduleInfo", fmt.Sprintf("The duration '%s' is not a valid ISO 8601 duration.", *si.Expiration.Duration))
			}
			e := start.Add(d)
			end = &e
			req.Duration = *si.Expiration.Duration
		case "AfterDateTime":
			if si.Expiration.EndDateTime == nil {
				return writeErr(w, http.StatusBadRequest, "InvalidScheduleInfo", "The endDateTime is required for expiration type AfterDateTime.")
			}
			e := si.Expiration.EndDateTime.UTC()
			end = &e
		case "NoExpiration":
		default:
			return writeErr(w, http.StatusBadRequest, "InvalidScheduleInfo", fmt.Sprintf("The expiration type '%s' is not valid.", si.Expiration.Type))
		}
		if s.MaxDuration > 0 && (end == nil || end.Sub(start) > s.MaxDuration) {
			return writeErr(w, http.StatusBadRequest, "RoleAssignmentRequestPolicyValidationFailed", `The following policy rules failed: ["ExpirationRule"]`)
		}
		req.ExpirationType, req.StartDateTime, req.EndDateTime = si.Expiration.Type, start, end
		if p.RequestType == "AdminAssign" {
			if len(matching) > 0 {
				return writeErr(w, http.StatusBadRequest, "RoleAssignmentExists", "The Role assignment already exists.")
			}
			if !s.replicatedLocked(p.PrincipalID) {
				return writeErr(w, http.StatusBadRequest, "PrincipalNotFound", principalNotFoundMessage(p.PrincipalID))
			}
			req.TargetRoleAssignmentScheduleID = scope + "/providers/Microsoft.Authorization/roleAssignmentSchedules/" + name
			principal, roleDef, target := p.PrincipalID, p.RoleDefinitionID, req.TargetRoleAssignmentScheduleID
			s.processLocked(req, "PendingProvisioning", "Provisioned", func() {
				in := s.addInstanceLocked(scope, principal, "User", roleDef, start, end, target)
				in.RequestID = id
			})
			break
		}
		// AdminExtend / AdminUpdate change the schedule of the existing assignment in place.
		if len(matching) == 0 {
			return writeErr(w, http.StatusBadRequest, "RoleAssignmentDoesNotExist", "The Role assignment does not exist.")
		}
		in := matching[0]
		if p.TargetRoleAssignmentScheduleID != nil && *p.TargetRoleAssignmentScheduleID != "" && !strings.EqualFold(*p.TargetRoleAssignmentScheduleID, in.ScheduleID) {
			return writeErr(w, http.StatusBadRequest, "InvalidTargetRoleAssignmentScheduleId", fmt.Sprintf("The target role assignment schedule '%s' does not match the assignment.", *p.TargetRoleAssignmentScheduleID))
		}
		if p.RequestType == "AdminExtend" && (end == nil || in.EndDateTime == nil || !end.After(*in.EndDateTime)) {
			return writeErr(w, http.StatusBadRequest, "InvalidScheduleInfo", "An extension must end after the current end of the assignment.")
		}
		if end != nil && !end.After(now) {
			return writeErr(w, http.StatusBadRequest, "InvalidScheduleInfo", "The end of the schedule must be in the future.")
		}
		req.TargetRoleAssignmentScheduleID = in.ScheduleID
		s.processLocked(req, "PendingProvisioning", "Provisioned", func() { in.EndDateTime, in.RequestID = end, id })
	case "AdminRemove":
		if len(matching) == 0 {
			return writeErr(w, http.StatusBadRequest, "RoleAssignmentDoesNotExist", "The Role assignment does not exist.")
		}
		for _, in := range matching {
			if s.MinActiveDuration > 0 && now.Sub(in.StartDateTime) < s.MinActiveDuration {
				return writeErr(w, http.StatusBadRequest, "ActiveDurationTooShort", "The Active duration is too short. Miniumum Required is 5 minutes.")
			}
		}
		req.StartDateTime = now
		principal, roleDef := p.PrincipalID, p.RoleDefinitionID
		s.processLocked(req, "PendingRevocation", "Revoked", func() { s.removeInstancesLocked(scope, principal, roleDef, req.RequestorID) })
	default:
		return writeErr(w, http.StatusBadRequest, "InvalidRequestType", fmt.Sprintf("The request type '%s' is not supported by this fake.", p.RequestType))
	}
	s.requests[strings.ToLower(id)] = req
	return writeJSON(w, http.StatusCreated, requestJSON(req))
}

// processLocked applies a request's effect now, or after the provision delay (status pending until then).
func (s *Server) processLocked(req *ScheduleRequest, pending, final string, effect func()) {
	if s.delay <= 0 {
		effect()
		req.Status = final
		return
	}
	if pending == "PendingProvisioning" && s.PendingStatus != "" {
		pending = s.PendingStatus
	}
	req.Status = pending
	s.pending = append(s.pending, &pendingOp{req: req, effect: effect, final: final, readyAt: s.now().Add(s.delay)})
}

func requestJSON(r *ScheduleRequest) map[string]any {
	props := map[string]any{
		"scope":                                  r.Scope,
		"roleDefinitionId":                       r.RoleDefinitionID,
		"principalId":                            r.PrincipalID,
		"principalType":                          "User",
		"requestType":                            r.RequestType,
		"status":                                 r.Status,
		"justification":                          nilIfEmpty(r.Justification),
		"createdOn":                              r.CreatedOn.Format(time.RFC3339Nano),
		"requestorId":                            r.RequestorID,
		"approvalId":                             nil,
		"targetRoleAssignmentScheduleId":         nilIfEmpty(r.TargetRoleAssignmentScheduleID),
		"targetRoleAssignmentScheduleInstanceId": nil,
		"ticketInfo":                             map[string]any{"ticketNumber": nil, "ticketSystem": nil},
	}
	if r.ExpirationType != "" {
		exp := map[string]any{"type": r.ExpirationType, "endDateTime": nil, "duration": nilIfEmpty(r.Duration)}
		if r.ExpirationType == "AfterDateTime" && r.EndDateTime != nil {
			exp["endDateTime"] = r.EndDateTime.Format(time.RFC3339Nano)
		}
		props["scheduleInfo"] = map[string]any{"startDateTime": r.StartDateTime.Format(time.RFC3339Nano), "expiration": exp}
	}
	return map[string]any{"properties": props, "name": r.Name, "id": r.ID, "type": "Microsoft.Authorization/RoleAssignmentScheduleRequests"}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *Server) listRequests(w http.ResponseWriter, r *http.Request, scope string) (int, string) {
	asRequestor := strings.TrimSpace(r.URL.Query().Get("$filter")) == "asRequestor()"
	keep, ok := filterFn(r.URL.Query().Get("$filter"), true)
	if !ok {
		return writeErr(w, http.StatusBadRequest, "UnsupportedQuery", fmt.Sprintf("The filter '%s' is not supported.", r.URL.Query().Get("$filter")))
	}
	out := []map[string]any{}
	ids := make([]string, 0, len(s.requests))
	for k := range s.requests {
		ids = append(ids, k)
	}
	sort.Strings(ids)
	for _, k := range ids {
		req := s.requests[k]
		if asRequestor && req.RequestorID != CallerID {
			continue
		}
		if keep(scopeRelation(req.Scope, scope), req.PrincipalID) {
			out = append(out, requestJSON(req))
		}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"value": out})
}

func (s *Server) listInstances(w http.ResponseWriter, r *http.Request, scope string) (int, string) {
	keep, ok := filterFn(r.URL.Query().Get("$filter"), false)
	if !ok {
		return writeErr(w, http.StatusBadRequest, "UnsupportedQuery", fmt.Sprintf("The filter '%s' is not supported.", r.URL.Query().Get("$filter")))
	}
	out := []map[string]any{}
	for _, in := range s.activeLocked() {
		if !keep(scopeRelation(in.Scope, scope), in.PrincipalID) {
			continue
		}
		props := map[string]any{
			"scope":                    in.Scope,
			"roleDefinitionId":         in.RoleDefinitionID,
			"principalId":              in.PrincipalID,
			"principalType":            in.PrincipalType,
			"roleAssignmentScheduleId": in.ScheduleID,
			"originRoleAssignmentId":   in.Scope + "/providers/Microsoft.Authorization/roleAssignments/" + in.Name,
			"startDateTime":            in.StartDateTime.Format(time.RFC3339Nano),
			"endDateTime":              nil,
			"memberType":               "Direct",
			"assignmentType":           "Assigned",
			"status":                   "Provisioned",
			"createdOn":                in.CreatedOn.Format(time.RFC3339Nano),
		}
		if in.EndDateTime != nil {
			props["endDateTime"] = in.EndDateTime.Format(time.RFC3339Nano)
		}
		out = append(out, map[string]any{"properties": props, "name": in.Name, "id": in.ID, "type": "Microsoft.Authorization/RoleAssignmentScheduleInstances"})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"value": out})
}

// getSchedule answers GET roleAssignmentSchedules/{name} for the schedule of an active instance. Divergence:
// real PIM keeps schedules after they end; the fake forgets a schedule with its instance (404).
func (s *Server) getSchedule(w http.ResponseWriter, scope, name string) (int, string) {
	id := scope + "/providers/Microsoft.Authorization/roleAssignmentSchedules/" + name
	for _, in := range s.activeLocked() {
		if !strings.EqualFold(in.ScheduleID, id) {
			continue
		}
		props := map[string]any{
			"scope":                           in.Scope,
			"roleDefinitionId":                in.RoleDefinitionID,
			"principalId":                     in.PrincipalID,
			"principalType":                   in.PrincipalType,
			"roleAssignmentScheduleRequestId": nilIfEmpty(in.RequestID),
			"startDateTime":                   in.StartDateTime.Format(time.RFC3339Nano),
			"endDateTime":                     nil,
			"memberType":                      "Direct",
			"assignmentType":                  "Assigned",
			"status":                          "Provisioned",
			"createdOn":                       in.CreatedOn.Format(time.RFC3339Nano),
		}
		if in.EndDateTime != nil {
			props["endDateTime"] = in.EndDateTime.Format(time.RFC3339Nano)
		}
		return writeJSON(w, http.StatusOK, map[string]any{"properties": props, "name": name, "id": in.ScheduleID, "type": "Microsoft.Authorization/RoleAssignmentSchedules"})
	}
	return writeErr(w, http.StatusNotFound, "RoleAssignmentScheduleNotFound", fmt.Sprintf("The role assignment schedule '%s' is not found.", name))
}

// AdminAssign makes principal an active member of roleDefinitionID at scope until end (nil: permanent) the way a
// human administrator does in the portal: through a schedule request of their own (requestor AdminID, which
// $filter=asRequestor() does not list for the adapter), even when the principal holds the role already (PIM
// refuses that; see the package documentation). It returns the request.
func (s *Server) AdminAssign(scope, principal, roleDefinitionID string, end *time.Time, justification string) ScheduleRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	scope = normScope(scope)
	s.seq++
	name := fmt.Sprintf("%08x-0000-4000-8000-%012x", s.seq, s.seq)
	now := s.now()
	req := &ScheduleRequest{ID: requestID(scope, name), Name: name, Scope: scope, PrincipalID: principal, RoleDefinitionID: roleDefinitionID,
		RequestType: "AdminAssign", Status: "Provisioned", Justification: justification, StartDateTime: now, EndDateTime: end,
		ExpirationType: "NoExpiration", RequestorID: AdminID, CreatedOn: now}
	if end != nil {
		req.ExpirationType = "AfterDateTime"
	}
	req.TargetRoleAssignmentScheduleID = scope + "/providers/Microsoft.Authorization/roleAssignmentSchedules/" + name
	s.requests[strings.ToLower(req.ID)] = req
	in := s.addInstanceLocked(scope, principal, "User", roleDefinitionID, now, end, req.TargetRoleAssignmentScheduleID)
	in.RequestID = req.ID
	return *req
}
