// Package azure is the jitbot provider for Azure role-based access control (provider type "azure-rbac").
//
// Two modes:
//
//   - rbac (default): Grant PUTs a role assignment named UUIDv5(binding key) at the target scope, Revoke DELETEs
//     it and Check GETs it. jitbot alone ends the access (at expiry, through the sweeper). An equal assignment
//     under another name (made by a human) is reported as pre-existing and never deleted.
//   - pim: Grant creates a PIM role assignment schedule request (requestType AdminAssign) whose schedule ends at
//     the binding's latest lease end, so Azure ends the access even if jitbot is down, and moves that end with
//     AdminExtend / AdminUpdate requests when leases are extended, overlap or end early; Revoke creates an
//     AdminRemove request; Check lists the principal's active role assignment schedule instances. Only
//     assignments whose schedule jitbot's own request made are changed or removed (see ownsInstance).
//
// Inspect (grants.OtherAccessInspector) tells jitbot's access from an equal assignment someone else made, so that
// a revoke after which an administrator's assignment remains is recorded as access-remains.
//
// Errors are *APIError values (never carrying request headers, so never a token), wrapped with grants.Permanent
// when retrying cannot help. The SDK's own retries are disabled unless Config.ClientOptions sets Retry: jitbot's
// grant manager owns the retry policy, and RetryAfterOf exposes ARM's Retry-After to it.
// See docs/providers/azure.md.
package azure

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/authorization/armauthorization/v2"
	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/grants"
)

// Config configures a Provider.
type Config struct {
	// SubscriptionID is the subscription the provider works in (required). Targets whose scope names another
	// subscription are refused; management group scopes are allowed.
	SubscriptionID string
	// Credential authenticates to ARM. nil: azidentity.NewDefaultAzureCredential (environment, workload
	// identity, managed identity, Azure CLI).
	Credential azcore.TokenCredential
	// ClientOptions are passed to the SDK clients (tests: a custom cloud and the fake's TLS transport). Unless
	// Retry.MaxRetries is set, the SDK's retries are disabled (see the package documentation).
	ClientOptions *arm.ClientOptions
	// Mode is "rbac" (default) or "pim"; a target's "mode" key overrides it.
	Mode string
	// Scopes are listed by ListOwned (default: the subscription).
	Scopes []string
	// Now is the clock (default time.Now); PIM durations are computed from it.
	Now func() time.Time
	// Logger receives notable events (an equal assignment found under another name); nil discards them.
	Logger *zerolog.Logger
}

// Provider implements grants.Provider, grants.Inventory and grants.OtherAccessInspector for Azure RBAC. It is
// safe for concurrent use.
type Provider struct {
	subscriptionID string
	mode           string
	scopes         []string
	now            func() time.Time
	log            zerolog.Logger

	ra     *armauthorization.RoleAssignmentsClient
	reqs   *armauthorization.RoleAssignmentScheduleRequestsClient
	insts  *armauthorization.RoleAssignmentScheduleInstancesClient
	scheds *armauthorization.RoleAssignmentSchedulesClient
}

var (
	_ grants.Provider        = (*Provider)(nil)
	_ grants.Inventory       = (*Provider)(nil)
	_ grants.AttemptBudgeter = (*Provider)(nil)
)

// maxRequestGenerations bounds how many PIM requests of one kind (and, for extensions, one end) jitbot makes for
// one grant: a new one is needed only when the access was removed behind jitbot's back and granted again.
const maxRequestGenerations = 16

// minPIMDuration is the shortest schedule jitbot asks PIM for: PIM refuses removing an assignment during its
// first five minutes (ActiveDurationTooShort) and documents a five-minute minimum for assignments.
const minPIMDuration = 5 * time.Minute

