package opsgenie_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/oncall"
	"github.com/jitbot/jitbot/oncall/opsgenie"
	"github.com/jitbot/jitbot/oncall/opsgenie/ogfake"
)

const key = "eb243592-faa2-4ba2-a551q-SECRET"

var berlin, _ = time.LoadLocation("Europe/Berlin")
var at = time.Date(2026, 7, 6, 9, 30, 0, 0, berlin)

func setup(t *testing.T) (*ogfake.Server, *opsgenie.Client) {
	t.Helper()
	og := ogfake.New(key)
	t.Cleanup(og.Close)
	og.AddSchedule(ogfake.Schedule{ID: "d875alp4", Name: "Ops Primary/EU"})
	og.AddSchedule(ogfake.Schedule{ID: "s2", Name: "Nights"})
	day := ogfake.Shift{Schedule: "d875alp4", Start: at.Add(-time.Hour), End: at.Add(time.Hour),
		Participant: ogfake.Participant{ID: "u-alice", Name: "alice@example.com", Type: "user"}}
	esc := ogfake.Shift{Schedule: "d875alp4", Participant: ogfake.Participant{ID: "e-1", Name: "Ops escalation", Type: "escalation",
		Members: []ogfake.Participant{
			{ID: "u-bob", Name: "bob@example.com", Type: "user", EscalationTime: 0},
			{ID: "u-carol", Name: "carol@example.com", Type: "user", EscalationTime: 15},
		}}}
	team := ogfake.Shift{Schedule: "d875alp4", Participant: ogfake.Participant{ID: "t-1", Name: "SRE", Type: "team",
		Members: []ogfake.Participant{{ID: "u-dave", Name: "dave@example.com", Type: "user"}}}}
	emptyTeam := ogfake.Shift{Schedule: "d875alp4", Participant: ogfake.Participant{ID: "t-2", Name: "DBA", Type: "team"}}
	later := ogfake.Shift{Schedule: "d875alp4", Start: at.Add(time.Hour),
		Participant: ogfake.Participant{ID: "u-erin", Name: "erin@example.com", Type: "user"}}
	og.AddShift(day, esc, team, emptyTeam, later)
	c, err := opsgenie.New(opsgenie.Config{BaseURL: og.URL, APIKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return og, c
}

func TestParticipantsAndLevels(t *testing.T) {
	og, c := setup(t)
	shifts, err := c.OnCall(context.Background(), oncall.Query{Schedules: []string{"d875alp4"}, At: at})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]oncall.Shift{}
	for _, s := range shifts {
		got[s.UserID] = s
	}
	if len(shifts) != 4 || got["u-erin"].UserID != "" {
		t.Fatalf("shifts = %+v", shifts)
	}
	if a := got["u-alice"]; a.Level != 0 || a.Email != "alice@example.com" || a.ScheduleName != "Ops Primary/EU" || !a.End.IsZero() {
		t.Fatalf("alice = %+v", a)
	}
	if b, c := got["u-bob"], got["u-carol"]; b.Level != 1 || c.Level != 2 || b.EscalationPolicy != "e-1" {
		t.Fatalf("escalation levels: bob %+v carol %+v", b, c)
	}
	if d := got["u-dave"]; d.Level != 0 || d.Email != "dave@example.com" {
		t.Fatalf("team member = %+v", d)
	}

	r := og.Requests()[0]
	if !r.AuthOK || r.Path != "/v2/schedules/d875alp4/on-calls" || r.Query.Get("scheduleIdentifierType") != "id" ||
		r.Query.Get("flat") != "false" || r.Query.Get("date") != "2026-07-06T09:30:00+02:00" {
		t.Fatalf("request = %+v", r)
	}

	// Escalation filter keeps users reached through that escalation.
	shifts, err = c.OnCall(context.Background(), oncall.Query{Schedules: []string{"d875alp4"}, EscalationPolicies: []string{"e-1"}, At: at})
	if err != nil || len(shifts) != 2 {
		t.Fatalf("escalation filter: %+v, %v", shifts, err)
	}
}

func TestScheduleByName(t *testing.T) {
	og, _ := setup(t)
	c, err := opsgenie.New(opsgenie.Config{BaseURL: og.URL, APIKey: key, IdentifierType: "name"})
	if err != nil {
		t.Fatal(err)
	}
	shifts, err := c.OnCall(context.Background(), oncall.Query{Schedules: []string{"Ops Primary/EU"}, At: at})
	if err != nil || len(shifts) != 4 || shifts[0].Schedule != "Ops Primary/EU" {
		t.Fatalf("by name: %+v, %v", shifts, err)
	}
	if q := og.Requests()[0].Query.Get("scheduleIdentifierType"); q != "name" {
		t.Fatalf("scheduleIdentifierType = %q", q)
	}
}

func TestErrorsClassifiedWithoutKey(t *testing.T) {
	og, c := setup(t)
	ctx := context.Background()
	q := oncall.Query{Schedules: []string{"d875alp4"}, At: at}
	check := func(name string, err, kind error) {
		t.Helper()
		if !errors.Is(err, kind) {
			t.Fatalf("%s: err = %v, want %v", name, err, kind)
		}
		if strings.Contains(err.Error(), key) {
			t.Fatalf("%s: key in %q", name, err)
		}
	}
	bad, _ := opsgenie.New(opsgenie.Config{BaseURL: og.URL, APIKey: "wrong-" + key})
	_, err := bad.OnCall(ctx, q)
	check("bad key", err, oncall.ErrConfig)
	if !strings.Contains(err.Error(), "Could not authenticate") {
		t.Fatalf("bad key: %v", err)
	}
	_, err = c.OnCall(ctx, oncall.Query{Schedules: []string{"nope"}, At: at})
	check("unknown schedule", err, oncall.ErrConfig)
	_, err = c.OnCall(ctx, oncall.Query{At: at})
	check("no schedule", err, oncall.ErrConfig)
	og.FailNext(1, ogfake.Fault{Status: 403, Body: `{"message":"key ` + key + ` may not read schedules","took":0.1,"requestId":"r1"}`})
	_, err = c.OnCall(ctx, q)
	check("403", err, oncall.ErrConfig)
	og.FailNext(1, ogfake.Fault{Status: 500})
	_, err = c.OnCall(ctx, q)
	check("500", err, oncall.ErrUnavailable)
	og.FailNext(1, ogfake.Fault{Status: 429, RetryAfter: "2"})
	_, err = c.OnCall(ctx, q)
	check("429", err, oncall.ErrUnavailable)
	var se *oncall.SourceError
	if !errors.As(err, &se) || se.RetryAfter != 2*time.Second {
		t.Fatalf("429: %#v", err)
	}
	og.SetLatency(5 * time.Second)
	tctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	_, err = c.OnCall(tctx, q)
	check("timeout", err, oncall.ErrUnavailable)
}

// Through the Resolver: Opsgenie reports no level for schedule participants, so max_level 1 refuses them and
// says why; max_level 0 accepts them, matched by (verified) email.
func TestResolverWithOpsgenie(t *testing.T) {
	_, c := setup(t)
	res, err := oncall.NewResolver(oncall.Options{
		Sources: map[string]oncall.Backend{"og": {Source: c, Label: "Opsgenie", Mapping: oncall.Mapping{Mode: oncall.MapEmail}}},
		Email: func(_ context.Context, u string) (string, bool, error) {
			return map[string]string{"U1": "alice@example.com", "U2": "bob@example.com"}[u], true, nil
		},
		Now: func() time.Time { return at },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, err := res.IsOnCall(ctx, "U1", oncall.Requirement{Source: "og", Schedules: []string{"d875alp4"}, MaxLevel: 1})
	if err != nil || d.OnCall || !strings.Contains(d.Reason, "Opsgenie reports no escalation level") {
		t.Fatalf("level 0 vs max 1: %+v, %v", d, err)
	}
	d, err = res.IsOnCall(ctx, "U1", oncall.Requirement{Source: "og", Schedules: []string{"d875alp4"}})
	if err != nil || !d.OnCall || d.Reason != "you are on call for schedule Ops Primary/EU" {
		t.Fatalf("any level: %+v, %v", d, err)
	}
	d, err = res.IsOnCall(ctx, "U2", oncall.Requirement{Source: "og", Schedules: []string{"d875alp4"}, MaxLevel: 1})
	if err != nil || !d.OnCall || d.Level != 1 {
		t.Fatalf("escalation level 1: %+v, %v", d, err)
	}
}
