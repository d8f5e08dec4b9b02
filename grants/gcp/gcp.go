// Package gcp is a grants.Provider that grants a Google Cloud IAM role on a project, folder or organization as a
// conditional role binding that expires by itself (the approach of GoogleCloudPlatform/jit-access):
//
//	{"role": "roles/cloudsql.admin", "members": ["user:alice@example.com"],
//	 "condition": {"title": "jitbot g-123",
//	               "description": "jitbot grant g-123 for U01ALICE (request r-9), expires 2030-01-02T03:04:05Z",
//	               "expression": "request.time < timestamp(\"2030-01-02T03:04:05Z\")"}}
//
// Every change is a read-modify-write of the resource's allow policy through Resource Manager v3:
// getIamPolicy with requestedPolicyVersion 3, edit, setIamPolicy with version 3 and the etag that was read
// (updateMask "bindings,etag"). A policy is never written with a version below 3 or without an etag: either
// would let IAM drop every condition in the policy. An etag conflict (409 ABORTED, or 412 FAILED_PRECONDITION)
// restarts the whole read-modify-write with jittered exponential backoff, up to Config.MaxConflictRetries
// times, and then fails retryably.
//
// # Ownership and semantics
//
// The condition title "jitbot <grant id>" marks a binding as jitbot's; the prefix "jitbot " is reserved.
//
//   - Grant adds the grant's binding, or updates the expiry of the binding with the same title (a retry after a
//     lost response, or an extension), so granting twice leaves one binding; and it takes the principal out of
//     every other jitbot binding of the role on the resource (an earlier lease of the same access), so that the
//     one binding's condition - the latest end of the leases, as jitbot passes it - is GCP's expiry.
//   - Revoke removes the principal from every jitbot binding for the target's role on the resource, whatever
//     grant id the title carries: grants.Assignment says that leases sharing a binding (same principal and
//     target) differ only in grant id and expiry, and jitbot revokes a shared binding once, with the last lease.
//     Removing only the last lease's binding would leave an earlier, longer lease's binding granting access.
//     Bindings without a jitbot title are never touched; other members of a jitbot binding are kept.
//   - Grant over standing access (a binding not made by jitbot that gives the member the role unconditionally, or
//     by a request.time condition lasting at least as long), when jitbot holds nothing of its own for it,
//     writes nothing and returns grants.PreExistingRef: the manager audits it, tells the requester and never
//     revokes it.
//   - Check reports whether the member holds the role: a live jitbot binding of any lease (a jitbot condition
//     jitbot cannot parse counts as present: access may exist), or someone else's unconditional or unexpired
//     time-bound binding. Bindings with other conditions (on resources) are not this access.
//   - ListOwned lists every jitbot binding member in Config.Scopes, expired ones included (they grant nothing
//     but still count against the policy's binding limits).
//
// Errors: 429 and 5xx are retryable; 400, 401, 403 and other 4xx are permanent. Resource Manager answers 403,
// not 404, for a resource that does not exist or that the caller cannot see, so a deleted project fails
// permanently on revoke too (an operator must confirm it). A 404 on revoke or check means the resource is gone,
// and with it every binding: revoke succeeds and check reports absent. Transport errors and timeouts are
// retryable. Errors never include request URLs (an API key could be in one) or credentials.
package gcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jitbot/jitbot/grants"
	crm "google.golang.org/api/cloudresourcemanager/v3"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// Defaults.
const (
	DefaultMaxConflictRetries = 5
	DefaultConflictBackoff    = 250 * time.Millisecond
	maxConflictBackoff        = 5 * time.Second

	// TitlePrefix starts the condition title of every binding jitbot creates.
	TitlePrefix = "jitbot "

	maxDescription = 256 // bytes, IAM's limit for a condition description
	maxMessage     = 300 // bytes of a server message quoted in an error
)

