package oncall_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/oncall"
	"github.com/jitbot/jitbot/oncall/pagerduty"
	"github.com/jitbot/jitbot/oncall/pagerduty/pdfake"
)

const pdKey = "u+SECRETpdKEY-1234567890"

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.now = c.now.Add(d) }

// rig is a PagerDuty fake with a primary (Alice), a secondary (Carol) on schedule PSCHED1 in policy PPOL1, and a
// resolver that maps Slack users explicitly.
type rig struct {
	pd    *pdfake.Server
	clk   *clock
	res   *oncall.Resolver
	logs  *bytes.Buffer
	email map[string][2]string // slack user -> {email, "verified"|""}
}

func newRig(t *testing.T, opts ...func(*pagerduty.Config, *oncall.Options)) *rig {
	t.Helper()
	r := &rig{pd: pdfake.New(pdKey), clk: &clock{now: t0}, logs: &bytes.Buffer{}, email: map[string][2]string{}}
	t.Cleanup(r.pd.Close)
	r.pd.AddUser(pdfake.User{ID: "PALICE", Name: "Alice", Email: "alice@example.com"})
	r.pd.AddUser(pdfake.User{ID: "PBOB", Name: "Bob", Email: "bob@example.com"})
	r.pd.AddUser(pdfake.User{ID: "PCAROL", Name: "Carol", Email: "carol@example.com"})
	r.pd.AddOnCall(
		pdfake.OnCall{UserID: "PALICE", ScheduleID: "PSCHED1", ScheduleName: "Primary", EscalationPolicyID: "PPOL1",
			EscalationPolicyName: "Payments", Level: 1, Start: t0.Add(-time.Hour), End: t0.Add(4 * time.Hour)},
		pdfake.OnCall{UserID: "PCAROL", ScheduleID: "PSCHED1", ScheduleName: "Primary", EscalationPolicyID: "PPOL1",
			EscalationPolicyName: "Payments", Level: 2, Start: t0.Add(-time.Hour), End: t0.Add(4 * time.Hour)},
		// Bob was on call yesterday and will be tomorrow: never at t0.
		pdfake.OnCall{UserID: "PBOB", ScheduleID: "PSCHED1", ScheduleName: "Primary", EscalationPolicyID: "PPOL1",
			EscalationPolicyName: "Payments", Level: 1, Start: t0.Add(-25 * time.Hour), End: t0.Add(-time.Hour)},
		pdfake.OnCall{UserID: "PBOB", ScheduleID: "PSCHED1", ScheduleName: "Primary", EscalationPolicyID: "PPOL1",
			EscalationPolicyName: "Payments", Level: 1, Start: t0.Add(4 * time.Hour), End: t0.Add(28 * time.Hour)},
	)
	cfg := pagerduty.Config{BaseURL: r.pd.URL, APIKey: pdKey, Now: r.clk.Now}
	logger := zerolog.New(r.logs)
	ro := oncall.Options{
		Sources: map[string]oncall.Backend{"pd": {
			Label:   "PagerDuty",
			Mapping: oncall.Mapping{Mode: oncall.MapExplicit, Users: map[string]string{"U01ALICE": "PALICE", "U02BOB": "PBOB", "U03CAROL": "PCAROL"}},
		}},
		Now:    r.clk.Now,
		Logger: &logger,
		Email: func(_ context.Context, u string) (string, bool, error) {
			e, ok := r.email[u]
			if !ok {
				return "", false, errors.New("slack: user not found")
			}
			return e[0], e[1] == "verified", nil
		},
	}
	for _, o := range opts {
		o(&cfg, &ro)
	}
	src, err := pagerduty.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := ro.Sources["pd"]
	b.Source = src
	ro.Sources["pd"] = b
	if r.res, err = oncall.NewResolver(ro); err != nil {
		t.Fatal(err)
	}
	return r
}

var primaryOnly = oncall.Requirement{Source: "pd", Schedules: []string{"PSCHED1"}, MaxLevel: 1}

