package awsfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Patterns from the IAM Identity Center and Identity Store API references.
var (
	instanceARNRe   = regexp.MustCompile(`^arn:(aws|aws-us-gov|aws-cn|aws-iso|aws-iso-b):sso:::instance/(sso)?ins-[a-zA-Z0-9-.]{16}$`)
	permSetARNRe    = regexp.MustCompile(`^arn:(aws|aws-us-gov|aws-cn|aws-iso|aws-iso-b):sso:::permissionSet/(sso)?ins-[a-zA-Z0-9-.]{16}/ps-[a-zA-Z0-9-./]{16}$`)
	principalIDRe   = regexp.MustCompile(`^([0-9a-f]{10}-|)[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}$`)
	accountIDRe     = regexp.MustCompile(`^\d{12}$`)
	requestIDRe     = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	identityStoreRe = regexp.MustCompile(`^d-[0-9a-f]{10}$|^[0-9a-f]{8}\b-[0-9a-f]{4}\b-[0-9a-f]{4}\b-[0-9a-f]{4}\b-[0-9a-f]{12}$`)
)

type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// jsonFaults is what the service answers for each injected fault kind, as its API reference documents the error.
var jsonFaults = map[Fault]apiError{
	Throttling:    {status: 400, code: "ThrottlingException", msg: "Rate exceeded"},
	Conflict:      {status: 400, code: "ConflictException", msg: "Operation is in progress for the same resource"},
	NotFound:      {status: 400, code: "ResourceNotFoundException", msg: "The requested resource was not found"},
	AccessDenied:  {status: 400, code: "AccessDeniedException", msg: "User is not authorized to perform this action"},
	ServerError:   {status: 500, code: "InternalServerException", msg: "An internal failure occurred"},
	Validation:    {status: 400, code: "ValidationException", msg: "Invalid request"},
	LimitExceeded: {status: 400, code: "ServiceQuotaExceededException", msg: "Quota exceeded"},
	AlreadyExists: {status: 400, code: "ConflictException", msg: "The resource already exists"},
}

func jsonFault(f *fault) *apiError { return f.answer(jsonFaults, "InternalServerException") }

func (s *Server) serveJSON(w http.ResponseWriter, r *http.Request, target string, body []byte) {
	service, op, _ := strings.Cut(target, ".")
	var svc string
	switch service {
	case "SWBExternalService":
		svc = ServiceSSOAdmin
	case "AWSIdentityStore":
		svc = ServiceIdentityStore
	default:
		writeJSONError(w, errf(400, "UnknownOperationException", "unknown target prefix"))
		return
	}
	params := map[string]any{}
	decodeErr := json.Unmarshal(body, &params)

	s.mu.Lock()
	defer s.mu.Unlock()
	call := Call{Service: svc, Operation: op, Params: params}
	fail := func(e *apiError) {
		call.Status, call.Error = e.status, e.code
		s.record(call)
		writeJSONError(w, e)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		fail(errf(400, "SerializationException", "Content-Type must be application/x-amz-json-1.1"))
		return
	}
	if msg := checkSigV4(r, svc, s.region); msg != "" {
		s.sigErrs = append(s.sigErrs, op+": "+msg)
		fail(errf(403, "IncompleteSignatureException", "%s", msg))
		return
	}
	if decodeErr != nil {
		fail(errf(400, "SerializationException", "body is not a JSON object"))
		return
	}
	s.settle()
	if f := s.takeFault(op); f != nil {
		fail(jsonFault(f))
		return
	}
	var out any
	var err *apiError
	switch svc + "." + op {
	case ServiceSSOAdmin + ".CreateAccountAssignment":
		out, err = s.createAssignment(params, false)
	case ServiceSSOAdmin + ".DeleteAccountAssignment":
		out, err = s.createAssignment(params, true)
	case ServiceSSOAdmin + ".DescribeAccountAssignmentCreationStatus":
		out, err = s.describeRequest(params, false)
	case ServiceSSOAdmin + ".DescribeAccountAssignmentDeletionStatus":
		out, err = s.describeRequest(params, true)
	case ServiceSSOAdmin + ".ListAccountAssignmentCreationStatus":
		out, err = s.listRequests(params, false)
	case ServiceSSOAdmin + ".ListAccountAssignmentDeletionStatus":
		out, err = s.listRequests(params, true)
	case ServiceSSOAdmin + ".ListAccountAssignments":
		out, err = s.listAssignments(params)
	case ServiceIdentityStore + ".GetUserId":
		out, err = s.getUserID(params)
	case ServiceIdentityStore + ".DescribeUser":
		out, err = s.describeUser(params)
	case ServiceIdentityStore + ".IsMemberInGroups":
		out, err = s.isMemberInGroups(params)
	default:
		err = errf(400, "UnknownOperationException", "operation %s is not supported by the fake", op)
	}
	if err != nil {
		fail(err)
		return
	}
	call.Status = 200
	s.record(call)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", newUUID())
	_ = json.NewEncoder(w).Encode(out)
}