// Config configures a Provider.
type Config struct {
	// Endpoint overrides the Resource Manager base URL (tests, private endpoints). Empty means Google's.
	Endpoint string
	// ClientOptions are passed to cloudresourcemanager.NewService after the defaults. Production uses none:
	// Application Default Credentials. Tests pass option.WithoutAuthentication().
	ClientOptions []option.ClientOption
	// HTTPClient, if set, is used as is (option.WithHTTPClient): it must add credentials itself.
	HTTPClient *http.Client
	// MaxConflictRetries bounds how often an etag conflict restarts the read-modify-write. 0 means
	// DefaultMaxConflictRetries; negative is an error.
	MaxConflictRetries int
	// ConflictBackoff is the base of the jittered exponential backoff between conflict retries (capped at 5s).
	// 0 means DefaultConflictBackoff.
	ConflictBackoff time.Duration
	// Scopes lists the resources ListOwned scans: "projects/<id>", "folders/<number>", "organizations/<number>".
	Scopes []string
	// Now returns the current time (tests). Default time.Now.
	Now func() time.Time
}

// Provider implements grants.Provider, grants.Inventory and grants.OtherAccessInspector.
type Provider struct {
	svc        *crm.Service
	maxRetries int
	backoff    time.Duration
	scopes     []target
	now        func() time.Time
	endpoint   string
}

var (
	_ grants.Provider             = (*Provider)(nil)
	_ grants.Inventory            = (*Provider)(nil)
	_ grants.OtherAccessInspector = (*Provider)(nil)
)

// New returns a Provider. Without Endpoint, HTTPClient and ClientOptions it uses Application Default
// Credentials, which NewService looks up now: a missing credential fails here, not at the first grant.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	p := &Provider{maxRetries: cfg.MaxConflictRetries, backoff: cfg.ConflictBackoff, now: cfg.Now, endpoint: cfg.Endpoint}
	if p.maxRetries < 0 {
		return nil, errors.New("gcp: MaxConflictRetries must not be negative")
	}
	if p.maxRetries == 0 {
		p.maxRetries = DefaultMaxConflictRetries
	}
	if p.backoff <= 0 {
		p.backoff = DefaultConflictBackoff
	}
	if p.now == nil {
		p.now = time.Now
	}
	var errs []error
	for _, s := range cfg.Scopes {
		t, err := parseScope(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.scopes = append(p.scopes, t)
	}
	opts := []option.ClientOption{option.WithUserAgent("jitbot")}
	if cfg.Endpoint != "" {
		if err := validateEndpoint(cfg.Endpoint); err != nil {
			errs = append(errs, err)
		}
		ep := cfg.Endpoint
		if !strings.HasSuffix(ep, "/") {
			ep += "/"
		}
		opts = append(opts, option.WithEndpoint(ep))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("gcp: %w", err)
	}
	opts = append(opts, cfg.ClientOptions...)
	if cfg.HTTPClient != nil {
		opts = append(opts, option.WithHTTPClient(cfg.HTTPClient))
	}
	svc, err := crm.NewService(ctx, opts...)
	if err != nil {
		// Credential lookup errors name files and environment variables, not secrets; keep the cause short.
		return nil, fmt.Errorf("gcp: creating the Resource Manager client: %s", clip(err.Error()))
	}
	p.svc = svc
	return p, nil
}

// RevokePropagation is how long an IAM policy change can take to take effect: Google documents "typically
// within 2 minutes" and "7 minutes or more" in some cases.
const RevokePropagation = 7 * time.Minute

// PropagationDelay (grants.PropagationDelayer) is how long after a revoke jitbot verifies that the access is
// gone, so that "confirmed gone" is not said before IAM has applied the change.
func (p *Provider) PropagationDelay() time.Duration { return RevokePropagation }

// String names the provider without any credential.
func (p *Provider) String() string {
	if p.endpoint != "" {
		return "gcp-iam(" + p.endpoint + ")"
	}
	return "gcp-iam"
}

