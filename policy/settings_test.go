package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Issue 12: a provider setting written as a list where the type takes a single value was dropped without a
// word (aws-iam region: [eu-west-1] signed for us-east-1, kubernetes kubeconfig: [...] used the pod's
// service account). It is a problem naming the file, line and field; a single value where a list is
// expected stays a one-element list.
func TestProviderSettingListWhereSingleValueExpected(t *testing.T) {
	src := strings.Replace(base, "providers:\n", `providers:
  iam:
    type: aws-iam
    principal_from: slack_user_id
    aws-iam: {region: [eu-west-1], scan_users: alice}
  k8s:
    type: kubernetes
    principal_from: slack_user_id
    kubernetes:
      kubeconfig: [/etc/a, /etc/b]
      namespaces: payments
`, 1)
	expect(t, problemsOf(t, src),
		want{8, "providers.iam.aws-iam.region", "expected a single value, got a list"},
		want{13, "providers.k8s.kubernetes.kubeconfig", "expected a single value, got a list"})
}

// A webhook whose secret_env is written empty was accepted by `policy check`, and `serve` then failed to
// start looking for an environment variable with no name. It is required like an absent one.
func TestWebhookEmptySecretEnvIsRequired(t *testing.T) {
	expect(t, problemsOf(t, edit(t, "secret_env: HOOK_SECRET", `secret_env: ""`)),
		want{10, "providers.hook.webhook.secret_env", "is required"})
}

// A provider type is its settings struct: ParseWith reads a type that is not registered, decodes each tagged
// field by its Go type with the file, line and field in every problem, runs the type's check, and records
// the environment variables it names for MissingSecrets.
func TestParseWithTypedSettings(t *testing.T) {
	type ldapSettings struct {
		Hosts   []string      `policy:"hosts"`
		BindEnv string        `policy:"bind_env"`
		Timeout time.Duration `policy:"timeout"`
		Cache   string        // not a setting
	}
	ldap := NewProviderType("ldap", func() ldapSettings { return ldapSettings{Timeout: time.Second} },
		func(s *ldapSettings, c *SettingsCheck) {
			c.Required("bind_env", "the variable holding the bind password")
			c.SecretEnv("bind_env", s.BindEnv, "bind to the directory")
			if s.Timeout > time.Minute {
				c.Problem("timeout", "%s is too long", FormatDuration(s.Timeout))
			}
		})
	if got := strings.Join(ldap.Keys(), ","); got != "hosts,bind_env,timeout" {
		t.Fatalf("keys = %s", got)
	}
	src := func(block string) string {
		return strings.Replace(strings.Replace(base, "    provider: hook\n", "    provider: dir\n", 1), "providers:\n",
			"providers:\n  dir:\n    type: ldap\n    principal_from: slack_user_id\n    ldap:\n"+block, 1)
	}

	if _, err := Parse("policy.yaml", []byte(src("      bind_env: LDAP_BIND\n"))); err == nil || !strings.Contains(err.Error(), `unknown provider type "ldap"`) {
		t.Fatalf("Parse without the type: %v", err)
	}
	p, err := ParseWith("policy.yaml", []byte(src("      hosts: ldap.example.com\n      bind_env: LDAP_BIND\n")), ldap)
	if err != nil {
		t.Fatal(err)
	}
	s := p.Providers["dir"].Settings.(*ldapSettings)
	if len(s.Hosts) != 1 || s.Hosts[0] != "ldap.example.com" || s.BindEnv != "LDAP_BIND" || s.Timeout != time.Second {
		t.Fatalf("settings = %+v", s)
	}
	t.Setenv("LDAP_BIND", "")
	t.Setenv("HOOK_SECRET", "set")
	if ms := p.MissingSecrets(); len(ms) != 1 || ms[0].Field != "providers.dir.ldap.bind_env" || ms[0].Line != 10 {
		t.Fatalf("missing secrets = %v", ms)
	}

	_, err = ParseWith("policy.yaml", []byte(src("      hosts: {a: b}\n      bind_env: [LDAP_BIND]\n      timeout: 2m\n      cache: x\n")), ldap)
	var ps *Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v", err)
	}
	expect(t, *ps,
		want{9, "providers.dir.ldap.hosts", "expected a list such as [a, b], got a mapping"},
		want{10, "providers.dir.ldap.bind_env", "expected a single value, got a list"},
		want{11, "providers.dir.ldap.timeout", "2m is too long"},
		want{12, "providers.dir.ldap", `unknown field "cache"`})
}

func TestNewProviderTypeRefusesUnsupportedSettings(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("a setting of type int was accepted")
		}
	}()
	NewProviderType[struct {
		Port int `policy:"port"`
	}]("bad", nil, nil)
}
