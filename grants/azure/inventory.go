package azure

import (
	"context"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/authorization/armauthorization/v2"

	"github.com/jitbot/jitbot/grants"
)

// ListOwned lists what jitbot holds at Config.Scopes (and below them): role assignments whose description starts
// with "jitbot grant ", and, in pim mode, active schedule instances whose schedule was created or last changed
// by a request of jitbot's (justification "jitbot grant ...", see ownsInstance).
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
		// The bindings jitbot has made requests for ("asRequestor()": this identity's requests) narrow down which
		// active instances to look at; ownership itself is decided per instance from its schedule's request.
		type key struct{ principal, role, scope string }
		requested := map[key]bool{}
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
				if _, ok := parseGrantID(deref(pr.Justification)); !ok {
					continue
				}
				requested[key{strings.ToLower(deref(pr.PrincipalID)), roleGUIDOf(deref(pr.RoleDefinitionID)), strings.ToLower(strings.TrimSuffix(deref(pr.Scope), "/"))}] = true
			}
		}
		ip := p.insts.NewListForScopePager(sdkScope, nil)
		for ip.More() {
			page, err := ip.NextPage(ctx)
			if err != nil {
				return nil, p.listErr(ctx, "GET roleAssignmentScheduleInstances", scope+"/providers/Microsoft.Authorization/roleAssignmentScheduleInstances", err)
			}
			now := p.now()
			for _, in := range page.Value {
				if in == nil || in.Properties == nil || in.ID == nil || seen[strings.ToLower(*in.ID)] {
					continue
				}
				pr := in.Properties
				if pr.EndDateTime != nil && !pr.EndDateTime.After(now) {
					continue
				}
				if !requested[key{strings.ToLower(deref(pr.PrincipalID)), roleGUIDOf(deref(pr.RoleDefinitionID)), strings.ToLower(strings.TrimSuffix(deref(pr.Scope), "/"))}] {
					continue
				}
				id, _, err := p.instanceOwner(ctx, in)
				if err != nil {
					return nil, err
				}
				if id == "" {
					continue // an administrator's assignment on a binding jitbot has used: not jitbot's to remove
				}
				seen[strings.ToLower(*in.ID)] = true
				out = append(out, grants.Owned{
					GrantID:   id,
					Principal: deref(pr.PrincipalID),
					Target:    map[string]string{KeyScope: deref(pr.Scope), KeyRoleDefinitionID: deref(pr.RoleDefinitionID), KeyMode: ModePIM},
					Ref:       *in.ID,
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