// Title returns the condition title of a grant's binding.
func Title(grantID string) string { return TitlePrefix + grantID }

// Expression returns the condition expression that ends a binding at expiry (UTC, whole seconds, truncated so
// that IAM never grants past the approved end).
func Expression(expiry time.Time) string {
	return fmt.Sprintf("request.time < timestamp(%q)", expiry.UTC().Truncate(time.Second).Format(time.RFC3339))
}

var expressionRe = regexp.MustCompile(`^\s*request\.time\s*<\s*timestamp\(\s*"([^"]+)"\s*\)\s*$`)

// ParseExpression returns the expiry of an Expression; ok is false for any other expression.
func ParseExpression(expr string) (time.Time, bool) {
	m := expressionRe.FindStringSubmatch(expr)
	if m == nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, m[1])
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// assignment is a validated grants.Assignment.
type assignment struct {
	target
	principal string
	grantID   string
	title     string
	cond      *crm.Expr
}

func (p *Provider) parse(a grants.Assignment, needExpiry bool) (assignment, error) {
	t, err := parseTarget(a.Target)
	if err != nil {
		return assignment{}, grants.Permanent(err)
	}
	principal, err := NormalizePrincipal(a.Principal)
	if err != nil {
		return assignment{}, grants.Permanent(err)
	}
	if !grantIDRe.MatchString(a.GrantID) {
		return assignment{}, grants.Permanent(errors.New("gcp: grant id must be 1-64 characters of letters, digits, " +
			"'_', '.', ':' and '-' (it goes into the condition title)"))
	}
	as := assignment{target: t, principal: principal, grantID: a.GrantID, title: Title(a.GrantID)}
	if needExpiry {
		switch {
		case a.ExpiresAt.IsZero():
			return assignment{}, grants.Permanent(errors.New("gcp: the assignment has no expiry; jitbot grants only " +
				"time-bound bindings"))
		case !a.ExpiresAt.Truncate(time.Second).After(p.now()):
			return assignment{}, grants.Permanent(fmt.Errorf("gcp: the expiry %s has already passed",
				a.ExpiresAt.UTC().Format(time.RFC3339)))
		}
		exp := a.ExpiresAt.UTC().Truncate(time.Second).Format(time.RFC3339)
		desc := fmt.Sprintf("jitbot grant %s for %s (request %s), expires %s", a.GrantID, a.UserID, a.RequestID, exp)
		as.cond = &crm.Expr{Title: as.title, Description: truncate(desc, maxDescription), Expression: Expression(a.ExpiresAt)}
	}
	return as, nil
}

// Grant adds (or refreshes) the grant's conditional binding. The reference names the resource, role and
// condition title.
func (p *Provider) Grant(ctx context.Context, a grants.Assignment) (string, error) {
	as, err := p.parse(a, true)
	if err != nil {
		return "", err
	}
	// Standing access decides only when jitbot holds nothing of its own for the binding (no reference of its
	// own, no jitbot binding): with a reference of its own jitbot keeps ownership and (re)writes its binding.
	mayBePreExisting := !grants.OwnRef(a.Ref)
	preExisting := ""
	err = p.modify(ctx, "grant", as, func(pol *crm.Policy) bool {
		preExisting = ""
		if mayBePreExisting && !hasJitbotBinding(pol, as) {
			if b := standingBinding(pol, as, p.now()); b != "" {
				preExisting = b
				return false
			}
		}
		return applyGrant(pol, as)
	})
	if err != nil {
		return "", err
	}
	if preExisting != "" {
		return grants.PreExistingRef(fmt.Sprintf("%s %s %s", as.resource, as.role, preExisting)), nil
	}
	return fmt.Sprintf("%s %s condition %q", as.resource, as.role, as.title), nil
}

