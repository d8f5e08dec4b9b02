package conditions

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// berlinNoon is 2031-03-04 12:00 in Berlin (CET, UTC+1), a Tuesday.
var berlinNoon = time.Date(2031, 3, 4, 11, 0, 0, 0, time.UTC)

func pipelineVars() Vars {
	return Vars{
		Request:   RequestVars{Role: "prod-deploy", Duration: 15 * time.Minute, Reason: "deploy CHG-1234", BreakGlass: false},
		Requester: RequesterVars{Kind: KindWorkload, ID: "web-deploy"},
		Claims: map[string]any{
			"repository": "acme/web", "ref": "refs/heads/main", "environment": "production",
			"run_attempt": "1", "iat": int64(1930000000), "ref_protected": true,
		},
		Now: berlinNoon,
	}
}

func personVars() Vars {
	return Vars{
		Request:   RequestVars{Role: "db-admin", Duration: time.Hour, Reason: "INC-42 disk full"},
		Requester: RequesterVars{Kind: KindUser, ID: "U123", Groups: []string{"sre", "oncall"}},
		Now:       berlinNoon,
	}
}

func mustCompile(t *testing.T, expr string) *Condition {
	t.Helper()
	c, err := Compile(expr)
	if err != nil {
		t.Fatalf("Compile(%q): %v", expr, err)
	}
	return c
}

func TestEvalExamples(t *testing.T) {
	cases := []struct {
		name string
		expr string
		vars Vars
		want bool
	}{
		{"main branch only", `claims.ref == "refs/heads/main"`, pipelineVars(), true},
		{"main branch only, other branch", `claims.ref == "refs/heads/main"`, func() Vars { v := pipelineVars(); v.Claims["ref"] = "refs/heads/dev"; return v }(), false},
		{"short pipelines", `requester.kind == "workload" && request.duration <= duration("15m")`, pipelineVars(), true},
		{"too long", `request.duration <= duration("10m")`, pipelineVars(), false},
		{"ticket pattern", `request.reason.matches("\\b(CHG|INC)-[0-9]+\\b")`, pipelineVars(), true},
		{"ticket pattern, person", `request.reason.matches("\\b(CHG|INC)-[0-9]+\\b")`, personVars(), true},
		{"no ticket", `request.reason.matches("\\bCHG-[0-9]+\\b")`, personVars(), false},
		{"office hours Berlin", `now.getHours("Europe/Berlin") >= 9 && now.getHours("Europe/Berlin") < 18`, pipelineVars(), true},
		{"weekday Berlin (0 = Sunday)", `now.getDayOfWeek("Europe/Berlin") in [1, 2, 3, 4, 5]`, pipelineVars(), true},
		{"change freeze", `!(now >= timestamp("2031-03-01T00:00:00Z") && now < timestamp("2031-03-08T00:00:00Z"))`, pipelineVars(), false},
		{"group membership", `"sre" in requester.groups`, personVars(), true},
		{"no groups for workloads", `size(requester.groups) == 0`, pipelineVars(), true},
		{"claims empty for people", `size(claims) == 0`, personVars(), true},
		{"has guards a missing claim", `has(claims.environment) && claims.environment == "production"`, personVars(), false},
		{"optional value", `claims.?environment.orValue("none") == "production"`, pipelineVars(), true},
		{"int claim compares with int", `claims.iat > 1900000000`, pipelineVars(), true},
		{"bool claim", `claims.ref_protected`, pipelineVars(), true},
		{"string extension", `claims.repository.split("/")[0] == "acme"`, pipelineVars(), true},
		{"break glass", `!request.break_glass`, pipelineVars(), true},
		{"role", `request.role.startsWith("prod-")`, pipelineVars(), true},
		{"requester id", `requester.id == "web-deploy"`, pipelineVars(), true},
		{"multi-line", "claims.repository == \"acme/web\"\n  && claims.environment == \"production\"", pipelineVars(), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mustCompile(t, tc.expr).Eval(tc.vars)
			if err != nil {
				t.Fatalf("Eval: %v", err)
			}
			if got != tc.want {
				t.Fatalf("Eval(%s) = %v, want %v", tc.expr, got, tc.want)
			}
		})
	}
}

func TestCompileErrorsPointIntoTheExpression(t *testing.T) {
	cases := []struct {
		expr      string
		line, col int
		msg       string
	}{
		{`request.rol == "x"`, 1, 1, "undeclared reference"},
		{`request.role == 5`, 1, 14, "no matching overload"},
		{"claims.ref == \"a\" &&\n  request.duraton > duration(\"1m\")", 2, 3, "undeclared reference"},
		{`claims.ref == `, 1, 15, "Syntax error"},
		{`request.role`, 1, 1, "true or false"},
		{`request.duration + duration("1m")`, 1, 1, "true or false"},
		{`   `, 1, 1, "empty"},
		{`request.reason.matches("(CHG-")`, 1, 1, "missing closing )"},
		{strings.Repeat("a", MaxExpressionLength+1), 1, 1, "characters long"},
	}
	for _, tc := range cases {
		_, err := Compile(tc.expr)
		var ce *CompileError
		if !errors.As(err, &ce) {
			t.Fatalf("Compile(%q) err = %v, want *CompileError", tc.expr, err)
		}
		if ce.Line != tc.line || ce.Column != tc.col || !strings.Contains(ce.Message, tc.msg) {
			t.Errorf("Compile(%q) = %d:%d %q, want %d:%d containing %q", tc.expr, ce.Line, ce.Column, ce.Message, tc.line, tc.col, tc.msg)
		}
	}
}

