package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong with (or, from Warnings and MissingSecrets, worth knowing about) a policy file.
// It prints like a compiler diagnostic:
//
//	policy.yaml:12:5: roles.prod-db-admin.max_duration: "4x" is not a duration (use Go syntax such as 90m, 1h30m or 45s)
//
// Line and Column are 1-based; 0 means the problem has no position (for example an empty file).
// Field is the dotted path of the setting, with role and provider names as path elements and list
// indexes in brackets (roles.db.requesters.users[1]); it is empty for problems about the whole file.
type Problem struct {
	File    string
	Line    int
	Column  int
	Field   string
	Message string
}

// String formats the problem as file:line:column: field: message, leaving out what is unknown.
func (p Problem) String() string {
	var sb strings.Builder
	if p.File != "" {
		sb.WriteString(p.File)
		sb.WriteString(":")
	}
	if p.Line > 0 {
		fmt.Fprintf(&sb, "%d:", p.Line)
		if p.Column > 0 {
			fmt.Fprintf(&sb, "%d:", p.Column)
		}
	}
	if sb.Len() > 0 {
		sb.WriteString(" ")
	}
	if p.Field != "" {
		sb.WriteString(p.Field)
		sb.WriteString(": ")
	}
	sb.WriteString(p.Message)
	return sb.String()
}

// Problems is every problem found in a policy file, sorted by position. Load and Parse return a *Problems as
// their error whenever the file is invalid; use errors.As to get at the individual problems.
type Problems []Problem

// Error lists the problems one per line.
func (ps *Problems) Error() string {
	if ps == nil || len(*ps) == 0 {
		return "policy: no problems"
	}
	lines := make([]string, len(*ps))
	for i, p := range *ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sortProblems orders problems by file position; problems without a position come first.
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column), cmp.Compare(a.Field, b.Field))
	})
}
