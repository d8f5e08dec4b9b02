package app

import (
	"context"
	"fmt"
	"sort"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providers"
	"github.com/jitbot/jitbot/policy"
)

// TargetVerifier is implemented by adapters that can check a role's target against the live provider without
// changing anything (the Kubernetes adapter: the Role or ClusterRole exists).
type TargetVerifier interface {
	VerifyTarget(ctx context.Context, target map[string]string) error
}

// ProbePolicy connects to the providers whose targets can be verified live and checks every role's target there.
// A target the provider refuses for good (a role that does not exist, a permission the bot lacks) is a problem;
// a provider that cannot be reached or built is a warning: the policy itself may well be right.
func ProbePolicy(ctx context.Context, p *policy.Policy, getenv func(string) string) (problems []policy.Problem, warnings []string) {
	names := make([]string, 0, len(p.Providers))
	for n, pr := range p.Providers {
		// Only adapters whose targets can name something that may not exist, and that reject it silently
		// otherwise, are probed (providerkit.Descriptor.Probe).
		if ad, ok := providers.Lookup(pr.Type); ok && ad.Probe {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		built, err := buildProvider(ctx, p, name, getenv)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("providers.%s: not probed: %v", name, err))
			continue
		}
		v, ok := built.(TargetVerifier)
		if !ok {
			continue
		}
		for _, rn := range p.RoleNames() {
			r, _ := p.Role(rn)
			if r.Provider != name {
				continue
			}
			err := v.VerifyTarget(ctx, r.Target)
			switch {
			case err == nil:
			case grants.IsPermanent(err):
				problems = append(problems, policy.Problem{File: p.File, Line: r.TargetLine, Column: r.TargetColumn, Field: "roles." + rn + ".target",
					Message: fmt.Sprintf("provider %s says: %v", name, err)})
			default:
				warnings = append(warnings, fmt.Sprintf("roles.%s.target: not verified, provider %s did not answer: %v", rn, name, err))
			}
		}
	}
	return problems, warnings
}
