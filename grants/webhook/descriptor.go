package webhook

import (
	"context"
	"fmt"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerkit"
	"github.com/jitbot/jitbot/policy"
)

// Descriptor is the "webhook" provider type. Its settings are built into the policy package
// (policy.WebhookType, policy.WebhookSettings), so that every build reads webhook providers.
var Descriptor = providerkit.Define(providerkit.Def[policy.WebhookSettings]{
	Type:       "webhook",
	PolicyType: &policy.WebhookType,
	New: func(_ context.Context, s policy.WebhookSettings, deps providerkit.Deps) (grants.Provider, error) {
		raw := deps.Getenv(s.SecretEnv)
		if raw == "" {
			return nil, fmt.Errorf("environment variable %s (the webhook signing secret) is not set", s.SecretEnv)
		}
		secret, err := ParseSecret(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.SecretEnv, err)
		}
		return New(Config{URL: s.URL, Secret: secret, Timeout: s.Timeout, PendingTimeout: s.PendingTimeout})
	},
})