// New returns a Provider. ctx is not retained.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	_ = ctx
	if !IsGUID(cfg.SubscriptionID) {
		return nil, fmt.Errorf("azure: subscription id %q is not a GUID", cfg.SubscriptionID)
	}
	mode := strings.ToLower(cfg.Mode)
	switch mode {
	case "":
		mode = ModeRBAC
	case ModeRBAC, ModePIM:
	default:
		return nil, fmt.Errorf("azure: mode %q is not rbac or pim", cfg.Mode)
	}
	p := &Provider{subscriptionID: strings.ToLower(cfg.SubscriptionID), mode: mode, now: cfg.Now, log: zerolog.Nop()}
	if p.now == nil {
		p.now = time.Now
	}
	if cfg.Logger != nil {
		p.log = *cfg.Logger
	}
	for _, s := range cfg.Scopes {
		t, err := parseTarget(map[string]string{KeyScope: s, KeyRoleDefinitionID: "00000000-0000-0000-0000-000000000000"})
		if err != nil {
			return nil, fmt.Errorf("azure: Scopes: %w", err)
		}
		p.scopes = append(p.scopes, t.Scope)
	}
	if len(p.scopes) == 0 {
		p.scopes = []string{"/subscriptions/" + p.subscriptionID}
	}

	cred := cfg.Credential
	if cred == nil {
		c, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, fmt.Errorf("azure: default credential: %w", err)
		}
		cred = c
	}
	var opts arm.ClientOptions
	if cfg.ClientOptions != nil {
		opts = *cfg.ClientOptions
	}
	if opts.Retry.MaxRetries == 0 {
		opts.Retry.MaxRetries = -1 // one try: jitbot's manager retries, with RetryAfterOf
	}
	if opts.Telemetry.ApplicationID == "" {
		opts.Telemetry.ApplicationID = "jitbot"
	}
	var err error
	if p.ra, err = armauthorization.NewRoleAssignmentsClient(p.subscriptionID, cred, &opts); err != nil {
		return nil, fmt.Errorf("azure: %w", err)
	}
	if p.reqs, err = armauthorization.NewRoleAssignmentScheduleRequestsClient(cred, &opts); err != nil {
		return nil, fmt.Errorf("azure: %w", err)
	}
	if p.insts, err = armauthorization.NewRoleAssignmentScheduleInstancesClient(cred, &opts); err != nil {
		return nil, fmt.Errorf("azure: %w", err)
	}
	if p.scheds, err = armauthorization.NewRoleAssignmentSchedulesClient(cred, &opts); err != nil {
		return nil, fmt.Errorf("azure: %w", err)
	}
	return p, nil
}

// ValidateTarget checks a target for this provider: the package-level checks plus the subscription.
func (p *Provider) ValidateTarget(t map[string]string) error {
	_, err := p.parse(t)
	return err
}

func (p *Provider) parse(m map[string]string) (target, error) {
	t, err := parseTarget(m)
	if err != nil {
		return target{}, err
	}
	if t.SubscriptionID != "" && t.SubscriptionID != p.subscriptionID {
		return target{}, fmt.Errorf("azure target: scope %q is outside subscription %s", t.Scope, p.subscriptionID)
	}
	if t.Mode == "" {
		t.Mode = p.mode
	}
	return t, nil
}

// resolve validates an assignment; its errors are permanent.
func (p *Provider) resolve(a grants.Assignment) (target, string, error) {
	if a.GrantID == "" {
		return target{}, "", grants.Permanent(errors.New("azure: assignment without a grant id"))
	}
	if !IsGUID(a.Principal) {
		return target{}, "", grants.Permanent(fmt.Errorf("azure: principal %q is not an Entra object id (GUID)", a.Principal))
	}
	t, err := p.parse(a.Target)
	if err != nil {
		return target{}, "", grants.Permanent(err)
	}
	return t, lowerGUID(a.Principal), nil
}

// Grant makes sure the principal holds the role at the scope.
func (p *Provider) Grant(ctx context.Context, a grants.Assignment) (string, error) {
	t, principal, err := p.resolve(a)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("azure grant %s: %w", a.GrantID, err)
	}
	if t.Mode == ModePIM {
		return p.grantPIM(ctx, a, t, principal)
	}
	return p.grantRBAC(ctx, a, t, principal)
}

// Revoke makes sure the assignment jitbot made for the grant is gone.
func (p *Provider) Revoke(ctx context.Context, a grants.Assignment) error {
	t, principal, err := p.resolve(a)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("azure revoke %s: %w", a.GrantID, err)
	}
	if t.Mode == ModePIM {
		return p.revokePIM(ctx, a, t, principal)
	}
	return p.revokeRBAC(ctx, a, t, principal)
}

// Check reports whether the assignment is present. With a reference of jitbot's own (grants.OwnRef: the lease's
// access is jitbot's) it answers for jitbot's access only - the role assignment of jitbot's name, or a PIM
// instance whose schedule jitbot's request made - so that verifying a revoke is not confused by an equal
// assignment someone else made since. Without one it answers for the access from any source (rbac: jitbot's
// name or an equal assignment; pim: any active instance of the role at the scope).
func (p *Provider) Check(ctx context.Context, a grants.Assignment) (bool, error) {
	t, principal, err := p.resolve(a)
	if err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("azure check %s: %w", a.GrantID, err)
	}
	if t.Mode == ModePIM {
		inst, err := p.activeInstance(ctx, t, principal)
		if err != nil {
			if ae := asAPI(err); ae != nil && ae.StatusCode == http.StatusNotFound {
				return false, nil
			}
			return false, err
		}
		if inst == nil || !grants.OwnRef(a.Ref) {
			return inst != nil, nil
		}
		owned, _, err := p.ownsInstance(ctx, t, inst)
		return owned, err
	}
	return p.checkRBAC(ctx, a, t, principal)
}