// hasJitbotBinding reports whether a jitbot binding of the role holds the principal (expired or not).
func hasJitbotBinding(pol *crm.Policy, as assignment) bool {
	for _, b := range pol.Bindings {
		if b.Role == as.role && b.Condition != nil && strings.HasPrefix(b.Condition.Title, TitlePrefix) && hasMember(b.Members, as.principal) {
			return true
		}
	}
	return false
}

// standingBinding describes a binding not made by jitbot that gives the principal the role at least until
// the assignment's expiry (unconditional, or a request.time condition ending no earlier), "" if there is none.
// That access was there before the grant: jitbot adds nothing and never removes it. A binding with any other
// condition (on resources, or ending earlier) is not the same access, and jitbot adds its own.
func standingBinding(pol *crm.Policy, as assignment, now time.Time) string {
	want, _ := ParseExpression(as.cond.Expression)
	for _, b := range pol.Bindings {
		if b.Role != as.role || !hasMember(b.Members, as.principal) {
			continue
		}
		if b.Condition == nil {
			return "(an unconditional binding not made by jitbot)"
		}
		if strings.HasPrefix(b.Condition.Title, TitlePrefix) {
			continue
		}
		if exp, ok := ParseExpression(b.Condition.Expression); ok && exp.After(now) && !exp.Before(want) {
			return fmt.Sprintf("(binding %q, not made by jitbot, until %s)", b.Condition.Title, exp.UTC().Format(time.RFC3339))
		}
	}
	return ""
}

// applyGrant makes sure pol holds a binding for as.role, as.principal and as.cond, and that it is the only
// jitbot binding granting the role to the principal; it reports whether it changed pol.
//
// jitbot's overlapping leases of one access share a binding (grants.Assignment): Grant is called for every
// lease with the latest end of them all, and again with the remaining lease's end when a longer one ends
// early. So the condition this call brings is the binding's whole provider-side expiry, and a jitbot binding
// of an earlier lease (another title) must not outlive it: were it kept, its later request.time condition
// would keep granting the access until the final revoke, and GCP's own expiry - the guard for when jitbot is
// down - would be the ended lease's.
func applyGrant(pol *crm.Policy, as assignment) bool {
	changed := false
	found := false
	kept := pol.Bindings[:0:0]
	for _, b := range pol.Bindings {
		if b.Role != as.role || b.Condition == nil || !strings.HasPrefix(b.Condition.Title, TitlePrefix) || !hasMember(b.Members, as.principal) {
			kept = append(kept, b)
			continue
		}
		if b.Condition.Title == as.title && !found && len(b.Members) == 1 {
			found = true
			if !sameCondition(b.Condition, as.cond) {
				b.Condition = copyExpr(as.cond)
				changed = true
			}
			kept = append(kept, b)
			continue
		}
		// Another lease's binding of the same access, a duplicate, or a jitbot binding someone added other
		// members to: the principal leaves it (other members are kept).
		changed = true
		if m := removeMember(b.Members, as.principal); len(m) > 0 {
			b.Members = m
			kept = append(kept, b)
		}
	}
	if !found {
		kept = append(kept, &crm.Binding{Role: as.role, Members: []string{as.principal}, Condition: copyExpr(as.cond)})
		changed = true
	}
	pol.Bindings = kept
	return changed
}

// Revoke removes the principal from every jitbot binding for the role on the resource (see the package
// documentation). Absent is success; so is a resource that no longer exists (404).
func (p *Provider) Revoke(ctx context.Context, a grants.Assignment) error {
	as, err := p.parse(a, false)
	if err != nil {
		return err
	}
	err = p.modify(ctx, "revoke", as, func(pol *crm.Policy) bool { return applyRevoke(pol, as) })
	if isNotFound(err) {
		return nil // the resource is gone, and its policy with it: no access remains
	}
	return err
}

