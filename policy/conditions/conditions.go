// Package conditions compiles and evaluates policy conditions written in CEL (the Common Expression Language,
// github.com/google/cel-go): change freezes, time windows, ticket patterns, branch rules, written in the
// policy instead of in code. A condition is type-checked when the policy loads (Compile) and evaluated over a
// request (Eval); any runtime error is returned so callers fail closed.
//
// The variables (see docs/policy-conditions.md):
//
//	request.role         string     the role asked for
//	request.duration     duration   how long, e.g. request.duration <= duration("15m")
//	request.reason       string     the reason given
//	request.break_glass  bool       a break-glass request
//	requester.kind       string     "user" or "workload"
//	requester.id         string     Slack user id, or the workload's policy name
//	requester.groups     list(string) the person's groups (empty for workloads)
//	claims               map(string, dyn) verified ID-token claims of a workload (empty for people)
//	now                  timestamp  evaluation time, e.g. now.getHours("Europe/Berlin") < 18
//
// Beside CEL's standard library (matches, startsWith, in, has, size, timestamp and duration arithmetic and
// accessors with time zones), the cel-go string extensions (lowerAscii, split, replace, ...) and optional
// values (claims.?environment.orValue("")) are available.
package conditions

import (
	"errors"
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // getHours("Europe/Berlin") must work on images without /usr/share/zoneinfo

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
)

// Limits. They are generous for real conditions and stop an expression from stalling request handling.
const (
	// MaxExpressionLength bounds the source text (characters).
	MaxExpressionLength = 4096
	// CostLimit bounds the work of one evaluation in CEL's cost units (about one per operation or per
	// character scanned by a string function).
	CostLimit = 100_000
)

// Requester kinds.
const (
	KindUser     = "user"
	KindWorkload = "workload"
)

// RequestVars is what was asked for.
type RequestVars struct {
	Role       string
	Duration   time.Duration
	Reason     string
	BreakGlass bool
}

// RequesterVars is who asked.
type RequesterVars struct {
	Kind   string   // KindUser or KindWorkload
	ID     string   // Slack user id, or the workload's policy name
	Groups []string // the person's groups; empty for workloads
}

// Vars are the values a condition sees.
type Vars struct {
	Request   RequestVars    // role, duration, reason, break_glass
	Requester RequesterVars  // kind ("user" | "workload"), id (Slack user id or workload name), groups
	Claims    map[string]any // verified workload claims; empty for people
	Now       time.Time      // must be set
}

// Condition is a compiled, type-checked condition. Safe for concurrent use.
type Condition struct {
	expr string
	prg  cel.Program
}

// CompileError is a condition that does not compile or type-check. Line and Column are 1-based positions
// within the expression (Column counts characters), so policy can point to file:line:col.
type CompileError struct {
	Line, Column int
	Message      string
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Message)
}

// ErrEval wraps every evaluation failure (a missing claim, a type mismatch at runtime, the cost limit):
// callers treat it as "condition not met" and say why.
var ErrEval = errors.New("condition evaluation failed")

var env = mustEnv()

func mustEnv() *cel.Env {
	e, err := cel.NewEnv(
		cel.Variable("request.role", cel.StringType),
		cel.Variable("request.duration", cel.DurationType),
		cel.Variable("request.reason", cel.StringType),
		cel.Variable("request.break_glass", cel.BoolType),
		cel.Variable("requester.kind", cel.StringType),
		cel.Variable("requester.id", cel.StringType),
		cel.Variable("requester.groups", cel.ListType(cel.StringType)),
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("now", cel.TimestampType),
		ext.Strings(),
		cel.OptionalTypes(),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(MaxExpressionLength),
		cel.ParserRecursionLimit(64),
	)
	if err != nil {
		panic("conditions: CEL environment: " + err.Error())
	}
	return e
}

// Compile type-checks expr (must be bool). A *CompileError carries Line and Column (1-based, within expr)
// and Message, so policy can point to file:line:col.
func Compile(expr string) (*Condition, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, &CompileError{Line: 1, Column: 1, Message: "condition is empty"}
	}
	if n := len([]rune(expr)); n > MaxExpressionLength {
		return nil, &CompileError{Line: 1, Column: 1, Message: fmt.Sprintf("condition is %d characters long; at most %d are allowed", n, MaxExpressionLength)}
	}
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, compileError(iss)
	}
	if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return nil, &CompileError{Line: 1, Column: 1, Message: fmt.Sprintf("condition must be true or false, but this expression gives a %s", t)}
	}
	// OptOptimize folds constants and compiles constant regular expressions now, so a bad pattern in
	// matches() is a load error, and evaluation does not recompile it every time.
	prg, err := env.Program(ast, cel.CostLimit(CostLimit), cel.InterruptCheckFrequency(100), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, &CompileError{Line: 1, Column: 1, Message: err.Error()}
	}
	return &Condition{expr: expr, prg: prg}, nil
}

func compileError(iss *cel.Issues) error {
	errs := iss.Errors()
	if len(errs) == 0 {
		return &CompileError{Line: 1, Column: 1, Message: iss.String()}
	}
	first := errs[0]
	line, col := first.Location.Line(), first.Location.Column()+1
	if line < 1 {
		line, col = 1, 1
	}
	msg := first.Message
	if len(errs) > 1 {
		msg += fmt.Sprintf(" (and %d more problems)", len(errs)-1)
	}
	return &CompileError{Line: line, Column: col, Message: msg}
}

// String returns the expression's source.
func (c *Condition) String() string { return c.expr }

// Eval evaluates the condition. Runtime errors (a missing claim or map key, a claim of an unexpected type,
// the cost limit) are returned wrapping ErrEval: callers fail closed.
func (c *Condition) Eval(v Vars) (bool, error) {
	if v.Now.IsZero() {
		return false, fmt.Errorf("%w: Vars.Now is not set", ErrEval)
	}
	groups := v.Requester.Groups
	if groups == nil {
		groups = []string{}
	}
	claims := v.Claims
	if claims == nil {
		claims = map[string]any{}
	}
	out, _, err := c.prg.Eval(map[string]any{
		"request.role":        v.Request.Role,
		"request.duration":    v.Request.Duration,
		"request.reason":      v.Request.Reason,
		"request.break_glass": v.Request.BreakGlass,
		"requester.kind":      v.Requester.Kind,
		"requester.id":        v.Requester.ID,
		"requester.groups":    groups,
		"claims":              claims,
		"now":                 v.Now,
	})
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrEval, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("%w: the condition gave %s, not true or false", ErrEval, out.Type())
	}
	return b, nil
}
