package app

import (
	"context"
	"fmt"
	"sort"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerkit"
	"github.com/jitbot/jitbot/grants/providers"
	"github.com/jitbot/jitbot/policy"
)

// The adapters come from one list, grants/providers.All (linking it also registers their settings with the
// policy package). The policy package only reads the settings; the adapter that will use them judges their
// meaning and the roles' targets here, so `policy check` and `serve` agree.

// CheckPolicy asks each provider's adapter (its descriptor in grants/providers) about the targets of the roles
// that use it, and reports problems with the policy file's name, line and field. (The adapters judge their
// settings while the policy is read: policy.Parse reports those.)
func CheckPolicy(p *policy.Policy) []policy.Problem {
	var out []policy.Problem
	names := make([]string, 0, len(p.Providers))
	for n := range p.Providers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		pr := p.Providers[name]
		if _, ok := providers.Lookup(pr.Type); !ok {
			out = append(out, policy.Problem{File: p.File, Line: pr.Line, Field: "providers." + name + ".type",
				Message: fmt.Sprintf("provider type %q has no adapter in this build of jitbot", pr.Type)})
		}
	}
	for _, rn := range p.RoleNames() {
		r, _ := p.Role(rn)
		pr, ok := p.Providers[r.Provider]
		if !ok {
			continue
		}
		ad, ok := providers.Lookup(pr.Type)
		if !ok || pr.Settings == nil {
			continue
		}
		if err := ad.ValidateTarget(pr.Settings, r.Target); err != nil {
			out = append(out, policy.Problem{File: p.File, Line: r.TargetLine, Column: r.TargetColumn, Field: "roles." + rn + ".target",
				Message: fmt.Sprintf("not a valid %s target: %s", pr.Type, err)})
		}
	}
	return out
}

// BuildProviders constructs one adapter per provider declared in the policy. A secret that is not set is a
// start-up error naming the variable (never its value).
func BuildProviders(ctx context.Context, p *policy.Policy, getenv func(string) string) (map[string]grants.Provider, error) {
	if probs := CheckPolicy(p); len(probs) > 0 {
		ps := policy.Problems(probs)
		return nil, fmt.Errorf("policy is invalid:\n%w", &ps)
	}
	out := make(map[string]grants.Provider, len(p.Providers))
	names := make([]string, 0, len(p.Providers))
	for n := range p.Providers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		prov, err := buildProvider(ctx, p, name, getenv)
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", name, err)
		}
		out[name] = prov
	}
	return out, nil
}

// buildProvider constructs the provider named name with its adapter.
func buildProvider(ctx context.Context, p *policy.Policy, name string, getenv func(string) string) (grants.Provider, error) {
	pr := p.Providers[name]
	ad, ok := providers.Lookup(pr.Type)
	if !ok {
		return nil, fmt.Errorf("provider type %q has no adapter in this build of jitbot", pr.Type)
	}
	return ad.New(ctx, pr.Settings, providerkit.Deps{Getenv: getenv, Policy: p, Provider: name})
}
