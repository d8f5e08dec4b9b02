package policy

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// OnCallSource is an on-call tool (or a static rota) that break-glass and auto-approval ask.
type OnCallSource struct {
	Name string
	// Type is pagerduty, opsgenie or static.
	Type string
	// APIKeyEnv names the environment variable holding the tool's API key (pagerduty, opsgenie).
	APIKeyEnv string
	// BaseURL overrides the tool's API address (the Opsgenie EU instance, a proxy, a test server).
	BaseURL string
	// Mapping is how a Slack user becomes the tool's user: explicit (Users), email (opt-in: the Slack
	// profile email must equal the tool user's email), or slack_user_id (the static rota).
	Mapping string
	// Users maps Slack user ids to the tool's user ids (Mapping explicit).
	Users map[string]string
	// IdentifierType says whether schedules are Opsgenie schedule ids or names.
	IdentifierType string
	Line           int

	rota *yaml.Node
}

// DecodeRota decodes the static rota into v (a []static.Entry); the policy package does not import the
// on-call implementations.
func (s *OnCallSource) DecodeRota(v any) error {
	if s.rota == nil {
		return nil
	}
	return s.rota.Decode(v)
}

var onCallTypes = map[string][]string{
	"pagerduty": {"type", "api_key_env", "base_url", "mapping", "users"},
	"opsgenie":  {"type", "api_key_env", "base_url", "mapping", "users", "identifier_type"},
	"static":    {"type", "rota"},
}

func (d *decoder) decodeOnCallSources(sec pair, p *Policy) {
	ss, _ := d.mapping(sec.v, "oncall_sources", "a mapping of on-call source names to settings")
	for _, e := range ss {
		name := resolve(e.k).Value
		field := join("oncall_sources", name)
		if !nameRE.MatchString(name) {
			d.problem(e.k, field, "%q is not a valid source name (lowercase letters, digits, -, _ and .)", name)
		}
		src := &OnCallSource{Name: name, Line: e.k.Line}
		p.OnCallSources[name] = src
		all := []string{"type", "api_key_env", "base_url", "mapping", "users", "identifier_type", "rota"}
		f, ok := d.fields(e.v, field, "a mapping of on-call source settings", all...)
		if !ok {
			continue
		}
		src.Type = d.str(f["type"], join(field, "type"))
		allowed, known := onCallTypes[src.Type]
		if !known {
			at := e.k
			if t, ok := f["type"]; ok {
				at = t.v
			}
			d.problem(at, join(field, "type"), "must be pagerduty, opsgenie or static")
			continue
		}
		for k, kv := range f {
			if !contains(allowed, k) {
				d.problem(kv.k, join(field, k), "is not a setting of a %s source (settings: %v)", src.Type, allowed)
			}
		}
		if src.Type == "static" {
			r, ok := f["rota"]
			if !ok || isNull(r.v) || resolve(r.v).Kind != yaml.SequenceNode {
				d.problem(e.k, join(field, "rota"), "is required: a list of {user, schedule, level, weekly or windows}")
				continue
			}
			src.rota = resolve(r.v)
			src.Mapping = "slack_user_id"
			continue
		}
		if k, ok := f["api_key_env"]; !ok || isNull(k.v) {
			d.problem(e.k, join(field, "api_key_env"), "is required: the NAME of the environment variable holding the %s API key", src.Type)
		} else if env := d.str(k, join(field, "api_key_env")); checkEnvName(d, k.v, join(field, "api_key_env"), env) {
			src.APIKeyEnv = env
			p.onCallSecret(env, k.v, join(field, "api_key_env"), src.Type)
		}
		if u, ok := f["base_url"]; ok && !isNull(u.v) {
			if raw := d.str(u, join(field, "base_url")); checkWebhookURL(d, u.v, join(field, "base_url"), raw) {
				src.BaseURL = raw
			}
		}
		src.Mapping = "explicit"
		if m, ok := f["mapping"]; ok {
			switch v := d.str(m, join(field, "mapping")); v {
			case "explicit", "email":
				src.Mapping = v
			default:
				d.problem(m.v, join(field, "mapping"), "must be explicit (users: {U…: tool user id}) or email (opt-in: trust Slack profile emails)")
			}
		}
		if us, ok := f["users"]; ok && !isNull(us.v) {
			src.Users = map[string]string{}
			ups, _ := d.mapping(us.v, join(field, "users"), "a mapping of Slack user ids to the tool's user ids")
			for _, kv := range ups {
				uid := resolve(kv.k).Value
				if d.checkUser(kv.k, join(join(field, "users"), uid), uid) {
					src.Users[uid] = d.str(kv, join(join(field, "users"), uid))
				}
			}
		}
		if src.Mapping == "explicit" && len(src.Users) == 0 {
			d.problem(e.k, join(field, "users"), "maps nobody: with mapping explicit, list users: {U01ABCDEF: <%s user id>}", src.Type)
		}
		if it, ok := f["identifier_type"]; ok {
			switch v := d.str(it, join(field, "identifier_type")); v {
			case "id", "name":
				src.IdentifierType = v
			default:
				d.problem(it.v, join(field, "identifier_type"), "must be id or name")
			}
		}
	}
}

// checkBreakGlassSources makes sure every break-glass rule names a declared on-call source.
func (d *decoder) checkBreakGlassSources(p *Policy) {
	for _, name := range sortedKeys(p.Roles) {
		r := p.Roles[name]
		if r.BreakGlass == nil || r.BreakGlass.Source == "" {
			continue
		}
		if _, ok := p.OnCallSources[r.BreakGlass.Source]; !ok {
			d.probs = append(d.probs, Problem{File: d.file, Line: r.BreakGlass.Line, Field: join(join("roles", name), "breakglass.source"),
				Message: fmt.Sprintf("unknown on-call source %q (declare it under oncall_sources)", r.BreakGlass.Source)})
		}
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
