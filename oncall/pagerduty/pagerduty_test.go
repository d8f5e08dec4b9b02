package pagerduty_test

import (
	"context"
	"testing"
	"time"

	"github.com/jitbot/jitbot/oncall"
	"github.com/jitbot/jitbot/oncall/pagerduty"
	"github.com/jitbot/jitbot/oncall/pagerduty/pdfake"
)

// Permanent on-calls (a user as a direct escalation target: schedule null, start and end null) map to an empty
// schedule and zero times; times rendered in another zone are the same instants.
func TestPermanentOnCallAndNullFields(t *testing.T) {
	pd := pdfake.New("k")
	defer pd.Close()
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	pd.AddUser(pdfake.User{ID: "PA", Name: "Alice", Email: "alice@example.com"})
	pd.AddOnCall(
		pdfake.OnCall{UserID: "PA", EscalationPolicyID: "PP", EscalationPolicyName: "Payments", Level: 3},
		pdfake.OnCall{UserID: "PA", ScheduleID: "PS", EscalationPolicyID: "PP", Level: 1, Start: at.Add(-time.Minute), End: at},
	)
	c, err := pagerduty.New(pagerduty.Config{BaseURL: pd.URL + "/", APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	shifts, err := c.OnCall(context.Background(), oncall.Query{EscalationPolicies: []string{"PP"}, At: at})
	if err != nil {
		t.Fatal(err)
	}
	// The second entry ends exactly at At: it overlaps nothing after At and is not on call.
	if len(shifts) != 1 {
		t.Fatalf("shifts = %+v", shifts)
	}
	s := shifts[0]
	if s.Schedule != "" || s.Level != 3 || !s.Start.IsZero() || !s.End.IsZero() || s.Name != "Alice" || s.EscalationPolicyName != "Payments" {
		t.Fatalf("shift = %+v", s)
	}
	if s.Email != "" || pd.Count("/users/PA") != 0 {
		t.Fatal("emails resolved without ResolveEmails")
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []pagerduty.Config{{}, {APIKey: "a b"}, {APIKey: "k", BaseURL: "ftp://x"}, {APIKey: "k", BaseURL: "::"}} {
		if _, err := pagerduty.New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