// AttemptBudget (grants.AttemptBudgeter): in pim mode a grant or revoke waits for PIM to process its requests
// (and for other requests in flight on the same role), which usually takes seconds but can take longer; two
// minutes bound one attempt, and an attempt cut short is resumed by the next (requests are found by name).
// rbac calls are single ARM requests: the manager's default applies.
func (p *Provider) AttemptBudget(op string) time.Duration {
	if p.mode == ModePIM && (op == "grant" || op == "revoke") {
		return pimAttemptBudget
	}
	return 0
}

// pimAttemptBudget is the attempt budget of PIM grants and revokes.
const pimAttemptBudget = 2 * time.Minute

// PropagationDelay (grants.PropagationDelayer) is how long after a revoke jitbot verifies that the access is
// gone: Microsoft documents that role assignment changes can take up to 10 minutes to take effect (ARM and the
// resource providers cache them), so "confirmed gone" is only said after that.
func (p *Provider) PropagationDelay() time.Duration { return RevokePropagation }

// RevokePropagation is Azure's documented upper bound for a role assignment change to take effect.
const RevokePropagation = 10 * time.Minute

func asAPI(err error) *APIError {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	return nil
}

// --- RBAC ---

func description(a grants.Assignment) string {
	d := "jitbot grant " + a.GrantID
	var parts []string
	if a.Role != "" {
		parts = append(parts, "role "+a.Role)
	}
	if a.RequestID != "" {
		parts = append(parts, "request "+a.RequestID)
	}
	if !a.ExpiresAt.IsZero() {
		parts = append(parts, "expires "+a.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if len(parts) > 0 {
		d += " (" + strings.Join(parts, ", ") + ")"
	}
	return truncate(d, 1000)
}

// parseGrantID returns the grant id from a description or justification written by jitbot.
func parseGrantID(s string) (string, bool) {
	rest, ok := strings.CutPrefix(s, "jitbot grant ")
	if !ok {
		return "", false
	}
	if i := strings.IndexAny(rest, " :"); i >= 0 {
		rest = rest[:i]
	}
	return rest, rest != ""
}

func assignmentPath(t target, name string) string {
	return t.Scope + "/providers/Microsoft.Authorization/roleAssignments/" + name
}

// leaseKey names the provider-side objects of an assignment: its binding, so that jitbot's overlapping grants
// of the same access share one Azure assignment (revoked once, when the last grant ends); the grant id when
// the caller gives no binding.
func leaseKey(a grants.Assignment) string {
	if a.BindingKey != "" {
		return a.BindingKey
	}
	return a.GrantID
}

func (p *Provider) grantRBAC(ctx context.Context, a grants.Assignment, t target, principal string) (string, error) {
	name := AssignmentName(leaseKey(a))
	pt := armauthorization.PrincipalType(t.PrincipalType)
	desc := description(a)
	params := armauthorization.RoleAssignmentCreateParameters{Properties: &armauthorization.RoleAssignmentProperties{
		PrincipalID:      &principal,
		PrincipalType:    &pt,
		RoleDefinitionID: &t.RoleDefID,
		Description:      &desc,
	}}
	resp, err := p.ra.Create(ctx, t.sdkScope(), name, params, nil)
	if err == nil {
		if resp.ID != nil {
			return *resp.ID, nil
		}
		return assignmentPath(t, name), nil
	}
	ae, e := toAPIError(ctx, "PUT roleAssignments", assignmentPath(t, name), err)
	if e != nil {
		return "", e
	}
	if ae.Code == CodeRoleAssignmentExists {
		// The same principal, role and scope is already assigned, under another name (a standing assignment, or
		// one made by hand). The access is present, which is what Grant wants; jitbot does not own that
		// assignment and Revoke will leave it alone.
		existing, lerr := p.findAssignment(ctx, t, principal)
		if lerr != nil {
			return "", lerr
		}
		if existing == "" {
			// ARM said it exists but the list does not show it yet: retry.
			return "", ae
		}
		if strings.HasSuffix(strings.ToLower(existing), "/"+name) {
			// Our own assignment from an earlier attempt (ARM answers a repeated PUT with 409 RoleAssignmentExists).
			return existing, nil
		}
		p.log.Warn().Str("grant_id", a.GrantID).Str("existing", existing).Str("scope", t.Scope).
			Msg("azure: an equal role assignment already exists under another name; treating the grant as present (revoke will not remove it)")
		return grants.PreExistingRef(existing), nil
	}
	return "", classify(ae)
}

// findAssignment returns the id of a role assignment of t's role to principal exactly at t's scope, "" if none.
func (p *Provider) findAssignment(ctx context.Context, t target, principal string) (string, error) {
	found, err := p.equalAssignments(ctx, t, principal, true)
	if err != nil || len(found) == 0 {
		return "", err
	}
	return deref(found[0].ID), nil
}

// equalAssignments returns the role assignments of t's role to principal exactly at t's scope, in the
// order ARM lists them (only the first when first is set). ARM keeps one per principal, role and scope (an equal
// one under another name answers 409 RoleAssignmentExists), so there is at most one; Inspect asks for all anyway
// and reports each.
func (p *Provider) equalAssignments(ctx context.Context, t target, principal string, first bool) ([]*armauthorization.RoleAssignment, error) {
	// The SDK appends $filter unencoded.
	filter := "principalId%20eq%20'" + principal + "'"
	pager := p.ra.NewListForScopePager(t.sdkScope(), &armauthorization.RoleAssignmentsClientListForScopeOptions{Filter: &filter})
	var out []*armauthorization.RoleAssignment
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			ae, e := toAPIError(ctx, "GET roleAssignments", t.Scope+"/providers/Microsoft.Authorization/roleAssignments", err)
			if e != nil {
				return nil, e
			}
			return nil, classify(ae)
		}
		for _, ra := range page.Value {
			if ra == nil || ra.Properties == nil || ra.ID == nil {
				continue
			}
			pr := ra.Properties
			if deref(pr.PrincipalID) != "" && strings.EqualFold(deref(pr.PrincipalID), principal) &&
				roleGUIDOf(deref(pr.RoleDefinitionID)) == t.RoleGUID && sameScope(deref(pr.Scope), t.Scope) {
				out = append(out, ra)
				if first {
					return out, nil
				}
			}
		}
	}
	return out, nil
}