func applyRevoke(pol *crm.Policy, as assignment) bool {
	changed := false
	kept := pol.Bindings[:0:0]
	for _, b := range pol.Bindings {
		if b.Role == as.role && b.Condition != nil && strings.HasPrefix(b.Condition.Title, TitlePrefix) {
			if m := removeMember(b.Members, as.principal); len(m) != len(b.Members) {
				changed = true
				if len(m) == 0 {
					continue
				}
				b.Members = m
			}
		}
		kept = append(kept, b)
	}
	pol.Bindings = kept
	return changed
}

// Check reports whether the principal holds the role on the resource: through a live jitbot binding (of any lease
// of the binding), or - unless the lease carries a reference of jitbot's own, when only jitbot's access is
// asked about (verifying a revoke must not be confused by a binding someone added since) - through a binding
// someone else made that is unconditional or time-bound and unexpired.
//
// Check keeps answering "is the access there" as Grant and Revoke understand the access (with a jitbot
// reference, jitbot's own): the tools and the shared suite rely on that. The manager verifies revokes with
// Inspect, which answers both questions at once.
func (p *Provider) Check(ctx context.Context, a grants.Assignment) (bool, error) {
	pr, err := p.Inspect(ctx, a)
	if err != nil {
		return false, err
	}
	if grants.OwnRef(a.Ref) {
		return pr.Ours, nil // the lease's access is jitbot's: someone else's binding is not it
	}
	return pr.Ours || len(pr.Other) > 0, nil
}

// Inspect reports, whatever Assignment.Ref says, whether a live jitbot binding (of any lease of the binding;
// one whose condition jitbot cannot parse counts: access may exist) gives the member the role, and which
// bindings someone else made give it too: unconditional ones, and time-bound ones that have not expired,
// named as "<resource> <role> unconditional binding" or "<resource> <role> binding "<title>" until <time>".
// After jitbot's revoke those keep the access, and they are not jitbot's to remove. Bindings under other
// conditions (on resources) are not this access. A resource that is gone (404) holds nothing.
func (p *Provider) Inspect(ctx context.Context, a grants.Assignment) (grants.Presence, error) {
	as, err := p.parse(a, false)
	if err != nil {
		return grants.Presence{}, err
	}
	var pol *crm.Policy
	err = p.withConflictRetries(ctx, "check", as.resource, func() error {
		var err error
		pol, err = p.getPolicy(ctx, as.target)
		return err
	})
	if isNotFound(err) {
		return grants.Presence{}, nil
	}
	if err != nil {
		return grants.Presence{}, err
	}
	return presence(pol, as, p.now()), nil
}

// presence is Inspect's answer for pol.
func presence(pol *crm.Policy, as assignment, now time.Time) grants.Presence {
	var pr grants.Presence
	for _, b := range pol.Bindings {
		if b.Role != as.role || !hasMember(b.Members, as.principal) {
			continue
		}
		jitbots := b.Condition != nil && strings.HasPrefix(b.Condition.Title, TitlePrefix)
		if b.Condition == nil {
			// Standing access someone else granted (Grant reported it as pre-existing).
			pr.Other = append(pr.Other, fmt.Sprintf("%s %s unconditional binding", as.resource, as.role))
			continue
		}
		exp, ok := ParseExpression(b.Condition.Expression)
		switch {
		case jitbots && (!ok || exp.After(now)):
			pr.Ours = true // live, or a jitbot binding whose condition was changed: access may exist
		case !jitbots && ok && exp.After(now):
			pr.Other = append(pr.Other, fmt.Sprintf("%s %s binding %q until %s", as.resource, as.role,
				truncate(b.Condition.Title, 100), exp.UTC().Format(time.RFC3339)))
		}
		// Someone else's binding under another kind of condition (on resources, ...) is not this access.
	}
	return pr
}

