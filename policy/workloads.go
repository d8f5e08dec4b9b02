package policy

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jitbot/jitbot/workload"
)

// Issuer is a trusted OIDC token issuer (a CI system) that workloads authenticate with.
type Issuer struct {
	Name string
	// URL is the issuer identifier; its discovery document is at URL/.well-known/openid-configuration.
	URL string
	// Audiences are accepted aud values; a token must carry at least one.
	Audiences []string
	// Leeway tolerates clock skew on exp, nbf and iat. Default DefaultLeeway.
	Leeway time.Duration
	// RequiredClaims must be present in every token of this issuer.
	RequiredClaims []string
	// Kind says how the pipeline context is read from the claims: IssuerGitHub, IssuerGitLab or IssuerGeneric
	// (inferred from URL unless set).
	Kind string
	// ActorClaim names the claim holding the login of the person who triggered the run (default "actor" for
	// GitHub, "user_login" for GitLab, none for generic issuers). The login is mapped to a Slack user through
	// identities: {U…: {<issuer name>: <login>}}.
	ActorClaim string
	Line       int
}

// Issuer kinds.
const (
	IssuerGitHub  = "github"
	IssuerGitLab  = "gitlab"
	IssuerGeneric = "generic"
)

// DefaultLeeway is the clock skew tolerated on token times when an issuer sets none.
const DefaultLeeway = 30 * time.Second

// MaxLeeway is the largest leeway an issuer may set: so a token is never accepted later than this after its exp.
const MaxLeeway = 5 * time.Minute

// DefaultHeartbeatTimeout is how long a workload's grant survives without a heartbeat when the workload sets
// no heartbeat_timeout.
const DefaultHeartbeatTimeout = 60 * time.Second

// Workload is a named pipeline identity: tokens of Issuer whose claims match Claims (or API tokens owned by
// APITokenOwner) act as this workload.
type Workload struct {
	Name        string
	Description string
	// Issuer names an entry of Policy.Issuers (OIDC); empty for an API-token workload.
	Issuer string
	// Claims are the claim rules: every listed claim must match one of its glob patterns (* matches any run
	// of characters except /, ** any run including /; see workload.Rule).
	Claims map[string][]string
	// APITokenOwner names the owner of the static API tokens that act as this workload.
	APITokenOwner string
	// HeartbeatTimeout ends the workload's grants when no heartbeat arrives for this long.
	HeartbeatTimeout time.Duration
	// Principals maps a provider name to the workload's principal there (the CI role, service account, ...).
	Principals map[string]string
	Line       int
}

// AutoApproval approves a workload's request at once when it matches: the workload is listed (or the list is
// empty), the condition holds and the duration is at most MaxDuration. It is recorded, announced and audited
// like any approval.
type AutoApproval struct {
	Workloads   []string
	When        *Condition // nil: always
	MaxDuration time.Duration
	Line        int
}

var issuerFields = []string{"url", "audiences", "audience", "leeway", "required_claims", "type", "actor_claim"}

