package providers_test

import (
	"testing"

	"github.com/jitbot/jitbot/grants/providers"
	"github.com/jitbot/jitbot/policy"
)

// Every adapter is listed once, and linking the list makes its type known to the policy parser.
func TestAllAreDistinctAndRegistered(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range providers.All {
		if d.Type() == "" || seen[d.Type()] {
			t.Errorf("provider type %q is empty or listed twice", d.Type())
		}
		seen[d.Type()] = true
		if got, ok := providers.Lookup(d.Type()); !ok || got.Type() != d.Type() {
			t.Errorf("Lookup(%q) = %q, %v", d.Type(), got.Type(), ok)
		}
		src := "version: 1\ndefaults: {approval_channel: C0APPROVE}\nproviders:\n  p:\n    type: " + d.Type() + "\n    " + d.Type() + ": {}\n"
		_, err := policy.Parse("policy.yaml", []byte(src))
		if err == nil {
			continue // no roles: a problem is expected, but not an unknown type
		}
		if ps, ok := err.(*policy.Problems); ok {
			for _, p := range *ps {
				if p.Field == "providers.p.type" {
					t.Errorf("%s is not known to the policy parser: %s", d.Type(), p)
				}
			}
		}
	}
	if _, ok := providers.Lookup("ldap"); ok {
		t.Error("Lookup found an adapter for ldap")
	}
}