func TestRuntimeErrorsFailClosed(t *testing.T) {
	cases := []struct {
		name string
		expr string
		vars Vars
	}{
		{"missing claim", `claims.environment == "production"`, personVars()},
		{"claim of another type", `claims.run_attempt > 1`, pipelineVars()},
		{"dyn result that is not a bool", `claims.repository`, pipelineVars()},
		{"bad time zone", `now.getHours("Mars/Olympus") < 5`, pipelineVars()},
		{"no clock", `true`, Vars{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mustCompile(t, tc.expr).Eval(tc.vars)
			if !errors.Is(err, ErrEval) || got {
				t.Fatalf("Eval = %v, %v; want false and an ErrEval", got, err)
			}
		})
	}
}

func TestCostLimitStopsExpensiveConditions(t *testing.T) {
	// 10^4 regex scans of a 2000-character string: cheap to write, far past the cost limit. exists()
	// iterates every element while the predicate is false.
	digits := `[0,1,2,3,4,5,6,7,8,9]`
	heavy := digits + `.exists(i, ` + digits + `.exists(j, ` + digits + `.exists(k, ` + digits +
		`.exists(l, (request.reason + "` + strings.Repeat("x", 2000) + `").matches("x+y")))))`
	got, err := mustCompile(t, heavy).Eval(pipelineVars())
	if !errors.Is(err, ErrEval) || got || !strings.Contains(err.Error(), "cost") {
		t.Fatalf("Eval = %v, %v; want the cost limit to stop it", got, err)
	}
	// The same shape with one level is within the limit.
	light := digits + `.exists(l, (request.reason + "xx").matches("x+y"))`
	if got, err := mustCompile(t, light).Eval(pipelineVars()); err != nil || got {
		t.Fatalf("light Eval = %v, %v; want false, nil", got, err)
	}
}

func TestConcurrentEval(t *testing.T) {
	c := mustCompile(t, `claims.repository == "acme/web" && now.getHours("Europe/Berlin") == 12`)
	done := make(chan error, 8)
	for range 8 {
		go func() {
			for range 200 {
				ok, err := c.Eval(pipelineVars())
				if err != nil || !ok {
					done <- errors.Join(err, errors.New("want true"))
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestString(t *testing.T) {
	const expr = `request.role == "x"`
	if got := mustCompile(t, expr).String(); got != expr {
		t.Fatalf("String() = %q", got)
	}
}

// TestDocumentedExamplesCompile keeps docs/policy-conditions.md honest: every ```cel block compiles.
func TestDocumentedExamplesCompile(t *testing.T) {
	raw, err := os.ReadFile("../../docs/policy-conditions.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(raw), "```cel\n")[1:]
	if len(blocks) < 6 {
		t.Fatalf("found %d cel blocks in the doc, want the examples", len(blocks))
	}
	for _, b := range blocks {
		expr, _, ok := strings.Cut(b, "```")
		if !ok {
			t.Fatalf("unterminated cel block: %q", b)
		}
		c, err := Compile(expr)
		if err != nil {
			t.Errorf("documented example does not compile: %v\n%s", err, expr)
			continue
		}
		for _, v := range []Vars{pipelineVars(), personVars()} {
			if _, err := c.Eval(v); err != nil && !strings.Contains(expr, "claims.") {
				t.Errorf("documented example fails to evaluate: %v\n%s", err, expr)
			}
		}
	}
}

// BenchmarkEval: a typical auto-approval condition (claims, duration, time zone, regex).
func BenchmarkEval(b *testing.B) {
	c, err := Compile(`claims.repository == "acme/web" && claims.ref == "refs/heads/main" && request.duration <= duration("15m") && now.getHours("Europe/Berlin") < 18 && request.reason.matches("CHG-[0-9]+")`)
	if err != nil {
		b.Fatal(err)
	}
	v := pipelineVars()
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := c.Eval(v); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// TestDocumentedYAMLExample checks the quoting advice of the doc's YAML example: decoded as YAML, its
// expressions compile and mean what the doc says.
func TestDocumentedYAMLExample(t *testing.T) {
	raw, err := os.ReadFile("../../docs/policy-conditions.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml block in the doc")
	}
	var doc struct {
		Roles map[string]struct {
			Conditions  []string `yaml:"conditions"`
			AutoApprove []struct {
				When string `yaml:"when"`
			} `yaml:"auto_approve"`
		} `yaml:"roles"`
	}
	if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
		t.Fatal(err)
	}
	role := doc.Roles["web-deploy-prod"]
	if len(role.Conditions) != 1 || len(role.AutoApprove) != 1 {
		t.Fatalf("decoded %+v", role)
	}
	ticket := mustCompile(t, role.Conditions[0])
	for reason, want := range map[string]bool{"deploy CHG-1234": true, "INC-7 rollback": true, "xCHG-1": false, "no ticket": false} {
		v := pipelineVars()
		v.Request.Reason = reason
		if got, err := ticket.Eval(v); err != nil || got != want {
			t.Errorf("ticket condition on %q = %v, %v; want %v", reason, got, err, want)
		}
	}
	if got, err := mustCompile(t, role.AutoApprove[0].When).Eval(pipelineVars()); err != nil || !got {
		t.Fatalf("when = %v, %v", got, err)
	}
}
