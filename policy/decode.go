package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// decoder walks the yaml.Node tree and collects problems with their positions. Every helper reports what it
// finds wrong and carries on, so one run reports everything.
type decoder struct {
	file  string
	lines []string // the source, for positions inside scalars (CEL errors)
	probs []Problem
	warns []Problem
	types map[string]ProviderType // the provider types known, by name
}

func (d *decoder) problem(n *yaml.Node, field, format string, args ...any) {
	d.probs = append(d.probs, d.at(n, field, fmt.Sprintf(format, args...)))
}

func (d *decoder) warn(n *yaml.Node, field, format string, args ...any) {
	d.warns = append(d.warns, d.at(n, field, fmt.Sprintf(format, args...)))
}

func (d *decoder) at(n *yaml.Node, field, msg string) Problem {
	p := Problem{File: d.file, Field: field, Message: msg}
	if n != nil {
		p.Line, p.Column = n.Line, n.Column
	}
	return p
}

// pair is one key and its value in a mapping.
type pair struct{ k, v *yaml.Node }

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

func kindName(n *yaml.Node) string {
	switch resolve(n).Kind {
	case yaml.MappingNode:
		return "a mapping (key: value lines)"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	}
	return "something else"
}

func join(path, elem string) string {
	if path == "" {
		return elem
	}
	return path + "." + elem
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// mapping returns n's key/value pairs in file order, with YAML merge keys (<<: *anchor) expanded: keys
// written explicitly win over merged ones. A null value is an empty mapping. want describes the expected
// content for the kind error ("a mapping of role names to roles").
func (d *decoder) mapping(n *yaml.Node, field, want string) ([]pair, bool) {
	n = resolve(n)
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.MappingNode {
		d.problem(n, field, "expected %s, got %s", want, kindName(n))
		return nil, false
	}
	var out, merged []pair
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merged = append(merged, d.mergeSources(v, field)...)
			continue
		}
		if resolve(k).Kind != yaml.ScalarNode {
			d.problem(k, field, "keys must be plain values, got %s", kindName(k))
			continue
		}
		key := resolve(k).Value
		if first, dup := seen[key]; dup {
			d.problem(k, join(field, key), "duplicate key %q (first set on line %d)", key, first.Line)
			continue
		}
		seen[key] = k
		out = append(out, pair{k, v})
	}
	for _, p := range merged {
		if _, ok := seen[p.k.Value]; !ok {
			seen[p.k.Value] = p.k
			out = append(out, p)
		}
	}
	return out, true
}

func (d *decoder) mergeSources(v *yaml.Node, field string) []pair {
	v = resolve(v)
	var srcs []*yaml.Node
	switch v.Kind {
	case yaml.MappingNode:
		srcs = []*yaml.Node{v}
	case yaml.SequenceNode:
		srcs = v.Content
	default:
		d.problem(v, field, "<< must merge a mapping or a list of mappings")
		return nil
	}
	var out []pair
	for _, s := range srcs {
		ps, _ := d.mapping(s, field, "a mapping to merge")
		out = append(out, ps...)
	}
	return out
}

// fields decodes a fixed-shape mapping: it returns the pairs of known keys by name and reports every
// unknown key (keys that look like credentials get the "use *_env" message instead).
func (d *decoder) fields(n *yaml.Node, field, want string, known ...string) (map[string]pair, bool) {
	ps, ok := d.mapping(n, field, want)
	if !ok {
		return nil, false
	}
	out := make(map[string]pair, len(ps))
	for _, p := range ps {
		key := resolve(p.k).Value
		if slices.Contains(known, key) {
			out[key] = p
			continue
		}
		if looksSecret(key) {
			d.secretKey(p.k, join(field, key), key)
			continue
		}
		msg := fmt.Sprintf("unknown field %q", key)
		if s := suggest(key, known); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		d.problem(p.k, field, "%s; known fields: %s", msg, strings.Join(known, ", "))
	}
	return out, true
}

// secretKey reports a key that looks like it holds a credential. The value is never repeated.
func (d *decoder) secretKey(k *yaml.Node, field, key string) {
	d.problem(k, field, "%q looks like a credential, and secrets must not be written in the policy file: "+
		"put the value in an environment variable and give its name in a *_env setting (such as secret_env)", key)
}

var secretWords = []string{"secret", "token", "password", "passwd", "passphrase", "credential", "apikey", "privatekey"}

