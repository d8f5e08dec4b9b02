package azure

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/authorization/armauthorization/v2"

	"github.com/jitbot/jitbot/grants"
)

// ISODuration formats d, rounded up to a whole minute, as an ISO 8601 duration such as "PT1H30M".
func ISODuration(d time.Duration) string {
	m := int64((d + time.Minute - 1) / time.Minute)
	if m < 1 {
		m = 1
	}
	h, m := m/60, m%60
	switch {
	case h == 0:
		return fmt.Sprintf("PT%dM", m)
	case m == 0:
		return fmt.Sprintf("PT%dH", h)
	}
	return fmt.Sprintf("PT%dH%dM", h, m)
}

// justification marks a schedule request as jitbot's ("jitbot grant <id>: ..."; ownsInstance and ListOwned
// recognise it) and names the operation, the role, the request and the binding for Azure's audit trail.
func justification(a grants.Assignment, op string) string {
	j := "jitbot grant " + a.GrantID + ": " + op
	if a.Role != "" {
		j += ", role " + a.Role
	}
	if a.RequestID != "" {
		j += ", request " + a.RequestID
	}
	if a.BindingKey != "" {
		j += ", binding " + a.BindingKey
	}
	return truncate(j, 500)
}

func requestPath(t target, name string) string {
	return t.Scope + "/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/" + name
}

// request status groups.
func statusDone(s armauthorization.Status) bool {
	switch s {
	case armauthorization.StatusProvisioned, armauthorization.StatusRevoked:
		return true
	}
	return false
}

// statusInFlight: PIM is processing the request and will change the assignment without anyone's decision.
// Requests waiting for a human (PendingApproval, PendingAdminDecision) are not waited for: they may wait days.
func statusInFlight(s armauthorization.Status) bool {
	switch s {
	case armauthorization.StatusAccepted, armauthorization.StatusPendingProvisioning, armauthorization.StatusProvisioningStarted,
		armauthorization.StatusPendingRevocation, armauthorization.StatusPendingScheduleCreation, armauthorization.StatusPendingEvaluation,
		armauthorization.StatusPendingExternalProvisioning, armauthorization.StatusAdminApproved, armauthorization.StatusPendingApprovalProvisioning,
		// Granted (validated, approved) and ScheduleCreated precede Provisioned: the assignment may not exist yet.
		armauthorization.StatusGranted, armauthorization.StatusScheduleCreated:
		return true
	}
	return false
}

// pollInterval bounds the wait between two reads of a request PIM is processing.
const (
	pollFirst = 200 * time.Millisecond
	pollMax   = 2 * time.Second
)

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// awaitQuiet waits until no schedule request for the principal's role at the scope is being processed - by
// jitbot (an earlier attempt that timed out, another lease of the binding) or by anyone else - so that no
// decision is taken from an instance list that an in-flight request is about to change. It lists the
// principal's requests ("principalId eq", documented to return them at, above and below the scope) and keeps
// the exact scope and role. When ctx ends first it returns a retryable error naming the request: the next
// attempt waits again.
func (p *Provider) awaitQuiet(ctx context.Context, op string, a grants.Assignment, t target, principal string) error {
	wait := pollFirst
	for {
		busy, err := p.inFlight(ctx, t, principal)
		if err != nil || busy == nil {
			return err
		}
		what := fmt.Sprintf("azure pim %s %s: schedule request %s (%s) is %s; waiting for Azure", op, a.GrantID, deref(busy.Name), requestType(busy), status(busy))
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		wait = min(2*wait, pollMax)
	}
}

func requestType(r *armauthorization.RoleAssignmentScheduleRequest) string {
	if r == nil || r.Properties == nil || r.Properties.RequestType == nil {
		return ""
	}
	return string(*r.Properties.RequestType)
}

func (p *Provider) inFlight(ctx context.Context, t target, principal string) (*armauthorization.RoleAssignmentScheduleRequest, error) {
	filter := "principalId eq '" + principal + "'"
	pager := p.reqs.NewListForScopePager(t.sdkScope(), &armauthorization.RoleAssignmentScheduleRequestsClientListForScopeOptions{Filter: &filter})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			ae, e := toAPIError(ctx, "GET roleAssignmentScheduleRequests", t.Scope+"/providers/Microsoft.Authorization/roleAssignmentScheduleRequests", err)
			if e != nil {
				return nil, e
			}
			return nil, classify(ae)
		}
		for _, r := range page.Value {
			if r == nil || r.Properties == nil {
				continue
			}
			pr := r.Properties
			if statusInFlight(status(r)) && strings.EqualFold(deref(pr.PrincipalID), principal) &&
				roleGUIDOf(deref(pr.RoleDefinitionID)) == t.RoleGUID && sameScope(deref(pr.Scope), t.Scope) {
				return r, nil
			}
		}
	}
	return nil, nil
}

