package policy

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"
)

// base is a minimal valid policy. Cases change it with strings.Replace, keeping line numbers stable unless
// they add lines.
const base = `version: 1
defaults:
  approval_channel: C0APPROVE
providers:
  hook:
    type: webhook
    principal_from: slack_user_id
    webhook:
      url: https://hooks.example.com/jit
      secret_env: HOOK_SECRET
roles:
  db:
    provider: hook
    target: {db: prod}
    requesters: {users: [U01A]}
    approvers: {users: [U02B]}
`

func edit(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(base, old) {
		t.Fatalf("base policy has no %q", old)
	}
	return strings.Replace(base, old, new, 1)
}

type want struct {
	line  int
	field string
	msg   string // substring of the message
}

// problemsOf parses src and returns its problems, failing if it parsed.
func problemsOf(t *testing.T, src string) Problems {
	t.Helper()
	p, err := Parse("policy.yaml", []byte(src))
	if err == nil {
		t.Fatalf("parsed without problems: %+v", p)
	}
	var ps *Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error is %T, not *Problems: %v", err, err)
	}
	return *ps
}

func expect(t *testing.T, got Problems, wants ...want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Errorf("got %d problems, want %d:\n%s", len(got), len(wants), got.Error())
	}
	for i, w := range wants {
		if i >= len(got) {
			break
		}
		g := got[i]
		if g.File != "policy.yaml" || g.Line != w.line || g.Field != w.field || !strings.Contains(g.Message, w.msg) {
			t.Errorf("problem %d:\n got  %s\n want policy.yaml:%d: %s: ...%s...", i, g, w.line, w.field, w.msg)
		}
	}
}

