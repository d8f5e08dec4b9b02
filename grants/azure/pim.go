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

func justification(a grants.Assignment) string {
	j := "jitbot grant " + a.GrantID + ":"
	if a.Role != "" {
		j += " role " + a.Role
	}
	if a.RequestID != "" {
		j += ", request " + a.RequestID
	}
	return truncate(j, 500)
}

func requestPath(t target, name string) string {
	return t.Scope + "/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/" + name
}

// request status groups.
func statusDone(s armauthorization.Status) bool {
	switch s {
	case armauthorization.StatusProvisioned, armauthorization.StatusRevoked, armauthorization.StatusGranted:
		return true
	}
	return false
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
	filter := "principalId eq '" + principal + "'"
	pager := p.insts.NewListForScopePager(t.sdkScope(), &armauthorization.RoleAssignmentScheduleInstancesClientListForScopeOptions{Filter: &filter})
	now := p.now()
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
			return in, nil
		}
	}
	return nil, nil
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

func (p *Provider) grantPIM(ctx context.Context, a grants.Assignment, t target, principal string) (string, error) {
	inst, err := p.activeInstance(ctx, t, principal)
	if err != nil {
		return "", err // a 404 here (scope missing) is permanent, as classify says
	}
	if inst != nil {
		return deref(inst.ID), nil
	}
	if a.ExpiresAt.IsZero() {
		return "", grants.Permanent(fmt.Errorf("azure pim grant %s: the assignment has no expiry", a.GrantID))
	}
	now := p.now().UTC()
	d := a.ExpiresAt.Sub(now)
	if d < minPIMDuration {
		d = minPIMDuration
	}
	for k := range maxRequestGenerations {
		name := RequestName(leaseKey(a), "assign", k)
		prev, err := p.getRequest(ctx, t, name)
		if err != nil {
			return "", err
		}
		if prev != nil {
			st := status(prev)
			if statusDone(st) || statusFailed(st) {
				continue // processed earlier and its assignment is gone (drift or revoked): a new request is needed
			}
			return "", fmt.Errorf("azure pim grant %s: schedule request %s is %s; waiting for Azure", a.GrantID, name, st)
		}
		rt := armauthorization.RequestTypeAdminAssign
		typ := armauthorization.TypeAfterDuration
		dur := ISODuration(d)
		just := justification(a)
		body := armauthorization.RoleAssignmentScheduleRequest{Properties: &armauthorization.RoleAssignmentScheduleRequestProperties{
			PrincipalID:      &principal,
			RoleDefinitionID: &t.RoleDefID,
			RequestType:      &rt,
			Justification:    &just,
			ScheduleInfo: &armauthorization.RoleAssignmentScheduleRequestPropertiesScheduleInfo{
				StartDateTime: &now,
				Expiration: &armauthorization.RoleAssignmentScheduleRequestPropertiesScheduleInfoExpiration{
					Type:     &typ,
					Duration: &dur,
				},
			},
		}}
		resp, err := p.reqs.Create(ctx, t.sdkScope(), name, body, nil)
		if err == nil {
			st := status(&resp.RoleAssignmentScheduleRequest)
			if statusFailed(st) {
				return "", fmt.Errorf("azure pim grant %s: schedule request %s ended %s", a.GrantID, name, st)
			}
			if !statusDone(st) && st != "" {
				// Accepted but not provisioned yet: the next attempt finds the request and waits for it.
				return "", fmt.Errorf("azure pim grant %s: schedule request %s is %s; waiting for Azure", a.GrantID, name, st)
			}
			if resp.ID != nil {
				return *resp.ID, nil
			}
			return requestPath(t, name), nil
		}
		ae, e := toAPIError(ctx, "PUT roleAssignmentScheduleRequests", requestPath(t, name), err)
		if e != nil {
			return "", e
		}
		if ae.Code == CodeRoleAssignmentExists {
			// Documented for schedule requests: "A similar role assignment already exists". The list did not show
			// it (propagation) or it is an assignment jitbot did not make: the access is present either way.
			p.log.Warn().Str("grant_id", a.GrantID).Str("scope", t.Scope).Msg("azure pim: role assignment already exists; treating the grant as present")
			return requestPath(t, name) + " (RoleAssignmentExists: already assigned)", nil
		}
		if requestNameTaken(ae) {
			// A concurrent attempt created this request meanwhile: the next attempt finds it by name.
			return "", ae
		}
		return "", classify(ae)
	}
	return "", grants.Permanent(fmt.Errorf("azure pim grant %s: %d schedule requests already made for this grant", a.GrantID, maxRequestGenerations))
}