// ListOwned lists every member of every jitbot binding in Config.Scopes, expired bindings included (their Ref
// says so).
func (p *Provider) ListOwned(ctx context.Context) ([]grants.Owned, error) {
	var out []grants.Owned
	now := p.now()
	for _, sc := range p.scopes {
		var pol *crm.Policy
		err := p.withConflictRetries(ctx, "list", sc.resource, func() error {
			var err error
			pol, err = p.getPolicy(ctx, sc)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, b := range pol.Bindings {
			if b.Condition == nil || !strings.HasPrefix(b.Condition.Title, TitlePrefix) {
				continue
			}
			grantID := strings.TrimPrefix(b.Condition.Title, TitlePrefix)
			state := "condition not set by jitbot"
			if exp, ok := ParseExpression(b.Condition.Expression); ok {
				state = "expires " + exp.UTC().Format(time.RFC3339)
				if !exp.After(now) {
					state = "expired " + exp.UTC().Format(time.RFC3339)
				}
			}
			for _, m := range b.Members {
				out = append(out, grants.Owned{
					GrantID:   grantID,
					Principal: m,
					Target:    map[string]string{sc.key: sc.id, KeyRole: b.Role},
					Ref:       fmt.Sprintf("%s %s condition %q (%s)", sc.resource, b.Role, b.Condition.Title, state),
				})
			}
		}
	}
	return out, nil
}

// modify runs one read-modify-write of the policy of as.resource, restarting it on etag conflicts. edit
// reports whether it changed the policy; nothing is written when it did not.
func (p *Provider) modify(ctx context.Context, op string, as assignment, edit func(*crm.Policy) bool) error {
	return p.withConflictRetries(ctx, op, as.resource, func() error {
		pol, err := p.getPolicy(ctx, as.target)
		if err != nil {
			return err
		}
		if !edit(pol) {
			return nil
		}
		if pol.Etag == "" {
			// Writing without an etag would be a blind overwrite that can drop conditions.
			return &Error{Op: op, Call: "getIamPolicy", Resource: as.resource, Message: "the policy read has no etag; refusing to write it"}
		}
		pol.Version = 3
		written, err := p.setPolicy(ctx, as.target, pol, op+" "+as.title)
		if err != nil {
			return err
		}
		if op == "grant" && written != nil && !holds(written, as) {
			return &Error{Op: op, Call: "setIamPolicy", Resource: as.resource,
				Message: "the policy written does not hold the conditional binding; will retry"}
		}
		return nil
	})
}

func holds(pol *crm.Policy, as assignment) bool {
	for _, b := range pol.Bindings {
		if b.Role == as.role && b.Condition != nil && sameCondition(b.Condition, as.cond) && hasMember(b.Members, as.principal) {
			return true
		}
	}
	return false
}

// withConflictRetries runs call, repeating it after an etag conflict (409/412) with jittered exponential
// backoff; errors are classified for op.
func (p *Provider) withConflictRetries(ctx context.Context, op, resource string, call func() error) error {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return &Error{Op: op, Resource: resource, Message: "context ended", err: err}
		}
		err := call()
		if err == nil {
			return nil
		}
		e := p.classify(ctx, op, resource, err)
		if !e.conflict() {
			return e.wrap()
		}
		if attempt >= p.maxRetries {
			e.Message = fmt.Sprintf("%s (gave up after %d attempts of the read-modify-write)", e.Message, attempt+1)
			return e // retryable
		}
		d := p.backoff << min(attempt, 10)
		d = min(d, maxConflictBackoff)
		d = d/2 + rand.N(d/2+1)
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return &Error{Op: op, Resource: resource, Message: "context ended while backing off after a conflict", err: ctx.Err()}
		case <-timer.C:
		}
	}
}