func statusFailed(s armauthorization.Status) bool {
	switch s {
	case armauthorization.StatusFailed, armauthorization.StatusFailedAsResourceIsLocked, armauthorization.StatusDenied,
		armauthorization.StatusAdminDenied, armauthorization.StatusCanceled, armauthorization.StatusTimedOut,
		armauthorization.StatusInvalid:
		return true
	}
	return false
}

// activeInstance returns the principal's active role assignment schedule instance of t's role exactly at t's
// scope, nil if none. It lists instances at the scope filtered by principal ("principalId eq '<id>'", which the
// API documents as returning the principal's instances at, above or below the scope) and matches the rest here.
func (p *Provider) activeInstance(ctx context.Context, t target, principal string) (*armauthorization.RoleAssignmentScheduleInstance, error) {
	all, err := p.activeInstances(ctx, t, principal, true)
	if err != nil || len(all) == 0 {
		return nil, err
	}
	return all[0], nil
}

// activeInstances returns the principal's active instances of t's role exactly at t's scope, in the order Azure
// lists them (only the first when first is set). PIM keeps one active assignment per principal, role and scope
// (a second AdminAssign answers RoleAssignmentExists), so there is at most one; Inspect asks for all anyway and
// reports each.
func (p *Provider) activeInstances(ctx context.Context, t target, principal string, first bool) ([]*armauthorization.RoleAssignmentScheduleInstance, error) {
	filter := "principalId eq '" + principal + "'"
	pager := p.insts.NewListForScopePager(t.sdkScope(), &armauthorization.RoleAssignmentScheduleInstancesClientListForScopeOptions{Filter: &filter})
	now := p.now()
	var out []*armauthorization.RoleAssignmentScheduleInstance
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			ae, e := toAPIError(ctx, "GET roleAssignmentScheduleInstances", t.Scope+"/providers/Microsoft.Authorization/roleAssignmentScheduleInstances", err)
			if e != nil {
				return nil, e
			}
			return nil, classify(ae)
		}
		for _, in := range page.Value {
			if in == nil || in.Properties == nil {
				continue
			}
			pr := in.Properties
			if !strings.EqualFold(deref(pr.PrincipalID), principal) || roleGUIDOf(deref(pr.RoleDefinitionID)) != t.RoleGUID ||
				!sameScope(deref(pr.Scope), t.Scope) {
				continue
			}
			if pr.EndDateTime != nil && !pr.EndDateTime.After(now) {
				continue
			}
			out = append(out, in)
			if first {
				return out, nil
			}
		}
	}
	return out, nil
}

// getRequest returns the schedule request name at t's scope, nil if it does not exist.
func (p *Provider) getRequest(ctx context.Context, t target, name string) (*armauthorization.RoleAssignmentScheduleRequest, error) {
	resp, err := p.reqs.Get(ctx, t.sdkScope(), name, nil)
	if err == nil {
		return &resp.RoleAssignmentScheduleRequest, nil
	}
	ae, e := toAPIError(ctx, "GET roleAssignmentScheduleRequests", requestPath(t, name), err)
	if e != nil {
		return nil, e
	}
	if ae.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	return nil, classify(ae)
}

func status(r *armauthorization.RoleAssignmentScheduleRequest) armauthorization.Status {
	if r == nil || r.Properties == nil || r.Properties.Status == nil {
		return ""
	}
	return *r.Properties.Status
}

// pimKey is the name material of one grant's PIM requests: the binding (so that names never collide across
// bindings) and the grant (so that every lease has fresh names: a processed request name cannot be reused, and
// a binding sees any number of leases over its life).
func pimKey(a grants.Assignment) string { return leaseKey(a) + "/" + a.GrantID }

// pimEnd is the end jitbot asks PIM for: the assignment's expiry, but never inside PIM's five-minute floor.
func (p *Provider) pimEnd(a grants.Assignment) time.Time {
	end := a.ExpiresAt.UTC()
	if floor := p.now().UTC().Add(minPIMDuration); end.Before(floor) {
		end = floor
	}
	return end.Truncate(time.Second)
}