// ownsPIM reports whether jitbot's AdminAssign request for the grant was provisioned. Revoke only removes
// assignments jitbot made, never a standing assignment that was there before (RoleAssignmentExists on grant).
func (p *Provider) ownsPIM(ctx context.Context, a grants.Assignment, t target) (bool, error) {
	for k := range maxRequestGenerations {
		r, err := p.getRequest(ctx, t, RequestName(leaseKey(a), "assign", k))
		if err != nil {
			return false, err
		}
		if r == nil {
			return false, nil
		}
		if st := status(r); !statusFailed(st) {
			return true, nil
		}
	}
	return false, nil
}

func (p *Provider) revokePIM(ctx context.Context, a grants.Assignment, t target, principal string) error {
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
	owned, err := p.ownsPIM(ctx, a, t)
	if err != nil {
		return err
	}
	if !owned {
		p.log.Warn().Str("grant_id", a.GrantID).Str("scope", t.Scope).
			Msg("azure pim: the principal holds the role but not through a jitbot request; leaving it")
		return nil
	}
	for k := range maxRequestGenerations {
		name := RequestName(leaseKey(a), "remove", k)
		prev, err := p.getRequest(ctx, t, name)
		if err != nil {
			if ae := asAPI(err); ae != nil && ae.StatusCode == http.StatusNotFound {
				return nil
			}
			return err
		}
		if prev != nil {
			st := status(prev)
			if statusDone(st) || statusFailed(st) {
				continue // an earlier removal; the role was assigned again since
			}
			return fmt.Errorf("azure pim revoke %s: schedule request %s is %s; waiting for Azure", a.GrantID, name, st)
		}
		rt := armauthorization.RequestTypeAdminRemove
		just := justification(a) + " (revoke)"
		body := armauthorization.RoleAssignmentScheduleRequest{Properties: &armauthorization.RoleAssignmentScheduleRequestProperties{
			PrincipalID:      &principal,
			RoleDefinitionID: &t.RoleDefID,
			RequestType:      &rt,
			Justification:    &just,
		}}
		resp, err := p.reqs.Create(ctx, t.sdkScope(), name, body, nil)
		if err == nil {
			if st := status(&resp.RoleAssignmentScheduleRequest); statusFailed(st) {
				return fmt.Errorf("azure pim revoke %s: schedule request %s ended %s", a.GrantID, name, st)
			} else if st != "" && !statusDone(st) {
				return fmt.Errorf("azure pim revoke %s: schedule request %s is %s; waiting for Azure", a.GrantID, name, st)
			}
			return nil
		}
		ae, e := toAPIError(ctx, "PUT roleAssignmentScheduleRequests", requestPath(t, name), err)
		if e != nil {
			return e
		}
		switch {
		case ae.Code == CodeRoleAssignmentDoesNotExist, ae.StatusCode == http.StatusNotFound:
			return nil // already gone (expired, or removed meanwhile)
		}
		if requestNameTaken(ae) {
			return ae
		}
		return classify(ae) // ActiveDurationTooShort: retryable
	}
	return grants.Permanent(fmt.Errorf("azure pim revoke %s: %d schedule requests already made for this grant", a.GrantID, maxRequestGenerations))
}

// requestNameTaken recognises the answer to a PUT of a schedule request name that already exists ("A role
// assignment request with Id: <name> already exists"; the error code is not documented).
func requestNameTaken(ae *APIError) bool {
	m := strings.ToLower(ae.Message)
	return ae.StatusCode < 500 && strings.Contains(m, "request with id") && strings.Contains(m, "already exists")
}
