package policy

import (
	"net/url"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Provider is one declared provider instance. Roles refer to it by Name.
type Provider struct {
	Name string
	// Type selects the adapter ("webhook"). The settings for a type live in a block named like the type.
	Type string
	// PrincipalFrom says how a Slack user becomes a principal at this provider: PrincipalSlackUserID or
	// PrincipalIdentities (the default). See Policy.Principal.
	PrincipalFrom string
	// Webhook holds the settings when Type is "webhook".
	Webhook *WebhookSettings
	// Settings holds the settings block of the cloud provider types (see cloudKinds), validated further by
	// the adapter itself (see internal/app.CheckPolicy), which gets their positions from SettingPos.
	Settings *CloudSettings
	// Line is where the provider is declared in the policy file.
	Line int

	secrets []secretRef
}

// Values of Provider.PrincipalFrom.
const (
	// PrincipalSlackUserID sends the Slack user id itself as the principal.
	PrincipalSlackUserID = "slack_user_id"
	// PrincipalIdentities looks the user up in the policy's identities section; users without a mapping
	// cannot be granted access on the provider.
	PrincipalIdentities = "identities"
	// PrincipalSlackEmail uses the email on the user's Slack profile. Opt-in: it trusts whoever can set
	// profile emails in the workspace (users themselves in some workspaces), so it is never a default.
	PrincipalSlackEmail = "slack_email"
	// principalEmail is refused with a hint to spell the trust decision out as slack_email.
	principalEmail = "email"
)

// DefaultWebhookTimeout is used when a webhook provider sets no timeout (or 0).
const DefaultWebhookTimeout = 10 * time.Second

// MaxWebhookTimeout bounds a webhook provider's timeout: Slack interactions and the revocation sweeper wait
// on the call.
const MaxWebhookTimeout = 60 * time.Second

// WebhookSettings configures a "webhook" provider: jitbot POSTs signed grant, revoke and check calls to URL.
type WebhookSettings struct {
	// URL is the absolute https URL to call (http only for localhost, 127.0.0.1 and ::1).
	URL string
	// SecretEnv is the NAME of the environment variable that holds the request-signing secret.
	SecretEnv string
	// Timeout bounds each call; DefaultWebhookTimeout when not set.
	Timeout time.Duration
	// PendingTimeout is how long one grant or revoke waits, resending, for a receiver that answers
	// {"pending": true} (asynchronous provisioning, docs/webhook.md); 0 waits only within the attempt timeout.
	PendingTimeout time.Duration
}

// MaxWebhookPendingTimeout bounds pending_timeout: the binding stays locked while jitbot waits.
const MaxWebhookPendingTimeout = 15 * time.Minute

// secretRef is an environment variable a provider needs at run time.
type secretRef struct {
	env     string
	field   string
	purpose string // "sign webhook calls"
	node    *yaml.Node
}

// providerKind is one provider type. Adding a type means: a settings struct with a field on Provider, a
// decode function that parses and validates the settings block (named like the type) and stores it on the
// Provider, and an entry in providerKinds. decode records the environment variables the type needs with
// Provider.needSecret so that Warnings and MissingSecrets cover them.
type providerKind struct {
	fields []string // keys of the settings block, for unknown-field messages
	decode func(d *decoder, settings map[string]pair, block pair, field string, p *Provider)
}

var providerKinds = map[string]providerKind{
	"webhook": {
		fields: []string{"url", "secret_env", "timeout", "pending_timeout"},
		decode: decodeWebhook,
	},
	"aws-identity-center": cloudKind("instance_arn", "identity_store_id", "region", "endpoint"),
	"aws-iam":             cloudKind("region", "endpoint", "scan_users"),
	"gcp-iam":             cloudKind("endpoint", "scopes"),
	"azure-rbac":          cloudKind("subscription_id", "mode", "scopes"),
	"kubernetes":          cloudKind("kubeconfig", "context", "namespaces"),
}

func knownTypes() string {
	return strings.Join(sortedKeys(providerKinds), ", ")
}

// needSecret records that the provider reads the environment variable env at run time, for purpose.
func (p *Provider) needSecret(env string, n *yaml.Node, field, purpose string) {
	p.secrets = append(p.secrets, secretRef{env: env, field: field, purpose: purpose, node: n})
}

func decodeWebhook(d *decoder, s map[string]pair, block pair, field string, p *Provider) {
	w := &WebhookSettings{Timeout: DefaultWebhookTimeout}
	p.Webhook = w

	if u, ok := s["url"]; !ok || isNull(u.v) {
		d.problem(block.k, join(field, "url"), "is required: the https URL jitbot calls to grant and revoke access")
	} else if raw := d.str(u, join(field, "url")); raw != "" {
		if checkWebhookURL(d, u.v, join(field, "url"), raw) {
			w.URL = raw
		}
	} else if resolve(u.v).Kind == yaml.ScalarNode {
		d.problem(u.k, join(field, "url"), "is required: the https URL jitbot calls to grant and revoke access")
	}

	if e, ok := s["secret_env"]; !ok || isNull(e.v) {
		d.problem(block.k, join(field, "secret_env"), "is required: name the environment variable that holds the "+
			"signing secret (such as JITBOT_WEBHOOK_SECRET), so that the receiver can tell calls really come from jitbot")
	} else if name := d.str(e, join(field, "secret_env")); name != "" {
		if checkEnvName(d, e.v, join(field, "secret_env"), name) {
			w.SecretEnv = name
			p.needSecret(name, e.v, join(field, "secret_env"), "sign webhook calls")
		}
	}

	if t, ok := s["timeout"]; ok && !isNull(t.v) {
		if v, ok := d.duration(t, join(field, "timeout")); ok {
			switch {
			case v < 0:
				d.problem(t.v, join(field, "timeout"), "%s is negative; leave it out or use 0 for the default of %s",
					FormatDuration(v), FormatDuration(DefaultWebhookTimeout))
			case v > MaxWebhookTimeout:
				d.problem(t.v, join(field, "timeout"), "%s is longer than the limit of %s (people in Slack and the "+
					"revocation sweeper wait on each call)", FormatDuration(v), FormatDuration(MaxWebhookTimeout))
			case v > 0:
				w.Timeout = v
			}
		}
	}

	if t, ok := s["pending_timeout"]; ok && !isNull(t.v) {
		if v, ok := d.duration(t, join(field, "pending_timeout")); ok {
			switch {
			case v < 0:
				d.problem(t.v, join(field, "pending_timeout"), "%s is negative; leave it out or use 0 to wait only "+
					"within one attempt", FormatDuration(v))
			case v > MaxWebhookPendingTimeout:
				d.problem(t.v, join(field, "pending_timeout"), "%s is longer than the limit of %s (the binding stays "+
					"locked while jitbot waits; a receiver that needs longer answers pending again and jitbot resumes "+
					"in a later attempt)", FormatDuration(v), FormatDuration(MaxWebhookPendingTimeout))
			default:
				w.PendingTimeout = v
			}
		}
	}
}

// checkWebhookURL never repeats a URL that carries credentials.
func checkWebhookURL(d *decoder, n *yaml.Node, field, raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		d.problem(n, field, "is not a valid URL")
		return false
	}
	if u.User != nil {
		d.problem(n, field, "must not contain credentials (user:password@); the webhook is authenticated with the "+
			"signing secret named by secret_env")
		return false
	}
	for k := range u.Query() {
		if looksSecret(k) {
			d.problem(n, field, "query parameter %q looks like a credential, and secrets must not be written in the "+
				"policy file; the webhook is authenticated with the signing secret named by secret_env", k)
			return false
		}
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		d.problem(n, field, "%q is not an absolute http(s) URL (such as https://access.example.com/jitbot)", raw)
		return false
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		d.problem(n, field, "%q uses plain http: grant data and signed calls would cross the network unencrypted "+
			"and answers could be forged in transit; use https (http is allowed only for localhost, 127.0.0.1 and ::1)", raw)
		return false
	}
	return true
}

