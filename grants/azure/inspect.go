package azure

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/jitbot/jitbot/grants"
)

var _ grants.OtherAccessInspector = (*Provider)(nil)

// Inspect (grants.OtherAccessInspector) reports, whatever Assignment.Ref says, whether jitbot's access for the
// binding is present and which objects jitbot did not create give the principal the same role at the same
// scope, so that a revoke verified after an administrator assigned the role again is recorded as
// access-remains instead of revoke-verified:
//
//   - rbac: ours is the role assignment of jitbot's name (read by name, as Check does) or an equal one whose
//     description names the asked grant; others are the equal role assignments (principal, role, scope)
//     under other names, named "roleAssignment/<name>";
//   - pim: ours is an active instance whose schedule jitbot's request made (see instanceOwner); others are the
//     active instances whose schedule someone else's request made or names no request (assigned outside PIM),
//     named "pimInstance/<name>".
//
// Access through a group or an assignment at a parent scope is not this access (Check and Grant do not count it
// either). A scope that is gone (404) holds nothing. Errors are classified as Check's.
func (p *Provider) Inspect(ctx context.Context, a grants.Assignment) (grants.Presence, error) {
	t, principal, err := p.resolve(a)
	if err != nil {
		return grants.Presence{}, err
	}
	if err := ctx.Err(); err != nil {
		return grants.Presence{}, fmt.Errorf("azure inspect %s: %w", a.GrantID, err)
	}
	if t.Mode == ModePIM {
		return p.inspectPIM(ctx, t, principal)
	}
	return p.inspectRBAC(ctx, a, t, principal)
}

// scopeGone reports whether err is a list's 404: the scope does not exist, so it holds nothing. Only a list's:
// a schedule that is not found is retried (see instanceOwner), never taken for absent access.
func scopeGone(err error) bool {
	ae := asAPI(err)
	return ae != nil && ae.StatusCode == http.StatusNotFound
}

// inspectRBAC reads jitbot's assignment by name (the authoritative answer for "is jitbot's access gone") and
// lists the principal's equal assignments for the others. ARM keeps one assignment per principal, role and
// scope, so both are seen together only in a fake's back-door state; after jitbot's revoke an administrator's
// is listed alone.
func (p *Provider) inspectRBAC(ctx context.Context, a grants.Assignment, t target, principal string) (grants.Presence, error) {
	var pr grants.Presence
	name := AssignmentName(leaseKey(a))
	_, err := p.ra.Get(ctx, t.sdkScope(), name, nil)
	if err == nil {
		pr.Ours = true
	} else {
		ae, e := toAPIError(ctx, "GET roleAssignments", assignmentPath(t, name), err)
		if e != nil {
			return grants.Presence{}, e
		}
		if ae.StatusCode != http.StatusNotFound {
			return grants.Presence{}, classify(ae)
		}
	}
	found, err := p.equalAssignments(ctx, t, principal, false)
	if scopeGone(err) {
		return pr, nil // what the GET said
	}
	if err != nil {
		return grants.Presence{}, err
	}
	for _, ra := range found {
		n := lastSegment(deref(ra.ID))
		var desc string
		if ra.Properties != nil {
			desc = deref(ra.Properties.Description)
		}
		if id, ok := parseGrantID(desc); strings.EqualFold(n, name) || (ok && id == a.GrantID) {
			// Listed though the GET missed it (made meanwhile), or described as this grant's: drift
			// reconciliation asks about an object whose grant record is gone without its binding key, so the
			// name cannot be derived, and ListOwned found it by that description.
			pr.Ours = true
			continue
		}
		pr.Other = append(pr.Other, "roleAssignment/"+n)
	}
	return pr, nil
}

// inspectPIM lists the principal's active instances of the role at the scope and asks each whose request made
// its schedule.
func (p *Provider) inspectPIM(ctx context.Context, t target, principal string) (grants.Presence, error) {
	var pr grants.Presence
	insts, err := p.activeInstances(ctx, t, principal, false)
	if scopeGone(err) {
		return grants.Presence{}, nil
	}
	if err != nil {
		return grants.Presence{}, err
	}
	for _, in := range insts {
		owned, _, err := p.ownsInstance(ctx, t, in)
		if err != nil {
			return grants.Presence{}, err
		}
		if owned {
			pr.Ours = true
			continue
		}
		n := deref(in.Name)
		if n == "" {
			n = lastSegment(deref(in.ID))
		}
		pr.Other = append(pr.Other, "pimInstance/"+n)
	}
	return pr, nil
}

// lastSegment is the name at the end of a resource id.
func lastSegment(id string) string {
	if i := strings.LastIndex(id, "/"); i >= 0 {
		return id[i+1:]
	}
	return id
}
