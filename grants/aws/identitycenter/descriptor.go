package identitycenter

import (
	"context"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerkit"
)

// Descriptor is the "aws-identity-center" provider type.
var Descriptor = providerkit.Define(providerkit.Def[Settings]{
	Type:           "aws-identity-center",
	Validate:       Settings.Validate,
	ValidateTarget: func(_ Settings, t map[string]string) error { return ValidateTarget(t) },
	New: func(ctx context.Context, s Settings, deps providerkit.Deps) (grants.Provider, error) {
		cfg := s.Config()
		cfg.Scopes = scopesOf(deps.Targets()) // as docs/providers/aws.md says: drift reconciliation lists them
		return New(ctx, cfg)
	},
})

// scopesOf are the account/permission-set pairs of the targets of the roles that use a provider: what drift
// reconciliation lists (each pair once, in the targets' order).
func scopesOf(targets []map[string]string) []Scope {
	var out []Scope
	seen := map[Scope]bool{}
	for _, t := range targets {
		s := Scope{AccountID: t[TargetAccountID], PermissionSetARN: t[TargetPermissionSetARN]}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
