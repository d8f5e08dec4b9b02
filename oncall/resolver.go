package oncall

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Defaults for Options.
const (
	DefaultTTL     = 30 * time.Second
	DefaultTimeout = 5 * time.Second
)

// MappingMode says how a Slack user is matched to a user of the on-call tool.
type MappingMode string

const (
	// MapExplicit: Mapping.Users maps Slack user ids to the tool's user ids. Unmapped users are never on call.
	MapExplicit MappingMode = "explicit"
	// MapEmail: the Slack user's verified email (Options.Email) must equal the shift's email (case-insensitive).
	// The source must report emails (oncall/pagerduty with ResolveEmails; Opsgenie usernames are emails).
	MapEmail MappingMode = "email"
	// MapSlackID: the tool's user ids are Slack user ids (oncall/static).
	MapSlackID MappingMode = "slack_user_id"
)

// Mapping is how one source's users are matched to Slack users.
type Mapping struct {
	Mode  MappingMode
	Users map[string]string // Slack user id -> tool user id (MapExplicit only)
}

// Backend is one named source with its user mapping.
type Backend struct {
	Source  Source
	Mapping Mapping
	// Label names the tool in messages ("PagerDuty"); default: the backend's name.
	Label string
}

// EmailFunc returns the email on a Slack user's profile and whether Slack (or the caller) considers it verified.
// Only verified emails are matched. An error means the email cannot be known now (the lookup is then
// ErrUnavailable).
type EmailFunc func(ctx context.Context, slackUser string) (email string, verified bool, err error)

// Options configures a Resolver.
type Options struct {
	// Sources by name (the name a policy's breakglass.source refers to).
	Sources map[string]Backend
	// Email is required when a backend uses MapEmail.
	Email EmailFunc
	// TTL is how long a source's answer for one query (source, schedules, escalation policies) is reused.
	// Default 30s; negative disables caching. A handover is therefore seen up to TTL late; a shift that has
	// ended by its own End is dropped from a cached answer at once.
	TTL time.Duration
	// Timeout bounds each source lookup. Default 5s.
	Timeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Location is used for times in reasons (default UTC).
	Location *time.Location
	// Logger receives one warning per failed lookup (never with credentials); nil: no logs.
	Logger *zerolog.Logger
}

// Requirement is what a role's break-glass rule asks for.
type Requirement struct {
	Source             string   // a key of Options.Sources
	Schedules          []string // see Query
	EscalationPolicies []string // see Query
	// MaxLevel is the highest escalation level allowed: 0 = any level (and shifts without a level), 1 = primary
	// only, 2 = primary or secondary, ... A shift whose source reports no level (0) never satisfies MaxLevel > 0.
	MaxLevel int
}

// Decision is the answer for one Slack user.
type Decision struct {
	OnCall bool
	Level  int    // the matching shift's level (0 when none or unknown)
	Shift  *Shift // the shift that allowed it; on refusal, the user's own shift at a disallowed level, if any
	// Reason explains the decision to the requester, e.g. "you are primary (level 1) on call for schedule Ops
	// until 14:00 UTC" or "not on call: schedule Ops has Bob (level 1) now".
	Reason string
}

// Resolver answers IsOnCall with a short-lived cache per query. It is safe for concurrent use.
type Resolver struct {
	opts Options

	mu       sync.Mutex
	cache    map[string]cacheEntry
	inflight map[string]*call
}

type cacheEntry struct {
	shifts  []Shift
	expires time.Time
}

type call struct {
	done   chan struct{}
	shifts []Shift
	err    error
}

