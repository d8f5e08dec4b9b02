package policy

import (
	"errors"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/jitbot/jitbot/policy/conditions"
)

// Condition is a CEL expression from the policy, type-checked at load. It is evaluated over the request, the
// requester (a person or a workload), the workload's verified token claims and the time (see
// policy/conditions for the variables).
type Condition struct {
	Expr string
	// Line and Column are where the expression starts in the policy file.
	Line, Column int
	prog         *conditions.Condition
}

// Eval evaluates the condition. An evaluation error (a missing claim, a type mismatch at run time) is
// returned as is; callers treat it as "does not hold" (fail closed).
func (c *Condition) Eval(v conditions.Vars) (bool, error) { return c.prog.Eval(v) }

// String returns the expression.
func (c *Condition) String() string { return c.Expr }

// condition compiles the CEL expression in scalar node n. A compile error is reported at its position inside
// the expression, mapped to the file.
func (d *decoder) condition(n *yaml.Node, field string) *Condition {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode {
		d.problem(n, field, "expected a CEL expression (a single value, such as 'claims.ref == \"refs/heads/main\"'), got %s", kindName(n))
		return nil
	}
	expr := strings.TrimSpace(n.Value)
	if expr == "" {
		d.problem(n, field, "is empty: write a CEL expression, such as 'request.duration <= duration(\"15m\")'")
		return nil
	}
	prog, err := conditions.Compile(n.Value)
	if err != nil {
		var ce *conditions.CompileError
		if errors.As(err, &ce) {
			line, col := d.scalarPosition(n, ce.Line, ce.Column)
			d.probs = append(d.probs, Problem{File: d.file, Line: line, Column: col, Field: field, Message: "CEL: " + ce.Message})
			return nil
		}
		d.problem(n, field, "CEL: %s", err.Error())
		return nil
	}
	return &Condition{Expr: n.Value, Line: n.Line, Column: n.Column, prog: prog}
}

// scalarPosition maps a 1-based line and column inside a scalar's value to the position in the file. Plain
// and quoted scalars start at the node (after the opening quote); block scalars (| and >) start on the next
// line at the block's indentation. Escapes in double-quoted scalars are not accounted for, so a position
// after an escape may be off by its length.
func (d *decoder) scalarPosition(n *yaml.Node, line, col int) (int, int) {
	line, col = max(line, 1), max(col, 1)
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		first := n.Line + 1
		indent := 0
		for i := first - 1; i < len(d.lines); i++ {
			if t := strings.TrimLeft(d.lines[i], " "); t != "" {
				indent = len(d.lines[i]) - len(t)
				first = i + 1
				break
			}
		}
		if n.Style == yaml.FoldedStyle {
			return first, indent + col // folded lines are joined: only the first line maps exactly
		}
		return first + line - 1, indent + col
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		if line == 1 {
			return n.Line, n.Column + col
		}
	default:
		if line == 1 {
			return n.Line, n.Column + col - 1
		}
	}
	// A later line of a multi-line flow scalar: continuation lines are indented; find the line and map the
	// column onto its first non-space character.
	l := n.Line + line - 1
	if l-1 < len(d.lines) {
		t := strings.TrimLeft(d.lines[l-1], " ")
		return l, len(d.lines[l-1]) - len(t) + col
	}
	return n.Line, n.Column
}