func (p *Provider) getPolicy(ctx context.Context, t target) (*crm.Policy, error) {
	req := &crm.GetIamPolicyRequest{Options: &crm.GetPolicyOptions{RequestedPolicyVersion: 3}}
	var pol *crm.Policy
	var err error
	switch t.key {
	case KeyProject:
		c := p.svc.Projects.GetIamPolicy(t.resource, req).Context(ctx)
		pol, err = c.Do()
	case KeyFolder:
		c := p.svc.Folders.GetIamPolicy(t.resource, req).Context(ctx)
		pol, err = c.Do()
	case KeyOrganization:
		c := p.svc.Organizations.GetIamPolicy(t.resource, req).Context(ctx)
		pol, err = c.Do()
	default:
		return nil, grants.Permanent(fmt.Errorf("gcp: unknown resource kind %q", t.key))
	}
	if err != nil {
		return nil, callErr{call: "getIamPolicy", err: err}
	}
	return pol, nil
}

func (p *Provider) setPolicy(ctx context.Context, t target, pol *crm.Policy, reason string) (*crm.Policy, error) {
	if pol.Version != 3 || pol.Etag == "" {
		// Unreachable (modify sets both), and kept as the last line of defence: a version 1 or etag-less write
		// silently drops every condition in the policy.
		return nil, &Error{Call: "setIamPolicy", Resource: t.resource, Message: "refusing to write a policy without version 3 and an etag"}
	}
	pol.ForceSendFields = append(pol.ForceSendFields, "Bindings") // an empty list must still be sent
	req := &crm.SetIamPolicyRequest{Policy: pol, UpdateMask: "bindings,etag"}
	var out *crm.Policy
	var err error
	switch t.key {
	case KeyProject:
		c := p.svc.Projects.SetIamPolicy(t.resource, req).Context(ctx)
		c.Header().Set("X-Goog-Request-Reason", requestReason(reason))
		out, err = c.Do()
	case KeyFolder:
		c := p.svc.Folders.SetIamPolicy(t.resource, req).Context(ctx)
		c.Header().Set("X-Goog-Request-Reason", requestReason(reason))
		out, err = c.Do()
	case KeyOrganization:
		c := p.svc.Organizations.SetIamPolicy(t.resource, req).Context(ctx)
		c.Header().Set("X-Goog-Request-Reason", requestReason(reason))
		out, err = c.Do()
	default:
		return nil, grants.Permanent(fmt.Errorf("gcp: unknown resource kind %q", t.key))
	}
	if err != nil {
		return nil, callErr{call: "setIamPolicy", err: err}
	}
	return out, nil
}

// requestReason is recorded in Cloud Audit Logs (the X-Goog-Request-Reason system parameter).
func requestReason(reason string) string { return "jitbot " + reason }

type callErr struct {
	call string
	err  error
}

func (e callErr) Error() string { return e.call + ": " + e.err.Error() }
func (e callErr) Unwrap() error { return e.err }

// Error is a failed call to Resource Manager. Its message carries the HTTP status, the gRPC-style status and a
// clipped server message, never a URL, header or credential. Unwrap returns the underlying *googleapi.Error,
// transport error or context error.
type Error struct {
	Op       string // grant, revoke, check, list
	Call     string // getIamPolicy, setIamPolicy
	Resource string // projects/<id>, folders/<n>, organizations/<n>
	Code     int    // HTTP status; 0 when no answer was received
	Status   string // ABORTED, PERMISSION_DENIED, ... (from the error body)
	Message  string
	err      error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gcp %s on %s", e.Op, e.Resource)
	if e.Call != "" {
		b.WriteString(": " + e.Call)
	}
	if e.Code != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Code)
		if e.Status != "" {
			b.WriteString(" " + e.Status)
		}
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Code == 0 && e.err != nil && e.Message == "context ended" {
		b.WriteString(": " + e.err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.err }

// Format makes %+v and %v print Error() only (never the wrapped error's own formatting).
func (e *Error) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(e.Error())) }

func (e *Error) conflict() bool {
	return e.Code == http.StatusConflict || e.Code == http.StatusPreconditionFailed
}