// NewResolver validates opts and applies defaults.
func NewResolver(opts Options) (*Resolver, error) {
	if len(opts.Sources) == 0 {
		return nil, errors.New("oncall: no sources configured")
	}
	for name, b := range opts.Sources {
		if b.Source == nil {
			return nil, fmt.Errorf("oncall: source %q: no Source", name)
		}
		switch b.Mapping.Mode {
		case MapExplicit, MapSlackID:
		case MapEmail:
			if opts.Email == nil {
				return nil, fmt.Errorf("oncall: source %q maps users by email but no Email function is configured", name)
			}
		default:
			return nil, fmt.Errorf("oncall: source %q: unknown mapping mode %q (use explicit, email or slack_user_id)", name, b.Mapping.Mode)
		}
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	return &Resolver{opts: opts, cache: map[string]cacheEntry{}, inflight: map[string]*call{}}, nil
}

// IsOnCall reports whether slackUser is on call now as req demands. A nil error always comes with a Decision
// whose Reason explains it. Errors wrap ErrUnavailable (the source, or the Slack email lookup, cannot answer
// now: the caller applies its policy, deny by default) or ErrConfig (unknown source, bad key, unknown schedule,
// invalid requirement).
func (r *Resolver) IsOnCall(ctx context.Context, slackUser string, req Requirement) (Decision, error) {
	b, ok := r.opts.Sources[req.Source]
	if !ok {
		return Decision{}, &SourceError{Source: req.Source, Kind: ErrConfig, Message: "no on-call source with this name is configured"}
	}
	if req.MaxLevel < 0 {
		return Decision{}, &SourceError{Source: req.Source, Kind: ErrConfig, Message: fmt.Sprintf("max_level %d is negative", req.MaxLevel)}
	}
	label := b.Label
	if label == "" {
		label = req.Source
	}

	now := r.opts.Now()
	all, err := r.Shifts(ctx, req)
	if err != nil {
		return Decision{}, err
	}
	relevant := make([]Shift, 0, len(all))
	for _, s := range all {
		if matches(s, req) && s.Covers(now) {
			relevant = append(relevant, s)
		}
	}

	match, refusal, err := r.matcher(ctx, b, label, slackUser)
	if err != nil {
		return Decision{}, err
	}
	if match == nil {
		return Decision{Reason: refusal}, nil
	}

	var mine, allowed []Shift
	for _, s := range relevant {
		if !match(s) {
			continue
		}
		mine = append(mine, s)
		if req.MaxLevel == 0 || (s.Level >= 1 && s.Level <= req.MaxLevel) {
			allowed = append(allowed, s)
		}
	}
	if len(allowed) > 0 {
		best := bestShift(allowed)
		return Decision{OnCall: true, Level: best.Level, Shift: &best, Reason: r.onCallReason(best, now)}, nil
	}
	if len(mine) > 0 {
		best := bestShift(mine)
		return Decision{Level: best.Level, Shift: &best, Reason: r.wrongLevelReason(best, req, label, now)}, nil
	}
	return Decision{Reason: othersReason(relevant, req, label)}, nil
}

// Shifts returns the shifts of req's source for its schedules and escalation policies, from the cache when a
// fresh answer is there. Shifts that ended since they were fetched are dropped. Errors are classified as for
// IsOnCall.
func (r *Resolver) Shifts(ctx context.Context, req Requirement) ([]Shift, error) {
	b, ok := r.opts.Sources[req.Source]
	if !ok {
		return nil, &SourceError{Source: req.Source, Kind: ErrConfig, Message: "no on-call source with this name is configured"}
	}
	key := cacheKey(req)
	now := r.opts.Now()

	r.mu.Lock()
	if e, ok := r.cache[key]; ok && now.Before(e.expires) {
		r.mu.Unlock()
		return live(e.shifts, now), nil
	}
	c, leader := r.inflight[key], false
	if c == nil {
		c, leader = &call{done: make(chan struct{})}, true
		r.inflight[key] = c
	}
	r.mu.Unlock()

	if leader {
		c.shifts, c.err = r.fetch(ctx, req.Source, b.Source, Query{
			Schedules: slices.Clone(req.Schedules), EscalationPolicies: slices.Clone(req.EscalationPolicies), At: now,
		})
		r.mu.Lock()
		delete(r.inflight, key)
		if c.err == nil && r.opts.TTL > 0 {
			r.prune(now)
			r.cache[key] = cacheEntry{shifts: c.shifts, expires: now.Add(r.opts.TTL)}
		}
		r.mu.Unlock()
		close(c.done)
	} else {
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil, &SourceError{Source: req.Source, Kind: ErrUnavailable, Message: "lookup abandoned", Err: ctx.Err()}
		}
	}
	if c.err != nil {
		return nil, c.err
	}
	return live(c.shifts, now), nil
}