func TestOnCallPrimaryWithLevelAndReason(t *testing.T) {
	r := newRig(t)
	d, err := r.res.IsOnCall(context.Background(), "U01ALICE", primaryOnly)
	if err != nil {
		t.Fatal(err)
	}
	if !d.OnCall || d.Level != 1 || d.Shift == nil || d.Shift.UserID != "PALICE" {
		t.Fatalf("decision = %+v, want on call at level 1", d)
	}
	if want := "you are primary (level 1) on call for schedule Primary (escalation policy Payments) until 14:00 UTC"; d.Reason != want {
		t.Fatalf("reason = %q, want %q", d.Reason, want)
	}

	reqs := r.pd.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	q := reqs[0].Query
	if q.Get("since") != "2026-11-24T10:00:00Z" || q.Get("until") != "2026-11-24T10:00:01Z" || q["schedule_ids[]"][0] != "PSCHED1" {
		t.Fatalf("query = %v", q)
	}
	if !reqs[0].AuthOK || reqs[0].Header.Get("Accept") != "application/vnd.pagerduty+json;version=2" {
		t.Fatalf("auth ok %v, Accept %q", reqs[0].AuthOK, reqs[0].Header.Get("Accept"))
	}
}

func TestOffCallReasonNamesWhoIsOnCall(t *testing.T) {
	r := newRig(t)
	d, err := r.res.IsOnCall(context.Background(), "U02BOB", primaryOnly)
	if err != nil {
		t.Fatal(err)
	}
	if d.OnCall || d.Shift != nil {
		t.Fatalf("decision = %+v, want off call", d)
	}
	if want := "not on call: schedule Primary has Alice (level 1), Carol (level 2) now"; d.Reason != want {
		t.Fatalf("reason = %q, want %q", d.Reason, want)
	}

	// Unmapped Slack users are never on call, and are told why.
	d, err = r.res.IsOnCall(context.Background(), "U09NOBODY", primaryOnly)
	if err != nil || d.OnCall || !strings.Contains(d.Reason, "not mapped to a PagerDuty user") {
		t.Fatalf("unmapped: %+v, %v", d, err)
	}
}

func TestMaxLevelRefusesSecondary(t *testing.T) {
	r := newRig(t)
	d, err := r.res.IsOnCall(context.Background(), "U03CAROL", primaryOnly)
	if err != nil {
		t.Fatal(err)
	}
	if d.OnCall || d.Level != 2 || d.Shift == nil {
		t.Fatalf("decision = %+v, want refused at level 2", d)
	}
	if want := "not on call at an allowed level: you are secondary (level 2) on call for schedule Primary, and this role needs primary (level 1)"; d.Reason != want {
		t.Fatalf("reason = %q", d.Reason)
	}
	for _, max := range []int{0, 2} {
		req := primaryOnly
		req.MaxLevel = max
		d, err = r.res.IsOnCall(context.Background(), "U03CAROL", req)
		if err != nil || !d.OnCall || d.Level != 2 {
			t.Fatalf("max_level %d: %+v, %v", max, d, err)
		}
	}
}

func TestEscalationPolicyFilterAndNobodyOnCall(t *testing.T) {
	r := newRig(t)
	d, err := r.res.IsOnCall(context.Background(), "U01ALICE", oncall.Requirement{Source: "pd", EscalationPolicies: []string{"PPOL1"}})
	if err != nil || !d.OnCall {
		t.Fatalf("policy filter: %+v, %v", d, err)
	}
	if got := r.pd.Requests()[0].Query["escalation_policy_ids[]"]; len(got) != 1 || got[0] != "PPOL1" {
		t.Fatalf("escalation_policy_ids[] = %v", got)
	}
	d, err = r.res.IsOnCall(context.Background(), "U01ALICE", oncall.Requirement{Source: "pd", Schedules: []string{"PEMPTY"}})
	if err != nil || d.OnCall || d.Reason != "not on call: nobody is on call for schedule PEMPTY now" {
		t.Fatalf("empty schedule: %+v, %v", d, err)
	}
}

func TestSourceDownIsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault pdfake.Fault
	}{
		{"500", pdfake.Fault{Status: 500}},
		{"503", pdfake.Fault{Status: 503, RetryAfter: "3"}},
		{"429", pdfake.Fault{Status: 429, RetryAfter: "7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.pd.FailAlways(tc.fault)
			d, err := r.res.IsOnCall(context.Background(), "U01ALICE", primaryOnly)
			if !errors.Is(err, oncall.ErrUnavailable) || errors.Is(err, oncall.ErrConfig) || d.OnCall {
				t.Fatalf("err = %v, decision %+v; want ErrUnavailable only", err, d)
			}
			var se *oncall.SourceError
			if !errors.As(err, &se) || se.Status != tc.fault.Status {
				t.Fatalf("err = %#v", err)
			}
			if tc.fault.RetryAfter != "" && se.RetryAfter == 0 {
				t.Fatalf("Retry-After not reported: %v", err)
			}
			// Failures are not cached: once the source heals, the next lookup answers.
			r.pd.Heal()
			if d, err := r.res.IsOnCall(context.Background(), "U01ALICE", primaryOnly); err != nil || !d.OnCall {
				t.Fatalf("after heal: %+v, %v", d, err)
			}
		})
	}
}

func TestTimeoutIsUnavailable(t *testing.T) {
	r := newRig(t, func(_ *pagerduty.Config, o *oncall.Options) { o.Timeout = 50 * time.Millisecond })
	r.pd.SetLatency(10 * time.Second) // the fake gives up when the client does
	_, err := r.res.IsOnCall(context.Background(), "U01ALICE", primaryOnly)
	if !errors.Is(err, oncall.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrUnavailable wrapping a deadline", err)
	}
}

