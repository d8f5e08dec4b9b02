package kube

import (
	"context"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerkit"
)

// Descriptor is the "kubernetes" provider type. `jitbot policy check --probe` verifies its targets live: a
// Role or ClusterRole that does not exist is otherwise only found when a grant is refused.
var Descriptor = providerkit.Define(providerkit.Def[Settings]{
	Type:           "kubernetes",
	Validate:       Settings.Validate,
	ValidateTarget: Settings.ValidateTarget,
	Probe:          true,
	New: func(ctx context.Context, s Settings, _ providerkit.Deps) (grants.Provider, error) {
		return New(ctx, s.Config())
	},
})