// looksSecret reports whether a key name suggests a credential (secret, token, password, key, ...). Names
// ending in _env hold environment variable names and are fine.
func looksSecret(key string) bool {
	k := strings.ToLower(key)
	if strings.HasSuffix(k, "_env") {
		return false
	}
	parts := strings.FieldsFunc(k, func(r rune) bool { return r == '_' || r == '-' || r == '.' || r == ' ' })
	if slices.Contains(parts, "key") || slices.Contains(parts, "keys") || slices.Contains(parts, "pwd") {
		return true
	}
	flat := strings.Join(parts, "")
	for _, w := range secretWords {
		if strings.Contains(flat, w) {
			return true
		}
	}
	return false
}

// suggest returns the known name closest to key when it is a plausible typo.
func suggest(key string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if dist := editDistance(key, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// scalar returns the value of a single-value node; a null counts as empty.
func (d *decoder) scalar(n *yaml.Node, field string) (string, bool) {
	n = resolve(n)
	if isNull(n) {
		return "", true
	}
	if n.Kind != yaml.ScalarNode {
		d.problem(n, field, "expected a single value, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

// str decodes an optional string; ok is false when the node is of the wrong kind (already reported).
func (d *decoder) str(p pair, field string) string {
	if p.v == nil {
		return ""
	}
	s, _ := d.scalar(p.v, field)
	return strings.TrimSpace(s)
}

// integer decodes a whole number.
func (d *decoder) integer(p pair, field string) (int, bool) {
	s, ok := d.scalar(p.v, field)
	if !ok {
		return 0, false
	}
	if s == "" {
		d.problem(p.k, field, "has no value; write a whole number or remove the line")
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		d.problem(p.v, field, "%q is not a whole number", s)
		return 0, false
	}
	return n, true
}

// duration decodes a duration written with ParseDuration syntax.
func (d *decoder) duration(p pair, field string) (time.Duration, bool) {
	s, ok := d.scalar(p.v, field)
	if !ok {
		return 0, false
	}
	if s == "" {
		d.problem(p.k, field, "has no value; write a duration such as 90m, 1h30m or 45s, or remove the line")
		return 0, false
	}
	v, err := ParseDuration(s)
	if err != nil {
		d.problem(p.v, field, "%s", err.Error())
		return 0, false
	}
	return v, true
}

// list decodes a list of single values, each checked by check (which may be nil). Duplicates are dropped.
func (d *decoder) list(p pair, field, example string, check func(n *yaml.Node, field, v string) bool) ([]string, bool) {
	n := resolve(p.v)
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		d.problem(n, field, "expected a list such as [%s], got %s", example, kindName(n))
		return nil, false
	}
	var out []string
	ok := true
	for i, e := range n.Content {
		s, sok := d.scalar(e, index(field, i))
		if !sok {
			ok = false
			continue
		}
		s = strings.TrimSpace(s)
		if check != nil && !check(resolve(e), index(field, i), s) {
			ok = false
			continue
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, ok
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)
	userRE    = regexp.MustCompile(`^[UW][A-Z0-9]{2,20}$`)
	groupRE   = regexp.MustCompile(`^S[A-Z0-9]{2,20}$`)
	channelRE = regexp.MustCompile(`^[CG][A-Z0-9]{2,20}$`)
	envRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func (d *decoder) checkUser(n *yaml.Node, field, v string) bool {
	switch {
	case userRE.MatchString(v):
		return true
	case groupRE.MatchString(v):
		d.problem(n, field, "%q is a user group id, not a user id; list it under groups", v)
	case channelRE.MatchString(v):
		d.problem(n, field, "%q is a channel id, not a user id", v)
	default:
		d.problem(n, field, "%q is not a Slack user id (U or W followed by uppercase letters and digits, such as "+
			"U01ABCDEF; in Slack, open the person's profile and use \"Copy member ID\")", v)
	}
	return false
}

func (d *decoder) checkGroup(n *yaml.Node, field, v string) bool {
	switch {
	case groupRE.MatchString(v):
		return true
	case userRE.MatchString(v):
		d.problem(n, field, "%q is a user id, not a user group id; list it under users", v)
	default:
		d.problem(n, field, "%q is not a Slack user group id (S followed by uppercase letters and digits, such as "+
			"S01ABCDEF; a @handle is not an id)", v)
	}
	return false
}

func (d *decoder) checkChannel(n *yaml.Node, field, v string) bool {
	if channelRE.MatchString(v) {
		return true
	}
	d.problem(n, field, "%q is not a Slack channel id (C or G followed by uppercase letters and digits, such as "+
		"C01ABCDEF; a #name is not an id: open the channel details in Slack and copy the channel ID at the bottom)", v)
	return false
}
