package azure

import (
	"context"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/authorization/armauthorization/v2"

	"github.com/jitbot/jitbot/grants"
)

// ListOwned lists what jitbot holds at Config.Scopes (and below them): role assignments whose description starts
// with "jitbot grant ", and, in pim mode, active schedule instances backed by an AdminAssign request whose
// justification starts with "jitbot grant ".
func (p *Provider) ListOwned(ctx context.Context) ([]grants.Owned, error) {
	var out []grants.Owned
	seen := map[string]bool{}
	for _, scope := range p.scopes {
		sdkScope := strings.TrimPrefix(scope, "/")
		pager := p.ra.NewListForScopePager(sdkScope, nil)
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return nil, p.listErr(ctx, "GET roleAssignments", scope+"/providers/Microsoft.Authorization/roleAssignments", err)
			}
			for _, ra := range page.Value {
				if ra == nil || ra.Properties == nil || ra.ID == nil || seen[strings.ToLower(*ra.ID)] {
					continue
				}
				pr := ra.Properties
				id, ok := parseGrantID(deref(pr.Description))
				if !ok {
					continue
				}
				seen[strings.ToLower(*ra.ID)] = true
				tg := map[string]string{KeyScope: deref(pr.Scope), KeyRoleDefinitionID: deref(pr.RoleDefinitionID), KeyMode: ModeRBAC}
				if pr.PrincipalType != nil {
					tg[KeyPrincipalType] = string(*pr.PrincipalType)
				}
				out = append(out, grants.Owned{GrantID: id, Principal: deref(pr.PrincipalID), Target: tg, Ref: *ra.ID})
			}
		}
	}
	if p.mode != ModePIM {
		return out, nil
	}
	for _, scope := range p.scopes {
		sdkScope := strings.TrimPrefix(scope, "/")
		// Active instances under the scope.
		type key struct{ principal, role, scope string }
		active := map[key]string{}
		ip := p.insts.NewListForScopePager(sdkScope, nil)
		for ip.More() {
			page, err := ip.NextPage(ctx)
			if err != nil {
				return nil, p.listErr(ctx, "GET roleAssignmentScheduleInstances", scope+"/providers/Microsoft.Authorization/roleAssignmentScheduleInstances", err)
			}
			now := p.now()
			for _, in := range page.Value {
				if in == nil || in.Properties == nil {
					continue
				}
				pr := in.Properties
				if pr.EndDateTime != nil && !pr.EndDateTime.After(now) {
					continue
				}
				active[key{strings.ToLower(deref(pr.PrincipalID)), roleGUIDOf(deref(pr.RoleDefinitionID)), strings.ToLower(deref(pr.Scope))}] = deref(in.ID)
			}
		}
		// Requests this identity made ("asRequestor()").
		filter := "asRequestor()"
		rp := p.reqs.NewListForScopePager(sdkScope, &armauthorization.RoleAssignmentScheduleRequestsClientListForScopeOptions{Filter: &filter})
		for rp.More() {
			page, err := rp.NextPage(ctx)
			if err != nil {
				return nil, p.listErr(ctx, "GET roleAssignmentScheduleRequests", scope+"/providers/Microsoft.Authorization/roleAssignmentScheduleRequests", err)
			}
			for _, r := range page.Value {
				if r == nil || r.Properties == nil {
					continue
				}
				pr := r.Properties
				if pr.RequestType == nil || *pr.RequestType != armauthorization.RequestTypeAdminAssign || statusFailed(status(r)) {
					continue
				}
				id, ok := parseGrantID(deref(pr.Justification))
				if !ok {
					continue
				}
				k := key{strings.ToLower(deref(pr.PrincipalID)), roleGUIDOf(deref(pr.RoleDefinitionID)), strings.ToLower(strings.TrimSuffix(deref(pr.Scope), "/"))}
				instID, ok := active[k]
				if !ok || seen["pim:"+id+":"+instID] {
					continue
				}
				seen["pim:"+id+":"+instID] = true
				out = append(out, grants.Owned{
					GrantID:   id,
					Principal: deref(pr.PrincipalID),
					Target:    map[string]string{KeyScope: deref(pr.Scope), KeyRoleDefinitionID: deref(pr.RoleDefinitionID), KeyMode: ModePIM},
					Ref:       deref(r.ID),
				})
			}
		}
	}
	return out, nil
}

func (p *Provider) listErr(ctx context.Context, op, resource string, err error) error {
	ae, e := toAPIError(ctx, op, resource, err)
	if e != nil {
		return e
	}
	return classify(ae)
}
