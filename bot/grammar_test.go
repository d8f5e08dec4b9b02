package bot

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	good := []struct {
		text string
		want Command
	}{
		{"", Command{Verb: VerbModal}},
		{"   ", Command{Verb: VerbModal}},
		{"request prod-db-admin 1h INC-4521 failover", Command{Verb: VerbRequest, Role: "prod-db-admin", Duration: time.Hour, Reason: "INC-4521 failover"}},
		{"REQUEST db 45s  x", Command{Verb: VerbRequest, Role: "db", Duration: 45 * time.Second, Reason: "x"}},
		{"request db 1d12h long", Command{Verb: VerbRequest, Role: "db", Duration: 36 * time.Hour, Reason: "long"}},
		{"roles", Command{Verb: VerbRoles}},
		{"list", Command{Verb: VerbList}},
		{"help", Command{Verb: VerbHelp}},
		{"done g-abc", Command{Verb: VerbDone, ID: "g-abc"}},
		{"cancel r-abc", Command{Verb: VerbCancel, ID: "r-abc"}},
		{"extend g-abc 30m", Command{Verb: VerbExtend, ID: "g-abc", Duration: 30 * time.Minute}},
	}
	for _, c := range good {
		got, err := Parse("/jit", c.text)
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", c.text, got, err, c.want)
		}
	}
	bad := []struct{ text, says string }{
		{"request db 1h", "Usage: `/jit request <role> <duration> <reason…>`"},
		{"request db soon fix", `"soon" is not a duration`},
		{"request db 10 fix", `"10" is not a duration`},
		{"extend g-1", "Usage: `/jit extend <grant> <duration>`"},
		{"extend g-1 forever", `"forever" is not a duration`},
		{"done", "Usage: `/jit done <grant>`"},
		{"cancel a b", "Usage: `/jit cancel <request>`"},
		{"roles please", "Usage: `/jit roles`"},
		{"grant me admin", "I don't know `grant`"},
	}
	for _, c := range bad {
		_, err := Parse("/jit", c.text)
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("Parse(%q) error = %v; want a usage error containing %q", c.text, err, c.says)
		}
	}
}
