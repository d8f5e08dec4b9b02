// Package awsfake is an in-memory fake of the slices of three AWS APIs that jitbot's AWS adapters use, served
// over HTTP in AWS's own wire formats so that the real aws-sdk-go-v2 clients talk to it unchanged:
//
//   - IAM Identity Center admin (sso-admin): JSON 1.1, POST /, Content-Type application/x-amz-json-1.1,
//     X-Amz-Target "SWBExternalService.<Operation>", errors {"__type": "<Code>", "Message": "..."}.
//   - Identity Store (identitystore): the same JSON 1.1 protocol with X-Amz-Target "AWSIdentityStore.<Operation>".
//   - IAM: the Query protocol, a form-encoded POST body "Action=<Operation>&Version=2010-05-08&...", XML answers
//     "<OpResponse xmlns=...><OpResult>...</OpResult><ResponseMetadata>...", errors
//     "<ErrorResponse><Error><Type>Sender</Type><Code>..</Code><Message>..</Message></Error><RequestId>..".
//
// One Server serves all three on one URL: requests with X-Amz-Target go to the JSON services, form posts with an
// Action go to IAM. The shapes follow the AWS API references and the request/response snapshots that ship with
// the SDK modules, not any particular client.
//
// The fake keeps state (account assignments of users and groups with asynchronous creation and deletion,
// Identity Store users, groups and group memberships, IAM users, roles, groups, managed and inline policies), records every request (operation and decoded parameters),
// injects one-shot or repeated faults per operation, and checks that every request carries a well-formed SigV4
// Authorization header (algorithm, credential scope with the expected service and region, signed headers
// including host and x-amz-date, a 64-hex signature). It does not verify the signature itself, so it never
// needs, sees or logs a secret key.
//
// # Asynchronous account assignment requests
//
// As the IAM Identity Center API reference describes them: CreateAccountAssignment and DeleteAccountAssignment
// answer at once with an AccountAssignmentCreationStatus / AccountAssignmentDeletionStatus whose Status is
// IN_PROGRESS and whose RequestId tracks the request; DescribeAccountAssignmentCreationStatus /
// DescribeAccountAssignmentDeletionStatus report IN_PROGRESS until the request ends SUCCEEDED or FAILED (with a
// FailureReason), together with the request's account, permission set and principal;
// ListAccountAssignmentCreationStatus / ListAccountAssignmentDeletionStatus list the instance's requests as
// AccountAssignmentOperationStatusMetadata (CreatedDate, RequestId, Status), optionally filtered by
// Filter.Status, paginated with MaxResults (1-100) and NextToken. An assignment is listed by
// ListAccountAssignments from the moment its creation SUCCEEDED until its deletion SUCCEEDED: a creation in
// flight is not listed yet, a deletion in flight still is. StartRequest starts a request as a caller that went
// away would have left it; SetAsyncDuration makes requests slow; InProgress and Settle inspect and end them.
//
// Where the fake decides what AWS does not document (each unconfirmed against the real service):
//   - Timing: a request ends after PollsToFinish Describe calls but never before it is SetAsyncDuration old, or
//     in the background once it is max(SettleAfter, SetAsyncDuration) old. The real service's timing is its own
//     (seconds to minutes).
//   - While any request for an assignment is IN_PROGRESS, CreateAccountAssignment and DeleteAccountAssignment of
//     the same assignment answer ConflictException. AWS documents ConflictException only as a conflicting
//     concurrent write to retry with backoff; the fake never answers it spuriously unless injected.
//   - The status lists keep every request for the fake's life (AWS does not document retention) in creation
//     order, with index-based page tokens.
//   - Creating an assignment that exists succeeds (SetDuplicateCreate can make the request end FAILED);
//     deleting an absent one answers ResourceNotFoundException (SetDeleteAbsent: success or a FAILED request).
//   - An unknown account or principal makes a creation request end FAILED with a "not found"-style reason.
//   - Identity Store groups and memberships exist only through AddGroup and SetGroupMember (the fake serves no
//     CreateGroup or CreateGroupMembership). IsMemberInGroups validates GroupIds (1 to 100 ids of the
//     documented pattern) and MemberId.UserId, and answers one GroupMembershipExistenceResult per id asked, in
//     the order asked; a group or user it does not know is answered MembershipExists false (the real service
//     may answer ResourceNotFoundException instead: AWS does not document which). Identity Center has no
//     nested groups, and neither has the fake.
//   - ListAccountAssignments lists USER and GROUP assignments together, ordered by principal type and id.
//   - IAM: AddUserToGroup and Attach*Policy of an existing membership or attachment succeed; RemoveUserFromGroup
//     and Detach*Policy of an absent one answer NoSuchEntity. Changes apply at once (real IAM is eventually
//     consistent).
package awsfake

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jitbot/jitbot/internal/httpfake"
)

