package awsfake

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

const iamNS = "https://iam.amazonaws.com/doc/2010-05-08/"

// Limits from the IAM quotas page (defaults).
const (
	maxGroupsPerUser       = 10
	maxManagedPerPrincipal = 10
	maxUserInlineChars     = 2048 // aggregate size of a user's inline policies, whitespace excluded
)

var (
	iamNameRe   = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	iamPolNmRe  = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)
	iamGroupRe  = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)
	policyARNRe = regexp.MustCompile(`^arn:(aws|aws-us-gov|aws-cn):iam::(aws|\d{12}):policy/[\w+=,.@/-]+$`)
)

// iamFaults is what the service answers for each injected fault kind, as its API reference documents the error.
var iamFaults = map[Fault]apiError{
	Throttling:    {status: 400, code: "Throttling", msg: "Rate exceeded"},
	Conflict:      {status: 409, code: "ConcurrentModification", msg: "The request was rejected because multiple requests to change this object were submitted simultaneously"},
	NotFound:      {status: 404, code: "NoSuchEntity", msg: "The entity cannot be found"},
	AccessDenied:  {status: 403, code: "AccessDenied", msg: "User is not authorized to perform this action"},
	ServerError:   {status: 500, code: "ServiceFailure", msg: "The request processing has failed because of an unknown error"},
	Validation:    {status: 400, code: "InvalidInput", msg: "Invalid input"},
	LimitExceeded: {status: 409, code: "LimitExceeded", msg: "Cannot exceed quota"},
	AlreadyExists: {status: 409, code: "EntityAlreadyExists", msg: "The entity already exists"},
}

func iamFault(f *fault) *apiError { return f.answer(iamFaults, "ServiceFailure") }

