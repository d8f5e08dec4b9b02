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
	// Type selects the adapter ("webhook", see ProviderType). The settings for a type live in a block named
	// like the type.
	Type string
	// PrincipalFrom says how a Slack user becomes a principal at this provider: PrincipalSlackUserID or
	// PrincipalIdentities (the default). See Policy.Principal.
	PrincipalFrom string
	// Settings are the decoded settings block: a pointer to the settings type of the provider type (such as
	// *WebhookSettings). What the type's check does not judge is validated further by the adapter's
	// descriptor (see internal/app.CheckPolicy).
	Settings any
	// Webhook holds the settings when Type is "webhook" (the same value as Settings).
	Webhook *WebhookSettings
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
	URL string `policy:"url"`
	// SecretEnv is the NAME of the environment variable that holds the request-signing secret.
	SecretEnv string `policy:"secret_env"`
	// Timeout bounds each call; DefaultWebhookTimeout when not set.
	Timeout time.Duration `policy:"timeout"`
	// PendingTimeout is how long one grant or revoke waits, resending, for a receiver that answers
	// {"pending": true} (asynchronous provisioning, docs/webhook.md); 0 waits only within the attempt timeout.
	PendingTimeout time.Duration `policy:"pending_timeout"`
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

// needSecret records that the provider reads the environment variable env at run time, for purpose.
func (p *Provider) needSecret(env string, n *yaml.Node, field, purpose string) {
	p.secrets = append(p.secrets, secretRef{env: env, field: field, purpose: purpose, node: n})
}

// WebhookType is the built-in "webhook" provider type: every build reads it, with or without adapters
// linked. The adapter's descriptor (grants/webhook) builds the provider from these settings.
var WebhookType = NewProviderType("webhook", func() WebhookSettings { return WebhookSettings{Timeout: DefaultWebhookTimeout} }, checkWebhook)

func checkWebhook(w *WebhookSettings, c *SettingsCheck) {
	c.Required("url", "the https URL jitbot calls to grant and revoke access")
	if w.URL != "" && !checkWebhookURL(c.d, c.pairs["url"].v, join(c.field, "url"), w.URL) {
		w.URL = ""
	}

	c.Required("secret_env", "name the environment variable that holds the signing secret (such as "+
		"JITBOT_WEBHOOK_SECRET), so that the receiver can tell calls really come from jitbot")
	if !c.SecretEnv("secret_env", w.SecretEnv, "sign webhook calls") {
		w.SecretEnv = ""
	}

	switch {
	case w.Timeout < 0:
		c.Problem("timeout", "%s is negative; leave it out or use 0 for the default of %s",
			FormatDuration(w.Timeout), FormatDuration(DefaultWebhookTimeout))
	case w.Timeout > MaxWebhookTimeout:
		c.Problem("timeout", "%s is longer than the limit of %s (people in Slack and the "+
			"revocation sweeper wait on each call)", FormatDuration(w.Timeout), FormatDuration(MaxWebhookTimeout))
	case w.Timeout == 0:
		w.Timeout = DefaultWebhookTimeout
	}

	switch {
	case w.PendingTimeout < 0:
		c.Problem("pending_timeout", "%s is negative; leave it out or use 0 to wait only within one attempt",
			FormatDuration(w.PendingTimeout))
	case w.PendingTimeout > MaxWebhookPendingTimeout:
		c.Problem("pending_timeout", "%s is longer than the limit of %s (the binding stays locked while jitbot "+
			"waits; a receiver that needs longer answers pending again and jitbot resumes in a later attempt)",
			FormatDuration(w.PendingTimeout), FormatDuration(MaxWebhookPendingTimeout))
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
