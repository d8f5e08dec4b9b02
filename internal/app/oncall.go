package app

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/oncall"
	"github.com/jitbot/jitbot/oncall/opsgenie"
	"github.com/jitbot/jitbot/oncall/pagerduty"
	"github.com/jitbot/jitbot/oncall/static"
	"github.com/jitbot/jitbot/policy"
)

// BuildOnCall builds the on-call resolver the policy's oncall_sources describe (nil when there are none).
// emails supplies Slack profile emails for sources with mapping: email.
func BuildOnCall(p *policy.Policy, getenv func(string) string, emails approvals.EmailResolver) (approvals.OnCall, error) {
	if len(p.OnCallSources) == 0 {
		return nil, nil
	}
	backends := map[string]oncall.Backend{}
	names := make([]string, 0, len(p.OnCallSources))
	for n := range p.OnCallSources {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		s := p.OnCallSources[name]
		var src oncall.Source
		var err error
		label := s.Type
		switch s.Type {
		case "pagerduty":
			label = "PagerDuty"
			src, err = pagerduty.New(pagerduty.Config{BaseURL: s.BaseURL, APIKey: getenv(s.APIKeyEnv), ResolveEmails: s.Mapping == "email"})
		case "opsgenie":
			label = "Opsgenie"
			src, err = opsgenie.New(opsgenie.Config{BaseURL: s.BaseURL, APIKey: getenv(s.APIKeyEnv), IdentifierType: s.IdentifierType})
		case "static":
			label = "the on-call rota"
			var entries []static.Entry
			if err = s.DecodeRota(&entries); err == nil {
				src, err = static.New(entries)
			}
		default:
			err = fmt.Errorf("unknown type %q", s.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("on-call source %s: %w", name, err)
		}
		backends[name] = oncall.Backend{Source: src, Mapping: oncall.Mapping{Mode: oncall.MappingMode(s.Mapping), Users: s.Users}, Label: label}
	}
	opts := oncall.Options{Sources: backends}
	if emails != nil {
		// mapping: email is the policy's explicit opt-in to trusting Slack profile emails.
		opts.Email = func(ctx context.Context, user string) (string, bool, error) {
			e, err := emails.Email(ctx, user)
			return e, err == nil && e != "", err
		}
	}
	r, err := oncall.NewResolver(opts)
	if err != nil {
		return nil, fmt.Errorf("on-call sources: %w", err)
	}
	return onCallChecker{r}, nil
}

// onCallChecker adapts the resolver to approvals.OnCall. A misconfigured source (bad key, unknown schedule)
// is a refusal whatever on_source_error says: only an unreachable source is the policy's choice.
type onCallChecker struct{ r *oncall.Resolver }

func (c onCallChecker) Check(ctx context.Context, user string, rule policy.BreakGlass) (approvals.OnCallAnswer, error) {
	d, err := c.r.IsOnCall(ctx, user, oncall.Requirement{Source: rule.Source, Schedules: rule.Schedules,
		EscalationPolicies: rule.EscalationPolicies, MaxLevel: rule.MaxLevel})
	if errors.Is(err, oncall.ErrConfig) {
		return approvals.OnCallAnswer{Reason: "the on-call source is misconfigured (" + err.Error() + "); an admin has to fix it"}, nil
	}
	if err != nil {
		return approvals.OnCallAnswer{}, err
	}
	return approvals.OnCallAnswer{OnCall: d.OnCall, Level: d.Level, Reason: d.Reason}, nil
}
