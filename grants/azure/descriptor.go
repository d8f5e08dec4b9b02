package azure

import (
	"context"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerkit"
)

// Descriptor is the "azure-rbac" provider type.
var Descriptor = providerkit.Define(providerkit.Def[Settings]{
	Type:           ProviderType,
	Validate:       Settings.Validate,
	ValidateTarget: func(_ Settings, t map[string]string) error { return ValidateTarget(t) },
	New: func(ctx context.Context, s Settings, _ providerkit.Deps) (grants.Provider, error) {
		return New(ctx, s.Config())
	},
})