func (d *decoder) decodeIssuers(sec pair, p *Policy) {
	is, _ := d.mapping(sec.v, "issuers", "a mapping of issuer names to OIDC issuer settings (url, audiences)")
	for _, e := range is {
		name := resolve(e.k).Value
		field := join("issuers", name)
		if !nameRE.MatchString(name) {
			d.problem(e.k, field, "%q is not a valid issuer name (lowercase letters, digits, -, _ and ., starting with a letter or digit)", name)
		}
		iss := &Issuer{Name: name, Leeway: DefaultLeeway, Line: e.k.Line}
		p.Issuers[name] = iss
		f, ok := d.fields(e.v, field, "a mapping of issuer settings ("+strings.Join(issuerFields, ", ")+")", issuerFields...)
		if !ok {
			continue
		}
		raw, has := f["url"]
		iss.URL = d.str(raw, join(field, "url"))
		switch {
		case !has || iss.URL == "":
			d.problem(e.k, join(field, "url"), "is required: the issuer URL, such as https://token.actions.githubusercontent.com (GitHub Actions) or https://gitlab.com (GitLab CI)")
		default:
			u, err := url.Parse(iss.URL)
			local := err == nil && (u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost" || u.Hostname() == "::1")
			if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && local)) || u.RawQuery != "" || u.Fragment != "" {
				d.problem(raw.v, join(field, "url"), "%q is not an issuer URL: use https://host[/path] without query or fragment (http only for a local test issuer on 127.0.0.1)", iss.URL)
			}
		}
		if a, ok := f["audiences"]; ok {
			iss.Audiences, _ = d.list(a, join(field, "audiences"), "jitbot", nil)
		}
		if a, ok := f["audience"]; ok {
			if v := d.str(a, join(field, "audience")); v != "" && !slices.Contains(iss.Audiences, v) {
				iss.Audiences = append(iss.Audiences, v)
			}
		}
		if len(iss.Audiences) == 0 {
			d.problem(e.k, join(field, "audiences"), "is required: the audience jitbot accepts (the aud a job asks for, such as https://jitbot.example.com); without one, a token minted for any other service would be accepted")
		}
		if l, ok := f["leeway"]; ok {
			if v, ok := d.duration(l, join(field, "leeway")); ok {
				if v < 0 || v > MaxLeeway {
					d.problem(l.v, join(field, "leeway"), "must be between 0s and %s (it only absorbs clock skew)", FormatDuration(MaxLeeway))
				} else {
					iss.Leeway = v
				}
			}
		}
		if r, ok := f["required_claims"]; ok {
			iss.RequiredClaims, _ = d.list(r, join(field, "required_claims"), "repository, ref", nil)
		}
		iss.Kind = inferIssuerKind(iss.URL)
		if t, ok := f["type"]; ok {
			switch v := d.str(t, join(field, "type")); v {
			case IssuerGitHub, IssuerGitLab, IssuerGeneric:
				iss.Kind = v
			default:
				d.problem(t.v, join(field, "type"), "%q is not an issuer type; use github, gitlab or generic", v)
			}
		}
		switch iss.Kind {
		case IssuerGitHub:
			iss.ActorClaim = "actor"
		case IssuerGitLab:
			iss.ActorClaim = "user_login"
		}
		if a, ok := f["actor_claim"]; ok {
			iss.ActorClaim = d.str(a, join(field, "actor_claim"))
		}
	}
}

func inferIssuerKind(u string) string {
	switch {
	case strings.HasPrefix(u, "https://token.actions.githubusercontent.com"), strings.Contains(u, "/_services/token"):
		return IssuerGitHub
	case strings.Contains(u, "gitlab"):
		return IssuerGitLab
	}
	return IssuerGeneric
}

var workloadFields = []string{"description", "issuer", "claims", "api_token_owner", "heartbeat_timeout", "principals"}