// Service names, as used in Call.Service and in SigV4 credential scopes.
const (
	ServiceSSOAdmin      = "sso" // the SigV4 signing name of sso-admin
	ServiceIdentityStore = "identitystore"
	ServiceIAM           = "iam"
)

// Fault kinds the fake can inject. Each maps to the error code of the service's protocol.
type Fault int

// Faults.
const (
	Throttling    Fault = iota + 1 // sso/identitystore ThrottlingException, IAM Throttling
	Conflict                       // sso/identitystore ConflictException, IAM ConcurrentModification
	NotFound                       // sso/identitystore ResourceNotFoundException, IAM NoSuchEntity
	AccessDenied                   // sso/identitystore AccessDeniedException, IAM AccessDenied
	ServerError                    // sso/identitystore InternalServerException, IAM ServiceFailure
	Validation                     // sso/identitystore ValidationException, IAM InvalidInput
	LimitExceeded                  // sso ServiceQuotaExceededException, IAM LimitExceeded
	AlreadyExists                  // IAM EntityAlreadyExists (sso-admin has none: ConflictException)
)

// Call is one recorded request.
type Call struct {
	Service   string // ServiceSSOAdmin, ServiceIdentityStore or ServiceIAM
	Operation string // e.g. "CreateAccountAssignment", "PutUserPolicy"
	// Params are the decoded parameters: the JSON object for JSON 1.1 services, the form values (first value of
	// each key, Action and Version included) for IAM.
	Params map[string]any
	// Status is the HTTP status the fake answered.
	Status int
	// Error is the error code the fake answered with, "" on success.
	Error string
}

// Param returns Params[key] as a string ("" when absent or not a string).
func (c Call) Param(key string) string {
	s, _ := c.Params[key].(string)
	return s
}

type fault struct {
	op     string // "" = any operation
	kind   Fault
	status int // 0 = the default for the kind
}

// answer is the error the service gives for f, from its table of documented errors; f.status, when set,
// replaces the documented status.
func (f *fault) answer(documented map[Fault]apiError, unknownCode string) *apiError {
	e, ok := documented[f.kind]
	if !ok {
		return errf(500, unknownCode, "unknown fault")
	}
	if f.status != 0 {
		e.status = f.status
	}
	return &e
}

// Server is the fake. Create it with New; its URL is the endpoint for all three clients.
type Server struct {
	*httptest.Server

	mu sync.Mutex

	// Configuration (set before use, or under the fake's lock via the setters).
	region        string
	instanceARN   string
	storeID       string
	pollsToFinish int
	settleAfter   time.Duration
	asyncMin      time.Duration // no asynchronous request finishes before it is this old
	pageSize      int
	duplicateMode string // CreateAccountAssignment of an existing assignment: "succeed" or "fail"
	deleteAbsent  string // DeleteAccountAssignment of an absent assignment: "notfound", "succeed" or "fail"

	// sso-admin state
	permissionSets map[string]bool
	accounts       map[string]bool
	assignments    map[AssignmentKey]bool
	requests       map[string]*asyncRequest
	order          []string // request ids in creation order

	// identitystore state
	users   map[string]string          // user id -> user name
	groups  map[string]string          // group id -> display name
	members map[string]map[string]bool // group id -> member user ids

	// IAM state
	iamUsers    map[string]bool
	iamRoles    map[string]bool
	iamGroups   map[string]map[string]bool // group -> members
	iamPolicies map[string]bool            // managed policy ARNs
	userAttach  map[string]map[string]bool // user -> policy ARN
	roleAttach  map[string]map[string]bool // role -> policy ARN
	userInline  map[string]map[string]string

	faults  httpfake.Injector[fault]
	waiters map[string][]chan struct{} // Await: closed when the next call of the operation is recorded
	calls   []Call
	sigErrs []string
}

