package iam

import (
	"context"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerkit"
)

// Descriptor is the "aws-iam" provider type.
var Descriptor = providerkit.Define(providerkit.Def[Settings]{
	Type:           "aws-iam",
	Validate:       Settings.Validate,
	ValidateTarget: Settings.ValidateTarget,
	New: func(ctx context.Context, s Settings, _ providerkit.Deps) (grants.Provider, error) {
		return New(ctx, s.Config())
	},
})
