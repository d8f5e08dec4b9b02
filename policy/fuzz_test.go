package policy_test

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/policy"
)

// FuzzParseDuration: any text either is refused with an error or parses to a duration that, written for
// people, parses back to itself.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"1h", "90m", "1h30m", "1d", "1d12h", "45s", "1h0m0s", "0", "0s", "", "-1h", "soon", "5",
		"1.5h", "300ms", "9999999999999h", "1e3h", " 2h ", "1d1d", "106751d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := policy.ParseDuration(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseDuration(%q): empty error", s)
			}
			return
		}
		text := policy.FormatDuration(d)
		back, err := policy.ParseDuration(text)
		if err != nil || back != d {
			t.Fatalf("ParseDuration(%q) = %v, formatted %q, which parses to %v, %v", s, d, text, back, err)
		}
	})
}

// FuzzFormatDuration: every duration can be written, whole-second durations without zero units ("1h", never
// "1h0m0s"), and what is written parses back.
func FuzzFormatDuration(f *testing.F) {
	for _, d := range []int64{0, 1, int64(time.Second), int64(time.Hour), int64(90 * time.Minute), int64(36 * time.Hour), -int64(time.Hour), math.MaxInt64, math.MinInt64} {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, n int64) {
		d := time.Duration(n)
		text := policy.FormatDuration(d)
		if text == "" {
			t.Fatalf("FormatDuration(%d) is empty", n)
		}
		if d > 0 && d%time.Second == 0 {
			for _, zero := range []string{"d0", "h0", "m0"} {
				if strings.Contains(text, zero+"h") || strings.Contains(text, zero+"m") || strings.Contains(text, zero+"s") {
					t.Fatalf("FormatDuration(%v) = %q has a zero unit", d, text)
				}
			}
			back, err := policy.ParseDuration(text)
			if err == nil && back != d {
				t.Fatalf("FormatDuration(%v) = %q parses to %v", d, text, back)
			}
		}
	})
}

// FuzzParse: policy loading never panics, and returns a policy exactly when it reports no error.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("../examples/*.yaml")
	more, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range append(seeds, more...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("version: 1\nroles: {}\n"))
	f.Add([]byte("version: 1\nroles:\n  a: {provider: x, approvals: -1, max_duration: 1h}\n"))
	f.Add([]byte("version: 1\n&a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := policy.Parse("fuzz.yaml", data)
		if (p == nil) == (err == nil) {
			t.Fatalf("Parse returned policy %v with error %v", p != nil, err)
		}
	})
}