// AssignmentKey identifies an account assignment.
type AssignmentKey struct {
	AccountID, PermissionSetARN, PrincipalType, PrincipalID string
}

type asyncRequest struct {
	id       string
	deletion bool
	key      AssignmentKey
	polls    int
	created  time.Time
	status   string // IN_PROGRESS, SUCCEEDED, FAILED
	reason   string
}

// Options configure New.
type Options struct {
	// Region the SigV4 credential scope must name. Default "us-east-1".
	Region string
	// InstanceARN and IdentityStoreID of the Identity Center instance the fake serves.
	// Defaults "arn:aws:sso:::instance/ssoins-1111222233334444" and "d-1234567890".
	InstanceARN, IdentityStoreID string
	// PollsToFinish is how many Describe*Status calls an asynchronous request answers before it reports its
	// final state (the first PollsToFinish-1 answer IN_PROGRESS). Default 2.
	PollsToFinish int
	// SettleAfter finishes an asynchronous request nobody polls once it is this old (as the real service does in
	// the background), checked on every request. Default 2s.
	SettleAfter time.Duration
	// PageSize caps list pages (MaxResults/MaxItems may lower it further). Default 2, so that clients paginate.
	PageSize int
}

// New starts a fake. Close it with Close.
func New(o Options) *Server {
	s := &Server{
		region: "us-east-1", instanceARN: "arn:aws:sso:::instance/ssoins-1111222233334444", storeID: "d-1234567890",
		pollsToFinish: 2, settleAfter: 2 * time.Second, pageSize: 2,
		duplicateMode: "succeed", deleteAbsent: "notfound",
	}
	if o.Region != "" {
		s.region = o.Region
	}
	if o.InstanceARN != "" {
		s.instanceARN = o.InstanceARN
	}
	if o.IdentityStoreID != "" {
		s.storeID = o.IdentityStoreID
	}
	if o.PollsToFinish > 0 {
		s.pollsToFinish = o.PollsToFinish
	}
	if o.SettleAfter > 0 {
		s.settleAfter = o.SettleAfter
	}
	if o.PageSize > 0 {
		s.pageSize = o.PageSize
	}
	s.resetState()
	s.Server = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

func (s *Server) resetState() {
	s.permissionSets = map[string]bool{}
	s.accounts = map[string]bool{}
	s.assignments = map[AssignmentKey]bool{}
	s.requests = map[string]*asyncRequest{}
	s.order = nil
	s.users = map[string]string{}
	s.groups = map[string]string{}
	s.members = map[string]map[string]bool{}
	s.iamUsers = map[string]bool{}
	s.iamRoles = map[string]bool{}
	s.iamGroups = map[string]map[string]bool{}
	s.iamPolicies = map[string]bool{}
	s.userAttach = map[string]map[string]bool{}
	s.roleAttach = map[string]map[string]bool{}
	s.userInline = map[string]map[string]string{}
}

// InstanceARN is the instance the fake serves.
func (s *Server) InstanceARN() string { return s.instanceARN }

// IdentityStoreID is the identity store the fake serves.
func (s *Server) IdentityStoreID() string { return s.storeID }

// Region is the region the fake expects in credential scopes.
func (s *Server) Region() string { return s.region }

// SetDuplicateCreate sets what CreateAccountAssignment does for an assignment that already exists: "succeed"
// (default: the request SUCCEEDs and nothing changes) or "fail" (the request ends FAILED with a reason saying the
// assignment exists). AWS does not document this case; both are modelled so that adapters cope with either.
func (s *Server) SetDuplicateCreate(mode string) { s.mu.Lock(); s.duplicateMode = mode; s.mu.Unlock() }

// SetDeleteAbsent sets what DeleteAccountAssignment does for an assignment that does not exist: "notfound"
// (default: ResourceNotFoundException, as Terraform's AWS provider expects), "succeed" (the request SUCCEEDs) or
// "fail" (the request ends FAILED).
func (s *Server) SetDeleteAbsent(mode string) { s.mu.Lock(); s.deleteAbsent = mode; s.mu.Unlock() }

// SetAsyncDuration makes every asynchronous request (existing and future) take at least d from its creation
// before it can finish, however often it is polled (0 restores polls-only completion): the stand-in for
// Identity Center provisioning that takes tens of seconds or minutes. Requests nobody polls still finish
// after max(SettleAfter, d).
func (s *Server) SetAsyncDuration(d time.Duration) { s.mu.Lock(); s.asyncMin = d; s.mu.Unlock() }

// StartRequest starts an asynchronous creation (deletion=false) or deletion of the account assignment k, as
// an earlier CreateAccountAssignment / DeleteAccountAssignment whose caller went away would have, and returns
// its request id. It stays IN_PROGRESS like any request (PollsToFinish polls, SetAsyncDuration, SettleAfter
// or Settle). The permission set must be registered; nothing else is checked.
func (s *Server) StartRequest(k AssignmentKey, deletion bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := &asyncRequest{id: newUUID(), deletion: deletion, key: k, created: time.Now(), status: "IN_PROGRESS"}
	s.requests[q.id] = q
	s.order = append(s.order, q.id)
	return q.id
}

// InProgress counts the asynchronous requests for k that have not finished.
func (s *Server) InProgress(k AssignmentKey) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.requests {
		if q.key == k && q.status == "IN_PROGRESS" {
			n++
		}
	}
	return n
}