// grantPIM makes sure the principal holds the role through PIM until the assignment's expiry:
//
//   - no active assignment: an AdminAssign request ending at the expiry;
//   - jitbot's assignment (see ownsInstance) ending at another time: an AdminExtend request (later end: an
//     extension, or a longer overlapping lease) or an AdminUpdate request (earlier end: the longer lease ended),
//     so that Azure ends the access exactly when jitbot will;
//   - an assignment jitbot did not make (a standing or time-bound assignment by an administrator): nothing is
//     changed; the reference says it pre-existed and Revoke leaves it.
func (p *Provider) grantPIM(ctx context.Context, a grants.Assignment, t target, principal string) (string, error) {
	if a.ExpiresAt.IsZero() {
		return "", grants.Permanent(fmt.Errorf("azure pim grant %s: the assignment has no expiry", a.GrantID))
	}
	if err := p.awaitQuiet(ctx, "grant", a, t, principal); err != nil {
		return "", err
	}
	inst, err := p.activeInstance(ctx, t, principal)
	if err != nil {
		return "", err // a 404 here (scope missing) is permanent, as classify says
	}
	end := p.pimEnd(a)
	if inst == nil {
		return p.assignPIM(ctx, a, t, principal, end)
	}
	owned, why, err := p.ownsInstance(ctx, t, inst)
	if err != nil {
		return "", err
	}
	if !owned {
		p.log.Warn().Str("grant_id", a.GrantID).Str("scope", t.Scope).Str("instance", deref(inst.ID)).Str("why", why).
			Msg("azure pim: the principal already holds the role through an assignment jitbot did not make; leaving it as it is")
		return grants.PreExistingRef(deref(inst.ID)), nil
	}
	cur := inst.Properties.EndDateTime
	if cur != nil && cur.UTC().Truncate(time.Second).Equal(end) {
		return deref(inst.ID), nil
	}
	return p.reschedulePIM(ctx, a, t, principal, inst, end)
}

// assignPIM creates the AdminAssign request of the grant. Before each PUT it GETs the name, so that a retry
// after a lost answer finds its own request; a processed name is never reused (drift repair moves to the next).
func (p *Provider) assignPIM(ctx context.Context, a grants.Assignment, t target, principal string, end time.Time) (string, error) {
	start := p.now().UTC().Truncate(time.Second)
	rt := armauthorization.RequestTypeAdminAssign
	typ := armauthorization.TypeAfterDateTime
	just := justification(a, "assign")
	body := armauthorization.RoleAssignmentScheduleRequest{Properties: &armauthorization.RoleAssignmentScheduleRequestProperties{
		PrincipalID:      &principal,
		RoleDefinitionID: &t.RoleDefID,
		RequestType:      &rt,
		Justification:    &just,
		ScheduleInfo: &armauthorization.RoleAssignmentScheduleRequestPropertiesScheduleInfo{
			StartDateTime: &start,
			Expiration:    &armauthorization.RoleAssignmentScheduleRequestPropertiesScheduleInfoExpiration{Type: &typ, EndDateTime: &end},
		},
	}}
	ref, err := p.putRequest(ctx, a, t, "grant", "assign", body)
	if ae := asAPI(err); ae != nil && ae.Code == CodeRoleAssignmentExists {
		// Documented for schedule requests: "A similar role assignment already exists". The instance list did not
		// show it yet (propagation): the next attempt finds it and decides whether it is jitbot's.
		return "", fmt.Errorf("azure pim grant %s: an assignment appeared that the instance list does not show yet: %w", a.GrantID, ae)
	}
	return ref, err
}

// reschedulePIM moves the end of jitbot's own active assignment to end.
func (p *Provider) reschedulePIM(ctx context.Context, a grants.Assignment, t target, principal string, inst *armauthorization.RoleAssignmentScheduleInstance, end time.Time) (string, error) {
	rt, kind := armauthorization.RequestTypeAdminExtend, "extend"
	if cur := inst.Properties.EndDateTime; cur != nil && end.Before(*cur) {
		rt, kind = armauthorization.RequestTypeAdminUpdate, "update"
	}
	start := p.now().UTC().Truncate(time.Second)
	if s := inst.Properties.StartDateTime; s != nil {
		start = s.UTC()
	}
	typ := armauthorization.TypeAfterDateTime
	just := justification(a, kind)
	body := armauthorization.RoleAssignmentScheduleRequest{Properties: &armauthorization.RoleAssignmentScheduleRequestProperties{
		PrincipalID:                    &principal,
		RoleDefinitionID:               &t.RoleDefID,
		RequestType:                    &rt,
		Justification:                  &just,
		TargetRoleAssignmentScheduleID: inst.Properties.RoleAssignmentScheduleID,
		ScheduleInfo: &armauthorization.RoleAssignmentScheduleRequestPropertiesScheduleInfo{
			StartDateTime: &start,
			Expiration:    &armauthorization.RoleAssignmentScheduleRequestPropertiesScheduleInfoExpiration{Type: &typ, EndDateTime: &end},
		},
	}}
	// One name per grant, kind and end: a retried extension to the same end finds its own request.
	if _, err := p.putRequest(ctx, a, t, "grant", kind+"@"+end.Format(time.RFC3339), body); err != nil {
		return "", err
	}
	return deref(inst.ID), nil
}