func (d *decoder) decodeWorkloads(sec pair, p *Policy) {
	ws, _ := d.mapping(sec.v, "workloads", "a mapping of workload names to pipeline identities")
	for _, e := range ws {
		name := resolve(e.k).Value
		field := join("workloads", name)
		if !nameRE.MatchString(name) {
			d.problem(e.k, field, "%q is not a valid workload name (lowercase letters, digits, -, _ and ., starting with a letter or digit)", name)
		}
		w := &Workload{Name: name, HeartbeatTimeout: DefaultHeartbeatTimeout, Claims: map[string][]string{}, Principals: map[string]string{}, Line: e.k.Line}
		p.Workloads[name] = w
		f, ok := d.fields(e.v, field, "a mapping of workload settings ("+strings.Join(workloadFields, ", ")+")", workloadFields...)
		if !ok {
			continue
		}
		w.Description = d.str(f["description"], join(field, "description"))
		iss, hasIss := f["issuer"]
		w.Issuer = d.str(iss, join(field, "issuer"))
		tok, hasTok := f["api_token_owner"]
		w.APITokenOwner = d.str(tok, join(field, "api_token_owner"))
		switch {
		case w.Issuer != "" && w.APITokenOwner != "":
			d.problem(tok.k, field, "sets both issuer and api_token_owner; a workload is either OIDC tokens of one issuer or API tokens of one owner")
		case w.Issuer == "" && w.APITokenOwner == "":
			at := e.k
			if hasIss {
				at = iss.k
			} else if hasTok {
				at = tok.k
			}
			d.problem(at, field, "needs issuer (OIDC: the issuer under issuers plus claim rules) or api_token_owner (the owner of static API tokens)")
		case w.Issuer != "":
			if _, ok := p.Issuers[w.Issuer]; !ok {
				d.problem(iss.v, join(field, "issuer"), "unknown issuer %q (%s)", w.Issuer, describeNames("issuers", sortedKeys(p.Issuers)))
			}
		default:
			if !nameRE.MatchString(w.APITokenOwner) {
				d.problem(tok.v, join(field, "api_token_owner"), "%q is not a valid token owner name (lowercase letters, digits, -, _ and .)", w.APITokenOwner)
			}
		}
		if c, ok := f["claims"]; ok && !isNull(c.v) {
			if w.APITokenOwner != "" {
				d.problem(c.k, join(field, "claims"), "claim rules apply to OIDC tokens; an API-token workload has no claims")
			}
			cs, _ := d.mapping(c.v, join(field, "claims"), "a mapping of claim names to a pattern or a list of patterns")
			for _, ce := range cs {
				claim := resolve(ce.k).Value
				cf := join(join(field, "claims"), claim)
				var pats []string
				if resolve(ce.v).Kind == yaml.SequenceNode {
					pats, _ = d.list(ce, cf, `"refs/heads/main", "refs/tags/v*"`, nil)
				} else if v := d.str(ce, cf); v != "" {
					pats = []string{v}
				}
				if len(pats) == 0 {
					d.problem(ce.k, cf, "has no pattern: give the value (or glob pattern, such as acme/*) the claim must have")
					continue
				}
				if err := (workload.Rule{Issuer: "x", Claims: map[string][]string{claim: pats}}).Validate(); err != nil {
					d.problem(ce.v, cf, "%s", strings.TrimPrefix(err.Error(), `workload rule for issuer "x": `))
					continue
				}
				w.Claims[claim] = pats
			}
		}
		if w.Issuer != "" && len(w.Claims) == 0 {
			d.problem(e.k, join(field, "claims"), "is required for an OIDC workload: without claim rules (repository, ref, environment, ...) every job of every project that %s issues tokens for would act as %s", w.Issuer, name)
		}
		if h, ok := f["heartbeat_timeout"]; ok {
			if v, ok := d.duration(h, join(field, "heartbeat_timeout")); ok {
				if v < time.Second || v > time.Hour {
					d.problem(h.v, join(field, "heartbeat_timeout"), "must be between 1s and 1h")
				} else {
					w.HeartbeatTimeout = v
				}
			}
		}
		if pr, ok := f["principals"]; ok {
			ps, _ := d.mapping(pr.v, join(field, "principals"), "a mapping of provider names to the workload's principal at that provider")
			for _, pe := range ps {
				prov := resolve(pe.k).Value
				pf := join(join(field, "principals"), prov)
				if _, known := p.Providers[prov]; !known {
					d.problem(pe.k, pf, "unknown provider %q (%s)", prov, describeProviders(p.Providers))
				}
				v, _ := d.scalar(pe.v, pf)
				if v = strings.TrimSpace(v); v == "" {
					d.problem(pe.k, pf, "has no value: give the principal %s gets at %s (a CI role, service account, ...)", name, prov)
					continue
				}
				p.Workloads[name].Principals[prov] = v
			}
		}
	}
}

func describeNames(section string, names []string) string {
	if len(names) == 0 {
		return "no " + section + " are declared"
	}
	return "declared " + section + ": " + strings.Join(names, ", ")
}

