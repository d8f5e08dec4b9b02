// Package static is an oncall.Source for a rota written in the policy: who (a Slack user id) is on call for
// which schedule, at which level, in weekly windows ("Mon-Fri 09:00-17:00 Europe/Berlin") or explicit
// RFC3339 start/end windows. It answers deterministically for any instant: weekly windows are wall-clock times
// in their own time zone, so they move in UTC with daylight saving time and a window that spans a DST change
// lasts an hour more or less.
//
// Shift.UserID is the Slack user id: use the Resolver's slack_user_id mapping.
package static

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jitbot/jitbot/oncall"
)

// Entry is one person's place in the rota.
type Entry struct {
	User             string   `yaml:"user"` // Slack user id
	Name             string   `yaml:"name"` // display name for messages (optional)
	Schedule         string   `yaml:"schedule"`
	EscalationPolicy string   `yaml:"escalation_policy"` // optional
	Level            int      `yaml:"level"`             // 1 = primary; 0 = no level
	Weekly           []string `yaml:"weekly"`            // e.g. "Mon-Fri 09:00-17:00 Europe/Berlin"
	Windows          []Window `yaml:"windows"`           // explicit periods
}

// Window is an explicit on-call period [Start, End).
type Window struct {
	Start time.Time `yaml:"start"`
	End   time.Time `yaml:"end"`
}

// Rota is the static source. It is immutable and safe for concurrent use.
type Rota struct {
	entries []compiled
}

type compiled struct {
	Entry
	weekly []Weekly
}

// New validates the entries and returns a Rota. Every problem is reported with the entry's index.
func New(entries []Entry) (*Rota, error) {
	var problems []string
	r := &Rota{}
	for i, e := range entries {
		at := fmt.Sprintf("rota[%d]", i)
		if e.User == "" {
			problems = append(problems, at+": user is required (a Slack user id)")
		}
		if e.Schedule == "" {
			problems = append(problems, at+": schedule is required")
		}
		if e.Level < 0 {
			problems = append(problems, at+": level must be 0 or more")
		}
		if len(e.Weekly) == 0 && len(e.Windows) == 0 {
			problems = append(problems, at+": give at least one weekly or explicit window")
		}
		c := compiled{Entry: e}
		for j, s := range e.Weekly {
			w, err := ParseWeekly(s)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s.weekly[%d]: %v", at, j, err))
				continue
			}
			c.weekly = append(c.weekly, w)
		}
		for j, w := range e.Windows {
			if w.Start.IsZero() || w.End.IsZero() || !w.End.After(w.Start) {
				problems = append(problems, fmt.Sprintf("%s.windows[%d]: start and end are required and end must be after start", at, j))
			}
		}
		r.entries = append(r.entries, c)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("static on-call rota: %s", strings.Join(problems, "; "))
	}
	return r, nil
}

// OnCall implements oncall.Source. A schedule or escalation policy that no entry names is oncall.ErrConfig.
func (r *Rota) OnCall(_ context.Context, q oncall.Query) ([]oncall.Shift, error) {
	for _, s := range q.Schedules {
		if !slices.ContainsFunc(r.entries, func(c compiled) bool { return c.Schedule == s }) {
			return nil, oncall.Misconfigured("static", "", "the rota has no schedule %q", s)
		}
	}
	for _, p := range q.EscalationPolicies {
		if !slices.ContainsFunc(r.entries, func(c compiled) bool { return c.EscalationPolicy == p }) {
			return nil, oncall.Misconfigured("static", "", "the rota has no escalation policy %q", p)
		}
	}
	var out []oncall.Shift
	for _, c := range r.entries {
		if len(q.Schedules) > 0 && !slices.Contains(q.Schedules, c.Schedule) {
			continue
		}
		if len(q.EscalationPolicies) > 0 && !slices.Contains(q.EscalationPolicies, c.EscalationPolicy) {
			continue
		}
		start, end, ok := c.covering(q.At)
		if !ok {
			continue
		}
		out = append(out, oncall.Shift{
			UserID: c.User, Name: c.Name, Schedule: c.Schedule, ScheduleName: c.Schedule,
			EscalationPolicy: c.EscalationPolicy, EscalationPolicyName: c.EscalationPolicy,
			Level: c.Level, Start: start, End: end,
		})
	}
	return out, nil
}

// covering returns the window of c that contains t (the one that ends last when several do).
func (c compiled) covering(t time.Time) (start, end time.Time, ok bool) {
	consider := func(s, e time.Time) {
		if !t.Before(s) && t.Before(e) && (!ok || e.After(end)) {
			start, end, ok = s, e, true
		}
	}
	for _, w := range c.Windows {
		consider(w.Start, w.End)
	}
	for _, w := range c.weekly {
		if s, e, hit := w.Occurrence(t); hit {
			consider(s, e)
		}
	}
	return start, end, ok
}

// Weekly is a recurring window: on each of its days, from a wall-clock start time to an end time (later the
// same day, the next day when the end is not after the start, or on a named end day), in a time zone.
type Weekly struct {
	days       [7]bool // by time.Weekday
	start, end int     // minutes after midnight; end may be 24*60
	endDay     int     // -1, or the time.Weekday the window ends on
	loc        *time.Location
	text       string
}

