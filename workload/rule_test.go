package workload_test

import (
	"strings"
	"testing"

	"github.com/jitbot/jitbot/workload"
	"github.com/jitbot/jitbot/workload/oidcfake"
)

func ghIdentity(repo, ref, env string) workload.Identity {
	claims := oidcfake.GitHubActions(repo, ref, env)
	claims["run_attempt_int"] = int64(2)
	claims["ref_protected"] = true
	claims["groups"] = []any{"platform", "deployers"}
	return workload.Identity{Method: workload.MethodOIDC, Issuer: workload.GitHubActionsIssuer, IssuerName: "github",
		Subject: claims["sub"].(string), Claims: claims}
}

func TestRuleMatch(t *testing.T) {
	mainProd := workload.Rule{Issuer: "github", Claims: map[string][]string{
		"repository":  {"acme/web", "acme/api"},
		"ref":         {"refs/heads/main"},
		"environment": {"production"},
	}}
	cases := []struct {
		name    string
		rule    workload.Rule
		id      workload.Identity
		want    bool
		whyHave string
	}{
		{"all claims match", mainProd, ghIdentity("acme/web", "refs/heads/main", "production"), true, `ref "refs/heads/main" matches`},
		{"second repository pattern", mainProd, ghIdentity("acme/api", "refs/heads/main", "production"), true, "acme/api"},
		{"other branch", mainProd, ghIdentity("acme/web", "refs/heads/dev", "production"), false, `claim "ref" is "refs/heads/dev", which matches none of "refs/heads/main"`},
		{"no environment", mainProd, ghIdentity("acme/web", "refs/heads/main", ""), false, `claim "environment" is missing`},
		{"other repository", mainProd, ghIdentity("evil/web", "refs/heads/main", "production"), false, `"evil/web"`},
		{"prefix is not a match", workload.Rule{Issuer: "github", Claims: map[string][]string{"repository": {"acme/web"}}},
			ghIdentity("acme/web-fork", "refs/heads/main", ""), false, "matches none"},
		{"other issuer", workload.Rule{Issuer: "gitlab", Claims: map[string][]string{"ref": {"**"}}},
			ghIdentity("acme/web", "refs/heads/main", ""), false, `rule is for issuer "gitlab"`},
		{"API token identity", mainProd, workload.Identity{Method: workload.MethodAPIToken, Subject: "tok-x", Owner: "deploy-bot"}, false, "API token"},
		{"no claims matches nothing", workload.Rule{Issuer: "github"}, ghIdentity("acme/web", "refs/heads/main", ""), false, "lists no claims"},
		{"claim with no patterns", workload.Rule{Issuer: "github", Claims: map[string][]string{"ref": {}}}, ghIdentity("acme/web", "refs/heads/main", ""), false, "matches none"},
		{"star within a segment", workload.Rule{Issuer: "github", Claims: map[string][]string{"repository": {"acme/*"}}},
			ghIdentity("acme/anything", "refs/heads/main", ""), true, ""},
		{"double star across segments", workload.Rule{Issuer: "github", Claims: map[string][]string{"sub": {"repo:acme/web:ref:refs/heads/**"}}},
			ghIdentity("acme/web", "refs/heads/release/2031/3", ""), true, ""},
		{"single star stops at slash", workload.Rule{Issuer: "github", Claims: map[string][]string{"ref": {"refs/heads/*"}}},
			ghIdentity("acme/web", "refs/heads/release/1", ""), false, "matches none"},
		{"list claim: any element", workload.Rule{Issuer: "github", Claims: map[string][]string{"groups": {"deployers"}}},
			ghIdentity("acme/web", "refs/heads/main", ""), true, ""},
		{"bool claim as text", workload.Rule{Issuer: "github", Claims: map[string][]string{"ref_protected": {"true"}}},
			ghIdentity("acme/web", "refs/heads/main", ""), true, ""},
		{"int claim as text", workload.Rule{Issuer: "github", Claims: map[string][]string{"run_attempt_int": {"2"}}},
			ghIdentity("acme/web", "refs/heads/main", ""), true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := tc.rule.Match(tc.id)
			if ok != tc.want {
				t.Fatalf("Match = %v (%s), want %v", ok, why, tc.want)
			}
			if why == "" || !strings.Contains(why, tc.whyHave) {
				t.Fatalf("why = %q, want it to contain %q", why, tc.whyHave)
			}
		})
	}
}

func TestRuleMatchObjectClaim(t *testing.T) {
	id := ghIdentity("acme/web", "refs/heads/main", "")
	id.Claims["nested"] = map[string]any{"a": "b"}
	ok, why := workload.Rule{Issuer: "github", Claims: map[string][]string{"nested": {"**"}}}.Match(id)
	if ok || !strings.Contains(why, "not a string") {
		t.Fatalf("object claim: Match = %v, %q", ok, why)
	}
}

func TestRuleValidate(t *testing.T) {
	good := workload.Rule{Issuer: "github", Claims: map[string][]string{"repository": {"acme/*"}}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		rule workload.Rule
		want string
	}{
		{workload.Rule{Claims: good.Claims}, "issuer is empty"},
		{workload.Rule{Issuer: "github"}, "lists no claims"},
		{workload.Rule{Issuer: "github", Claims: map[string][]string{"ref": nil}}, "no patterns"},
		{workload.Rule{Issuer: "github", Claims: map[string][]string{"": {"x"}}}, "empty claim name"},
		{workload.Rule{Issuer: "github", Claims: map[string][]string{"ref": {`main\`}}}, "escape"},
		{workload.Rule{Issuer: "github", Claims: map[string][]string{"ref": {"ma\xffin"}}}, "not valid UTF-8"},
	} {
		if err := bad.rule.Validate(); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Validate(%+v) = %v, want %q", bad.rule, err, bad.want)
		}
	}
}

func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, value string
		want           bool
	}{
		{"acme/web", "acme/web", true},
		{"acme/web", "acme/web2", false},
		{"acme/web", "xacme/web", false},
		{"acme/*", "acme/", true},
		{"acme/*", "acme/a/b", false},
		{"acme/**", "acme/a/b", true},
		{"**", "", true},
		{"refs/heads/?", "refs/heads/x", true},
		{"refs/heads/?", "refs/heads/xy", false},
		{"refs/heads/?", "refs/heads//", false},
		{"a.b", "axb", false}, // regexp metacharacters are literal
		{"(a|b)", "a", false},
		{"(a|b)", "(a|b)", true},
		{`lit\*`, "lit*", true},
		{`lit\*`, "litx", false},
		{"ümlaut-?", "ümlaut-ß", true},
		{"line*", "line\nbreak", true}, // a newline is an ordinary character
	}
	for _, tc := range cases {
		if got := workload.Glob(tc.pattern, tc.value); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tc.pattern, tc.value, got, tc.want)
		}
	}
}
