package azure

import (
	"strings"

	"github.com/jitbot/jitbot/grants/providerkit"
)

// ProviderType is the policy's provider type for this adapter.
const ProviderType = "azure-rbac"

// Settings is the policy block of an "azure-rbac" provider:
//
//	providers:
//	  azure-prod:
//	    type: azure-rbac
//	    azure-rbac:
//	      subscription_id: 1f0e2d3c-4b5a-4697-8877-665544332211
//	      mode: pim            # optional, default rbac
//	      scopes: [...]        # optional, for drift reconciliation; default the subscription
//
// Credentials are not part of the policy: see docs/providers/azure.md.
type Settings struct {
	SubscriptionID string   `policy:"subscription_id" yaml:"subscription_id" json:"subscription_id"`
	Mode           string   `policy:"mode" yaml:"mode,omitempty" json:"mode,omitempty"`
	Scopes         []string `policy:"scopes" yaml:"scopes,omitempty" json:"scopes,omitempty"`
}

// Validate checks the settings.
func (s Settings) Validate() error {
	if !IsGUID(s.SubscriptionID) {
		return providerkit.SettingErrorf("subscription_id", "%q is not a GUID", s.SubscriptionID)
	}
	switch strings.ToLower(s.Mode) {
	case "", ModeRBAC, ModePIM:
	default:
		return providerkit.SettingErrorf("mode", "%q is not rbac or pim", s.Mode)
	}
	for _, sc := range s.Scopes {
		t, err := parseTarget(map[string]string{KeyScope: sc, KeyRoleDefinitionID: "00000000-0000-0000-0000-000000000000"})
		if err != nil {
			return &providerkit.FieldError{Key: "scopes", Err: err}
		}
		if t.SubscriptionID != "" && t.SubscriptionID != strings.ToLower(s.SubscriptionID) {
			return providerkit.SettingErrorf("scopes", "scope %q is outside subscription %s", sc, s.SubscriptionID)
		}
	}
	return nil
}

// Config returns the adapter configuration for these settings (credential and client options left to the
// caller: nil means DefaultAzureCredential and the public cloud).
func (s Settings) Config() Config {
	return Config{SubscriptionID: s.SubscriptionID, Mode: strings.ToLower(s.Mode), Scopes: s.Scopes}
}