// SetPollsToFinish changes Options.PollsToFinish.
func (s *Server) SetPollsToFinish(n int) { s.mu.Lock(); s.pollsToFinish = n; s.mu.Unlock() }

// Inject makes the next `times` calls of operation op (any operation when op is "") fail with kind. status 0
// uses the kind's default status (400 for most JSON 1.1 errors as the sso-admin reference lists them, except
// 500 for server errors; IAM: 400 Throttling, 409 ConcurrentModification, 404 NoSuchEntity, 403 AccessDenied,
// 500 ServiceFailure, 409 LimitExceeded).
func (s *Server) Inject(op string, kind Fault, status, times int) {
	s.faults.FailNext(max(times, 1), fault{op: op, kind: kind, status: status})
}

// SetLatency delays every following request by d (0 stops). A delayed request whose client goes away is
// abandoned without effect.
func (s *Server) SetLatency(d time.Duration) { s.faults.SetLatency(d) }

// Reset clears pending faults and latency (state and the call log stay).
func (s *Server) Reset() { s.faults.Clear() }

// Calls returns a copy of the recorded requests.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Operations returns the recorded operation names in order.
func (s *Server) Operations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ops := make([]string, len(s.calls))
	for i, c := range s.calls {
		ops[i] = c.Operation
	}
	return ops
}

// ClearCalls forgets the recorded requests.
func (s *Server) ClearCalls() { s.mu.Lock(); s.calls = nil; s.sigErrs = nil; s.mu.Unlock() }

// SignatureErrors lists the problems found in Authorization headers (empty when every request was well signed).
func (s *Server) SignatureErrors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sigErrs)
}

