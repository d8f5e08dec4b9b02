// Package policy loads and validates jitbot's policy file: which roles exist, who may request them, who
// approves them, how long access may last, and which provider grants it.
//
// Load and Parse either return a fully validated *Policy, with every default applied, or a *Problems error
// listing everything wrong with the file, each problem with its file, line, column and dotted field path.
// Nothing in a Policy needs checking again at run time, apart from what depends on the environment
// (MissingSecrets) and on Slack (user-group membership).
package policy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	goccyyaml "github.com/goccy/go-yaml"
	goccyparser "github.com/goccy/go-yaml/parser"
	"gopkg.in/yaml.v3"
)

// Version is the only policy file format version this package reads.
const Version = 1

// Policy is a validated policy file.
type Policy struct {
	// File is the name the policy was loaded from, as used in problem messages.
	File    string
	Version int
	// Defaults are the effective defaults: the file's defaults section over the built-in ones
	// (BuiltinDefaults). They are already applied to every role.
	Defaults Defaults
	// Providers by name.
	Providers map[string]*Provider
	// Groups are the static user groups, group id -> member user ids. A group listed here is resolved from
	// the file; other group ids are resolved through Slack user groups at run time.
	Groups map[string][]string
	// Identities maps a Slack user id to that user's principal per provider name.
	Identities map[string]map[string]string
	// Roles by name.
	Roles map[string]*Role
	// OnCallSources by name, for break-glass and on-call auto-approval.
	OnCallSources map[string]*OnCallSource
	onCallSecrets []secretRef
	// Issuers are the trusted OIDC issuers (CI systems) by name; Workloads the pipeline identities by name.
	Issuers   map[string]*Issuer
	Workloads map[string]*Workload

	warns []Problem
}

// Defaults are settings that roles inherit when they do not set them.
type Defaults struct {
	PendingTTL      time.Duration
	ApprovalChannel string
	AuditChannel    string
	Approvals       int
	DefaultDuration time.Duration
	MaxDuration     time.Duration
}

// BuiltinDefaults apply when neither the role nor the defaults section sets a value. When max_duration is
// set below 1h and default_duration is not set, default_duration becomes max_duration.
var BuiltinDefaults = Defaults{
	PendingTTL:      30 * time.Minute,
	Approvals:       1,
	DefaultDuration: time.Hour,
	MaxDuration:     4 * time.Hour,
}

// Subjects are Slack users and user groups, and (for requesters only) policy workloads.
type Subjects struct {
	Users     []string // Slack user ids (U…, W…)
	Groups    []string // Slack user group ids (S…)
	Workloads []string // names of policy workloads (pipelines); requesters only
}

// Empty reports whether no user, no group and no workload is listed.
func (s Subjects) Empty() bool {
	return len(s.Users) == 0 && len(s.Groups) == 0 && len(s.Workloads) == 0
}

// Role is one requestable role, with defaults applied.
type Role struct {
	Name        string
	Description string
	// Provider is the name of the provider that grants the role (a key of Policy.Providers).
	Provider string
	// Target is the provider-specific scope passed to the provider as is.
	Target map[string]string
	// Requesters may ask for the role; Approvers may approve it (never their own request).
	Requesters Subjects
	Approvers  Subjects
	// Approvals is how many distinct approvers must approve.
	Approvals int
	// DefaultDuration is granted when the requester names no duration; MaxDuration is the most that can be
	// granted, extensions included.
	DefaultDuration time.Duration
	MaxDuration     time.Duration
	// PendingTTL is how long a request waits for approval before it expires.
	PendingTTL time.Duration
	// ApprovalChannel receives approval requests; AuditChannel (optional, may be empty) receives a line for
	// every decision, grant and revocation.
	ApprovalChannel string
	AuditChannel    string
	// BreakGlass, when set and Allowed, lets whoever is on call take the role at once (see BreakGlass).
	BreakGlass *BreakGlass
	// Conditions must all hold for any request of the role (people's and workloads'), checked at creation.
	Conditions []*Condition
	// AutoApprove rules approve a workload's request without a person (still announced and audited).
	AutoApprove []AutoApproval
	// WorkloadPrincipals overrides, per workload name, the principal the workload gets from this role.
	WorkloadPrincipals map[string]string
	// Line is where the role is declared in the policy file; TargetLine and TargetColumn where its target is.
	Line                     int
	TargetLine, TargetColumn int
}

// ErrNoIdentity is wrapped by Principal when a user has no identity mapped for a provider.
var ErrNoIdentity = errors.New("no identity mapped")

// ErrNeedsEmail is wrapped by Principal for a provider with principal_from: slack_email; the caller looks the
// user's email up in Slack.
var ErrNeedsEmail = errors.New("principal is the Slack profile email")