// fetch asks the source with the lookup timeout. The lookup is not cut short when the first caller gives up,
// since other callers may be waiting for the same answer; the timeout bounds it.
func (r *Resolver) fetch(ctx context.Context, name string, src Source, q Query) ([]Shift, error) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.Timeout)
	defer cancel()
	shifts, err := src.OnCall(fctx, q)
	if err == nil {
		return shifts, nil
	}
	if !errors.Is(err, ErrConfig) && !errors.Is(err, ErrUnavailable) {
		// Unclassified errors (a source that forgot to classify) mean "cannot answer now".
		se := &SourceError{Source: name, Kind: ErrUnavailable, Err: err}
		if errors.Is(fctx.Err(), context.DeadlineExceeded) {
			se.Message = fmt.Sprintf("no answer within %s", r.opts.Timeout)
		}
		err = se
	}
	if r.opts.Logger != nil {
		kind := "unavailable"
		if errors.Is(err, ErrConfig) {
			kind = "config"
		}
		r.opts.Logger.Warn().Str("oncall_source", name).Str("kind", kind).Err(err).Msg("on-call lookup failed")
	}
	return nil, err
}

// prune drops expired cache entries (called with mu held).
func (r *Resolver) prune(now time.Time) {
	if len(r.cache) < 256 {
		return
	}
	for k, e := range r.cache {
		if !now.Before(e.expires) {
			delete(r.cache, k)
		}
	}
}

// matcher returns a predicate selecting slackUser's shifts, or (nil, reason) when the user cannot be matched
// to the tool at all.
func (r *Resolver) matcher(ctx context.Context, b Backend, label, slackUser string) (func(Shift) bool, string, error) {
	switch b.Mapping.Mode {
	case MapSlackID:
		return func(s Shift) bool { return s.UserID == slackUser }, "", nil
	case MapExplicit:
		id, ok := b.Mapping.Users[slackUser]
		if !ok || id == "" {
			return nil, fmt.Sprintf("not on call: your Slack account is not mapped to a %s user (ask an admin to add the mapping)", label), nil
		}
		return func(s Shift) bool { return s.UserID == id }, "", nil
	case MapEmail:
		email, verified, err := r.opts.Email(ctx, slackUser)
		if err != nil {
			return nil, "", &SourceError{Source: "slack", Op: "email lookup", Kind: ErrUnavailable, Err: err}
		}
		email = strings.TrimSpace(email)
		if email == "" {
			return nil, fmt.Sprintf("not on call: your Slack profile has no email address to match with %s", label), nil
		}
		if !verified {
			return nil, fmt.Sprintf("not on call: the email address on your Slack profile is not verified, so it cannot be matched with %s", label), nil
		}
		return func(s Shift) bool { return s.Email != "" && strings.EqualFold(strings.TrimSpace(s.Email), email) }, "", nil
	}
	return nil, "", &SourceError{Source: label, Kind: ErrConfig, Message: fmt.Sprintf("unknown mapping mode %q", b.Mapping.Mode)}
}

func matches(s Shift, req Requirement) bool {
	if len(req.Schedules) > 0 && !slices.Contains(req.Schedules, s.Schedule) {
		return false
	}
	if len(req.EscalationPolicies) > 0 && !slices.Contains(req.EscalationPolicies, s.EscalationPolicy) {
		return false
	}
	return true
}

func live(shifts []Shift, now time.Time) []Shift {
	out := make([]Shift, 0, len(shifts))
	for _, s := range shifts {
		if s.End.IsZero() || now.Before(s.End) {
			out = append(out, s)
		}
	}
	return out
}

// bestShift prefers the lowest positive level (primary first), then level 0, then the shift that lasts longest.
func bestShift(shifts []Shift) Shift {
	sorted := slices.Clone(shifts)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if ra, rb := levelRank(a.Level), levelRank(b.Level); ra != rb {
			return ra < rb
		}
		if a.End.IsZero() != b.End.IsZero() {
			return a.End.IsZero()
		}
		return a.End.After(b.End)
	})
	return sorted[0]
}

func levelRank(l int) int {
	if l <= 0 {
		return 1 << 30
	}
	return l
}

func cacheKey(req Requirement) string {
	s := slices.Clone(req.Schedules)
	e := slices.Clone(req.EscalationPolicies)
	slices.Sort(s)
	slices.Sort(e)
	return req.Source + "\x00" + strings.Join(s, "\x01") + "\x00" + strings.Join(e, "\x01")
}

// levelText is "primary (level 1)", "secondary (level 2)", "level 3", or "" for level 0.
func levelText(l int) string {
	switch {
	case l == 1:
		return "primary (level 1)"
	case l == 2:
		return "secondary (level 2)"
	case l > 2:
		return fmt.Sprintf("level %d", l)
	}
	return ""
}