var autoApproveFields = []string{"workloads", "when", "max_duration"}

// decodeRolePipelines decodes what a role says about workloads: the workloads among its requesters, their
// principals at the role's provider, and its auto-approval rules.
func (d *decoder) decodeRolePipelines(f map[string]pair, field string, p *Policy, r *Role) {
	for i, w := range r.Requesters.Workloads {
		if _, ok := p.Workloads[w]; !ok {
			n := f["requesters"].k
			if list := childNode(f["requesters"].v, "workloads"); list != nil && i < len(list.Content) {
				n = list.Content[i]
			}
			d.problem(n, index(join(field, "requesters.workloads"), i), "unknown workload %q (%s)", w, describeNames("workloads", sortedKeys(p.Workloads)))
		}
	}
	if wp, ok := f["workload_principals"]; ok {
		ps, _ := d.mapping(wp.v, join(field, "workload_principals"), "a mapping of workload names to their principal at the role's provider")
		r.WorkloadPrincipals = map[string]string{}
		for _, e := range ps {
			name := resolve(e.k).Value
			pf := join(join(field, "workload_principals"), name)
			if !slices.Contains(r.Requesters.Workloads, name) {
				d.problem(e.k, pf, "workload %q is not among the role's requesters.workloads", name)
			}
			v, _ := d.scalar(e.v, pf)
			if v = strings.TrimSpace(v); v == "" {
				d.problem(e.k, pf, "has no value")
				continue
			}
			r.WorkloadPrincipals[name] = v
		}
	}
	if r.Provider != "" {
		for _, w := range r.Requesters.Workloads {
			wl, ok := p.Workloads[w]
			if ok && r.WorkloadPrincipals[w] == "" && wl.Principals[r.Provider] == "" {
				d.problem(f["requesters"].k, join(field, "requesters.workloads"), "workload %s has no principal at provider %s: add principals: {%s: <principal>} to workloads.%s, or workload_principals: {%s: <principal>} to the role", w, r.Provider, r.Provider, w, w)
			}
		}
	}
	if c, ok := f["conditions"]; ok && !isNull(c.v) {
		n := resolve(c.v)
		if n.Kind == yaml.ScalarNode {
			if cond := d.condition(n, join(field, "conditions")); cond != nil {
				r.Conditions = append(r.Conditions, cond)
			}
		} else if n.Kind != yaml.SequenceNode {
			d.problem(n, join(field, "conditions"), "expected a list of CEL expressions, got %s", kindName(n))
		} else {
			for i, e := range n.Content {
				if cond := d.condition(e, index(join(field, "conditions"), i)); cond != nil {
					r.Conditions = append(r.Conditions, cond)
				}
			}
		}
	}
	if a, ok := f["auto_approve"]; ok && !isNull(a.v) {
		n := resolve(a.v)
		if n.Kind != yaml.SequenceNode {
			d.problem(n, join(field, "auto_approve"), "expected a list of rules such as - {when: 'claims.ref == \"refs/heads/main\"', max_duration: 15m}, got %s", kindName(n))
			return
		}
		if len(r.Requesters.Workloads) == 0 {
			d.problem(a.k, join(field, "auto_approve"), "auto-approval is for pipelines, and the role lists no requesters.workloads")
		}
		for i, e := range n.Content {
			af := index(join(field, "auto_approve"), i)
			rf, ok := d.fields(e, af, "a mapping with workloads, when and max_duration", autoApproveFields...)
			if !ok {
				continue
			}
			rule := AutoApproval{Line: resolve(e).Line}
			if ws, ok := rf["workloads"]; ok {
				rule.Workloads, _ = d.list(ws, join(af, "workloads"), "deploy-main", nil)
				for j, w := range rule.Workloads {
					if !slices.Contains(r.Requesters.Workloads, w) {
						d.problem(resolve(ws.v).Content[j], index(join(af, "workloads"), j), "workload %q is not among the role's requesters.workloads", w)
					}
				}
			}
			if w, ok := rf["when"]; ok && !isNull(w.v) {
				rule.When = d.condition(resolve(w.v), join(af, "when"))
			}
			md, ok := rf["max_duration"]
			if !ok || isNull(md.v) {
				d.problem(resolve(e), join(af, "max_duration"), "is required: the longest grant this rule approves without a person (such as 15m)")
			} else if v, ok := d.duration(md, join(af, "max_duration")); ok {
				switch {
				case v <= 0:
					d.problem(md.v, join(af, "max_duration"), "must be positive")
				case r.MaxDuration > 0 && v > r.MaxDuration:
					d.problem(md.v, join(af, "max_duration"), "%s is longer than the role's max_duration %s", FormatDuration(v), FormatDuration(r.MaxDuration))
				default:
					rule.MaxDuration = v
				}
			}
			r.AutoApprove = append(r.AutoApprove, rule)
		}
	}
}