// Load reads and parses the policy file at path. A file that cannot be read is reported as a plain error
// (test it with errors.Is(err, fs.ErrNotExist) and friends); an invalid file as a *Problems. It knows the
// built-in provider types and the registered ones (see Register).
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a policy. file names the source in problems. The error, if any, is a *Problems
// holding every problem found, sorted by position. It knows the built-in provider types and the registered
// ones (see Register).
func Parse(file string, data []byte) (*Policy, error) { return ParseWith(file, data) }

// ParseWith is Parse knowing the provider types types as well.
func ParseWith(file string, data []byte, types ...ProviderType) (*Policy, error) {
	d := &decoder{file: file, lines: strings.Split(string(data), "\n"), types: registered(types)}
	p := &Policy{
		File:          file,
		Providers:     map[string]*Provider{},
		Groups:        map[string][]string{},
		Identities:    map[string]map[string]string{},
		Roles:         map[string]*Role{},
		OnCallSources: map[string]*OnCallSource{},
		Issuers:       map[string]*Issuer{},
		Workloads:     map[string]*Workload{},
	}
	if root := d.parseYAML(data); root != nil {
		d.decodePolicy(root, p)
	}
	if len(d.probs) > 0 {
		ps := Problems(tidy(d.probs))
		return nil, &ps
	}
	p.warns = tidy(d.warns)
	return p, nil
}

func tidy(ps []Problem) []Problem {
	sortProblems(ps)
	return slices.Compact(ps)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML returns the root node of the single document in data, or nil after reporting why there is none.
func (d *decoder) parseYAML(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.problem(nil, "", "the policy file is empty (see examples/policy.yaml for a complete example)")
		} else {
			d.syntaxError(err, data)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		d.problem(&next, "", "the policy file must hold a single YAML document; remove this second one (or the --- line before it)")
		return nil
	case !errors.Is(err, io.EOF):
		d.syntaxError(err, data)
		return nil
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		d.problem(nil, "", "the policy file is empty (see examples/policy.yaml for a complete example)")
		return nil
	}
	return doc.Content[0]
}

func (d *decoder) syntaxError(err error, data []byte) {
	msg := err.Error()
	p := Problem{File: d.file, Message: "YAML syntax error: " + strings.TrimPrefix(msg, "yaml: ")}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Message = "YAML syntax error: " + m[2]
	}
	// yaml.v3 reports the line where the enclosing mapping or sequence began, not the mistake, and no column.
	// goccy/go-yaml's parser points at the offending token: use its position (and its wording, which goes with
	// it) whenever it also finds the file invalid.
	if _, perr := goccyparser.ParseBytes(data, 0); perr != nil {
		var se *goccyyaml.SyntaxError
		if errors.As(perr, &se) && se.Token != nil && se.Token.Position != nil && se.Token.Position.Line > 0 {
			p.Line, p.Column = se.Token.Position.Line, se.Token.Position.Column
			p.Message = "YAML syntax error: " + strings.ReplaceAll(se.Message, "\t", `\t`)
		}
	}
	lines := strings.Split(string(data), "\n")
	if p.Line >= 1 && p.Line <= len(lines) && strings.Contains(lines[p.Line-1], "\t") {
		p.Message += " (this line contains a tab; YAML indentation must use spaces)"
	}
	d.probs = append(d.probs, p)
}

var topFields = []string{"version", "defaults", "providers", "groups", "identities", "oncall_sources", "issuers", "workloads", "roles"}

func (d *decoder) decodePolicy(root *yaml.Node, p *Policy) {
	f, ok := d.fields(root, "", "a mapping with "+strings.Join(topFields, ", "), topFields...)
	if !ok {
		return
	}

	if v, ok := f["version"]; !ok || isNull(v.v) {
		d.problem(root, "version", "is required; add \"version: %d\" at the top of the file", Version)
	} else if n, ok := d.integer(v, "version"); ok {
		if n != Version {
			d.problem(v.v, "version", "version %d is not supported; this jitbot reads version %d", n, Version)
		}
		p.Version = n
	}

	d.decodeProviders(f["providers"], p)
	d.decodeGroups(f["groups"], p)
	defs := d.decodeDefaults(f["defaults"], p)
	d.decodeIssuers(f["issuers"], p)
	d.decodeWorkloads(f["workloads"], p)
	d.decodeRoles(root, f["roles"], p, defs)
	d.decodeIdentities(f["identities"], p)
	d.checkActorIdentities(f["identities"], p)
	d.decodeOnCallSources(f["oncall_sources"], p)
	d.checkBreakGlassSources(p)
	if len(d.probs) == 0 {
		d.checkUsage(p)
	}
}

// ---- providers ----