func TestBaseIsValid(t *testing.T) {
	p, err := Parse("policy.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	r, ok := p.Role("db")
	if !ok {
		t.Fatal("role db missing")
	}
	if r.Approvals != 1 || r.DefaultDuration != time.Hour || r.MaxDuration != 4*time.Hour || r.PendingTTL != 30*time.Minute ||
		r.ApprovalChannel != "C0APPROVE" || r.AuditChannel != "" || r.Line != 12 {
		t.Errorf("built-in defaults not applied: %+v", r)
	}
	if w := p.Providers["hook"].Webhook; w.Timeout != DefaultWebhookTimeout || w.SecretEnv != "HOOK_SECRET" {
		t.Errorf("webhook settings: %+v", w)
	}
}

func TestExampleParses(t *testing.T) {
	t.Setenv("JITBOT_WEBHOOK_SECRET", "test-secret")
	p, err := Load("../examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if w := p.Warnings(); len(w) != 0 {
		t.Errorf("example has warnings:\n%s", (*Problems)(&w).Error())
	}
	if got := strings.Join(p.RoleNames(), ","); got != "prod-db-admin,prod-db-readonly,staging-deploy" {
		t.Errorf("RoleNames = %s", got)
	}
	admin, _ := p.Role("prod-db-admin")
	if admin.Approvals != 2 || admin.PendingTTL != 15*time.Minute || admin.Target["permission"] != "admin" ||
		admin.ApprovalChannel != "C0123APPROVALS" || admin.AuditChannel != "C0123AUDIT" {
		t.Errorf("prod-db-admin: %+v", admin)
	}
	ro, _ := p.Role("prod-db-readonly")
	if ro.Approvals != 1 || ro.MaxDuration != 8*time.Hour || ro.PendingTTL != 30*time.Minute {
		t.Errorf("prod-db-readonly: %+v", ro)
	}
	st, _ := p.Role("staging-deploy")
	if st.ApprovalChannel != "C0789STAGING" || st.DefaultDuration != 30*time.Minute {
		t.Errorf("staging-deploy: %+v", st)
	}
	if w := p.Providers["access-webhook"].Webhook; w.URL != "http://127.0.0.1:9099/jitbot" || w.SecretEnv != "JITBOT_WEBHOOK_SECRET" {
		t.Errorf("webhook: %+v", w)
	}
	if m, ok := p.StaticGroup("S0456DBA"); !ok || len(m) != 3 {
		t.Errorf("StaticGroup(S0456DBA) = %v, %v", m, ok)
	}
}

func TestExampleWarnsAboutUnsetSecret(t *testing.T) {
	t.Setenv("JITBOT_WEBHOOK_SECRET", "")
	os.Unsetenv("JITBOT_WEBHOOK_SECRET")
	p, err := Load("../examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, got := range [][]Problem{p.Warnings(), p.MissingSecrets()} {
		if len(got) != 1 {
			t.Fatalf("got %d, want 1: %v", len(got), got)
		}
		g := got[0]
		if g.File != "../examples/policy.yaml" || g.Line != 27 || g.Field != "providers.access-webhook.webhook.secret_env" ||
			!strings.Contains(g.Message, "environment variable JITBOT_WEBHOOK_SECRET is not set") {
			t.Errorf("got %s", g)
		}
	}
	t.Setenv("JITBOT_WEBHOOK_SECRET", "  ")
	if got := p.MissingSecrets(); len(got) != 1 || !strings.Contains(got[0].Message, "is empty") {
		t.Errorf("empty secret: %v", got)
	}
	t.Setenv("JITBOT_WEBHOOK_SECRET", "s3cret")
	if got := p.MissingSecrets(); len(got) != 0 {
		t.Errorf("secret set: %v", got)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestValidation(t *testing.T) {
	role := "    approvers: {users: [U02B]}\n"
	cases := []struct {
		name string
		src  string
		want []want
	}{
		{"version missing", edit(t, "version: 1\n", "# no version\n"),
			[]want{{2, "version", "is required"}}}, // reported where the mapping starts
		{"version 2", edit(t, "version: 1", "version: 2"),
			[]want{{1, "version", "version 2 is not supported"}}},
		{"version not a number", edit(t, "version: 1", "version: one"),
			[]want{{1, "version", `"one" is not a whole number`}}},
		{"provider missing", edit(t, "    provider: hook\n", ""),
			[]want{{12, "roles.db.provider", "is required"}}},
		{"provider unknown", edit(t, "provider: hook", "provider: hooky"),
			[]want{{13, "roles.db.provider", `unknown provider "hooky" (declared providers: hook)`}}},
		{"target missing", edit(t, "    target: {db: prod}\n", ""),
			[]want{{12, "roles.db.target", "is required"}}},
		{"target empty", edit(t, "target: {db: prod}", "target: {}"),
			[]want{{14, "roles.db.target", "is empty"}}},
		{"target is a list", edit(t, "target: {db: prod}", "target: [prod]"),
			[]want{{14, "roles.db.target", "expected a mapping of target keys to values"}}},
		{"target secret key", edit(t, "target: {db: prod}", "target: {db: prod, api_key: abc123}"),
			[]want{{14, "roles.db.target.api_key", "looks like a credential"}}},
		{"requesters missing", edit(t, "    requesters: {users: [U01A]}\n", ""),
			[]want{{12, "roles.db.requesters", "is required"}}},
		{"requesters empty", edit(t, "requesters: {users: [U01A]}", "requesters: {users: [], groups: []}"),
			[]want{{15, "roles.db.requesters", "lists nobody"}}},
		{"approvers empty", edit(t, "approvers: {users: [U02B]}", "approvers: {}"),
			[]want{{16, "roles.db.approvers", "lists nobody"}}},
		{"users not a list", edit(t, "users: [U01A]", "users: U01A"),
			[]want{{15, "roles.db.requesters.users", "expected a list such as"}}},
		{"bad user id", edit(t, "users: [U01A]", "users: [U01A, alice]"),
			[]want{{15, "roles.db.requesters.users[1]", `"alice" is not a Slack user id`}}},
		{"group id as user", edit(t, "users: [U02B]", "users: [S0SRE]"),
			[]want{{16, "roles.db.approvers.users[0]", "is a user group id, not a user id"}}},
		{"bad group id", edit(t, "requesters: {users: [U01A]}", "requesters: {groups: ['@sre']}"),
			[]want{{15, "roles.db.requesters.groups[0]", `"@sre" is not a Slack user group id`}}},
		{"bad channel", edit(t, "approval_channel: C0APPROVE", "approval_channel: '#approvals'"),
			[]want{{3, "defaults.approval_channel", `"#approvals" is not a Slack channel id`}}},
		{"no approval channel", edit(t, "  approval_channel: C0APPROVE\n", "  audit_channel: G0AUDIT\n"),
			[]want{{12, "roles.db.approval_channel", "is required: set it on the role or under defaults"}}},
		{"approvals zero", base + "    approvals: 0\n",
			[]want{{17, "roles.db.approvals", "must be at least 1"}}},
		{"approvals exceed approver users", edit(t, role, "    approvers: {users: [U02B, U03C, U02B]}\n    approvals: 3\n"),
			[]want{{17, "roles.db.approvals", "needs 3 approvals but only 2 approvers are listed"}}},
		{"approvals from defaults exceed", edit(t, "  approval_channel: C0APPROVE\n", "  approval_channel: C0APPROVE\n  approvals: 2\n"),
			[]want{{17, "roles.db.approvals", "needs 2 approvals but only 1 approver is listed (approvals is inherited from defaults)"}}},
		{"approvals with slack groups are not counted", edit(t, role, "    approvers: {users: [U02B], groups: [S0DBA]}\n    approvals: 5\n"),
			nil},
		{"approvals counted through static groups", "groups:\n  S0DBA: [U02B, U03C]\n" + edit(t, role, "    approvers: {users: [U02B], groups: [S0DBA]}\n    approvals: 3\n"),
			[]want{{19, "roles.db.approvals", "needs 3 approvals but only 2 approvers are listed (counting the members of static groups)"}}},
		{"bad duration", base + "    max_duration: 4x\n",
			[]want{{17, "roles.db.max_duration", `"4x" is not a duration (use Go syntax such as 90m, 1h30m or 45s`}}},
		{"duration without unit", base + "    max_duration: 30\n",
			[]want{{17, "roles.db.max_duration", "missing unit"}}},
		{"negative duration", base + "    default_duration: -1h\n",
			[]want{{17, "roles.db.default_duration", "-1h must be positive"}}},
		{"zero pending_ttl", base + "    pending_ttl: 0s\n",
			[]want{{17, "roles.db.pending_ttl", "0s must be positive"}}},
		{"default over max", base + "    default_duration: 2h\n    max_duration: 90m\n",
			[]want{{17, "roles.db.default_duration", "default_duration 2h is longer than max_duration 1h30m"}}},
		{"default over built-in max", base + "    default_duration: 8h\n",
			[]want{{17, "roles.db.default_duration", "(max_duration is the built-in default"}}},
		{"short max lowers built-in default", base + "    max_duration: 20m\n", nil},
		{"max over hard cap", base + "    max_duration: 8d\n",
			[]want{{17, "roles.db.max_duration", "8d is over the hard cap of 7d"}}},
		{"defaults default over max", edit(t, "  approval_channel: C0APPROVE\n", "  approval_channel: C0APPROVE\n  default_duration: 2h\n  max_duration: 1h\n"),
			[]want{{4, "defaults.default_duration", "2h is longer than max_duration 1h"}}},
		{"bad role name", edit(t, "  db:\n", "  Prod DB:\n"),
			[]want{{12, "roles.Prod DB", `"Prod DB" is not a valid role name`}}},
		{"no roles", strings.Split(base, "roles:")[0] + "roles: {}\n",
			[]want{{11, "roles", "no roles are defined"}}},
		{"roles is a list", strings.Split(base, "roles:")[0] + "roles:\n  - db\n",
			[]want{{12, "roles", "expected a mapping of role names to roles, got a list"}}},
		{"duplicate key", base + "    provider: hook\n",
			[]want{{17, "roles.db.provider", `duplicate key "provider" (first set on line 13)`}}},
		{"unknown type", edit(t, "type: webhook", "type: ldap"),
			[]want{{6, "providers.hook.type", `unknown provider type "ldap" (known types: aws-iam, aws-identity-center, azure-rbac, gcp-iam, kubernetes, webhook)`}}},
		{"type missing", edit(t, "    type: webhook\n", ""),
			[]want{{5, "providers.hook.type", "is required (known types: aws-iam, aws-identity-center, azure-rbac, gcp-iam, kubernetes, webhook)"}}},
		{"webhook block missing", strings.Replace(base, "    webhook:\n      url: https://hooks.example.com/jit\n      secret_env: HOOK_SECRET\n", "", 1),
			[]want{{5, "providers.hook.webhook", "webhook settings are required"}}},
		{"url missing", edit(t, "      url: https://hooks.example.com/jit\n", ""),
			[]want{{8, "providers.hook.webhook.url", "is required"}}},
		{"url relative", edit(t, "https://hooks.example.com/jit", "/jit"),
			[]want{{9, "providers.hook.webhook.url", "is not an absolute http(s) URL"}}},
		{"url plain http", edit(t, "https://hooks.example.com/jit", "http://hooks.example.com/jit"),
			[]want{{9, "providers.hook.webhook.url", "uses plain http: grant data and signed calls would cross the network unencrypted"}}},
		{"url http localhost", edit(t, "https://hooks.example.com/jit", "http://localhost:9099/jit"), nil},
		{"url http ::1", edit(t, "https://hooks.example.com/jit", "http://[::1]:9099/jit"), nil},
		{"url with credentials", edit(t, "https://hooks.example.com/jit", "https://bot:pa55@hooks.example.com/jit"),
			[]want{{9, "providers.hook.webhook.url", "must not contain credentials"}}},
		{"url with token query", edit(t, "https://hooks.example.com/jit", "https://hooks.example.com/jit?access_token=abc"),
			[]want{{9, "providers.hook.webhook.url", `query parameter "access_token" looks like a credential`}}},
		{"secret_env missing", edit(t, "      secret_env: HOOK_SECRET\n", ""),
			[]want{{8, "providers.hook.webhook.secret_env", "is required"}}},
		{"secret_env holds a secret", edit(t, "secret_env: HOOK_SECRET", "secret_env: 'xoxb-1234-abcd'"),
			[]want{{10, "providers.hook.webhook.secret_env", "must be the NAME of an environment variable"}}},
		{"secret literal", edit(t, "      secret_env: HOOK_SECRET\n", "      secret: 'sup3r-s3cret'\n"),
			[]want{{8, "providers.hook.webhook.secret_env", "is required"}, {10, "providers.hook.webhook.secret", `"secret" looks like a credential`}}},
		{"password literal on provider", edit(t, "    type: webhook\n", "    type: webhook\n    password: hunter2\n"),
			[]want{{7, "providers.hook.password", "secret_env"}}},
		{"timeout negative", edit(t, "      secret_env: HOOK_SECRET\n", "      secret_env: HOOK_SECRET\n      timeout: -5s\n"),
			[]want{{11, "providers.hook.webhook.timeout", "-5s is negative"}}},
		{"timeout too long", edit(t, "      secret_env: HOOK_SECRET\n", "      secret_env: HOOK_SECRET\n      timeout: 2m\n"),
			[]want{{11, "providers.hook.webhook.timeout", "2m is longer than the limit of 1m"}}},
		{"pending_timeout negative", edit(t, "      secret_env: HOOK_SECRET\n", "      secret_env: HOOK_SECRET\n      pending_timeout: -1m\n"),
			[]want{{11, "providers.hook.webhook.pending_timeout", "-1m is negative"}}},
		{"pending_timeout too long", edit(t, "      secret_env: HOOK_SECRET\n", "      secret_env: HOOK_SECRET\n      pending_timeout: 20m\n"),
			[]want{{11, "providers.hook.webhook.pending_timeout", "20m is longer than the limit of 15m"}}},
		{"pending_timeout list", edit(t, "      secret_env: HOOK_SECRET\n", "      secret_env: HOOK_SECRET\n      pending_timeout: [5m]\n"),
			[]want{{11, "providers.hook.webhook.pending_timeout", "expected a single value"}}},
		{"pending_timeout", edit(t, "      secret_env: HOOK_SECRET\n", "      secret_env: HOOK_SECRET\n      pending_timeout: 5m\n"), nil},
		{"principal_from email", edit(t, "principal_from: slack_user_id", "principal_from: email"),
			[]want{{7, "providers.hook.principal_from", "email mapping is spelled slack_email"}}},
		{"principal_from unknown", edit(t, "principal_from: slack_user_id", "principal_from: ldap"),
			[]want{{7, "providers.hook.principal_from", `"ldap" is not a principal source`}}},
		{"identity for unknown provider", base + "identities:\n  U01A: {aws: alice}\n",
			[]want{{18, "identities.U01A.aws", `unknown provider "aws"`}}},
		{"identity for bad user", base + "identities:\n  alice: {hook: alice}\n",
			[]want{{18, "identities.alice", `"alice" is not a Slack user id`}}},
		{"static group with bad member", "groups:\n  S0SRE: [U01A, bob]\n" + base,
			[]want{{2, "groups.S0SRE[1]", `"bob" is not a Slack user id`}}},
		{"unknown top-level field", base + "role:\n  x: {}\n",
			[]want{{17, "", `unknown field "role" (did you mean "roles"?); known fields: version, defaults, providers, groups, identities, oncall_sources, issuers, workloads, roles`}}},
		{"merge keys", "x-common: &common\n  provider: hook\n" + base, // the anchor block is itself an unknown field
			[]want{{1, "", `unknown field "x-common"`}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.want == nil {
				if _, err := Parse("policy.yaml", []byte(c.src)); err != nil {
					t.Fatalf("unexpected problems:\n%v", err)
				}
				return
			}
			expect(t, problemsOf(t, c.src), c.want...)
		})
	}
}

func TestUnknownField(t *testing.T) {
	src := edit(t, "    approvers: {users: [U02B]}\n", "    aprovers: {users: [U02B]}\n")
	got := problemsOf(t, src)
	expect(t, got,
		want{12, "roles.db.approvers", "is required"},
		want{16, "roles.db", `unknown field "aprovers" (did you mean "approvers"?); known fields: description, provider, target, requesters, approvers,`},
	)
	if got[1].Column != 5 {
		t.Errorf("column = %d, want 5", got[1].Column)
	}
}

func TestSyntaxError(t *testing.T) {
	src := edit(t, "    target: {db: prod}\n", "    target: {db: prod\n")
	got := problemsOf(t, src)
	if len(got) != 1 || got[0].Line == 0 || !strings.HasPrefix(got[0].Message, "YAML syntax error: ") {
		t.Fatalf("got %v", got)
	}
	src = edit(t, "    provider: hook\n", "\tprovider: hook\n")
	got = problemsOf(t, src)
	if len(got) != 1 || got[0].Line != 13 || !strings.Contains(got[0].Message, "tab") {
		t.Fatalf("got %v", got)
	}
}

func TestEmptyAndMultiDocument(t *testing.T) {
	expect(t, problemsOf(t, ""), want{0, "", "the policy file is empty"})
	expect(t, problemsOf(t, "# only a comment\n"), want{0, "", "the policy file is empty"})
	expect(t, problemsOf(t, base+"---\nversion: 1\n"), want{17, "", "a single YAML document"})
	expect(t, problemsOf(t, "- a\n- b\n"), want{1, "", "expected a mapping with version"})
}

func TestMultipleProblemsSortedByLine(t *testing.T) {
	src := edit(t, "principal_from: slack_user_id", "principal_from: email") + "    max_duration: 4x\n    approvals: 0\n"
	src = strings.Replace(src, "version: 1", "version: 3", 1)
	expect(t, problemsOf(t, src),
		want{1, "version", "version 3 is not supported"},
		want{7, "providers.hook.principal_from", "email"},
		want{17, "roles.db.max_duration", `"4x" is not a duration`},
		want{18, "roles.db.approvals", "must be at least 1"},
	)
}

func TestBrokenTestdata(t *testing.T) {
	_, err := Load("testdata/broken.yaml")
	var ps *Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v", err)
	}
	wants := []want{
		{4, "defaults.approval_channel", "is not a Slack channel id"},
		{9, "providers.access-webhook.webhook.url", "uses plain http"},
		{11, "providers.access-webhook.webhook.token", "looks like a credential"},
		{13, "roles.prod-db-admin.approvers", "is required"},
		{16, "roles.prod-db-admin.requesters.users[1]", `"alice" is not a Slack user id`},
		{17, "roles.prod-db-admin", `unknown field "aprovers"`},
		{18, "roles.prod-db-admin.max_duration", `"4x" is not a duration`},
		{19, "roles.Prod_Readonly", "is not a valid role name"},
		{20, "roles.Prod_Readonly.provider", `unknown provider "aws"`},
		{24, "roles.Prod_Readonly.approvals", "needs 3 approvals but only 2 approvers are listed"},
		{25, "roles.Prod_Readonly.default_duration", "longer than max_duration 4h"},
	}
	s := err.Error()
	for i := range *ps {
		(*ps)[i].File = "policy.yaml" // expect compares against the name Parse is given in other tests
	}
	expect(t, *ps, wants...)
	if !strings.HasPrefix(s, "testdata/broken.yaml:4:21: defaults.approval_channel: ") || strings.Count(s, "\n") != len(wants)-1 {
		t.Errorf("Error() =\n%s", s)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Error("a secret value was repeated in a problem message")
	}
}

func TestSecretValuesAreNeverRepeated(t *testing.T) {
	for _, src := range []string{
		edit(t, "secret_env: HOOK_SECRET", "secret_env: 'xoxb-s3cr3t!'"),
		edit(t, "https://hooks.example.com/jit", "https://bot:xoxb-s3cr3t!@hooks.example.com/jit"),
		edit(t, "    type: webhook\n", "    type: webhook\n    api_token: xoxb-s3cr3t!\n"),
	} {
		if ps := problemsOf(t, src); strings.Contains(ps.Error(), "s3cr3t") {
			t.Errorf("secret repeated: %s", ps.Error())
		}
	}
}

func TestMergeKeys(t *testing.T) {
	src := edit(t, "roles:\n  db:\n", "roles:\n  db: &db\n") + "  db2:\n    <<: *db\n    target: {db: staging}\n"
	p, err := Parse("policy.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	r, _ := p.Role("db2")
	if r.Provider != "hook" || r.Target["db"] != "staging" || r.Approvers.Users[0] != "U02B" {
		t.Errorf("db2 = %+v", r)
	}
}

func TestWarnings(t *testing.T) {
	t.Setenv("HOOK_SECRET", "x")
	src := "groups:\n  S0EMPTY: []\n  S0SRE: [U01A, U02B]\n" + // lines 1-3
		strings.Replace(base, "principal_from: slack_user_id", "principal_from: identities", 1) + // lines 4-19
		"    approvals: 2\n" + // line 20
		"  db2:\n    provider: hook\n    target: {db: dev}\n    requesters: {groups: [S0SRE]}\n    approvers: {groups: [S0SRE]}\n" + // 21-25
		"identities:\n  U01A: {hook: alice}\n" // 26-27
	src = strings.Replace(src, "approvers: {users: [U02B]}", "approvers: {users: [U02B, U01A]}", 1)
	p, err := Parse("policy.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	w := p.Warnings()
	wants := []want{
		{2, "groups.S0EMPTY", "has no members"},
		{15, "roles.db", "U01A may request db and is one of its 2 approvers; nobody approves their own request"},
		{21, "roles.db2", "U02B may request db2 but has no identity for provider hook"},
	}
	for i := range w {
		w[i].File = "policy.yaml"
	}
	expect(t, w, wants...)

	// A provider nobody uses, and one whose users have no identities at all.
	src = strings.Replace(base, "providers:\n", "providers:\n  other:\n    type: webhook\n    webhook: {url: 'https://x.example.com', secret_env: HOOK_SECRET}\n", 1)
	src = strings.Replace(src, "principal_from: slack_user_id", "principal_from: identities", 1)
	if p, err = Parse("policy.yaml", []byte(src)); err != nil {
		t.Fatal(err)
	}
	expect(t, p.Warnings(),
		want{5, "providers.other", "provider other is not used by any role"},
		want{8, "providers.hook", "no user has an identity for provider hook"},
	)

	// Identities for a provider that sends Slack ids are unused.
	if p, err = Parse("policy.yaml", []byte(base+"identities:\n  U01A: {hook: alice}\n")); err != nil {
		t.Fatal(err)
	}
	expect(t, p.Warnings(), want{18, "identities.U01A.hook", "is not used"})
}

func TestPrincipal(t *testing.T) {
	src := strings.Replace(base, "providers:\n", "providers:\n  aws:\n    type: webhook\n    webhook: {url: 'https://aws.example.com', secret_env: HOOK_SECRET}\n", 1)
	src += "  aws-role:\n    provider: aws\n    target: {account: '123'}\n    requesters: {users: [U01A]}\n    approvers: {users: [U02B]}\n"
	src += "identities:\n  U01A: {aws: alice@example.com}\n"
	p, err := Parse("policy.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p.Principal("U01A", "hook"); err != nil || got != "U01A" {
		t.Errorf("slack_user_id: %q, %v", got, err)
	}
	if got, err := p.Principal("U01A", "aws"); err != nil || got != "alice@example.com" {
		t.Errorf("identities: %q, %v", got, err)
	}
	_, err = p.Principal("U02B", "aws")
	if !errors.Is(err, ErrNoIdentity) || !strings.Contains(err.Error(), "user U02B has no identity mapped for provider aws; an admin must add one under identities") {
		t.Errorf("unmapped: %v", err)
	}
	if _, err := p.Principal("U01A", "nope"); err == nil || errors.Is(err, ErrNoIdentity) {
		t.Errorf("unknown provider: %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"45s", 45 * time.Second, ""},
		{"90m", 90 * time.Minute, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"1.5h", 90 * time.Minute, ""},
		{"1d", 24 * time.Hour, ""},
		{"1d12h", 36 * time.Hour, ""},
		{"2d30m", 48*time.Hour + 30*time.Minute, ""},
		{" 2h ", 2 * time.Hour, ""},
		{"0", 0, ""},
		{"-1d", -24 * time.Hour, ""},
		{"", 0, "empty duration"},
		{"4x", 0, `"4x" is not a duration (use Go syntax such as 90m, 1h30m or 45s`},
		{"30", 0, "missing unit"},
		{"1.5d", 0, "days come first, as a whole number"},
		{"1h2d", 0, "days come first"},
		{"d", 0, "days come first"},
		{"1d-1h", 0, "is not a duration"},
		{"999999999d", 0, "too long"},
		{"two hours", 0, "is not a duration"},
	} {
		got, err := ParseDuration(c.in)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", c.in, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ParseDuration(%q) error = %v; want ...%s...", c.in, err, c.err)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 45 * time.Second: "45s", 90 * time.Minute: "1h30m", 36 * time.Hour: "1d12h", 7 * 24 * time.Hour: "7d",
		-time.Hour: "-1h", 1500 * time.Millisecond: "1.5s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %s, want %s", d, got, want)
		}
		if d%time.Second == 0 {
			if back, err := ParseDuration(want); err != nil || back != d {
				t.Errorf("ParseDuration(%s) = %v, %v", want, back, err)
			}
		}
	}
}

func TestRoleDurations(t *testing.T) {
	r := &Role{Name: "prod-db-admin", DefaultDuration: 30 * time.Minute, MaxDuration: time.Hour}
	if err := r.ValidateDuration(2 * time.Hour); err == nil || err.Error() != "2h exceeds the maximum of 1h for prod-db-admin" {
		t.Errorf("over max: %v", err)
	}
	for _, d := range []time.Duration{0, -time.Minute} {
		if err := r.ValidateDuration(d); err == nil || err.Error() != "duration must be positive" {
			t.Errorf("ValidateDuration(%v) = %v", d, err)
		}
	}
	if err := r.ValidateDuration(time.Hour); err != nil {
		t.Errorf("at max: %v", err)
	}
	for in, want := range map[time.Duration]time.Duration{0: 30 * time.Minute, -1: 30 * time.Minute, 45 * time.Minute: 45 * time.Minute, 3 * time.Hour: time.Hour} {
		if got := r.ClampDuration(in); got != want {
			t.Errorf("ClampDuration(%v) = %v, want %v", in, got, want)
		}
	}
}

func TestProblemString(t *testing.T) {
	for p, want := range map[Problem]string{
		{File: "policy.yaml", Line: 12, Column: 5, Field: "roles.x.max_duration", Message: "bad"}: "policy.yaml:12:5: roles.x.max_duration: bad",
		{File: "policy.yaml", Message: "empty"}:                                                   "policy.yaml: empty",
		{Line: 3, Field: "version", Message: "bad"}:                                               "3: version: bad",
	} {
		if got := p.String(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

// TestSyntaxErrorPointsAtTheMistake: a YAML syntax error names the line and column of the mistake itself, not
// the line where the enclosing mapping started (what yaml.v3 reports).
func TestSyntaxErrorPointsAtTheMistake(t *testing.T) {
	cases := map[string]struct {
		src          string
		line, column int
		hint         string
	}{
		"bad indentation": {"version: 1\nroles:\n  a:\n    provider: x\n   bad: [\n", 5, 4, ""},
		"unclosed flow":   {"version: 1\nroles:\n  a: {provider: x\n  b: 2\n", 4, 3, ""},
		"tab":             {"version: 1\nroles:\n\ta: 1\n", 3, 1, "tab"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("policy.yaml", []byte(c.src))
			var probs *Problems
			if !errors.As(err, &probs) || len(*probs) != 1 {
				t.Fatalf("want one problem, got %v", err)
			}
			p := (*probs)[0]
			if p.Line != c.line || p.Column != c.column || !strings.HasPrefix(p.Message, "YAML syntax error: ") || !strings.Contains(p.Message, c.hint) {
				t.Fatalf("got %s, want line %d column %d", p, c.line, c.column)
			}
		})
	}
}

func TestWebhookPendingTimeout(t *testing.T) {
	src := edit(t, "      secret_env: HOOK_SECRET\n", "      secret_env: HOOK_SECRET\n      pending_timeout: 5m\n")
	p, err := Parse("policy.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Providers["hook"].Webhook.PendingTimeout; got != 5*time.Minute {
		t.Errorf("pending_timeout = %v, want 5m", got)
	}
	p, err = Parse("policy.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Providers["hook"].Webhook.PendingTimeout; got != 0 {
		t.Errorf("pending_timeout without the setting = %v, want 0 (wait only within the attempt timeout)", got)
	}
}