func (s *Server) takeFault(op string) *fault {
	if f, ok := s.faults.Take(func(f fault) bool { return f.op == "" || f.op == op }); ok {
		return &f
	}
	return nil
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

var (
	authRe    = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([^,\s]+), ?SignedHeaders=([^,\s]+), ?Signature=([0-9a-f]+)$`)
	amzDateRe = regexp.MustCompile(`^\d{8}T\d{6}Z$`)
	akidRe    = regexp.MustCompile(`^[A-Z0-9]{4,128}$`)
)

// checkSigV4 validates the form of the SigV4 Authorization header; it returns "" when it is well formed.
func checkSigV4(r *http.Request, service, region string) string {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return "missing Authorization header"
	}
	m := authRe.FindStringSubmatch(auth)
	if m == nil {
		return "Authorization header is not AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..."
	}
	scope := strings.Split(m[1], "/")
	if len(scope) != 5 {
		return "credential scope is not <akid>/<date>/<region>/<service>/aws4_request"
	}
	if !akidRe.MatchString(scope[0]) {
		return "access key id in the credential scope is malformed"
	}
	date := r.Header.Get("X-Amz-Date")
	if !amzDateRe.MatchString(date) {
		return "X-Amz-Date missing or not yyyymmddThhmmssZ"
	}
	if scope[1] != date[:8] {
		return "credential scope date " + scope[1] + " does not match X-Amz-Date " + date
	}
	if scope[2] != region {
		return "credential scope region " + scope[2] + ", want " + region
	}
	if scope[3] != service {
		return "credential scope service " + scope[3] + ", want " + service
	}
	if scope[4] != "aws4_request" {
		return "credential scope does not end in aws4_request"
	}
	signed := strings.Split(m[2], ";")
	if !slices.IsSorted(signed) {
		return "SignedHeaders are not sorted"
	}
	for _, h := range signed {
		if h != strings.ToLower(h) || h == "" {
			return "SignedHeaders must be lower case and non-empty"
		}
	}
	for _, need := range []string{"host", "x-amz-date"} {
		if !slices.Contains(signed, need) {
			return "SignedHeaders lack " + need
		}
	}
	if r.Header.Get("X-Amz-Security-Token") != "" && !slices.Contains(signed, "x-amz-security-token") {
		return "SignedHeaders lack x-amz-security-token"
	}
	if r.Header.Get("X-Amz-Target") != "" && !slices.Contains(signed, "x-amz-target") {
		return "SignedHeaders lack x-amz-target"
	}
	if len(m[3]) != 64 {
		return "Signature is not 64 hex digits"
	}
	return ""
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	// Read the body first: only then does net/http watch the connection and cancel r.Context() when the
	// client goes away, which the latency wait below relies on.
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if !httpfake.Wait(r.Context(), s.faults.Latency(), nil) {
		return // the client went away: no effect
	}
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		s.serveJSON(w, r, target, body)
		return
	}
	s.serveQuery(w, r, body)
}

// settle finishes asynchronous requests nobody polled for settleAfter. Caller holds mu.
func (s *Server) settle() {
	now := time.Now()
	for _, id := range s.order {
		q := s.requests[id]
		if q.status == "IN_PROGRESS" && now.Sub(q.created) >= max(s.settleAfter, s.asyncMin) {
			s.finish(q)
		}
	}
}

// finish applies an asynchronous request. Caller holds mu.
func (s *Server) finish(q *asyncRequest) {
	if q.status != "IN_PROGRESS" {
		return
	}
	if q.reason != "" {
		q.status = "FAILED"
		return
	}
	q.status = "SUCCEEDED"
	if q.deletion {
		delete(s.assignments, q.key)
	} else {
		s.assignments[q.key] = true
	}
}

// pending reports whether an asynchronous request for key is still in progress. Caller holds mu.
func (s *Server) pending(key AssignmentKey) bool {
	for _, q := range s.requests {
		if q.key == key && q.status == "IN_PROGRESS" {
			return true
		}
	}
	return false
}

// Settle finishes every asynchronous request now.
func (s *Server) Settle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.order {
		s.finish(s.requests[id])
	}
}

// --- sso-admin ground truth -------------------------------------------------------------------------------

// AddPermissionSet registers a permission set ARN.
func (s *Server) AddPermissionSet(arn string) {
	s.mu.Lock()
	s.permissionSets[arn] = true
	s.mu.Unlock()
}

// AddAccount registers an AWS account id of the organisation.
func (s *Server) AddAccount(id string) { s.mu.Lock(); s.accounts[id] = true; s.mu.Unlock() }

// AddUser registers an Identity Store user and returns its id (a fresh "<10 hex>-<uuid>" when id is "").
func (s *Server) AddUser(id, userName string) string {
	if id == "" {
		id = strings.ReplaceAll(newUUID(), "-", "")[:10] + "-" + newUUID()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[id] = userName
	return id
}

// AddGroup registers an Identity Store group and returns its id (a fresh "<10 hex>-<uuid>" when id is "").
// Assign it a permission set with SetAssignment (PrincipalType "GROUP") or CreateAccountAssignment.
func (s *Server) AddGroup(id, displayName string) string {
	if id == "" {
		id = strings.ReplaceAll(newUUID(), "-", "")[:10] + "-" + newUUID()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[id] = displayName
	return id
}

// SetGroupMember adds (in) or removes the user as a member of the group directly.
func (s *Server) SetGroupMember(group, user string, in bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.members[group] == nil {
		s.members[group] = map[string]bool{}
	}
	if in {
		s.members[group][user] = true
	} else {
		delete(s.members[group], user)
	}
}

// IsGroupMember reports whether the user is a member of the group.
func (s *Server) IsGroupMember(group, user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.members[group][user]
}

// RenameUser changes a user's userName.
func (s *Server) RenameUser(id, userName string) { s.mu.Lock(); s.users[id] = userName; s.mu.Unlock() }

// HasAssignment reports whether the (settled) assignment exists.
func (s *Server) HasAssignment(k AssignmentKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.assignments[k]
}

// SetAssignment creates or removes an assignment directly (drift behind the adapter's back).
func (s *Server) SetAssignment(k AssignmentKey, present bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if present {
		s.assignments[k] = true
	} else {
		delete(s.assignments, k)
	}
}

// AssignmentCount counts the assignments that match k (the fake stores a set, so 0 or 1; the method exists to
// let tests state the expectation).
func (s *Server) AssignmentCount(k AssignmentKey) int {
	if s.HasAssignment(k) {
		return 1
	}
	return 0
}

// --- IAM ground truth ----------------------------------------------------------------------------------------

// AddIAMUser registers an IAM user.
func (s *Server) AddIAMUser(name string) { s.mu.Lock(); s.iamUsers[name] = true; s.mu.Unlock() }

// AddIAMRole registers an IAM role.
func (s *Server) AddIAMRole(name string) { s.mu.Lock(); s.iamRoles[name] = true; s.mu.Unlock() }

// AddIAMGroup registers an IAM group.
func (s *Server) AddIAMGroup(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.iamGroups[name] == nil {
		s.iamGroups[name] = map[string]bool{}
	}
}

// AddManagedPolicy registers a managed policy ARN.
func (s *Server) AddManagedPolicy(arn string) { s.mu.Lock(); s.iamPolicies[arn] = true; s.mu.Unlock() }

// InGroup reports whether user is a member of group.
func (s *Server) InGroup(group, user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.iamGroups[group][user]
}

// SetInGroup adds or removes a member directly.
func (s *Server) SetInGroup(group, user string, in bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.iamGroups[group] == nil {
		s.iamGroups[group] = map[string]bool{}
	}
	if in {
		s.iamGroups[group][user] = true
	} else {
		delete(s.iamGroups[group], user)
	}
}

// Attached reports whether policyARN is attached to the user (role=false) or role (role=true).
func (s *Server) Attached(role bool, name, policyARN string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if role {
		return s.roleAttach[name][policyARN]
	}
	return s.userAttach[name][policyARN]
}

// SetAttached attaches or detaches directly.
func (s *Server) SetAttached(role bool, name, policyARN string, attached bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.userAttach
	if role {
		m = s.roleAttach
	}
	if m[name] == nil {
		m[name] = map[string]bool{}
	}
	if attached {
		m[name][policyARN] = true
	} else {
		delete(m[name], policyARN)
	}
}

// InlinePolicy returns the user's inline policy document (as stored, not URL-encoded) and whether it exists.
func (s *Server) InlinePolicy(user, name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	doc, ok := s.userInline[user][name]
	return doc, ok
}

// SetInlinePolicy stores (present) or deletes an inline user policy directly.
func (s *Server) SetInlinePolicy(user, name, doc string, present bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.userInline[user] == nil {
		s.userInline[user] = map[string]string{}
	}
	if present {
		s.userInline[user][name] = doc
	} else {
		delete(s.userInline[user], name)
	}
}

// Await returns a channel that is closed once the fake has answered the next request of operation op: tests
// use it to act at a precise point of an adapter's sequence instead of racing a timer.
func (s *Server) Await(op string) <-chan struct{} {
	ch := make(chan struct{})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiters == nil {
		s.waiters = map[string][]chan struct{}{}
	}
	s.waiters[op] = append(s.waiters[op], ch)
	return ch
}

// record appends a call and wakes its Await channels. Caller holds mu.
func (s *Server) record(c Call) {
	s.calls = append(s.calls, c)
	for _, ch := range s.waiters[c.Operation] {
		close(ch)
	}
	delete(s.waiters, c.Operation)
}