func (p *Provider) revokeRBAC(ctx context.Context, a grants.Assignment, t target, principal string) error {
	deleted, err := p.deleteAssignment(ctx, t, AssignmentName(leaseKey(a)))
	if err != nil || deleted || a.BindingKey != "" || a.GrantID == "" {
		return err
	}
	// Drift reconciliation of an object whose grant record is gone: ListOwned found it by the grant id in its
	// description, but its name is a hash of the binding key, which cannot be read back, so the name derived
	// from the grant id was absent. Delete the principal's equal assignments that describe this grant.
	found, err := p.equalAssignments(ctx, t, principal, false)
	if err != nil {
		if scopeGone(err) {
			return nil
		}
		return err
	}
	for _, ra := range found {
		if ra.Properties == nil {
			continue
		}
		if id, ok := parseGrantID(deref(ra.Properties.Description)); ok && id == a.GrantID {
			if _, err := p.deleteAssignment(ctx, t, lastSegment(deref(ra.ID))); err != nil {
				return err
			}
		}
	}
	return nil
}

// deleteAssignment deletes the role assignment of that name at t's scope; absent is success (deleted false).
func (p *Provider) deleteAssignment(ctx context.Context, t target, name string) (deleted bool, err error) {
	resp, err := p.ra.Delete(ctx, t.sdkScope(), name, nil)
	if err == nil {
		return resp.ID != nil, nil // 200 (deleted, the assignment in the body) or 204 (was absent)
	}
	ae, e := toAPIError(ctx, "DELETE roleAssignments", assignmentPath(t, name), err)
	if e != nil {
		return false, e
	}
	if ae.StatusCode == http.StatusNotFound {
		return false, nil // absent is what revoke wants
	}
	return false, classify(ae)
}

// checkRBAC reports whether the principal holds the role at the scope: through jitbot's assignment, or - unless
// the lease carries a reference of jitbot's own - through an equal one made by someone else (standing access,
// which Grant reported as pre-existing).
func (p *Provider) checkRBAC(ctx context.Context, a grants.Assignment, t target, principal string) (bool, error) {
	name := AssignmentName(leaseKey(a))
	_, err := p.ra.Get(ctx, t.sdkScope(), name, nil)
	if err == nil {
		return true, nil
	}
	ae, e := toAPIError(ctx, "GET roleAssignments", assignmentPath(t, name), err)
	if e != nil {
		return false, e
	}
	if ae.StatusCode != http.StatusNotFound {
		return false, classify(ae)
	}
	if grants.OwnRef(a.Ref) {
		return false, nil
	}
	existing, err := p.findAssignment(ctx, t, principal)
	if ae := asAPI(err); ae != nil && ae.StatusCode == http.StatusNotFound {
		return false, nil
	}
	return existing != "", err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