func writeJSONError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", newUUID())
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": e.code, "Message": e.msg})
}

func str(p map[string]any, k string) string {
	s, _ := p[k].(string)
	return s
}

func validation(format string, args ...any) *apiError {
	return errf(400, "ValidationException", format, args...)
}

func (s *Server) checkInstance(p map[string]any) *apiError {
	arn := str(p, "InstanceArn")
	if !instanceARNRe.MatchString(arn) {
		return validation("1 validation error detected: Value at 'instanceArn' failed to satisfy constraint")
	}
	if arn != s.instanceARN {
		return errf(400, "ResourceNotFoundException", "Instance not found")
	}
	return nil
}

func opStatus(q *asyncRequest, created time.Time) map[string]any {
	st := map[string]any{
		"CreatedDate":      float64(created.Unix()),
		"PermissionSetArn": q.key.PermissionSetARN,
		"PrincipalId":      q.key.PrincipalID,
		"PrincipalType":    q.key.PrincipalType,
		"RequestId":        q.id,
		"Status":           q.status,
		"TargetId":         q.key.AccountID,
		"TargetType":       "AWS_ACCOUNT",
	}
	if q.status == "FAILED" {
		st["FailureReason"] = q.reason
	}
	return st
}

// createAssignment implements CreateAccountAssignment (deletion=false) and DeleteAccountAssignment. Caller holds mu.
func (s *Server) createAssignment(p map[string]any, deletion bool) (any, *apiError) {
	if e := s.checkInstance(p); e != nil {
		return nil, e
	}
	key := AssignmentKey{
		AccountID: str(p, "TargetId"), PermissionSetARN: str(p, "PermissionSetArn"),
		PrincipalType: str(p, "PrincipalType"), PrincipalID: str(p, "PrincipalId"),
	}
	switch {
	case !accountIDRe.MatchString(key.AccountID):
		return nil, validation("Value at 'targetId' failed to satisfy constraint: Member must satisfy regular expression pattern: \\d{12}")
	case str(p, "TargetType") != "AWS_ACCOUNT":
		return nil, validation("Value at 'targetType' failed to satisfy enum value set: [AWS_ACCOUNT]")
	case key.PrincipalType != "USER" && key.PrincipalType != "GROUP":
		return nil, validation("Value at 'principalType' failed to satisfy enum value set: [USER, GROUP]")
	case !principalIDRe.MatchString(key.PrincipalID):
		return nil, validation("Value at 'principalId' failed to satisfy constraint: Member must satisfy regular expression pattern")
	case !permSetARNRe.MatchString(key.PermissionSetARN):
		return nil, validation("Value at 'permissionSetArn' failed to satisfy constraint: Member must satisfy regular expression pattern")
	}
	if !s.permissionSets[key.PermissionSetARN] {
		return nil, errf(400, "ResourceNotFoundException", "Could not find PermissionSet with ARN %s", key.PermissionSetARN)
	}
	if s.pending(key) {
		return nil, errf(400, "ConflictException", "An account assignment operation is in progress for this principal, account and permission set")
	}
	q := &asyncRequest{id: newUUID(), deletion: deletion, key: key, created: time.Now(), status: "IN_PROGRESS"}
	switch {
	case deletion && !s.assignments[key]:
		switch s.deleteAbsent {
		case "notfound":
			return nil, errf(400, "ResourceNotFoundException", "Could not find the account assignment")
		case "fail":
			q.reason = "Account assignment does not exist"
		}
	case !deletion && s.assignments[key] && s.duplicateMode == "fail":
		q.reason = "Account assignment already exists"
	case !deletion && !s.accounts[key.AccountID]:
		q.reason = fmt.Sprintf("Received a 404 status error: account %s was not found in the organization", key.AccountID)
	case !deletion && key.PrincipalType == "USER" && s.users[key.PrincipalID] == "",
		!deletion && key.PrincipalType == "GROUP" && s.groups[key.PrincipalID] == "":
		q.reason = "Received a 404 status error: the specified principal does not exist"
	}
	s.requests[q.id] = q
	s.order = append(s.order, q.id)
	name := "AccountAssignmentCreationStatus"
	if deletion {
		name = "AccountAssignmentDeletionStatus"
	}
	return map[string]any{name: opStatus(q, q.created)}, nil
}