// checkActorIdentities checks identities entries that map a Slack user to a CI login (keyed by issuer
// name): one login must not belong to two Slack users.
func (d *decoder) checkActorIdentities(sec pair, p *Policy) {
	owner := map[string]string{}
	us, _ := d.mapping(sec.v, "identities", "")
	for _, u := range us {
		user := resolve(u.k).Value
		ps, _ := d.mapping(u.v, "", "")
		for _, e := range ps {
			iss := resolve(e.k).Value
			if _, ok := p.Issuers[iss]; !ok {
				continue
			}
			login := strings.TrimSpace(resolve(e.v).Value)
			key := iss + "\x00" + login
			if first, dup := owner[key]; dup && first != user {
				d.problem(e.v, join(join("identities", user), iss), "%s login %q is already mapped to %s; one CI login maps to one Slack user", iss, login, first)
			}
			owner[key] = user
		}
	}
}

// Workload returns the named workload.
func (p *Policy) Workload(name string) (*Workload, bool) {
	w, ok := p.Workloads[name]
	return w, ok
}

// WorkloadNames returns the workload names, sorted.
func (p *Policy) WorkloadNames() []string { return sortedKeys(p.Workloads) }

// IssuerNames returns the issuer names, sorted.
func (p *Policy) IssuerNames() []string { return sortedKeys(p.Issuers) }

// WorkloadPrincipal is the principal a workload gets from a role: the role's workload_principals entry, else
// the workload's principal at the role's provider.
func (p *Policy) WorkloadPrincipal(role *Role, workload string) (string, error) {
	if v := role.WorkloadPrincipals[workload]; v != "" {
		return v, nil
	}
	if w, ok := p.Workloads[workload]; ok && w.Principals[role.Provider] != "" {
		return w.Principals[role.Provider], nil
	}
	return "", fmt.Errorf("%w: workload %s has no principal at provider %s; an admin must add principals: {%s: <principal>} to workloads.%s in the policy", ErrNoIdentity, workload, role.Provider, role.Provider, workload)
}

// ActorUser returns the Slack user whose identities map them to login at the named issuer ("" if none).
func (p *Policy) ActorUser(issuer, login string) string {
	if login == "" {
		return ""
	}
	for _, user := range sortedKeys(p.Identities) {
		if p.Identities[user][issuer] == login {
			return user
		}
	}
	return ""
}

// childNode returns the value of key in mapping n, or nil.
func childNode(n *yaml.Node, key string) *yaml.Node {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if resolve(n.Content[i]).Value == key {
			return resolve(n.Content[i+1])
		}
	}
	return nil
}

// workloadsOnly reports whether every named role is requested only by workloads (so user identities for its
// provider are not needed).
func workloadsOnly(p *Policy, roles []string) bool {
	for _, rn := range roles {
		if r := p.Roles[rn]; len(r.Requesters.Users) > 0 || len(r.Requesters.Groups) > 0 {
			return false
		}
	}
	return true
}