// putRequest PUTs body under the grant's first unused request name of kind and reports its outcome. A request
// of the grant that Azure is still processing is waited for (retryable) instead of being duplicated.
func (p *Provider) putRequest(ctx context.Context, a grants.Assignment, t target, op, kind string, body armauthorization.RoleAssignmentScheduleRequest) (string, error) {
	for k := range maxRequestGenerations {
		name := RequestName(pimKey(a), kind, k)
		prev, err := p.getRequest(ctx, t, name)
		if err != nil {
			return "", err
		}
		if prev != nil {
			st := status(prev)
			if statusDone(st) || statusFailed(st) {
				continue // processed earlier; its effect is gone (drift, expiry) or it failed: a new request is needed
			}
			return p.awaitRequest(ctx, op, a, t, name, prev)
		}
		resp, err := p.reqs.Create(ctx, t.sdkScope(), name, body, nil)
		if err == nil {
			return p.awaitRequest(ctx, op, a, t, name, &resp.RoleAssignmentScheduleRequest)
		}
		ae, e := toAPIError(ctx, "PUT roleAssignmentScheduleRequests", requestPath(t, name), err)
		if e != nil {
			return "", e
		}
		switch {
		case requestNameTaken(ae):
			return "", ae // a concurrent attempt created this request meanwhile: the next attempt finds it by name
		case ae.Code == CodeRoleAssignmentExists, ae.Code == CodeRoleAssignmentDoesNotExist:
			return "", ae // the caller decides
		}
		return "", classify(ae)
	}
	return "", grants.Permanent(fmt.Errorf("azure pim %s %s: %d %s requests already made for this grant (the access keeps disappearing behind jitbot's back)", op, a.GrantID, maxRequestGenerations, kind))
}

// awaitRequest waits (within ctx) until PIM has processed jitbot's request name and reports its outcome. When
// ctx ends first the error is retryable: the next attempt finds the request by name and waits again.
func (p *Provider) awaitRequest(ctx context.Context, op string, a grants.Assignment, t target, name string, r *armauthorization.RoleAssignmentScheduleRequest) (string, error) {
	wait := pollFirst
	for {
		st := status(r)
		switch {
		case statusFailed(st):
			return "", fmt.Errorf("azure pim %s %s: schedule request %s ended %s", op, a.GrantID, name, st)
		case st == "" || statusDone(st):
			if r != nil && r.ID != nil {
				return *r.ID, nil
			}
			return requestPath(t, name), nil
		case !statusInFlight(st):
			// Waiting for a human decision (approval): not jitbot's to wait for within one attempt.
			return "", fmt.Errorf("azure pim %s %s: schedule request %s is %s", op, a.GrantID, name, st)
		}
		if err := sleep(ctx, wait); err != nil {
			return "", fmt.Errorf("azure pim %s %s: schedule request %s is %s; waiting for Azure: %w", op, a.GrantID, name, st, err)
		}
		wait = min(2*wait, pollMax)
		got, err := p.getRequest(ctx, t, name)
		if err != nil {
			return "", err
		}
		if got == nil {
			return "", fmt.Errorf("azure pim %s %s: schedule request %s is not readable yet", op, a.GrantID, name)
		}
		r = got
	}
}

// ownsInstance decides whether jitbot made the active assignment behind inst: the schedule request that
// created its schedule (or changed it last) must carry jitbot's justification. Ownership is thus recorded per
// operation at Azure itself, never inferred from a name derived from the binding: a standing assignment an
// administrator makes later, on a binding jitbot has used before, has a schedule of its own and is not
// jitbot's. why explains a negative answer for the log.
func (p *Provider) ownsInstance(ctx context.Context, t target, inst *armauthorization.RoleAssignmentScheduleInstance) (owned bool, why string, err error) {
	id, why, err := p.instanceOwner(ctx, inst)
	return id != "", why, err
}