func (d *decoder) decodeProviders(sec pair, p *Policy) {
	ps, _ := d.mapping(sec.v, "providers", "a mapping of provider names to provider settings")
	for _, e := range ps {
		name := resolve(e.k).Value
		field := join("providers", name)
		if !nameRE.MatchString(name) {
			d.problem(e.k, field, "%q is not a valid provider name (lowercase letters, digits, -, _ and ., starting "+
				"with a letter or digit, at most 63 characters)", name)
		}
		pr := &Provider{Name: name, PrincipalFrom: PrincipalIdentities, Line: e.k.Line}
		p.Providers[name] = pr

		known := append([]string{"type", "principal_from"}, sortedKeys(d.types)...)
		f, ok := d.fields(e.v, field, "a mapping of provider settings (type, principal_from, and the settings block of the type)", known...)
		if !ok {
			continue
		}
		if pf, ok := f["principal_from"]; ok && !isNull(pf.v) {
			switch v := d.str(pf, join(field, "principal_from")); v {
			case PrincipalSlackUserID, PrincipalIdentities, PrincipalSlackEmail:
				pr.PrincipalFrom = v
			case principalEmail:
				d.problem(pf.v, join(field, "principal_from"), "email mapping is spelled slack_email, to make the "+
					"trust decision explicit: the principal is then whatever email the Slack profile shows (see the README)")
			case "":
			default:
				d.problem(pf.v, join(field, "principal_from"), "%q is not a principal source; use identities (map users "+
					"under identities), slack_user_id (send the Slack user id) or slack_email (opt-in: trust Slack profile emails)", v)
			}
		}

		t, hasType := f["type"]
		typ := ""
		if hasType {
			typ = d.str(t, join(field, "type"))
		}
		kind, known2 := d.types[typ]
		switch {
		case typ == "":
			if !hasType || isNull(t.v) || resolve(t.v).Kind == yaml.ScalarNode {
				d.problem(e.k, join(field, "type"), "is required (known types: %s)", knownTypes(d.types))
			}
		case !known2:
			d.problem(t.v, join(field, "type"), "unknown provider type %q (known types: %s)", typ, knownTypes(d.types))
		default:
			pr.Type = typ
		}
		for _, other := range sortedKeys(d.types) {
			if b, ok := f[other]; ok && other != typ && known2 {
				d.problem(b.k, join(field, other), "%s settings are given but the provider type is %q", other, typ)
			}
		}
		if !known2 {
			continue
		}
		block, ok := f[typ]
		if !ok || isNull(block.v) {
			at := e.k
			if ok {
				at = block.k
			}
			d.problem(at, join(field, typ), "%s settings are required for a provider of type %s (%s)", typ, typ,
				strings.Join(kind.Keys(), ", "))
			continue
		}
		settings, ok := d.fields(block.v, join(field, typ), "a mapping of "+typ+" settings", kind.Keys()...)
		if ok {
			pr.Settings = d.decodeSettings(kind, settings, block, join(field, typ), pr)
			pr.Webhook, _ = pr.Settings.(*WebhookSettings)
		}
	}
}

// ---- groups ----

func (d *decoder) decodeGroups(sec pair, p *Policy) {
	gs, _ := d.mapping(sec.v, "groups", "a mapping of user group ids to lists of user ids")
	for _, e := range gs {
		id := resolve(e.k).Value
		field := join("groups", id)
		d.checkGroup(e.k, field, id)
		members, ok := d.list(e, field, "U01ABCDEF, U02ABCDEF", d.checkUser)
		p.Groups[id] = members
		if ok && len(members) == 0 {
			d.warn(e.k, field, "static group %s has no members; roles that rely on it cannot be requested or approved through it", id)
		}
	}
}

// ---- defaults and the settings roles share with them ----

// setting is one optional value and where it came from.
type setting[T any] struct {
	v   T
	set bool // written in the file
	ok  bool // written and valid
	p   pair
}

// shared are the settings a role can inherit from defaults.
type shared struct {
	pendingTTL, defaultDur, maxDur setting[time.Duration]
	approvals                      setting[int]
	approvalCh, auditCh            setting[string]
}

var sharedFields = []string{"pending_ttl", "approval_channel", "audit_channel", "approvals", "default_duration", "max_duration"}

func (d *decoder) decodeShared(f map[string]pair, path string) shared {
	var s shared
	dur := func(key string, out *setting[time.Duration]) {
		e, ok := f[key]
		if !ok || isNull(e.v) {
			return
		}
		out.set, out.p = true, e
		v, ok := d.duration(e, join(path, key))
		if !ok {
			return
		}
		if v <= 0 {
			d.problem(e.v, join(path, key), "%s must be positive", FormatDuration(v))
			return
		}
		if v > MaxDurationCap {
			d.problem(e.v, join(path, key), "%s is over the hard cap of %s (7 days); jitbot is for temporary access, "+
				"so nothing may last or wait longer", FormatDuration(v), FormatDuration(MaxDurationCap))
			return
		}
		out.v, out.ok = v, true
	}
	dur("pending_ttl", &s.pendingTTL)
	dur("default_duration", &s.defaultDur)
	dur("max_duration", &s.maxDur)

	if e, ok := f["approvals"]; ok && !isNull(e.v) {
		s.approvals.set, s.approvals.p = true, e
		if n, ok := d.integer(e, join(path, "approvals")); ok {
			if n < 1 {
				d.problem(e.v, join(path, "approvals"), "must be at least 1 (got %d)", n)
			} else {
				s.approvals.v, s.approvals.ok = n, true
			}
		}
	}
	ch := func(key string, out *setting[string]) {
		e, ok := f[key]
		if !ok || isNull(e.v) {
			return
		}
		out.set, out.p = true, e
		if v := d.str(e, join(path, key)); v != "" && d.checkChannel(resolve(e.v), join(path, key), v) {
			out.v, out.ok = v, true
		}
	}
	ch("approval_channel", &s.approvalCh)
	ch("audit_channel", &s.auditCh)
	return s
}