func (s *Server) describeRequest(p map[string]any, deletion bool) (any, *apiError) {
	if e := s.checkInstance(p); e != nil {
		return nil, e
	}
	field, name := "AccountAssignmentCreationRequestId", "AccountAssignmentCreationStatus"
	if deletion {
		field, name = "AccountAssignmentDeletionRequestId", "AccountAssignmentDeletionStatus"
	}
	id := str(p, field)
	if !requestIDRe.MatchString(id) {
		return nil, validation("Value at '%s' failed to satisfy constraint", field)
	}
	q := s.requests[id]
	if q == nil || q.deletion != deletion {
		return nil, errf(400, "ResourceNotFoundException", "Request %s not found", id)
	}
	q.polls++
	if q.polls >= s.pollsToFinish && time.Since(q.created) >= s.asyncMin {
		s.finish(q)
	}
	return map[string]any{name: opStatus(q, q.created)}, nil
}

// listRequests implements ListAccountAssignmentCreationStatus (deletion=false) and
// ListAccountAssignmentDeletionStatus: the requests of the instance in creation order, optionally filtered by
// Filter.Status, as AccountAssignmentOperationStatusMetadata (CreatedDate, RequestId, Status). Caller holds mu.
func (s *Server) listRequests(p map[string]any, deletion bool) (any, *apiError) {
	if e := s.checkInstance(p); e != nil {
		return nil, e
	}
	status := ""
	if f, ok := p["Filter"].(map[string]any); ok {
		status = str(f, "Status")
		switch status {
		case "", "IN_PROGRESS", "FAILED", "SUCCEEDED":
		default:
			return nil, validation("Value at 'filter.status' failed to satisfy enum value set: [IN_PROGRESS, FAILED, SUCCEEDED]")
		}
	}
	limit := s.pageSize
	if mr, ok := p["MaxResults"].(float64); ok {
		if mr < 1 || mr > 100 {
			return nil, validation("Value at 'maxResults' failed to satisfy constraint: 1 <= value <= 100")
		}
		limit = min(limit, int(mr))
	}
	var all []*asyncRequest
	for _, id := range s.order {
		if q := s.requests[id]; q.deletion == deletion && (status == "" || q.status == status) {
			all = append(all, q)
		}
	}
	start := 0
	if tok := str(p, "NextToken"); tok != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(tok, "tok-"))
		if err != nil || n < 0 || n > len(all) || !strings.HasPrefix(tok, "tok-") {
			return nil, validation("invalid NextToken")
		}
		start = n
	}
	end := min(start+limit, len(all))
	items := []map[string]any{}
	for _, q := range all[start:end] {
		items = append(items, map[string]any{"CreatedDate": float64(q.created.Unix()), "RequestId": q.id, "Status": q.status})
	}
	name := "AccountAssignmentsCreationStatus"
	if deletion {
		name = "AccountAssignmentsDeletionStatus"
	}
	out := map[string]any{name: items}
	if end < len(all) {
		out["NextToken"] = "tok-" + strconv.Itoa(end)
	}
	return out, nil
}

func (s *Server) listAssignments(p map[string]any) (any, *apiError) {
	if e := s.checkInstance(p); e != nil {
		return nil, e
	}
	acct, ps := str(p, "AccountId"), str(p, "PermissionSetArn")
	if !accountIDRe.MatchString(acct) {
		return nil, validation("Value at 'accountId' failed to satisfy constraint")
	}
	if !permSetARNRe.MatchString(ps) {
		return nil, validation("Value at 'permissionSetArn' failed to satisfy constraint")
	}
	if !s.permissionSets[ps] {
		return nil, errf(400, "ResourceNotFoundException", "Could not find PermissionSet with ARN %s", ps)
	}
	limit := s.pageSize
	if mr, ok := p["MaxResults"].(float64); ok {
		if mr < 1 || mr > 100 {
			return nil, validation("Value at 'maxResults' failed to satisfy constraint: 1 <= value <= 100")
		}
		limit = min(limit, int(mr))
	}
	var all []AssignmentKey
	for k, ok := range s.assignments {
		if ok && k.AccountID == acct && k.PermissionSetARN == ps {
			all = append(all, k)
		}
	}
	sortKeys(all)
	start := 0
	if tok := str(p, "NextToken"); tok != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(tok, "tok-"))
		if err != nil || n < 0 || n > len(all) || !strings.HasPrefix(tok, "tok-") {
			return nil, validation("invalid NextToken")
		}
		start = n
	}
	end := min(start+limit, len(all))
	items := []map[string]any{}
	for _, k := range all[start:end] {
		items = append(items, map[string]any{
			"AccountId": k.AccountID, "PermissionSetArn": k.PermissionSetARN,
			"PrincipalId": k.PrincipalID, "PrincipalType": k.PrincipalType,
		})
	}
	out := map[string]any{"AccountAssignments": items}
	if end < len(all) {
		out["NextToken"] = "tok-" + strconv.Itoa(end)
	}
	return out, nil
}

