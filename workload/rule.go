package workload

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Rule is a Vault-JWT-role / Teleport-GitHub-join style claim rule: every listed claim must match one of
// its glob patterns; Issuer names an IssuerConfig.Name.
//
// Claims are top-level claims of the verified ID token. A claim value is compared as text: strings as they
// are, booleans as "true"/"false", numbers in decimal without exponent; a claim that is a list matches when
// any element does (as Vault's bound_claims do). A claim that is absent, null, an object, or an empty list
// matches nothing.
//
// Glob syntax (see Glob): "*" matches any run of characters except "/", "**" matches any run including "/",
// "?" one character except "/", "\" escapes the next character; everything else is literal and the whole
// value must match. So "acme/*" matches "acme/web" but not "acme/web/x", and
// "repo:acme/web:ref:refs/heads/**" matches every branch of acme/web.
//
// A rule with no claims matches nothing: an issuer such as GitHub signs tokens for every repository in the
// world, so "any token of the issuer" is never a useful rule. A claim with no patterns matches nothing.
type Rule struct {
	Issuer string
	Claims map[string][]string
}

// Validate reports a rule that can never be used: no issuer, no claims, a claim without patterns or an
// invalid pattern. Policy loading calls it so that a typo is a load error, not a silent non-match.
func (r Rule) Validate() error {
	if r.Issuer == "" {
		return fmt.Errorf("workload rule: issuer is empty")
	}
	if len(r.Claims) == 0 {
		return fmt.Errorf("workload rule for issuer %q: lists no claims; it would match every token the issuer signs", r.Issuer)
	}
	for _, name := range sortedKeys(r.Claims) {
		if name == "" {
			return fmt.Errorf("workload rule for issuer %q: empty claim name", r.Issuer)
		}
		pats := r.Claims[name]
		if len(pats) == 0 {
			return fmt.Errorf("workload rule for issuer %q: claim %q has no patterns", r.Issuer, name)
		}
		for _, p := range pats {
			if _, err := compileGlob(p); err != nil {
				return fmt.Errorf("workload rule for issuer %q: claim %q: %w", r.Issuer, name, err)
			}
		}
	}
	return nil
}

// Match reports whether id satisfies the rule, and why (or why not) in words a policy author can act on.
func (r Rule) Match(id Identity) (ok bool, why string) {
	if id.Method != MethodOIDC {
		return false, fmt.Sprintf("rule is for OIDC issuer %q; the caller authenticated with %s", r.Issuer, methodWords(id.Method))
	}
	if id.IssuerName != r.Issuer {
		return false, fmt.Sprintf("rule is for issuer %q; the token was issued by %q", r.Issuer, id.IssuerName)
	}
	if len(r.Claims) == 0 {
		return false, fmt.Sprintf("rule for issuer %q lists no claims, so it matches nothing", r.Issuer)
	}
	var matched []string
	for _, name := range sortedKeys(r.Claims) {
		pats := r.Claims[name]
		raw, present := id.Claims[name]
		values, usable := claimTexts(raw)
		if !present || raw == nil {
			return false, fmt.Sprintf("claim %q is missing from the token (rule wants %s)", name, quoteList(pats))
		}
		if !usable {
			return false, fmt.Sprintf("claim %q is not a string, number, boolean or list of them", name)
		}
		hit := ""
		for _, v := range values {
			for _, p := range pats {
				g, err := compileGlob(p)
				if err != nil {
					return false, fmt.Sprintf("claim %q: %v", name, err)
				}
				if globMatch(g, v) {
					hit = fmt.Sprintf("%s %q matches %q", name, v, p)
					break
				}
			}
			if hit != "" {
				break
			}
		}
		if hit == "" {
			return false, fmt.Sprintf("claim %q is %s, which matches none of %s", name, quoteList(values), quoteList(pats))
		}
		matched = append(matched, hit)
	}
	return true, fmt.Sprintf("issuer %q; %s", r.Issuer, strings.Join(matched, "; "))
}

func methodWords(m string) string {
	if m == MethodAPIToken {
		return "an API token"
	}
	return strconv.Quote(m)
}

// claimTexts turns a claim value into the texts patterns are matched against.
func claimTexts(v any) ([]string, bool) {
	switch x := v.(type) {
	case []any:
		var out []string
		for _, e := range x {
			s, ok := scalarText(e)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	case []string:
		return x, true
	}
	s, ok := scalarText(v)
	if !ok {
		return nil, false
	}
	return []string{s}, true
}

func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case int:
		return strconv.Itoa(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return "", false
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	if len(q) == 1 {
		return q[0]
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func sortedKeys(m map[string][]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Glob reports whether value matches pattern in the syntax Rule documents. An invalid pattern (a trailing
// "\") matches nothing.
func Glob(pattern, value string) bool {
	g, err := compileGlob(pattern)
	return err == nil && globMatch(g, value)
}

// globMatch refuses values that are not valid UTF-8: the regexp engine would read each bad byte as U+FFFD
// and so let "\xff" match a pattern holding a literal U+FFFD.
func globMatch(g *regexp.Regexp, value string) bool {
	return utf8.ValidString(value) && g.MatchString(value)
}

var globCache sync.Map // pattern -> *regexp.Regexp

// compileGlob translates a glob into an anchored RE2 expression (linear time whatever the input).
func compileGlob(pattern string) (*regexp.Regexp, error) {
	if g, ok := globCache.Load(pattern); ok {
		return g.(*regexp.Regexp), nil
	}
	if !utf8.ValidString(pattern) {
		return nil, fmt.Errorf("pattern %q is not valid UTF-8", pattern)
	}
	var sb strings.Builder
	sb.WriteString(`\A`)
	runes := []rune(pattern)
	for i := 0; i < len(runes); i++ {
		switch c := runes[i]; c {
		case '\\':
			if i+1 == len(runes) {
				return nil, fmt.Errorf("pattern %q ends with an escape character", pattern)
			}
			i++
			sb.WriteString(regexp.QuoteMeta(string(runes[i])))
		case '*':
			if i+1 < len(runes) && runes[i+1] == '*' {
				for i+1 < len(runes) && runes[i+1] == '*' {
					i++
				}
				sb.WriteString(`.*`)
			} else {
				sb.WriteString(`[^/]*`)
			}
		case '?':
			sb.WriteString(`[^/]`)
		default:
			sb.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	sb.WriteString(`\z`)
	g, err := regexp.Compile("(?s)" + sb.String())
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %w", pattern, err)
	}
	globCache.Store(pattern, g)
	return g, nil
}