func (d *decoder) decodeDefaults(sec pair, p *Policy) shared {
	f, _ := d.fields(sec.v, "defaults", "a mapping of default settings", sharedFields...)
	s := d.decodeShared(f, "defaults")
	p.Defaults = BuiltinDefaults
	if s.pendingTTL.ok {
		p.Defaults.PendingTTL = s.pendingTTL.v
	}
	if s.approvals.ok {
		p.Defaults.Approvals = s.approvals.v
	}
	if s.maxDur.ok {
		p.Defaults.MaxDuration = s.maxDur.v
	}
	if s.defaultDur.ok {
		p.Defaults.DefaultDuration = s.defaultDur.v
	} else if !s.defaultDur.set {
		p.Defaults.DefaultDuration = min(BuiltinDefaults.DefaultDuration, p.Defaults.MaxDuration)
	}
	p.Defaults.ApprovalChannel = s.approvalCh.v
	p.Defaults.AuditChannel = s.auditCh.v
	if s.defaultDur.ok && (s.maxDur.ok || !s.maxDur.set) && p.Defaults.DefaultDuration > p.Defaults.MaxDuration {
		msg := fmt.Sprintf("%s is longer than max_duration %s", FormatDuration(p.Defaults.DefaultDuration), FormatDuration(p.Defaults.MaxDuration))
		if !s.maxDur.set {
			msg += " (max_duration is the built-in default; set max_duration under defaults)"
		}
		d.problem(s.defaultDur.p.v, "defaults.default_duration", "%s", msg)
	}
	return s
}

// inherited explains where an inherited value came from, for messages.
func inherited[T any](s setting[T], name string) string {
	if s.set {
		return name + " is inherited from defaults"
	}
	return name + " is the built-in default; set " + name + " on the role or under defaults"
}

// ---- roles ----

var roleFields = append([]string{"description", "provider", "target", "requesters", "approvers", "breakglass", "conditions", "auto_approve", "workload_principals"}, sharedFields...)

func (d *decoder) decodeRoles(root *yaml.Node, sec pair, p *Policy, defs shared) {
	rs, ok := d.mapping(sec.v, "roles", "a mapping of role names to roles")
	if ok && len(rs) == 0 {
		at := root
		if sec.k != nil {
			at = sec.k
		}
		d.problem(at, "roles", "no roles are defined; a policy needs at least one role")
	}
	for _, e := range rs {
		name := resolve(e.k).Value
		field := join("roles", name)
		if !nameRE.MatchString(name) {
			d.problem(e.k, field, "%q is not a valid role name (lowercase letters, digits, -, _ and ., starting with "+
				"a letter or digit, at most 63 characters)", name)
		}
		r := &Role{Name: name, Line: e.k.Line}
		p.Roles[name] = r
		f, ok := d.fields(e.v, field, "a mapping of role settings", roleFields...)
		if !ok {
			continue
		}
		r.Description = d.str(f["description"], join(field, "description"))
		d.decodeRoleProvider(e, f, field, p, r)
		d.decodeTarget(e, f, field, r)
		reqOK := d.decodeSubjects(e, f, field, "requesters", "request the role", &r.Requesters)
		apprOK := d.decodeSubjects(e, f, field, "approvers", "approve requests", &r.Approvers)
		d.applyShared(e, f, field, p, defs, r, reqOK && apprOK)
		if bg, ok := f["breakglass"]; ok && !isNull(bg.v) {
			r.BreakGlass = d.decodeBreakGlass(bg, join(field, "breakglass"), r)
		}
		d.decodeRolePipelines(f, field, p, r)
	}
}

func (d *decoder) decodeRoleProvider(e pair, f map[string]pair, field string, p *Policy, r *Role) {
	pf, ok := f["provider"]
	if !ok || isNull(pf.v) {
		d.problem(e.k, join(field, "provider"), "is required: name the provider that grants this role (%s)", describeProviders(p.Providers))
		return
	}
	name := d.str(pf, join(field, "provider"))
	if name == "" {
		return
	}
	if _, ok := p.Providers[name]; !ok {
		d.problem(pf.v, join(field, "provider"), "unknown provider %q (%s)", name, describeProviders(p.Providers))
		return
	}
	r.Provider = name
}