func (s *Server) serveQuery(w http.ResponseWriter, r *http.Request, body []byte) {
	form, perr := url.ParseQuery(string(body))
	params := map[string]any{}
	for k, v := range form {
		params[k] = v[0]
	}
	op := form.Get("Action")

	s.mu.Lock()
	defer s.mu.Unlock()
	call := Call{Service: ServiceIAM, Operation: op, Params: params}
	fail := func(e *apiError) {
		call.Status, call.Error = e.status, e.code
		s.record(call)
		writeQueryError(w, e)
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") || perr != nil || op == "" {
		fail(errf(400, "MalformedQueryString", "expected a form-encoded body with an Action"))
		return
	}
	if form.Get("Version") != "2010-05-08" {
		fail(errf(400, "InvalidParameterValue", "Version must be 2010-05-08"))
		return
	}
	if msg := checkSigV4(r, ServiceIAM, s.region); msg != "" {
		s.sigErrs = append(s.sigErrs, op+": "+msg)
		fail(errf(403, "IncompleteSignature", "%s", msg))
		return
	}
	if f := s.takeFault(op); f != nil {
		fail(iamFault(f))
		return
	}
	result, err := s.iamOp(op, form)
	if err != nil {
		fail(err)
		return
	}
	call.Status = 200
	s.record(call)
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<%sResponse xmlns="%s">`, op, iamNS)
	if result != "" {
		fmt.Fprintf(w, "<%sResult>%s</%sResult>", op, result, op)
	}
	fmt.Fprintf(w, "<ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>", newUUID(), op)
}

func writeQueryError(w http.ResponseWriter, e *apiError) {
	typ := "Sender"
	if e.status >= 500 {
		typ = "Receiver"
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(e.status)
	fmt.Fprintf(w, `<ErrorResponse xmlns="%s"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`,
		iamNS, typ, esc(e.code), esc(e.msg), newUUID())
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func noSuch(format string, args ...any) *apiError { return errf(404, "NoSuchEntity", format, args...) }
func invalid(format string, args ...any) *apiError {
	return errf(400, "ValidationError", format, args...)
}

// page applies Marker/MaxItems to a sorted list and returns the page and the trailer XML.
func page(form url.Values, all []string, size int) ([]string, string, *apiError) {
	limit := size
	if mi := form.Get("MaxItems"); mi != "" {
		n, err := strconv.Atoi(mi)
		if err != nil || n < 1 || n > 1000 {
			return nil, "", invalid("MaxItems must be between 1 and 1000")
		}
		limit = min(limit, n)
	}
	start := 0
	if m := form.Get("Marker"); m != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(m, "mk-"))
		if err != nil || !strings.HasPrefix(m, "mk-") || n < 0 || n > len(all) {
			return nil, "", errf(400, "InvalidInput", "invalid Marker")
		}
		start = n
	}
	end := min(start+limit, len(all))
	trailer := "<IsTruncated>false</IsTruncated>"
	if end < len(all) {
		trailer = "<IsTruncated>true</IsTruncated><Marker>mk-" + strconv.Itoa(end) + "</Marker>"
	}
	return all[start:end], trailer, nil
}

func (s *Server) needUser(form url.Values) (string, *apiError) {
	u := form.Get("UserName")
	if !iamNameRe.MatchString(u) {
		return "", invalid("1 validation error detected: Value at 'userName' failed to satisfy constraint")
	}
	if !s.iamUsers[u] {
		return "", noSuch("The user with name %s cannot be found.", u)
	}
	return u, nil
}

func (s *Server) needRole(form url.Values) (string, *apiError) {
	r := form.Get("RoleName")
	if !iamNameRe.MatchString(r) {
		return "", invalid("1 validation error detected: Value at 'roleName' failed to satisfy constraint")
	}
	if !s.iamRoles[r] {
		return "", noSuch("The role with name %s cannot be found.", r)
	}
	return r, nil
}

func (s *Server) needPolicy(form url.Values) (string, *apiError) {
	arn := form.Get("PolicyArn")
	if !policyARNRe.MatchString(arn) {
		return "", errf(400, "InvalidInput", "ARN %s is not valid.", arn)
	}
	return arn, nil
}

func policyName(arn string) string { return arn[strings.LastIndex(arn, "/")+1:] }

func (s *Server) iamOp(op string, form url.Values) (string, *apiError) {
	switch op {
	case "AddUserToGroup", "RemoveUserFromGroup":
		g := form.Get("GroupName")
		if !iamGroupRe.MatchString(g) {
			return "", invalid("Value at 'groupName' failed to satisfy constraint")
		}
		if s.iamGroups[g] == nil {
			return "", noSuch("The group with name %s cannot be found.", g)
		}
		u, e := s.needUser(form)
		if e != nil {
			return "", e
		}
		if op == "AddUserToGroup" {
			if !s.iamGroups[g][u] {
				n := 0
				for _, m := range s.iamGroups {
					if m[u] {
						n++
					}
				}
				if n >= maxGroupsPerUser {
					return "", errf(409, "LimitExceeded", "Cannot exceed quota for GroupsPerUser: %d", maxGroupsPerUser)
				}
			}
			s.iamGroups[g][u] = true
			return "", nil
		}
		if !s.iamGroups[g][u] {
			return "", noSuch("The user with name %s cannot be found in group %s.", u, g)
		}
		delete(s.iamGroups[g], u)
		return "", nil
	case "ListGroupsForUser":
		u, e := s.needUser(form)
		if e != nil {
			return "", e
		}
		var gs []string
		for g, m := range s.iamGroups {
			if m[u] {
				gs = append(gs, g)
			}
		}
		sort.Strings(gs)
		pg, trailer, e := page(form, gs, s.pageSize)
		if e != nil {
			return "", e
		}
		var b strings.Builder
		b.WriteString("<Groups>")
		for _, g := range pg {
			fmt.Fprintf(&b, "<member><Path>/</Path><GroupName>%s</GroupName><GroupId>AGPA%s</GroupId><Arn>arn:aws:iam::123456789012:group/%s</Arn><CreateDate>2024-01-01T00:00:00Z</CreateDate></member>",
				esc(g), strings.ToUpper(strings.ReplaceAll(newUUID(), "-", "")[:17]), esc(g))
		}
		b.WriteString("</Groups>" + trailer)
		return b.String(), nil
	case "AttachUserPolicy", "DetachUserPolicy", "AttachRolePolicy", "DetachRolePolicy":
		role := strings.HasSuffix(op, "RolePolicy")
		var name string
		var e *apiError
		if role {
			name, e = s.needRole(form)
		} else {
			name, e = s.needUser(form)
		}
		if e != nil {
			return "", e
		}
		arn, e := s.needPolicy(form)
		if e != nil {
			return "", e
		}
		m := s.userAttach
		if role {
			m = s.roleAttach
		}
		if m[name] == nil {
			m[name] = map[string]bool{}
		}
		if strings.HasPrefix(op, "Attach") {
			if !s.iamPolicies[arn] {
				return "", noSuch("Policy %s does not exist or is not attachable.", arn)
			}
			if !m[name][arn] && len(m[name]) >= maxManagedPerPrincipal {
				return "", errf(409, "LimitExceeded", "Cannot exceed quota for PoliciesPerUser: %d", maxManagedPerPrincipal)
			}
			m[name][arn] = true
			return "", nil
		}
		if !m[name][arn] {
			return "", noSuch("Policy %s was not found.", arn)
		}
		delete(m[name], arn)
		return "", nil
	case "ListAttachedUserPolicies", "ListAttachedRolePolicies":
		role := op == "ListAttachedRolePolicies"
		var name string
		var e *apiError
		m := s.userAttach
		if role {
			name, e = s.needRole(form)
			m = s.roleAttach
		} else {
			name, e = s.needUser(form)
		}
		if e != nil {
			return "", e
		}
		var arns []string
		for a, ok := range m[name] {
			if ok {
				arns = append(arns, a)
			}
		}
		sort.Strings(arns)
		pg, trailer, e := page(form, arns, s.pageSize)
		if e != nil {
			return "", e
		}
		var b strings.Builder
		b.WriteString("<AttachedPolicies>")
		for _, a := range pg {
			fmt.Fprintf(&b, "<member><PolicyName>%s</PolicyName><PolicyArn>%s</PolicyArn></member>", esc(policyName(a)), esc(a))
		}
		b.WriteString("</AttachedPolicies>" + trailer)
		return b.String(), nil
	case "PutUserPolicy":
		u, e := s.needUser(form)
		if e != nil {
			return "", e
		}
		name := form.Get("PolicyName")
		if !iamPolNmRe.MatchString(name) {
			return "", invalid("Value at 'policyName' failed to satisfy constraint")
		}
		doc := form.Get("PolicyDocument")
		if e := validatePolicyDocument(doc); e != nil {
			return "", e
		}
		total := nonSpaceLen(doc)
		for n, d := range s.userInline[u] {
			if n != name {
				total += nonSpaceLen(d)
			}
		}
		if total > maxUserInlineChars {
			return "", errf(409, "LimitExceeded", "Maximum policy size of %d bytes exceeded for user %s", maxUserInlineChars, u)
		}
		if s.userInline[u] == nil {
			s.userInline[u] = map[string]string{}
		}
		s.userInline[u][name] = doc
		return "", nil
	case "DeleteUserPolicy", "GetUserPolicy":
		u, e := s.needUser(form)
		if e != nil {
			return "", e
		}
		name := form.Get("PolicyName")
		if !iamPolNmRe.MatchString(name) {
			return "", invalid("Value at 'policyName' failed to satisfy constraint")
		}
		doc, ok := s.userInline[u][name]
		if !ok {
			return "", noSuch("The user policy with name %s cannot be found.", name)
		}
		if op == "DeleteUserPolicy" {
			delete(s.userInline[u], name)
			return "", nil
		}
		// IAM returns the document URL-encoded (RFC 3986), as the GetUserPolicy reference says.
		return fmt.Sprintf("<UserName>%s</UserName><PolicyName>%s</PolicyName><PolicyDocument>%s</PolicyDocument>",
			esc(u), esc(name), esc(strings.ReplaceAll(url.QueryEscape(doc), "+", "%20"))), nil
	case "ListUserPolicies":
		u, e := s.needUser(form)
		if e != nil {
			return "", e
		}
		var names []string
		for n := range s.userInline[u] {
			names = append(names, n)
		}
		sort.Strings(names)
		pg, trailer, e := page(form, names, s.pageSize)
		if e != nil {
			return "", e
		}
		var b strings.Builder
		b.WriteString("<PolicyNames>")
		for _, n := range pg {
			fmt.Fprintf(&b, "<member>%s</member>", esc(n))
		}
		b.WriteString("</PolicyNames>" + trailer)
		return b.String(), nil
	}
	return "", errf(400, "InvalidAction", "The action %s is not valid for this web service (or not supported by the fake).", op)
}

func nonSpaceLen(s string) int {
	n := 0
	for _, r := range s {
		if !unicode.IsSpace(r) {
			n++
		}
	}
	return n
}

// validatePolicyDocument applies the checks IAM makes that the fake can make cheaply: JSON object, Version
// 2012-10-17 or 2008-10-17, Statement present, every statement with an Effect Allow/Deny.
func validatePolicyDocument(doc string) *apiError {
	malformed := func(msg string) *apiError { return errf(400, "MalformedPolicyDocument", "%s", msg) }
	var p map[string]any
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		return malformed("Syntax errors in policy.")
	}
	if v, _ := p["Version"].(string); v != "" && !slices.Contains([]string{"2012-10-17", "2008-10-17"}, v) {
		return malformed("The policy failed legacy parsing")
	}
	var stmts []any
	switch st := p["Statement"].(type) {
	case []any:
		stmts = st
	case map[string]any:
		stmts = []any{st}
	default:
		return malformed("Policy document must contain Statement")
	}
	if len(stmts) == 0 {
		return malformed("Policy statement must contain actions.")
	}
	for _, st := range stmts {
		m, ok := st.(map[string]any)
		if !ok {
			return malformed("Syntax errors in policy.")
		}
		if e, _ := m["Effect"].(string); e != "Allow" && e != "Deny" {
			return malformed("Policy statement must contain a valid Effect.")
		}
	}
	return nil
}
