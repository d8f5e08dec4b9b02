package app

import (
	"context"
	"fmt"
	"sort"

	"github.com/jitbot/jitbot/grants"
	awsiam "github.com/jitbot/jitbot/grants/aws/iam"
	"github.com/jitbot/jitbot/grants/aws/identitycenter"
	"github.com/jitbot/jitbot/grants/azure"
	"github.com/jitbot/jitbot/grants/gcp"
	"github.com/jitbot/jitbot/grants/kube"
	"github.com/jitbot/jitbot/grants/webhook"
	"github.com/jitbot/jitbot/policy"
)

// adapter is how one provider type is validated and built. The policy package only parses settings; their
// meaning is checked here by the adapter that will use them, so `policy check` and `serve` agree.
type adapter struct {
	settings func(s *policy.CloudSettings) error
	target   func(s *policy.CloudSettings, target map[string]string) error
	build    func(ctx context.Context, pr *policy.Provider, getenv func(string) string) (grants.Provider, error)
	// buildFor, when set, is used instead of build by adapters that need the rest of the policy (the targets
	// of the roles that use the provider named name).
	buildFor func(ctx context.Context, p *policy.Policy, name string, getenv func(string) string) (grants.Provider, error)
}

// identityCenterScopes are the account/permission-set pairs of the roles that use the provider named name:
// what drift reconciliation lists (each pair once, in a stable order).
func identityCenterScopes(p *policy.Policy, name string) []identitycenter.Scope {
	var out []identitycenter.Scope
	seen := map[identitycenter.Scope]bool{}
	for _, rn := range p.RoleNames() {
		r, _ := p.Role(rn)
		if r == nil || r.Provider != name {
			continue
		}
		s := identitycenter.Scope{AccountID: r.Target[identitycenter.TargetAccountID], PermissionSetARN: r.Target[identitycenter.TargetPermissionSetARN]}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func identityCenterSettings(s *policy.CloudSettings) identitycenter.Settings {
	return identitycenter.Settings{InstanceARN: s.String("instance_arn"), IdentityStoreID: s.String("identity_store_id"), Region: s.String("region"), Endpoint: s.String("endpoint")}
}

func iamSettings(s *policy.CloudSettings) awsiam.Settings {
	return awsiam.Settings{Region: s.String("region"), Endpoint: s.String("endpoint"), ScanUsers: s.List("scan_users")}
}

func gcpSettings(s *policy.CloudSettings) gcp.Settings {
	return gcp.Settings{Endpoint: s.String("endpoint"), Scopes: s.List("scopes")}
}

func azureSettings(s *policy.CloudSettings) azure.Settings {
	return azure.Settings{SubscriptionID: s.String("subscription_id"), Mode: s.String("mode"), Scopes: s.List("scopes")}
}

func kubeSettings(s *policy.CloudSettings) kube.Settings {
	return kube.Settings{Kubeconfig: s.String("kubeconfig"), Context: s.String("context"), Namespaces: s.List("namespaces")}
}

var adapters = map[string]adapter{
	"webhook": {
		build: func(_ context.Context, pr *policy.Provider, getenv func(string) string) (grants.Provider, error) {
			raw := getenv(pr.Webhook.SecretEnv)
			if raw == "" {
				return nil, fmt.Errorf("environment variable %s (the webhook signing secret) is not set", pr.Webhook.SecretEnv)
			}
			secret, err := webhook.ParseSecret(raw)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", pr.Webhook.SecretEnv, err)
			}
			return webhook.New(webhook.Config{URL: pr.Webhook.URL, Secret: secret, Timeout: pr.Webhook.Timeout,
				PendingTimeout: pr.Webhook.PendingTimeout})
		},
	},
	"aws-identity-center": {
		settings: func(s *policy.CloudSettings) error { return identityCenterSettings(s).Validate() },
		target:   func(_ *policy.CloudSettings, t map[string]string) error { return identitycenter.ValidateTarget(t) },
		build: func(ctx context.Context, pr *policy.Provider, _ func(string) string) (grants.Provider, error) {
			return identitycenter.New(ctx, identityCenterSettings(pr.Settings).Config())
		},
		buildFor: func(ctx context.Context, p *policy.Policy, name string, _ func(string) string) (grants.Provider, error) {
			cfg := identityCenterSettings(p.Providers[name].Settings).Config()
			cfg.Scopes = identityCenterScopes(p, name) // as docs/providers/aws.md says: drift reconciliation lists them
			return identitycenter.New(ctx, cfg)
		},
	},
	"aws-iam": {
		settings: func(s *policy.CloudSettings) error { return iamSettings(s).Validate() },
		target:   func(s *policy.CloudSettings, t map[string]string) error { return iamSettings(s).ValidateTarget(t) },
		build: func(ctx context.Context, pr *policy.Provider, _ func(string) string) (grants.Provider, error) {
			return awsiam.New(ctx, iamSettings(pr.Settings).Config())
		},
	},
	"gcp-iam": {
		settings: func(s *policy.CloudSettings) error { return gcpSettings(s).Validate() },
		target:   func(_ *policy.CloudSettings, t map[string]string) error { return gcp.ValidateTarget(t) },
		build: func(ctx context.Context, pr *policy.Provider, _ func(string) string) (grants.Provider, error) {
			return gcp.New(ctx, gcpSettings(pr.Settings).Config())
		},
	},
	"azure-rbac": {
		settings: func(s *policy.CloudSettings) error { return azureSettings(s).Validate() },
		target:   func(_ *policy.CloudSettings, t map[string]string) error { return azure.ValidateTarget(t) },
		build: func(ctx context.Context, pr *policy.Provider, _ func(string) string) (grants.Provider, error) {
			return azure.New(ctx, azureSettings(pr.Settings).Config())
		},
	},
	"kubernetes": {
		settings: func(s *policy.CloudSettings) error { return kubeSettings(s).Validate() },
		target:   func(s *policy.CloudSettings, t map[string]string) error { return kubeSettings(s).ValidateTarget(t) },
		build: func(ctx context.Context, pr *policy.Provider, _ func(string) string) (grants.Provider, error) {
			return kube.New(ctx, kubeSettings(pr.Settings).Config())
		},
	},
}

// CheckPolicy asks each provider's adapter about its settings and about the targets of the roles that use
// it, and reports problems with the policy file's name, line and field.
func CheckPolicy(p *policy.Policy) []policy.Problem {
	var out []policy.Problem
	names := make([]string, 0, len(p.Providers))
	for n := range p.Providers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		pr := p.Providers[name]
		ad, ok := adapters[pr.Type]
		if !ok {
			out = append(out, policy.Problem{File: p.File, Line: pr.Line, Field: "providers." + name + ".type",
				Message: fmt.Sprintf("provider type %q has no adapter in this build of jitbot", pr.Type)})
			continue
		}
		if ad.settings != nil && pr.Settings != nil {
			if err := ad.settings(pr.Settings); err != nil {
				out = append(out, policy.Problem{File: p.File, Line: pr.Line, Field: "providers." + name + "." + pr.Type, Message: err.Error()})
			}
		}
	}
	for _, rn := range p.RoleNames() {
		r, _ := p.Role(rn)
		pr, ok := p.Providers[r.Provider]
		if !ok {
			continue
		}
		ad, ok := adapters[pr.Type]
		if !ok || ad.target == nil || pr.Settings == nil {
			continue
		}
		if err := ad.target(pr.Settings, r.Target); err != nil {
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
		pr := p.Providers[name]
		var prov grants.Provider
		var err error
		if ad := adapters[pr.Type]; ad.buildFor != nil {
			prov, err = ad.buildFor(ctx, p, name, getenv)
		} else {
			prov, err = ad.build(ctx, pr, getenv)
		}
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", name, err)
		}
		out[name] = prov
	}
	return out, nil
}
