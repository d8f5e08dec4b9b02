package static_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/oncall"
	"github.com/jitbot/jitbot/oncall/static"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func rota(t *testing.T, entries ...static.Entry) *static.Rota {
	t.Helper()
	r, err := static.New(entries)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func onCall(t *testing.T, r *static.Rota, at string, schedules ...string) map[string]oncall.Shift {
	t.Helper()
	shifts, err := r.OnCall(context.Background(), oncall.Query{Schedules: schedules, At: utc(at)})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]oncall.Shift{}
	for _, s := range shifts {
		m[s.UserID] = s
	}
	return m
}

func TestWeeklyFollowsDST(t *testing.T) {
	r := rota(t, static.Entry{User: "U01ALICE", Schedule: "ops", Level: 1, Weekly: []string{"Mon 09:00-17:00 Europe/Berlin"}})
	for _, tc := range []struct {
		at   string
		want bool
	}{
		{"2026-01-05T07:59:59Z", false}, // winter (CET, +1): 08:59:59 local
		{"2026-01-05T08:00:00Z", true},  // 09:00 local
		{"2026-01-05T15:59:59Z", true},
		{"2026-01-05T16:00:00Z", false}, // 17:00 local: end is exclusive
		{"2026-07-06T07:00:00Z", true},  // summer (CEST, +2): 09:00 local
		{"2026-07-06T06:59:59Z", false},
		{"2026-07-06T15:00:00Z", false}, // 17:00 local
		{"2026-01-06T10:00:00Z", false}, // Tuesday
	} {
		got := onCall(t, r, tc.at)["U01ALICE"]
		if (got.UserID != "") != tc.want {
			t.Errorf("%s: on call = %v, want %v", tc.at, got.UserID != "", tc.want)
		}
	}
	s := onCall(t, r, "2026-07-06T12:00:00Z")["U01ALICE"]
	if !s.Start.Equal(utc("2026-07-06T07:00:00Z")) || !s.End.Equal(utc("2026-07-06T15:00:00Z")) || s.Level != 1 {
		t.Fatalf("shift = %+v", s)
	}
}

// A night window across the spring-forward and fall-back nights lasts 7h and 9h of real time.
func TestWindowAcrossDSTChange(t *testing.T) {
	r := rota(t, static.Entry{User: "U02BOB", Schedule: "nights", Level: 1, Weekly: []string{"Sat 22:00-06:00 Europe/Berlin"}})
	spring := onCall(t, r, "2026-03-29T03:30:00Z")["U02BOB"] // 05:30 CEST
	if spring.UserID == "" || !spring.Start.Equal(utc("2026-03-28T21:00:00Z")) || !spring.End.Equal(utc("2026-03-29T04:00:00Z")) {
		t.Fatalf("spring: %+v", spring)
	}
	if len(onCall(t, r, "2026-03-29T04:30:00Z")) != 0 { // 06:30 CEST: over, though 22:00 CET + 8h would still run
		t.Fatal("spring: still on call after 06:00 local")
	}
	fall := onCall(t, r, "2026-10-25T04:30:00Z")["U02BOB"] // 05:30 CET
	if fall.UserID == "" || fall.End.Sub(fall.Start) != 9*time.Hour {
		t.Fatalf("fall: %+v", fall)
	}
}

// A window that starts inside the spring-forward gap starts at the first instant after it (time.Date's rule);
// the answer is the same for every call.
func TestWindowStartingInDSTGap(t *testing.T) {
	r := rota(t, static.Entry{User: "U1", Schedule: "s", Weekly: []string{"Sun 02:30-04:00 Europe/Berlin"}})
	a := onCall(t, r, "2026-03-29T01:45:00Z")["U1"] // 03:45 CEST
	if a.UserID == "" || !a.Start.Equal(utc("2026-03-29T01:30:00Z")) || !a.End.Equal(utc("2026-03-29T02:00:00Z")) {
		t.Fatalf("gap: %+v", a)
	}
	if len(onCall(t, r, "2026-03-29T00:45:00Z")) != 0 { // 01:45 CET, before the gap
		t.Fatal("on call before the window")
	}
}