func (d *decoder) decodeTarget(e pair, f map[string]pair, field string, r *Role) {
	tf := join(field, "target")
	t, ok := f["target"]
	if !ok || isNull(t.v) {
		d.problem(e.k, tf, "is required: the provider-specific scope of the role, such as {resource: prod-db, permission: admin}")
		return
	}
	ps, ok := d.mapping(t.v, tf, "a mapping of target keys to values, such as {resource: prod-db, permission: admin}")
	if !ok {
		return
	}
	if len(ps) == 0 {
		d.problem(t.k, tf, "is empty: give the provider-specific scope of the role, such as {resource: prod-db, permission: admin}")
		return
	}
	r.Target = map[string]string{}
	r.TargetLine, r.TargetColumn = t.v.Line, t.v.Column
	for _, kv := range ps {
		key := resolve(kv.k).Value
		if looksSecret(key) {
			d.secretKey(kv.k, join(tf, key), key)
			continue
		}
		v, ok := d.scalar(kv.v, join(tf, key))
		if !ok {
			continue
		}
		if strings.TrimSpace(v) == "" {
			d.problem(kv.k, join(tf, key), "has no value")
			continue
		}
		r.Target[key] = v
	}
}

// decodeSubjects decodes requesters or approvers; ok is false when the section had problems of its own.
func (d *decoder) decodeSubjects(e pair, f map[string]pair, field, key, verb string, out *Subjects) bool {
	sf := join(field, key)
	s, present := f[key]
	if !present || isNull(s.v) {
		d.problem(e.k, sf, "is required: list the users and/or groups who may %s", verb)
		return false
	}
	known := []string{"users", "groups"}
	if key == "requesters" {
		known = append(known, "workloads")
	}
	sub, ok := d.fields(s.v, sf, "a mapping with "+strings.Join(known, " and/or "), known...)
	if !ok {
		return false
	}
	users, uok := d.list(sub["users"], join(sf, "users"), "U01ABCDEF, U02ABCDEF", d.checkUser)
	groups, gok := d.list(sub["groups"], join(sf, "groups"), "S01ABCDEF", d.checkGroup)
	workloads, wok := d.list(sub["workloads"], join(sf, "workloads"), "deploy-main", nil)
	out.Users, out.Groups, out.Workloads = users, groups, workloads
	if uok && gok && wok && out.Empty() {
		d.problem(s.k, sf, "lists nobody: add at least one user or group who may %s", verb)
		return false
	}
	return uok && gok && wok
}

// applyShared fills the inheritable settings of r and checks how they fit together.
func (d *decoder) applyShared(e pair, f map[string]pair, field string, p *Policy, defs shared, r *Role, subjectsOK bool) {
	own := d.decodeShared(f, field)
	known := true // every value involved is valid, so cross-checks make sense

	pick := func(o, df setting[time.Duration], fallback time.Duration) time.Duration {
		switch {
		case o.set:
			known = known && o.ok
			return o.v
		case df.set:
			known = known && df.ok
			return df.v
		}
		return fallback
	}
	r.PendingTTL = pick(own.pendingTTL, defs.pendingTTL, BuiltinDefaults.PendingTTL)
	r.MaxDuration = pick(own.maxDur, defs.maxDur, BuiltinDefaults.MaxDuration)
	r.DefaultDuration = pick(own.defaultDur, defs.defaultDur, min(BuiltinDefaults.DefaultDuration, r.MaxDuration))
	durKnown := known

	r.Approvals = p.Defaults.Approvals
	approvalsKnown := true
	switch {
	case own.approvals.set:
		r.Approvals, approvalsKnown = own.approvals.v, own.approvals.ok
	case defs.approvals.set:
		approvalsKnown = defs.approvals.ok
	}
	r.ApprovalChannel = p.Defaults.ApprovalChannel
	if own.approvalCh.set {
		r.ApprovalChannel = own.approvalCh.v
	}
	r.AuditChannel = p.Defaults.AuditChannel
	if own.auditCh.set {
		r.AuditChannel = own.auditCh.v
	}

	if !own.approvalCh.set && !defs.approvalCh.set {
		d.problem(e.k, join(field, "approval_channel"), "is required: set it on the role or under defaults "+
			"(the Slack channel id where approvers are asked, such as C01ABCDEF)")
	}

	// default_duration <= max_duration, reported on the role only when the role sets one of them (otherwise
	// the defaults section was checked on its own).
	if durKnown && (own.defaultDur.set || own.maxDur.set) && r.DefaultDuration > r.MaxDuration {
		at, fld := own.maxDur.p.v, join(field, "max_duration")
		if own.defaultDur.set {
			at, fld = own.defaultDur.p.v, join(field, "default_duration")
		}
		msg := fmt.Sprintf("default_duration %s is longer than max_duration %s", FormatDuration(r.DefaultDuration), FormatDuration(r.MaxDuration))
		switch {
		case !own.defaultDur.set:
			msg += " (" + inherited(defs.defaultDur, "default_duration") + ")"
		case !own.maxDur.set:
			msg += " (" + inherited(defs.maxDur, "max_duration") + ")"
		}
		d.problem(at, fld, "%s", msg)
	}

	// N of M: with users only (or only static groups), M is known.
	if approvalsKnown && subjectsOK {
		approvers, exact := approverSet(p, r.Approvers)
		if exact && r.Approvals > len(approvers) {
			at, fld := f["approvers"].k, join(field, "approvals")
			if own.approvals.set {
				at = own.approvals.p.v
			}
			how := "listed"
			if len(r.Approvers.Groups) > 0 {
				how = "listed (counting the members of static groups)"
			}
			msg := fmt.Sprintf("needs %d approvals but only %d %s %s", r.Approvals, len(approvers), plural(len(approvers), "approver is", "approvers are"), how)
			if !own.approvals.set {
				msg += " (" + inherited(defs.approvals, "approvals") + ")"
			}
			d.problem(at, fld, "%s", msg)
		} else if exact {
			d.checkSelfApproval(p, e, field, r, approvers)
		}
	}
}