func TestUnreachableIsUnavailable(t *testing.T) {
	r := newRig(t)
	r.pd.Close()
	_, err := r.res.IsOnCall(context.Background(), "U01ALICE", primaryOnly)
	if !errors.Is(err, oncall.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

func TestBadKeyIsConfigErrorWithoutTheKey(t *testing.T) {
	const wrongKey = "WRONGkey-abcdefghij+/="
	r := newRig(t, func(c *pagerduty.Config, _ *oncall.Options) { c.APIKey = wrongKey })
	_, err := r.res.IsOnCall(context.Background(), "U01ALICE", primaryOnly)
	if !errors.Is(err, oncall.ErrConfig) || errors.Is(err, oncall.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrConfig only", err)
	}
	if !strings.Contains(err.Error(), "HTTP 401") || !strings.Contains(err.Error(), "Invalid Credentials") {
		t.Fatalf("err = %v, want the 401 and PagerDuty's message", err)
	}
	if reqs := r.pd.Requests(); reqs[0].AuthOK {
		t.Fatal("the fake accepted a wrong key")
	}
	for _, text := range []string{err.Error(), r.logs.String()} {
		if strings.Contains(text, wrongKey) || strings.Contains(text, pdKey) {
			t.Fatalf("key leaked: %s", text)
		}
	}
	if !strings.Contains(r.logs.String(), `"kind":"config"`) {
		t.Fatalf("no log of the failed lookup: %s", r.logs.String())
	}
}

func TestNoKeyInAnyErrorOrLog(t *testing.T) {
	r := newRig(t, func(_ *pagerduty.Config, o *oncall.Options) { o.TTL = -1; o.Timeout = 50 * time.Millisecond })
	// The fake echoes the key in its error body: the client must still not repeat it.
	echo := `{"error":{"message":"bad token ` + pdKey + `","code":2006}}`
	faults := []pdfake.Fault{{Status: 500}, {Status: 429, RetryAfter: "1"}, {Status: 403, Body: echo}, {Status: 400, Body: echo}, {Status: 200, Body: "not json " + pdKey}}
	var errs []error
	for _, f := range faults {
		r.pd.FailNext(1, f)
		_, err := r.res.IsOnCall(context.Background(), "U01ALICE", primaryOnly)
		errs = append(errs, err)
	}
	r.pd.SetLatency(time.Second)
	_, err := r.res.IsOnCall(context.Background(), "U01ALICE", primaryOnly)
	errs = append(errs, err)
	r.pd.Close()
	_, err = r.res.IsOnCall(context.Background(), "U01ALICE", primaryOnly)
	errs = append(errs, err)
	for i, err := range errs {
		if err == nil {
			t.Fatalf("case %d: no error", i)
		}
		if strings.Contains(err.Error(), pdKey) {
			t.Fatalf("case %d: key in error %q", i, err)
		}
	}
	if strings.Contains(r.logs.String(), pdKey) || strings.Count(r.logs.String(), "\n") != len(errs) {
		t.Fatalf("logs:\n%s", r.logs.String())
	}
	if !strings.Contains(errs[2].Error(), "[redacted]") {
		t.Fatalf("echoed key not redacted: %v", errs[2])
	}
}

func TestPagination(t *testing.T) {
	r := newRig(t)
	r.pd.SetPageSize(2)
	for _, id := range []string{"PX1", "PX2", "PX3"} {
		r.pd.AddOnCall(pdfake.OnCall{UserID: id, ScheduleID: "PSCHED1", ScheduleName: "Primary", EscalationPolicyID: "PPOL9",
			Level: 3, Start: t0.Add(-time.Hour), End: t0.Add(time.Hour)})
	}
	// Dave is the last entry (sorted by policy, level): only a client that follows "more" finds him.
	r.pd.AddUser(pdfake.User{ID: "PDAVE", Name: "Dave"})
	r.pd.AddOnCall(pdfake.OnCall{UserID: "PDAVE", ScheduleID: "PSCHED1", ScheduleName: "Primary", EscalationPolicyID: "PPOL9",
		Level: 4, Start: t0.Add(-time.Hour), End: t0.Add(time.Hour)})

	shifts, err := r.res.Shifts(context.Background(), oncall.Requirement{Source: "pd", Schedules: []string{"PSCHED1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(shifts) != 6 { // Alice, Carol, PX1-3, Dave (Bob's entries do not cover t0)
		t.Fatalf("%d shifts: %+v", len(shifts), shifts)
	}
	var offsets []string
	for _, q := range r.pd.Requests() {
		offsets = append(offsets, q.Query.Get("offset"))
	}
	// 6 entries overlap the 1s window (Bob's two do not): 3 pages of 2.
	if strings.Join(offsets, ",") != "0,2,4" {
		t.Fatalf("offsets = %v", offsets)
	}
}

func TestEmailMappingVerifiedOnly(t *testing.T) {
	r := newRig(t, func(c *pagerduty.Config, o *oncall.Options) {
		c.ResolveEmails = true
		o.Sources["pd"] = oncall.Backend{Label: "PagerDuty", Mapping: oncall.Mapping{Mode: oncall.MapEmail}}
	})
	r.email["U01ALICE"] = [2]string{"Alice@Example.com", "verified"}
	r.email["U66MALLORY"] = [2]string{"alice@example.com", ""} // claims Alice's address, unverified
	ctx := context.Background()

	d, err := r.res.IsOnCall(ctx, "U01ALICE", primaryOnly)
	if err != nil || !d.OnCall || d.Shift.Email != "alice@example.com" {
		t.Fatalf("verified: %+v, %v", d, err)
	}
	d, err = r.res.IsOnCall(ctx, "U66MALLORY", primaryOnly)
	if err != nil || d.OnCall || !strings.Contains(d.Reason, "not verified") {
		t.Fatalf("unverified: %+v, %v", d, err)
	}
	// A failing Slack lookup is "cannot answer now".
	if _, err = r.res.IsOnCall(ctx, "U77UNKNOWN", primaryOnly); !errors.Is(err, oncall.ErrUnavailable) {
		t.Fatalf("email lookup failure: %v", err)
	}
	// Emails come from GET /users/{id}, cached by the client across resolver cache expiry.
	users := r.pd.Count("/users/PALICE") + r.pd.Count("/users/PCAROL")
	if users != 2 {
		t.Fatalf("%d user lookups, want 2", users)
	}
	r.clk.Advance(time.Minute)
	if d, err = r.res.IsOnCall(ctx, "U01ALICE", primaryOnly); err != nil || !d.OnCall {
		t.Fatalf("again: %+v, %v", d, err)
	}
	if r.pd.Count("/oncalls") != 2 || r.pd.Count("/users/PALICE")+r.pd.Count("/users/PCAROL") != 2 {
		t.Fatalf("requests: %+v", r.pd.Requests())
	}
}

func TestCacheWithinAndAfterTTL(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	for _, u := range []string{"U01ALICE", "U02BOB", "U03CAROL"} {
		if _, err := r.res.IsOnCall(ctx, u, primaryOnly); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.pd.Count("/oncalls"); n != 1 {
		t.Fatalf("%d HTTP calls within the TTL, want 1", n)
	}
	// The same schedules in another order (and another max level) share the cache entry.
	req := oncall.Requirement{Source: "pd", Schedules: []string{"PSCHED1"}}
	r.clk.Advance(29 * time.Second)
	if _, err := r.res.IsOnCall(ctx, "U01ALICE", req); err != nil || r.pd.Count("/oncalls") != 1 {
		t.Fatalf("at 29s: %d calls, %v", r.pd.Count("/oncalls"), err)
	}
	r.clk.Advance(time.Second)
	if _, err := r.res.IsOnCall(ctx, "U01ALICE", req); err != nil || r.pd.Count("/oncalls") != 2 {
		t.Fatalf("at 30s: %d calls, %v", r.pd.Count("/oncalls"), err)
	}
	// A different query is a different entry.
	if _, err := r.res.IsOnCall(ctx, "U01ALICE", oncall.Requirement{Source: "pd", EscalationPolicies: []string{"PPOL1"}}); err != nil || r.pd.Count("/oncalls") != 3 {
		t.Fatalf("other query: %d calls, %v", r.pd.Count("/oncalls"), err)
	}
}

func TestCachedShiftEndsOnTime(t *testing.T) {
	r := newRig(t, func(_ *pagerduty.Config, o *oncall.Options) { o.TTL = time.Hour })
	ctx := context.Background()
	if d, _ := r.res.IsOnCall(ctx, "U01ALICE", primaryOnly); !d.OnCall {
		t.Fatal("not on call")
	}
	r.clk.Advance(4 * time.Hour) // Alice's shift ends at t0+4h; the cached answer must not outlive it
	d, err := r.res.IsOnCall(ctx, "U01ALICE", primaryOnly)
	if err != nil || d.OnCall {
		t.Fatalf("after the shift: %+v, %v", d, err)
	}
}

func TestConcurrentLookupsShareOneCall(t *testing.T) {
	r := newRig(t)
	r.pd.SetLatency(50 * time.Millisecond)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.res.IsOnCall(context.Background(), "U01ALICE", primaryOnly); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := r.pd.Count("/oncalls"); n != 1 {
		t.Fatalf("%d calls, want 1", n)
	}
}

func TestConfigErrors(t *testing.T) {
	r := newRig(t)
	if _, err := r.res.IsOnCall(context.Background(), "U01ALICE", oncall.Requirement{Source: "nope"}); !errors.Is(err, oncall.ErrConfig) {
		t.Fatalf("unknown source: %v", err)
	}
	if _, err := r.res.IsOnCall(context.Background(), "U01ALICE", oncall.Requirement{Source: "pd", MaxLevel: -1}); !errors.Is(err, oncall.ErrConfig) {
		t.Fatalf("negative level: %v", err)
	}
	r.pd.FailNext(1, pdfake.Fault{Status: 404})
	if _, err := r.res.IsOnCall(context.Background(), "U01ALICE", primaryOnly); !errors.Is(err, oncall.ErrConfig) {
		t.Fatalf("404: %v", err)
	}
	if _, err := oncall.NewResolver(oncall.Options{Sources: map[string]oncall.Backend{"x": {Source: stubSource{}, Mapping: oncall.Mapping{Mode: oncall.MapEmail}}}}); err == nil {
		t.Fatal("email mapping without an Email function was accepted")
	}
}

type stubSource struct{}

func (stubSource) OnCall(context.Context, oncall.Query) ([]oncall.Shift, error) { return nil, nil }