func isLoopback(host string) bool {
	switch strings.ToLower(strings.TrimSuffix(host, ".")) {
	case "localhost", "127.0.0.1", "::1":
		return true
	}
	return false
}

// checkEnvName never repeats the value: people paste the secret itself here.
func checkEnvName(d *decoder, n *yaml.Node, field, name string) bool {
	if envRE.MatchString(name) && len(name) <= 128 {
		return true
	}
	d.problem(n, field, "must be the NAME of an environment variable (letters, digits and _, not starting with a "+
		"digit, such as JITBOT_WEBHOOK_SECRET), never the secret itself")
	return false
}

func describeProviders(ps map[string]*Provider) string {
	if len(ps) == 0 {
		return "no providers are declared"
	}
	return "declared providers: " + strings.Join(sortedKeys(ps), ", ")
}

// CloudSettings is the settings block of a cloud provider: string and list-of-string values by key, with
// where each was written so that the adapter's own validation can name the line.
type CloudSettings struct {
	Strings map[string]string
	Lists   map[string][]string
	pos     map[string][2]int
}

// String returns a string setting ("" when absent).
func (c *CloudSettings) String(key string) string { return c.Strings[key] }

// List returns a list setting (nil when absent). A single string is accepted as a one-element list.
func (c *CloudSettings) List(key string) []string {
	if l, ok := c.Lists[key]; ok {
		return l
	}
	if s, ok := c.Strings[key]; ok && s != "" {
		return []string{s}
	}
	return nil
}

// SettingPos returns the line and column of a setting, or of the provider when the setting is absent.
func (p *Provider) SettingPos(key string) (line, column int) {
	if p.Settings != nil {
		if lc, ok := p.Settings.pos[key]; ok {
			return lc[0], lc[1]
		}
	}
	return p.Line, 0
}

// cloudKind is a provider type whose settings are plain strings and lists of strings; their meaning is
// checked by the adapter (CheckPolicy), which policy does not import so that it stays free of SDKs.
func cloudKind(fields ...string) providerKind {
	return providerKind{fields: fields, decode: func(d *decoder, s map[string]pair, _ pair, field string, p *Provider) {
		cs := &CloudSettings{Strings: map[string]string{}, Lists: map[string][]string{}, pos: map[string][2]int{}}
		p.Settings = cs
		for key, kv := range s {
			if isNull(kv.v) {
				continue
			}
			n := resolve(kv.v)
			cs.pos[key] = [2]int{n.Line, n.Column}
			if n.Kind == yaml.SequenceNode {
				if l, ok := d.list(kv, join(field, key), "a, b", nil); ok {
					cs.Lists[key] = l
				}
				continue
			}
			if v := d.str(kv, join(field, key)); v != "" {
				cs.Strings[key] = v
			}
		}
	}}
}
