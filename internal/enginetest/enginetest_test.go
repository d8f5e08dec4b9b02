package enginetest_test

import (
	"testing"

	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/internal/enginetest"
	"github.com/jitbot/jitbot/store"
)

func TestEngine(t *testing.T) {
	for _, b := range backendtest.All() {
		t.Run(b.Name, func(t *testing.T) {
			enginetest.Run(t, func(t *testing.T) store.Store {
				s := b.Prepare(t)()
				t.Cleanup(func() { _ = s.Close() })
				return s
			})
		})
	}
}