// approverSet returns the distinct approver users; exact is false when a group is resolved through Slack,
// so the number cannot be known from the file.
func approverSet(p *Policy, s Subjects) (users []string, exact bool) {
	users = slices.Clone(s.Users)
	for _, g := range s.Groups {
		members, ok := p.Groups[g]
		if !ok {
			return nil, false
		}
		users = append(users, members...)
	}
	slices.Sort(users)
	return slices.Compact(users), true
}

// checkSelfApproval warns when a requester who is also an approver could never collect enough approvals,
// since nobody approves their own request.
func (d *decoder) checkSelfApproval(p *Policy, e pair, field string, r *Role, approvers []string) {
	requesters, _ := approverSet(p, Subjects{Users: r.Requesters.Users, Groups: staticOnly(p, r.Requesters.Groups)})
	for _, u := range requesters {
		if slices.Contains(approvers, u) && len(approvers)-1 < r.Approvals {
			d.warn(e.k, field, "%s may request %s and is one of its %d approvers; nobody approves their own request, "+
				"so requests from %s can never collect %d approvals", u, r.Name, len(approvers), u, r.Approvals)
		}
	}
}

func staticOnly(p *Policy, groups []string) []string {
	var out []string
	for _, g := range groups {
		if _, ok := p.Groups[g]; ok {
			out = append(out, g)
		}
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// ---- identities ----

func (d *decoder) decodeIdentities(sec pair, p *Policy) {
	us, _ := d.mapping(sec.v, "identities", "a mapping of Slack user ids to {provider: principal} mappings")
	for _, u := range us {
		user := resolve(u.k).Value
		field := join("identities", user)
		d.checkUser(u.k, field, user)
		ps, _ := d.mapping(u.v, field, "a mapping of provider names to the user's principal at that provider")
		m := map[string]string{}
		for _, e := range ps {
			prov := resolve(e.k).Value
			pf := join(field, prov)
			pr, known := p.Providers[prov]
			_, isIssuer := p.Issuers[prov]
			if !known && !isIssuer {
				d.problem(e.k, pf, "unknown provider %q (%s)", prov, describeProviders(p.Providers))
			}
			v, ok := d.scalar(e.v, pf)
			if !ok {
				continue
			}
			if v = strings.TrimSpace(v); v == "" {
				d.problem(e.k, pf, "has no value: give %s's principal at %s, or remove the line", user, prov)
				continue
			}
			if known && pr.PrincipalFrom == PrincipalSlackUserID {
				d.warn(e.k, pf, "is not used: provider %s has principal_from: %s, so it receives the Slack user id", prov, PrincipalSlackUserID)
			}
			m[prov] = v
		}
		p.Identities[user] = m
	}
}

// ---- whole-policy warnings ----

func (d *decoder) checkUsage(p *Policy) {
	used := map[string][]string{}
	for _, name := range p.RoleNames() {
		used[p.Roles[name].Provider] = append(used[p.Roles[name].Provider], name)
	}
	for _, name := range sortedKeys(p.Providers) {
		pr := p.Providers[name]
		field := join("providers", name)
		roles := used[name]
		if len(roles) == 0 {
			d.warn(&yaml.Node{Line: pr.Line, Column: 3}, field, "provider %s is not used by any role", name)
			continue
		}
		if pr.PrincipalFrom != PrincipalIdentities {
			continue
		}
		mapped := 0
		for _, m := range p.Identities {
			if _, ok := m[name]; ok {
				mapped++
			}
		}
		if mapped == 0 && !workloadsOnly(p, roles) {
			d.warn(&yaml.Node{Line: pr.Line, Column: 3}, field, "no user has an identity for provider %s "+
				"(principal_from: identities), so every request for %s will be refused until identities are added",
				name, strings.Join(roles, ", "))
			continue
		}
		for _, rn := range roles {
			r := p.Roles[rn]
			requesters, _ := approverSet(p, Subjects{Users: r.Requesters.Users, Groups: staticOnly(p, r.Requesters.Groups)})
			for _, u := range requesters {
				if _, ok := p.Identities[u][name]; !ok {
					d.warn(&yaml.Node{Line: r.Line, Column: 3}, join("roles", rn), "%s may request %s but has no identity "+
						"for provider %s under identities; their requests will be refused", u, rn, name)
				}
			}
		}
	}
}

// ---- helpers for the engine ----

// Role returns the named role.
func (p *Policy) Role(name string) (*Role, bool) {
	r, ok := p.Roles[name]
	return r, ok
}

// RoleNames returns the role names, sorted.
func (p *Policy) RoleNames() []string { return sortedKeys(p.Roles) }

// Provider returns the named provider.
func (p *Policy) Provider(name string) (*Provider, bool) {
	pr, ok := p.Providers[name]
	return pr, ok
}

// StaticGroup returns the members of a group declared in the groups section; ok is false for groups that
// must be resolved through Slack.
func (p *Policy) StaticGroup(id string) (members []string, ok bool) {
	m, ok := p.Groups[id]
	return m, ok
}

// Principal returns the identity of a Slack user at a provider, following the provider's principal_from.
// When the user has no identity mapped the error wraps ErrNoIdentity and says what an admin must do; it is
// written to be shown to the user.
func (p *Policy) Principal(userID, provider string) (string, error) {
	pr, ok := p.Providers[provider]
	if !ok {
		return "", fmt.Errorf("policy: unknown provider %q", provider)
	}
	switch pr.PrincipalFrom {
	case PrincipalSlackUserID:
		return userID, nil
	case PrincipalIdentities:
		if v := p.Identities[userID][provider]; v != "" {
			return v, nil
		}
		return "", fmt.Errorf("%w: user %s has no identity mapped for provider %s; an admin must add one under "+
			"identities in the policy file (identities: {%s: {%s: <principal>}})", ErrNoIdentity, userID, provider, userID, provider)
	case PrincipalSlackEmail:
		return "", fmt.Errorf("%w: provider %s maps users by Slack profile email, which needs a lookup in Slack", ErrNeedsEmail, provider)
	}
	return "", fmt.Errorf("policy: provider %s has unsupported principal_from %q", provider, pr.PrincipalFrom)
}

// Warnings returns the non-fatal findings: things that are valid but probably not what was meant (an unused
// provider, a requester without an identity, a static group without members, a requester who is needed to
// approve their own request) and, checked against the current environment at each call, provider secrets
// whose environment variables are not set. `jitbot policy check` prints them and still succeeds.
func (p *Policy) Warnings() []Problem {
	out := append(slices.Clone(p.warns), p.MissingSecrets()...)
	return tidy(out)
}

// MissingSecrets checks, against the current environment, that every environment variable a declared
// provider needs (such as a webhook's secret_env) is set and not empty. `jitbot serve` refuses to start
// unless it returns nothing.
func (p *Policy) MissingSecrets() []Problem {
	var out []Problem
	for _, name := range sortedKeys(p.Providers) {
		for _, s := range p.Providers[name].secrets {
			v, ok := os.LookupEnv(s.env)
			var msg string
			switch {
			case !ok:
				msg = fmt.Sprintf("environment variable %s is not set; provider %s needs it to %s", s.env, name, s.purpose)
			case strings.TrimSpace(v) == "":
				msg = fmt.Sprintf("environment variable %s is empty; provider %s needs it to %s", s.env, name, s.purpose)
			default:
				continue
			}
			pr := Problem{File: p.File, Field: s.field, Message: msg}
			if s.node != nil {
				pr.Line, pr.Column = s.node.Line, s.node.Column
			}
			out = append(out, pr)
		}
	}
	for _, s := range p.onCallSecrets {
		if v, ok := os.LookupEnv(s.env); !ok || strings.TrimSpace(v) == "" {
			out = append(out, Problem{File: p.File, Line: s.node.Line, Column: s.node.Column, Field: s.field,
				Message: fmt.Sprintf("environment variable %s is not set or empty; jitbot needs it to %s", s.env, s.purpose)})
		}
	}
	return out
}

func (p *Policy) onCallSecret(env string, n *yaml.Node, field, typ string) {
	p.onCallSecrets = append(p.onCallSecrets, secretRef{env: env, field: field, purpose: "ask " + typ + " who is on call", node: n})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// BreakGlass is a role's emergency access rule: an on-call engineer gets the role at once, without approval,
// loudly announced and reviewed afterwards.
type BreakGlass struct {
	Allowed bool
	// Source names an on-call source declared under oncall: (empty: anyone eligible to request, which is
	// only sensible with a static rota or for tests; the policy check warns).
	Source             string
	Schedules          []string
	EscalationPolicies []string
	// MaxLevel limits which escalation levels qualify: 1 = primary only; 0 = any.
	MaxLevel int
	// MaxDuration caps a break-glass grant (shorter than the role's own maximum); default min(1h, role max).
	MaxDuration time.Duration
	// DailyLimit is how many break-glass activations one person may make per rolling 24 hours; default 3.
	DailyLimit int
	// OnSourceError says what happens when the on-call source cannot answer: "deny" (default) or "allow".
	OnSourceError string
	// AutoApprove approves ordinary requests of on-call requesters at once (still recorded and announced).
	AutoApprove bool
	// ReviewEvery is how often an unreviewed break-glass grant is announced again; default 4h.
	ReviewEvery time.Duration
	Line        int
}

var breakGlassFields = []string{"allowed", "source", "schedules", "escalation_policies", "max_level", "max_duration",
	"daily_limit", "on_source_error", "auto_approve", "review_every"}

func (d *decoder) decodeBreakGlass(e pair, field string, r *Role) *BreakGlass {
	bg := &BreakGlass{Allowed: true, DailyLimit: 3, OnSourceError: "deny", ReviewEvery: 4 * time.Hour, Line: e.k.Line}
	f, ok := d.fields(e.v, field, "a mapping of break-glass settings ("+strings.Join(breakGlassFields, ", ")+")", breakGlassFields...)
	if !ok {
		return nil
	}
	if a, ok := f["allowed"]; ok {
		switch v := strings.ToLower(d.str(a, join(field, "allowed"))); v {
		case "true", "yes":
		case "false", "no":
			bg.Allowed = false
		default:
			d.problem(a.v, join(field, "allowed"), "must be true or false")
		}
	}
	if a, ok := f["auto_approve"]; ok {
		switch v := strings.ToLower(d.str(a, join(field, "auto_approve"))); v {
		case "true", "yes":
			bg.AutoApprove = true
		case "false", "no", "":
		default:
			d.problem(a.v, join(field, "auto_approve"), "must be true or false")
		}
	}
	bg.Source = d.str(f["source"], join(field, "source"))
	if s, ok := f["schedules"]; ok {
		bg.Schedules, _ = d.list(s, join(field, "schedules"), "PABC123", nil)
	}
	if s, ok := f["escalation_policies"]; ok {
		bg.EscalationPolicies, _ = d.list(s, join(field, "escalation_policies"), "PEP123", nil)
	}
	if v, ok := f["max_level"]; ok {
		if n, ok := d.integer(v, join(field, "max_level")); ok {
			if n < 0 {
				d.problem(v.v, join(field, "max_level"), "must be 0 (any level) or more (1 = primary on call only)")
			}
			bg.MaxLevel = n
		}
	}
	if v, ok := f["daily_limit"]; ok {
		if n, ok := d.integer(v, join(field, "daily_limit")); ok {
			if n < 1 || n > 50 {
				d.problem(v.v, join(field, "daily_limit"), "must be between 1 and 50 activations per person per 24 hours")
			}
			bg.DailyLimit = n
		}
	}
	if v, ok := f["on_source_error"]; ok {
		switch s := d.str(v, join(field, "on_source_error")); s {
		case "deny", "allow":
			bg.OnSourceError = s
		default:
			d.problem(v.v, join(field, "on_source_error"), "must be deny (the default: no access when the on-call source cannot answer) or allow")
		}
	}
	bg.MaxDuration = min(time.Hour, r.MaxDuration)
	if v, ok := f["max_duration"]; ok {
		if dur, ok := d.duration(v, join(field, "max_duration")); ok {
			switch {
			case dur <= 0:
				d.problem(v.v, join(field, "max_duration"), "must be positive")
			case r.MaxDuration > 0 && dur > r.MaxDuration:
				d.problem(v.v, join(field, "max_duration"), "%s is longer than the role's max_duration %s", FormatDuration(dur), FormatDuration(r.MaxDuration))
			default:
				bg.MaxDuration = dur
			}
		}
	}
	if v, ok := f["review_every"]; ok {
		if dur, ok := d.duration(v, join(field, "review_every")); ok {
			if dur < time.Minute {
				d.problem(v.v, join(field, "review_every"), "must be at least 1m")
			} else {
				bg.ReviewEvery = dur
			}
		}
	}
	if bg.Allowed && bg.Source != "" && len(bg.Schedules) == 0 && len(bg.EscalationPolicies) == 0 {
		d.problem(e.k, field, "names on-call source %q but no schedules or escalation_policies: say who counts as on call", bg.Source)
	}
	return bg
}
