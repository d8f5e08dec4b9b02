package policy

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// MaxDurationCap is the hard upper bound for any role's max_duration (and for pending_ttl). Standing access
// for longer than a week is not "just in time"; give such people a permanent role through normal channels.
const MaxDurationCap = 7 * 24 * time.Hour

const day = 24 * time.Hour

// ParseDuration parses a duration written by a person: anything time.ParseDuration accepts (90m, 1h30m,
// 45s, 1.5h) plus whole days with a d suffix in front of the rest (1d, 2d12h, 1d30m). The error message is
// written to be shown to that person as is.
func ParseDuration(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	bad := func(why string) error {
		msg := fmt.Sprintf("%q is not a duration (use Go syntax such as 90m, 1h30m or 45s; d counts days, as in 1d or 1d12h)", s)
		if why != "" {
			msg += ": " + why
		}
		return errors.New(msg)
	}
	if in == "" {
		return 0, errors.New("empty duration (use Go syntax such as 90m, 1h30m or 45s; d counts days, as in 1d or 1d12h)")
	}
	neg := false
	body := in
	if body[0] == '-' || body[0] == '+' {
		neg = body[0] == '-'
		body = body[1:]
	}
	var days time.Duration
	if i := strings.IndexByte(body, 'd'); i >= 0 {
		n, err := strconv.ParseUint(body[:i], 10, 32)
		if err != nil || i == 0 {
			return 0, bad("days come first, as a whole number, as in 2d6h")
		}
		if n > uint64(math.MaxInt64/int64(day)) {
			return 0, bad("too long")
		}
		days = time.Duration(n) * day
		body = body[i+1:]
		if body == "" {
			if neg {
				days = -days
			}
			return days, nil
		}
		if body[0] == '-' || body[0] == '+' {
			return 0, bad("")
		}
	}
	if isDigits(body) && body != "0" {
		return 0, bad("missing unit (s, m, h or d)")
	}
	rest, err := time.ParseDuration(body)
	if err != nil {
		return 0, bad("")
	}
	if rest > math.MaxInt64-days {
		return 0, bad("too long")
	}
	d := days + rest
	if neg {
		d = -d
	}
	return d, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// FormatDuration writes d the way people write it and ParseDuration reads it back: 45s, 90m becomes 1h30m,
// 36h becomes 1d12h, with zero units left out. Fractions of a second are kept in Go's notation.
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	if d%time.Second != 0 {
		return d.String() // before negating: -math.MinInt64 overflows (and is not whole seconds)
	}
	if d < 0 {
		return "-" + FormatDuration(-d)
	}
	var sb strings.Builder
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{day, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.unit; n > 0 {
			fmt.Fprintf(&sb, "%d%s", n, u.name)
			d -= n * u.unit
		}
	}
	return sb.String()
}

// ValidateDuration checks a duration someone asked for against the role. The error is written for that
// person, e.g. "2h exceeds the maximum of 1h for prod-db-admin".
func (r *Role) ValidateDuration(d time.Duration) error {
	switch {
	case d <= 0:
		return errors.New("duration must be positive")
	case d > r.MaxDuration:
		return fmt.Errorf("%s exceeds the maximum of %s for %s", FormatDuration(d), FormatDuration(r.MaxDuration), r.Name)
	}
	return nil
}

// ClampDuration returns the duration to grant for a request of d: the role's default_duration when d is zero
// or negative (nothing asked for), max_duration when d is longer than that, and d otherwise.
func (r *Role) ClampDuration(d time.Duration) time.Duration {
	switch {
	case d <= 0:
		return r.DefaultDuration
	case d > r.MaxDuration:
		return r.MaxDuration
	}
	return d
}