func sortKeys(ks []AssignmentKey) {
	less := func(a, b AssignmentKey) int {
		return strings.Compare(a.PrincipalType+"/"+a.PrincipalID, b.PrincipalType+"/"+b.PrincipalID)
	}
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && less(ks[j-1], ks[j]) > 0; j-- {
			ks[j-1], ks[j] = ks[j], ks[j-1]
		}
	}
}

func (s *Server) checkStore(p map[string]any) *apiError {
	id := str(p, "IdentityStoreId")
	if !identityStoreRe.MatchString(id) {
		return validation("Value at 'identityStoreId' failed to satisfy constraint")
	}
	if id != s.storeID {
		return errf(400, "ResourceNotFoundException", "Identity store not found")
	}
	return nil
}

// getUserID implements GetUserId for AlternateIdentifier.UniqueAttribute on userName (the attribute path is
// matched case-insensitively) and emails.value.
func (s *Server) getUserID(p map[string]any) (any, *apiError) {
	if e := s.checkStore(p); e != nil {
		return nil, e
	}
	alt, _ := p["AlternateIdentifier"].(map[string]any)
	ua, _ := alt["UniqueAttribute"].(map[string]any)
	if ua == nil {
		return nil, validation("AlternateIdentifier must be UniqueAttribute in this fake")
	}
	path := strings.ToLower(str(ua, "AttributePath"))
	val, ok := ua["AttributeValue"].(string)
	if !ok || val == "" {
		return nil, validation("AttributeValue must be a non-empty string")
	}
	if path != "username" {
		return nil, validation("unsupported AttributePath")
	}
	for id, name := range s.users {
		if name == val {
			return map[string]any{"IdentityStoreId": s.storeID, "UserId": id}, nil
		}
	}
	return nil, errf(400, "ResourceNotFoundException", "USER not found")
}

func (s *Server) describeUser(p map[string]any) (any, *apiError) {
	if e := s.checkStore(p); e != nil {
		return nil, e
	}
	id := str(p, "UserId")
	name, ok := s.users[id]
	if !ok {
		return nil, errf(400, "ResourceNotFoundException", "USER not found")
	}
	return map[string]any{"IdentityStoreId": s.storeID, "UserId": id, "UserName": name}, nil
}

// isMemberInGroups implements IsMemberInGroups: GroupIds 1 to 100 group ids, MemberId the union {"UserId": ...};
// one result per group id asked (see the package documentation for unknown ids). Caller holds mu.
func (s *Server) isMemberInGroups(p map[string]any) (any, *apiError) {
	if e := s.checkStore(p); e != nil {
		return nil, e
	}
	mid, _ := p["MemberId"].(map[string]any)
	if len(mid) != 1 || !principalIDRe.MatchString(str(mid, "UserId")) {
		return nil, validation("Value at 'memberId' failed to satisfy constraint: exactly one of [UserId] must be set to a valid id")
	}
	uid := str(mid, "UserId")
	ids, ok := p["GroupIds"].([]any)
	if !ok || len(ids) < 1 || len(ids) > 100 {
		return nil, validation("Value at 'groupIds' failed to satisfy constraint: Member must have length between 1 and 100")
	}
	results := []map[string]any{}
	for _, v := range ids {
		g, _ := v.(string)
		if !principalIDRe.MatchString(g) {
			return nil, validation("Value at 'groupIds' failed to satisfy constraint: Member must satisfy regular expression pattern")
		}
		results = append(results, map[string]any{
			"GroupId": g, "MemberId": map[string]any{"UserId": uid}, "MembershipExists": s.members[g][uid],
		})
	}
	return map[string]any{"Results": results}, nil
}