var (
	weeklyRE = regexp.MustCompile(`^([A-Za-z]{3}(?:\s*[-,]\s*[A-Za-z]{3})*)\s+(\d{1,2}:\d{2})\s*-\s*(?:([A-Za-z]{3})\s+)?(\d{1,2}:\d{2})\s+(\S+)$`)
	dayNames = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
		"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}
)

// ParseWeekly parses "<days> HH:MM-HH:MM <IANA zone>" or "<day> HH:MM-<day> HH:MM <IANA zone>". Days are
// three-letter English names, lists and ranges ("Mon-Fri", "Sat,Sun", "Fri-Mon" wraps). An end time not after
// the start means the next day ("Mon-Fri 18:00-09:00"); 24:00 is the end of the day. Examples:
//
//	Mon 09:00-17:00 Europe/Berlin
//	Mon-Fri 18:00-09:00 America/New_York
//	Fri 18:00-Mon 09:00 UTC
func ParseWeekly(s string) (Weekly, error) {
	m := weeklyRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return Weekly{}, fmt.Errorf("%q is not a weekly window (want e.g. \"Mon-Fri 09:00-17:00 Europe/Berlin\" or \"Fri 18:00-Mon 09:00 UTC\")", s)
	}
	w := Weekly{endDay: -1, text: s}
	n, err := parseDays(m[1], &w.days)
	if err != nil {
		return Weekly{}, fmt.Errorf("%q: %v", s, err)
	}
	if w.start, err = parseClock(m[2], false); err != nil {
		return Weekly{}, fmt.Errorf("%q: %v", s, err)
	}
	if w.end, err = parseClock(m[4], true); err != nil {
		return Weekly{}, fmt.Errorf("%q: %v", s, err)
	}
	if m[3] != "" {
		d, ok := dayNames[strings.ToLower(m[3])]
		if !ok {
			return Weekly{}, fmt.Errorf("%q: %q is not a day (Mon, Tue, ...)", s, m[3])
		}
		if n != 1 {
			return Weekly{}, fmt.Errorf("%q: a window with an end day starts on a single day", s)
		}
		w.endDay = int(d)
	} else if w.start == w.end {
		return Weekly{}, fmt.Errorf("%q: start and end are the same time (use 00:00-24:00 for a whole day)", s)
	}
	if w.loc, err = time.LoadLocation(m[5]); err != nil || m[5] == "Local" {
		return Weekly{}, fmt.Errorf("%q: %q is not an IANA time zone (e.g. Europe/Berlin, UTC)", s, m[5])
	}
	return w, nil
}

func parseDays(spec string, days *[7]bool) (int, error) {
	n := 0
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, ok := dayNames[strings.ToLower(strings.TrimSpace(lo))]
		if !ok {
			return 0, fmt.Errorf("%q is not a day (Mon, Tue, ...)", lo)
		}
		b := a
		if isRange {
			if b, ok = dayNames[strings.ToLower(strings.TrimSpace(hi))]; !ok {
				return 0, fmt.Errorf("%q is not a day (Mon, Tue, ...)", hi)
			}
		}
		for d := a; ; d = (d + 1) % 7 {
			if !days[d] {
				days[d] = true
				n++
			}
			if d == b {
				break
			}
		}
	}
	return n, nil
}

func parseClock(s string, allow24 bool) (int, error) {
	h, m, _ := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || mm < 0 || mm > 59 || hh < 0 || hh > 24 || (hh == 24 && (mm != 0 || !allow24)) {
		return 0, fmt.Errorf("%q is not a time of day (HH:MM)", s)
	}
	return hh*60 + mm, nil
}

// String returns the text the window was parsed from.
func (w Weekly) String() string { return w.text }

// Occurrence returns the occurrence of w that contains t, if any. Start and end are computed as wall-clock times
// in w's zone on the occurrence's dates (a time that falls into a DST gap is normalised as time.Date does).
func (w Weekly) Occurrence(t time.Time) (start, end time.Time, ok bool) {
	lt := t.In(w.loc)
	y, mo, d := lt.Date()
	for back := 0; back <= 7; back++ {
		day := time.Date(y, mo, d-back, 12, 0, 0, 0, w.loc) // noon: never in a DST gap
		if !w.days[day.Weekday()] {
			continue
		}
		span := 0 // days from the start day to the end day
		switch {
		case w.endDay >= 0:
			span = (w.endDay - int(day.Weekday()) + 7) % 7
			if span == 0 && w.end <= w.start {
				span = 7
			}
		case w.end <= w.start:
			span = 1
		}
		s := time.Date(y, mo, d-back, w.start/60, w.start%60, 0, 0, w.loc)
		e := time.Date(y, mo, d-back+span, w.end/60, w.end%60, 0, 0, w.loc)
		if !t.Before(s) && t.Before(e) {
			return s, e, true
		}
	}
	return time.Time{}, time.Time{}, false
}