// instanceOwner returns the jitbot grant id whose request created or last changed inst's schedule, "" (with
// the reason) when jitbot did not make it.
func (p *Provider) instanceOwner(ctx context.Context, inst *armauthorization.RoleAssignmentScheduleInstance) (grantID, why string, err error) {
	schedID := deref(inst.Properties.RoleAssignmentScheduleID)
	scope, name, ok := splitResourceID(schedID, "roleAssignmentSchedules")
	if !ok {
		return "", "the instance names no schedule", nil
	}
	resp, err := p.scheds.Get(ctx, strings.TrimPrefix(scope, "/"), name, nil)
	if err != nil {
		ae, e := toAPIError(ctx, "GET roleAssignmentSchedules", schedID, err)
		if e != nil {
			return "", "", e
		}
		if ae.StatusCode == http.StatusNotFound {
			// Listed a moment ago: it ended meanwhile, or is not visible yet. Decide on the next attempt.
			return "", "", fmt.Errorf("azure pim: schedule of an active assignment not found: %w", ae)
		}
		return "", "", classify(ae)
	}
	var reqID string
	if pr := resp.Properties; pr != nil {
		reqID = deref(pr.RoleAssignmentScheduleRequestID)
	}
	rscope, rname, ok := splitResourceID(reqID, "roleAssignmentScheduleRequests")
	if !ok {
		return "", "its schedule names no schedule request", nil
	}
	r, err := p.getRequest(ctx, target{Scope: rscope}, rname)
	if err != nil {
		return "", "", err
	}
	if r == nil || r.Properties == nil {
		return "", "its schedule request " + reqID + " is not readable", nil
	}
	id, ok := parseGrantID(deref(r.Properties.Justification))
	if !ok {
		return "", "its schedule request " + reqID + " was not made by jitbot", nil
	}
	return id, "", nil
}

// splitResourceID splits "<scope>/providers/Microsoft.Authorization/<typ>/<name>".
func splitResourceID(id, typ string) (scope, name string, ok bool) {
	marker := "/providers/microsoft.authorization/" + strings.ToLower(typ) + "/"
	i := strings.LastIndex(strings.ToLower(id), marker)
	if i <= 0 {
		return "", "", false
	}
	scope, name = id[:i], id[i+len(marker):]
	if name == "" || strings.Contains(name, "/") {
		return "", "", false
	}
	return scope, name, true
}

// revokePIM removes jitbot's active assignment of the role. An assignment jitbot did not make is left alone;
// requests Azure is still processing for the principal's role (an AdminAssign of an earlier attempt) are waited
// for first, so that the access cannot appear after the revoke reported success.
func (p *Provider) revokePIM(ctx context.Context, a grants.Assignment, t target, principal string) error {
	if err := p.awaitQuiet(ctx, "revoke", a, t, principal); err != nil {
		if ae := asAPI(err); ae != nil && ae.StatusCode == http.StatusNotFound {
			return nil
		}
		return err
	}
	inst, err := p.activeInstance(ctx, t, principal)
	if err != nil {
		if ae := asAPI(err); ae != nil && ae.StatusCode == http.StatusNotFound {
			return nil
		}
		return err
	}
	if inst == nil {
		return nil
	}
	owned, why, err := p.ownsInstance(ctx, t, inst)
	if err != nil {
		return err
	}
	if !owned {
		p.log.Warn().Str("grant_id", a.GrantID).Str("scope", t.Scope).Str("instance", deref(inst.ID)).Str("why", why).
			Msg("azure pim: the principal holds the role through an assignment jitbot did not make; leaving it")
		return nil
	}
	rt := armauthorization.RequestTypeAdminRemove
	just := justification(a, "remove")
	body := armauthorization.RoleAssignmentScheduleRequest{Properties: &armauthorization.RoleAssignmentScheduleRequestProperties{
		PrincipalID:      &principal,
		RoleDefinitionID: &t.RoleDefID,
		RequestType:      &rt,
		Justification:    &just,
	}}
	_, err = p.putRequest(ctx, a, t, "revoke", "remove", body)
	if ae := asAPI(err); ae != nil && (ae.Code == CodeRoleAssignmentDoesNotExist || ae.StatusCode == http.StatusNotFound) {
		return nil // already gone (expired, or removed meanwhile)
	}
	return err // ActiveDurationTooShort: retryable
}

// requestNameTaken recognises the answer to a PUT of a schedule request name that already exists ("A role
// assignment request with Id: <name> already exists"; the error code is not documented).
func requestNameTaken(ae *APIError) bool {
	m := strings.ToLower(ae.Message)
	return ae.StatusCode < 500 && strings.Contains(m, "request with id") && strings.Contains(m, "already exists")
}
