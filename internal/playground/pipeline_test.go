package playground

import (
	"strings"
	"testing"
	"time"
)

// TestPipelineJob: the "run a pipeline job" action drives a simulated job through the real API with a token
// from the local issuer: the approval message shows the pipeline, an approver clicks Approve, the job
// runs with access at the target system, then releases it and the revoke arrives.
func TestPipelineJob(t *testing.T) {
	JobRun = 300 * time.Millisecond
	t.Cleanup(func() { JobRun = 20 * time.Second })
	pg := startPlayground(t)
	c := &client{t: t, base: pg.URL()}
	st := c.state(alice)
	if len(st.PipelineRoles) != 1 || st.PipelineRoles[0] != "staging-deploy" {
		t.Fatalf("pipeline roles = %v", st.PipelineRoles)
	}
	if res := c.post("/api/pipeline", map[string]string{"role": "prod-db-admin"}); res.OK {
		t.Fatal("a job was started for a role no workload may request")
	}
	if res := c.post("/api/pipeline", map[string]string{"role": "staging-deploy"}); !res.OK {
		t.Fatalf("run a pipeline job: %+v", res)
	}
	st = c.waitFor(alice, "the pipeline approval message", func(s State) bool {
		_, ok := s.channel(channelName(pg, "C0789STAGING")).find("Pipeline request", "acme/web")
		return ok
	})
	msg, _ := st.channel(channelName(pg, "C0789STAGING")).find("Pipeline request", "acme/web")
	approve, ok := msg.button("jit_approve")
	if !ok {
		t.Fatalf("no Approve button: %+v", msg)
	}
	c.mustPost("/api/click", ActionRequest{User: alice, Channel: "C0789STAGING", TS: msg.TS, ActionID: approve.ActionID, BlockID: approve.BlockID, Value: approve.Value})
	st = c.waitFor(alice, "the job to finish and release", func(s State) bool {
		// The newest deliveries: the revoke, then the check that verifies the access is gone.
		return len(s.Jobs) == 1 && s.Jobs[0].State == "done" && len(s.Deliveries) > 1 && s.Deliveries[0].Type == "check" && s.Deliveries[1].Type == "revoke"
	})
	log := strings.Join(st.Jobs[0].Lines, "\n")
	for _, want := range []string{"waiting for approval", "access active", "released grant"} {
		if !strings.Contains(log, want) {
			t.Fatalf("job log lacks %q:\n%s", want, log)
		}
	}
	grants := 0
	for _, d := range st.Deliveries {
		if d.Type == "grant" && d.Principal == "ci-web-deployer" {
			grants++
		}
	}
	if grants != 1 {
		t.Fatalf("grant deliveries for the workload principal = %d", grants)
	}
}

func channelName(pg *Playground, id string) string {
	for _, c := range pg.Channels() {
		if c.ID == id {
			return c.Name
		}
	}
	return id
}
