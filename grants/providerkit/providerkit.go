// Package providerkit is how an adapter describes itself to the rest of jitbot: one Descriptor holds its
// provider type's name, its typed settings (decoded and checked by the policy package, with the policy
// file's name, line and field), the checks `jitbot policy check` runs, and its constructor. The adapter
// declares it in its own package (descriptor.go); grants/providers lists every adapter's, and the policy
// package and internal/app read that list.
package providerkit

import (
	"context"
	"errors"
	"fmt"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/policy"
)

// Descriptor is one adapter. Build it with Define.
type Descriptor struct {
	// Policy is how the policy reads the provider type: its name and typed settings.
	Policy policy.ProviderType
	// Probe says whether `jitbot policy check --probe` builds the provider and verifies each role's target live
	// (see internal/app.ProbePolicy): for adapters whose targets can name something that may not exist, and
	// that reject it silently otherwise.
	Probe bool

	validateTarget func(settings any, target map[string]string) error
	build          func(ctx context.Context, settings any, deps Deps) (grants.Provider, error)
}

// Deps is what a constructor gets besides its settings.
type Deps struct {
	// Getenv reads the environment: the secrets the settings name (never the policy file).
	Getenv func(string) string
	// Policy is the whole policy and Provider the provider's name in it, for adapters that need more than
	// their settings (see Targets).
	Policy   *policy.Policy
	Provider string
}

// Targets returns the targets of the roles that use the provider, in the order of the role names.
func (d Deps) Targets() []map[string]string {
	if d.Policy == nil {
		return nil
	}
	var out []map[string]string
	for _, rn := range d.Policy.RoleNames() {
		if r, _ := d.Policy.Role(rn); r != nil && r.Provider == d.Provider {
			out = append(out, r.Target)
		}
	}
	return out
}

// Def is what an adapter says about itself; S is its settings type, whose fields tagged `policy:"key"` are
// the keys of the provider's settings block (see policy.NewProviderType).
type Def[S any] struct {
	// Type is the provider type: the value of `type:` and the name of the settings block.
	Type string
	// PolicyType, when set, is a provider type the policy package has built in (policy.WebhookType), whose
	// settings are S; Check and Validate are then the built-in type's.
	PolicyType *policy.ProviderType
	// Check, when set, validates the settings as they are read with the policy's own helpers: required keys,
	// the environment variables the provider reads (policy.SettingsCheck.Required, SecretEnv).
	Check func(s *S, c *policy.SettingsCheck)
	// Validate, when set, is the adapter's own judgement of the settings, run while the policy is read (after
	// Check), so that its problems come with the others: each *FieldError (SettingErrorf) is reported at its
	// key's line and field, any other error at the settings block. Several problems are errors.Join-ed.
	Validate func(s S) error
	// ValidateTarget, when set, checks a role's target against the settings, reported at the role's target.
	ValidateTarget func(s S, target map[string]string) error
	// Probe: see Descriptor.Probe.
	Probe bool
	// New builds the provider from valid settings.
	New func(ctx context.Context, s S, deps Deps) (grants.Provider, error)
}

// Define turns an adapter's Def into its Descriptor.
func Define[S any](d Def[S]) Descriptor {
	if d.New == nil {
		panic("providerkit: provider type " + d.Type + " has no constructor")
	}
	var pt policy.ProviderType
	if d.PolicyType != nil {
		pt = *d.PolicyType
		if pt.Name() != d.Type {
			panic(fmt.Sprintf("providerkit: provider type %s is declared with the policy's type %s", d.Type, pt.Name()))
		}
		if _, ok := pt.NewSettings().(*S); !ok {
			panic(fmt.Sprintf("providerkit: the policy's settings of provider type %s are a %T, not a %T", d.Type, pt.NewSettings(), new(S)))
		}
	} else {
		check := d.Check
		if d.Validate != nil {
			check = func(s *S, c *policy.SettingsCheck) {
				if d.Check != nil {
					d.Check(s, c)
				}
				report(c, d.Validate(*s))
			}
		}
		pt = policy.NewProviderType[S](d.Type, nil, check)
	}
	desc := Descriptor{Policy: pt, Probe: d.Probe}
	desc.build = func(ctx context.Context, s any, deps Deps) (grants.Provider, error) {
		typed, err := settingsOf[S](d.Type, s)
		if err != nil {
			return nil, err
		}
		return d.New(ctx, *typed, deps)
	}
	if d.ValidateTarget != nil {
		desc.validateTarget = func(s any, t map[string]string) error {
			typed, err := settingsOf[S](d.Type, s)
			if err != nil {
				return err
			}
			return d.ValidateTarget(*typed, t)
		}
	}
	return desc
}

func settingsOf[S any](typ string, s any) (*S, error) {
	typed, ok := s.(*S)
	if !ok || typed == nil {
		return nil, fmt.Errorf("provider type %s: settings are a %T, not a %T", typ, s, new(S))
	}
	return typed, nil
}

// Type is the provider type's name.
func (d Descriptor) Type() string { return d.Policy.Name() }

// ValidateTarget asks the adapter about a role's target, given the decoded settings of its provider.
func (d Descriptor) ValidateTarget(settings any, target map[string]string) error {
	if d.validateTarget == nil {
		return nil
	}
	return d.validateTarget(settings, target)
}

// New builds the provider named deps.Provider from its decoded settings (policy.Provider.Settings).
func (d Descriptor) New(ctx context.Context, settings any, deps Deps) (grants.Provider, error) {
	if d.build == nil {
		return nil, fmt.Errorf("provider type %s has no constructor", d.Type())
	}
	return d.build(ctx, settings, deps)
}

// FieldError is an adapter's problem with one setting: Key is the key of the settings block it is about, so
// that the policy reports it there (file, line and field).
type FieldError struct {
	Key string
	Err error
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// SettingErrorf returns a *FieldError about the setting key.
func SettingErrorf(key, format string, args ...any) error {
	return &FieldError{Key: key, Err: fmt.Errorf(format, args...)}
}

// report reports each problem of an adapter's Validate: joined errors one by one, a *FieldError at its key,
// any other error at the settings block.
func report(c *policy.SettingsCheck, err error) {
	if err == nil {
		return
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			report(c, e)
		}
		return
	}
	if fe, ok := errors.AsType[*FieldError](err); ok {
		c.Problem(fe.Key, "%s", fe.Err)
		return
	}
	c.Problem("", "%s", err)
}