// permanent reports whether retrying cannot help.
func (e *Error) permanent() bool {
	switch {
	case e.err != nil && (errors.Is(e.err, context.Canceled) || errors.Is(e.err, context.DeadlineExceeded)):
		return false
	case e.Code == 0, e.conflict(), e.Code == http.StatusTooManyRequests, e.Code == http.StatusRequestTimeout, e.Code >= 500:
		return false
	case e.Code == http.StatusNotFound && e.Op != "grant":
		return false // handled by the caller (revoke: success; check: absent)
	}
	return e.Code >= 400
}

func (e *Error) wrap() error {
	if e.permanent() {
		return grants.Permanent(e)
	}
	return e
}

func isNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == http.StatusNotFound
}

// classify turns a call's error into an *Error with a safe message.
func (p *Provider) classify(ctx context.Context, op, resource string, err error) *Error {
	var already *Error
	if errors.As(err, &already) {
		return already
	}
	if grants.IsPermanent(err) {
		return &Error{Op: op, Resource: resource, Code: http.StatusBadRequest, Message: clip(err.Error()), err: err}
	}
	e := &Error{Op: op, Resource: resource}
	var ce callErr
	if errors.As(err, &ce) {
		e.Call, err = ce.call, ce.err
	}
	if cerr := ctx.Err(); cerr != nil {
		e.Message, e.err = "context ended", cerr
		return e
	}
	var gerr *googleapi.Error
	var uerr *url.Error
	switch {
	case errors.As(err, &gerr):
		e.Code, e.err = gerr.Code, gerr
		e.Status = statusOf(gerr.Body)
		e.Message = clip(gerr.Message)
		if e.Message == "" {
			e.Message = http.StatusText(gerr.Code)
		}
	case errors.As(err, &uerr):
		// url.Error's text holds the request URL: leave it out.
		e.err = uerr.Err
		e.Message = "transport: " + clip(uerr.Err.Error())
	default:
		e.err = err
		e.Message = clip(err.Error())
	}
	return e
}

func statusOf(body string) string {
	var reply struct {
		Error struct {
			Status string `json:"status"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(body), &reply) != nil {
		return ""
	}
	s := reply.Error.Status
	for _, r := range s {
		if !(r == '_' || (r >= 'A' && r <= 'Z')) {
			return ""
		}
	}
	return s
}

var tokenLike = regexp.MustCompile(`ya29\.[A-Za-z0-9._\-]+|(?i)bearer\s+[A-Za-z0-9._\-~+/=]+`)

// clip makes a server or transport message safe to show: printable, at most maxMessage bytes, and without
// anything shaped like an OAuth access token.
func clip(s string) string {
	s = tokenLike.ReplaceAllString(s, "[redacted]")
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		if unicode.IsSpace(r) {
			return ' '
		}
		return -1
	}, s)
	return truncate(strings.TrimSpace(s), maxMessage)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func sameCondition(a, b *crm.Expr) bool {
	return a.Title == b.Title && a.Expression == b.Expression && a.Description == b.Description
}

func copyExpr(e *crm.Expr) *crm.Expr { c := *e; return &c }

// memberMatches reports whether an IAM member is principal: the same member (emails compare
// case-insensitively), or the same member after its account was deleted ("deleted:user:x@y?uid=123").
func memberMatches(member, principal string) bool {
	if strings.EqualFold(member, principal) {
		return true
	}
	if rest, ok := strings.CutPrefix(member, "deleted:"); ok {
		if i := strings.IndexByte(rest, '?'); i >= 0 {
			rest = rest[:i]
		}
		return strings.EqualFold(rest, principal)
	}
	return false
}

func hasMember(members []string, principal string) bool {
	return slices.ContainsFunc(members, func(m string) bool { return strings.EqualFold(m, principal) })
}

func removeMember(members []string, principal string) []string {
	return slices.DeleteFunc(slices.Clone(members), func(m string) bool { return memberMatches(m, principal) })
}
