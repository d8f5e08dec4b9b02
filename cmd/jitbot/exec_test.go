package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitbot/jitbot/workload/oidcfake"
)

func TestExecTokenSources(t *testing.T) {
	iss, err := oidcfake.New("127.0.0.1:0", oidcfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	env := map[string]string{"ACTIONS_ID_TOKEN_REQUEST_URL": iss.GitHubTokenURL(), "ACTIONS_ID_TOKEN_REQUEST_TOKEN": iss.RequestToken()}
	getenv := func(k string) string { return env[k] }

	// GitHub Actions: GET ...&audience=AUD with the request token; the token is cached until near expiry.
	src, err := newTokenSource(execFlags{audience: "https://jitbot.example.com"}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := src.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if aud := claimOf(t, tok, "aud"); aud != "https://jitbot.example.com" {
		t.Fatalf("aud = %v", aud)
	}
	if again, _ := src.Token(context.Background()); again != tok {
		t.Fatal("a fresh token was fetched although the cached one is valid")
	}
	// A wrong request token is a clear error.
	env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = "wrong"
	src, _ = newTokenSource(execFlags{audience: "a"}, getenv)
	if _, err := src.Token(context.Background()); err == nil || !strings.Contains(err.Error(), "id-token: write") {
		t.Fatalf("refused request token: %v", err)
	}
	// GitLab: the id_tokens variable; explicit sources win over the CI environment.
	env = map[string]string{"JITBOT_ID_TOKEN": "gitlab-jwt", "MY_TOKEN": "mine"}
	if s, _ := newTokenSource(execFlags{}, getenv); mustToken(t, s) != "gitlab-jwt" {
		t.Fatal("GitLab id_tokens variable not used")
	}
	if s, _ := newTokenSource(execFlags{tokenEnv: "MY_TOKEN"}, getenv); mustToken(t, s) != "mine" {
		t.Fatal("--token-env not used")
	}
	if _, err := newTokenSource(execFlags{tokenEnv: "UNSET"}, getenv); err == nil {
		t.Fatal("an unset --token-env variable was accepted")
	}
	env = map[string]string{}
	if _, err := newTokenSource(execFlags{}, getenv); err == nil || !strings.Contains(err.Error(), "id_tokens") {
		t.Fatalf("no token: %v", err)
	}
}

func TestExecUsage(t *testing.T) {
	var out, errw strings.Builder
	if code := execCmd(context.Background(), []string{"--role", "deploy"}, &out, &errw); code != exitUsage {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--server", "--reason is required", "no command"} {
		if !strings.Contains(errw.String(), want) {
			t.Fatalf("usage error lacks %q: %s", want, errw.String())
		}
	}
}

func mustToken(t *testing.T, s tokenSource) string {
	t.Helper()
	tok, err := s.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func claimOf(t *testing.T, jwt, name string) any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	data, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	_ = json.Unmarshal(data, &c)
	return c[name]
}

// TestPolicyCheckPointsIntoCEL: jitbot policy check reports a CEL error at its position inside the
// expression, as file:line:col.
func TestPolicyCheckPointsIntoCEL(t *testing.T) {
	src, err := os.ReadFile("../../examples/pipelines/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(src), `when: 'claims.ref == "refs/heads/main"`, `when: 'claims.ref === "refs/heads/main"`, 1)
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	line := 0
	for i, l := range strings.Split(bad, "\n") {
		if strings.Contains(l, "===") {
			line = i + 1
		}
	}
	var out, errw strings.Builder
	if code := run(context.Background(), []string{"policy", "check", file}, strings.NewReader(""), &out, &errw); code != 1 {
		t.Fatalf("exit %d: %s", code, errw.String())
	}
	// The expression starts after "when: '" (column 16 on that line); CEL stumbles on the third "=", the
	// 14th character of the expression.
	want := fmt.Sprintf("%s:%d:%d: roles.prod-deploy.auto_approve[0].when: CEL: ", file, line, 16+13)
	if !strings.Contains(errw.String(), want) {
		t.Fatalf("want %q in:\n%s", want, errw.String())
	}
}