func where(s Shift, label string) string {
	switch {
	case s.Schedule != "":
		return "schedule " + firstNonEmpty(s.ScheduleName, s.Schedule)
	case s.EscalationPolicy != "":
		return "escalation policy " + firstNonEmpty(s.EscalationPolicyName, s.EscalationPolicy)
	}
	return label
}

func (r *Resolver) onCallReason(s Shift, now time.Time) string {
	var b strings.Builder
	b.WriteString("you are ")
	if lt := levelText(s.Level); lt != "" {
		b.WriteString(lt + " ")
	}
	b.WriteString("on call for " + where(s, "this role"))
	if s.Schedule != "" && s.EscalationPolicy != "" {
		b.WriteString(" (escalation policy " + firstNonEmpty(s.EscalationPolicyName, s.EscalationPolicy) + ")")
	}
	if !s.End.IsZero() {
		b.WriteString(" until " + r.clock(s.End, now))
	}
	return b.String()
}

func (r *Resolver) wrongLevelReason(s Shift, req Requirement, label string, now time.Time) string {
	need := "primary (level 1)"
	if req.MaxLevel > 1 {
		need = fmt.Sprintf("level %d or lower", req.MaxLevel)
	}
	if s.Level == 0 {
		return fmt.Sprintf("not on call at an allowed level: %s reports no escalation level for your shift on %s, and this role needs %s",
			label, where(s, label), need)
	}
	return fmt.Sprintf("not on call at an allowed level: you are %s on call for %s, and this role needs %s",
		levelText(s.Level), where(s, label), need)
}

func othersReason(relevant []Shift, req Requirement, label string) string {
	if len(relevant) == 0 {
		return "not on call: nobody is on call for " + wanted(req, label) + " now"
	}
	sorted := slices.Clone(relevant)
	sort.SliceStable(sorted, func(i, j int) bool {
		if wi, wj := where(sorted[i], label), where(sorted[j], label); wi != wj {
			return wi < wj
		}
		return levelRank(sorted[i].Level) < levelRank(sorted[j].Level)
	})
	// Group by where: "schedule Ops has Bob (level 1), Carol (level 2) now".
	var parts []string
	shown := 0
	const maxShown = 5
	for i := 0; i < len(sorted) && shown < maxShown; {
		w := where(sorted[i], label)
		var people []string
		seen := map[string]bool{}
		for ; i < len(sorted) && where(sorted[i], label) == w; i++ {
			p := person(sorted[i])
			if seen[p] || shown >= maxShown {
				continue
			}
			seen[p] = true
			people = append(people, p)
			shown++
		}
		if len(people) > 0 {
			parts = append(parts, w+" has "+strings.Join(people, ", "))
		}
	}
	s := "not on call: " + strings.Join(parts, "; ")
	if rest := len(sorted) - shown; rest > 0 {
		s += fmt.Sprintf(" (and %d more)", rest)
	}
	return s + " now"
}

func person(s Shift) string {
	name := firstNonEmpty(s.Name, s.Email, s.UserID)
	if s.Level > 0 {
		return fmt.Sprintf("%s (level %d)", name, s.Level)
	}
	return name
}

func wanted(req Requirement, label string) string {
	var parts []string
	if len(req.Schedules) > 0 {
		parts = append(parts, plural("schedule", len(req.Schedules))+" "+strings.Join(req.Schedules, ", "))
	}
	if len(req.EscalationPolicies) > 0 {
		parts = append(parts, plural("escalation policy", len(req.EscalationPolicies))+" "+strings.Join(req.EscalationPolicies, ", "))
	}
	if len(parts) == 0 {
		return label
	}
	return strings.Join(parts, " in ")
}

func plural(word string, n int) string {
	if n == 1 {
		return word
	}
	if strings.HasSuffix(word, "y") {
		return strings.TrimSuffix(word, "y") + "ies"
	}
	return word + "s"
}

// clock formats t for a reason: "14:00 UTC" today, "Tue 3 Mar 14:00 UTC" on another day.
func (r *Resolver) clock(t, now time.Time) string {
	t, now = t.In(r.opts.Location), now.In(r.opts.Location)
	if y1, m1, d1 := t.Date(); true {
		if y2, m2, d2 := now.Date(); y1 == y2 && m1 == m2 && d1 == d2 {
			return t.Format("15:04 MST")
		}
	}
	return t.Format("Mon 2 Jan 15:04 MST")
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