func TestTimeZonesAndForms(t *testing.T) {
	r := rota(t,
		static.Entry{User: "UTOKYO", Schedule: "apac", Level: 1, Weekly: []string{"Tue 08:00-16:00 Asia/Tokyo"}},
		static.Entry{User: "UNYC", Schedule: "amer", Level: 1, Weekly: []string{"Mon-Fri 09:00-17:00 America/New_York"}},
		static.Entry{User: "UWKND", Schedule: "amer", Level: 2, Weekly: []string{"Fri 18:00-Mon 09:00 UTC"}},
		static.Entry{User: "UNIGHT", Schedule: "amer", Level: 2, Weekly: []string{"Mon-Fri 18:00-09:00 America/New_York"}},
		static.Entry{User: "UONCE", Schedule: "amer", Level: 3, Windows: []static.Window{{Start: utc("2026-07-04T00:00:00Z"), End: utc("2026-07-05T00:00:00Z")}}},
	)
	// Monday 2026-07-06 23:30 UTC = Tuesday 08:30 in Tokyo = Monday 19:30 in New York.
	got := onCall(t, r, "2026-07-06T23:30:00Z")
	if got["UTOKYO"].UserID == "" || got["UNYC"].UserID != "" || got["UNIGHT"].UserID == "" || got["UWKND"].UserID != "" {
		t.Fatalf("Mon 23:30Z: %v", keys(got))
	}
	// Sunday: the weekend window (wrapping Fri -> Mon) and the explicit window are checked too.
	got = onCall(t, r, "2026-07-05T12:00:00Z", "amer")
	if got["UWKND"].UserID == "" || !got["UWKND"].End.Equal(utc("2026-07-06T09:00:00Z")) || got["UONCE"].UserID != "" || got["UTOKYO"].UserID != "" {
		t.Fatalf("Sun: %v", keys(got))
	}
	if got = onCall(t, r, "2026-07-04T12:00:00Z", "amer"); got["UONCE"].Level != 3 {
		t.Fatalf("explicit window: %v", keys(got))
	}
	// Friday night 2026-07-10 23:00 UTC = 19:00 EDT: the Mon-Fri overnight window of Friday runs.
	if got = onCall(t, r, "2026-07-10T23:00:00Z", "amer"); got["UNIGHT"].UserID == "" || got["UWKND"].UserID == "" {
		t.Fatalf("Fri night: %v", keys(got))
	}
}

func TestUnknownScheduleAndBadRota(t *testing.T) {
	r := rota(t, static.Entry{User: "U1", Schedule: "ops", Weekly: []string{"Mon 00:00-24:00 UTC"}})
	_, err := r.OnCall(context.Background(), oncall.Query{Schedules: []string{"dev"}, At: time.Now()})
	if !errors.Is(err, oncall.ErrConfig) {
		t.Fatalf("unknown schedule: %v", err)
	}
	for _, bad := range []string{"Mon 9-17 Europe/Berlin", "Mon 09:00-17:00", "Mon 09:00-17:00 Mars/Olympus", "Funday 09:00-17:00 UTC",
		"Mon 09:00-09:00 UTC", "Mon-Fri 09:00-Sat 10:00 UTC", "Mon 24:00-10:00 UTC", "Mon 09:60-10:00 UTC"} {
		if _, err := static.ParseWeekly(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	_, err = static.New([]static.Entry{{User: "", Schedule: "ops"}, {User: "U1", Schedule: "ops", Windows: []static.Window{{Start: time.Now(), End: time.Now().Add(-time.Hour)}}}})
	if err == nil || !strings.Contains(err.Error(), "rota[0]: user is required") || !strings.Contains(err.Error(), "rota[1].windows[0]") {
		t.Fatalf("bad rota: %v", err)
	}
}

// The resolver with the static rota: Slack ids are the tool's ids.
func TestResolverWithStaticRota(t *testing.T) {
	r := rota(t,
		static.Entry{User: "U01ALICE", Name: "Alice", Schedule: "ops", Level: 1, Weekly: []string{"Mon-Sun 00:00-24:00 UTC"}},
		static.Entry{User: "U02BOB", Name: "Bob", Schedule: "ops", Level: 2, Weekly: []string{"Mon-Sun 00:00-24:00 UTC"}},
	)
	now := utc("2026-07-06T12:00:00Z")
	res, err := oncall.NewResolver(oncall.Options{
		Sources: map[string]oncall.Backend{"rota": {Source: r, Mapping: oncall.Mapping{Mode: oncall.MapSlackID}}},
		Now:     func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := res.IsOnCall(context.Background(), "U01ALICE", oncall.Requirement{Source: "rota", Schedules: []string{"ops"}, MaxLevel: 1})
	if err != nil || !d.OnCall || d.Reason != "you are primary (level 1) on call for schedule ops until Tue 7 Jul 00:00 UTC" {
		t.Fatalf("alice: %+v, %v", d, err)
	}
	d, err = res.IsOnCall(context.Background(), "U03CAROL", oncall.Requirement{Source: "rota", Schedules: []string{"ops"}, MaxLevel: 1})
	if err != nil || d.OnCall || d.Reason != "not on call: schedule ops has Alice (level 1), Bob (level 2) now" {
		t.Fatalf("carol: %+v, %v", d, err)
	}
	_, err = res.IsOnCall(context.Background(), "U01ALICE", oncall.Requirement{Source: "rota", Schedules: []string{"dev"}})
	if !errors.Is(err, oncall.ErrConfig) {
		t.Fatalf("unknown schedule: %v", err)
	}
}

func keys(m map[string]oncall.Shift) []string {
	var k []string
	for u := range m {
		k = append(k, u)
	}
	return k
}
